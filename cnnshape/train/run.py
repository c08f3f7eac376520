"""Training runs a user can keep: a run folder, fresh or resumed.

A run is planned first (`plan_fresh`, `plan_resume`: the settings resolved; for a resumed
run, its folder locked, its checkpoint verified and read, the resume policy applied; no file
written) and then executed (`execute`: the model checked at the run's size (`preflight`), the
data loaded, the folder written, the loop run). Everything returns plain data; nothing here
prints. What a run folder guarantees: ``folder.py``; a finished run's report: ``evaluate.py``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from ..errors import CnnshapeError
from . import checkpoint, data, distributed, preflight, run_data, signals
from .config import TrainConfig, TrainSettings, resume_config
from .events import EpochStats, OnEvent, RunStart, examples_per_sec
from .folder import LOCK_FILE, RunFolder
from .loop import NonFiniteLossError, check_sync_bn, epoch_length, fit, make_optimizer, make_scaler
from .model import build_model, load_weights, prepare_model, run_name


@dataclass
class Plan:
    """A run about to start or continue, decided before any data is loaded or file written."""

    config: TrainConfig
    out: Path | None  # the folder asked for; None: a new runs/<model>-<time>
    force: bool = False  # take a non-empty folder that is not a run
    state: dict | None = None  # the checkpoint a resumed run continues from
    # The run's folder, locked by this process: a resumed run's from planning on, a fresh
    # run's once `execute` claims it; None on the other ranks under torchrun.
    folder: RunFolder | None = None
    notes: list[str] = field(default_factory=list)  # what a reader should know (a repair)

    @property
    def history(self) -> list[EpochStats]:
        return [EpochStats(**row) for row in self.state["history"]] if self.state else []

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc) -> None:
        """Unlock the run folder, however the run ended (the one place that does)."""
        if self.folder is not None:
            self.folder.release()


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    config: TrainConfig
    history: list[EpochStats]  # every finished epoch, resumed ones included
    stopped_by: int | None  # the signal that stopped it (SIGINT: Ctrl-C), or None
    examples_per_sec: float  # the book's figure over all finished epochs

    @property
    def complete(self) -> bool:
        return len(self.history) >= self.config.epochs

    @property
    def interrupted(self) -> bool:
        """Stopped with epochs left to train (checkpoint.pt holds the last finished one)."""
        return self.stopped_by is not None and not self.complete


class RunDivergedError(NonFiniteLossError):
    """A non-finite loss ended a run: where it happened and what the run folder still holds."""

    def __init__(self, cause: NonFiniteLossError, run_dir: Path, last_epoch: int):
        super().__init__(cause.epoch, cause.batch, cause.lr)
        self.run_dir = run_dir
        self.last_epoch = last_epoch  # the epoch the checkpoint holds (0: none)
        kept = (
            f" The last good checkpoint (epoch {last_epoch}) is kept in {run_dir}."
            if last_epoch
            else " No epoch had finished, so there is no checkpoint."
        )
        self.hint = (self.hint or "") + kept


def plan_fresh(
    settings: TrainSettings, out: str | os.PathLike | None = None, force: bool = False
) -> Plan:
    if out is not None and not str(out).strip():
        raise CnnshapeError("--out '' is not a folder.", "Give a folder, e.g. --out runs/mine.")
    return Plan(settings.resolve(), Path(out).expanduser() if out is not None else None, force)


def plan_resume(run_dir: str | Path, settings: TrainSettings, out: str | None = None) -> Plan:
    """Continue a run from its last finished epoch, with its own config (`resume_config`).

    The folder is locked first (under torchrun, by rank 0), so no other process can write
    it between reading its checkpoint and training on."""
    path = checkpoint.resolve_path(run_dir)
    directory = path.parent
    if out is not None and Path(out).expanduser().resolve() != directory.resolve():
        raise CnnshapeError(
            f"--out cannot change when resuming: the run's folder is {directory}.",
            "Leave out --out; a resumed run writes to its own folder.",
        )
    if not path.is_file() and not (directory / LOCK_FILE).exists():
        checkpoint.load(path)  # says what is missing (a run that is starting has its lock)
    locked = RunFolder.existing(directory) if distributed.is_main() else None
    try:
        state = checkpoint.load(path)
        config = resume_config(TrainConfig.from_dict(state["config"]), settings)
        finished = len(state["history"])
        if finished >= config.epochs:
            raise CnnshapeError(
                f"The run has already finished its {finished} epochs.",
                f"Pass --epochs {finished + 10} (say) to train it longer.",
            )
    except BaseException:
        if locked is not None:
            locked.release()
        raise
    return Plan(config, directory, state=state, folder=locked)


def execute(
    plan: Plan, on_event: OnEvent | None = None, *, progress_every: float = 0.25
) -> RunResult:
    """Load the data, write the run folder, train. A Ctrl-C or SIGTERM ends the run cleanly
    (``result.stopped_by``); a non-finite loss raises RunDivergedError. Run it inside
    ``with plan:``, which unlocks the folder at the end however the run ends."""
    preflight.check_size(plan.config)  # a size the model refuses fails before data is read
    # The data next: bad data is refused before any folder is claimed, and the model is
    # built for its channels and classes.
    dataset = run_data.load(plan.config)
    plan.config = cfg = _with_data(plan, dataset)
    plan.notes.extend(dataset.notes)
    flops = preflight.forward_flops(cfg)
    if cfg.device_type == "cuda":
        preflight.check_step_fits(cfg, torch.cuda.mem_get_info(cfg.device)[0])
    model, optimizer, scaler = _build(plan)
    check_sync_bn(model, cfg)
    if distributed.is_main():
        _claim(plan, cfg, dataset, model)
    # Rank 0 alone owns the run folder (under torchrun the others learn its name).
    run_dir = distributed.broadcast_from_main(plan.folder.path if plan.folder else None)
    n_train = len(dataset.train)
    start = RunStart(
        cfg,
        sum(p.numel() for p in model.parameters()),
        flops,
        dataset.source,
        n_train,
        len(dataset.test),
        str(run_dir),
        start_epoch=len(plan.history),
        world_size=distributed.world_size(),
        left_out_per_epoch=n_train - epoch_length(model, n_train, cfg),
        notes=tuple(plan.notes),
    )
    return _train(
        model,
        dataset,
        cfg,
        plan.folder,
        run_dir,
        start,
        on_event,
        optimizer=optimizer,
        scaler=scaler,
        history=plan.history,
        progress_every=progress_every,
    )


def _build(plan: Plan):
    """The model (seeded: biases and BatchNorm are initialized when built), with a resumed
    run's weights, optimizer and loss-scaler states; (model, optimizer, scaler), the last two
    None for a fresh run."""
    cfg = plan.config
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    if plan.state is None:
        return model, None, None
    load_weights(model, plan.state["model"], plan.out)
    prepare_model(model, cfg)  # before the optimizer state, which follows its parameters
    optimizer = make_optimizer(model, cfg)
    optimizer.load_state_dict(plan.state["optimizer"])
    scaler = make_scaler(cfg)
    if plan.state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(plan.state["scaler"])
    return model, optimizer, scaler


def classes_of(cfg: TrainConfig) -> tuple[str, ...]:
    return data.CLASSES if cfg.classes is None else cfg.classes


def _with_data(plan: Plan, dataset: data.Dataset) -> TrainConfig:
    """The run's config with what its data is (in the channels the model takes); a resumed
    run's data must be what it had."""
    cfg = plan.config.with_data(
        dataset.classes, dataset.channels, dataset.image_size, dataset.train.normalization
    )
    if plan.state is not None:
        before = (classes_of(plan.config), plan.config.channels, plan.config.image_size)
        if before != (cfg.classes, cfg.channels, cfg.image_size):
            raise CnnshapeError(
                f"The data in {dataset.source} is not what the run trained on: "
                f"{len(cfg.classes)} classes, {cfg.channels} channels, {cfg.image_size}px "
                f"where the run had {len(before[0])}, {before[1]} and {before[2]}px.",
                "Resume with the run's own data (--data-dir).",
            )
    return cfg


def _claim(plan: Plan, cfg: TrainConfig, dataset: data.Dataset, model: nn.Module) -> None:
    """``plan.folder``, locked: the resumed one (repaired) or a new one (cleaned of what a
    run killed before its first save left); config.json written."""
    if plan.folder is not None:
        note = plan.folder.repair(plan.history, _title(cfg), cfg.epochs)
    else:
        plan.folder = RunFolder.new(plan.out, run_name(cfg.model), plan.force)
        note = plan.folder.clean()
    if note:
        plan.notes.append(note)
    plan.folder.write_config(_config_info(cfg, dataset, model))


def _train(
    model: nn.Module,
    dataset: data.Dataset,
    cfg: TrainConfig,
    folder: RunFolder | None,
    run_dir: Path,
    start: RunStart,
    on_event: OnEvent | None,
    *,
    optimizer,
    scaler,
    history: list[EpochStats],
    progress_every: float,
) -> RunResult:
    history = list(history)
    optimizer = optimizer or make_optimizer(model, cfg)
    scaler = scaler or make_scaler(cfg)

    def handle(event) -> None:
        if isinstance(event, EpochStats):
            history.append(event)
            # Saved before the caller sees the event, so whatever the caller does next (a
            # Ctrl-C included) the finished epoch is on disk; a signal during the save waits
            # for it. ``model`` is the bare module, never the DDP wrapper: its state_dict has
            # no "module." prefix. Under torchrun only rank 0 has a folder.
            if folder is not None:
                with signals.deferred():
                    folder.save_epoch(
                        history,
                        _title(cfg),
                        cfg.epochs,
                        model=model,
                        optimizer=optimizer,
                        scaler=scaler,
                        config=cfg.to_dict(),
                    )
        if on_event is not None and distributed.is_main():
            on_event(event)

    handle(start)
    stopped_by = None
    try:
        fit(
            model,
            dataset,
            cfg,
            handle,
            optimizer=optimizer,
            scaler=scaler,
            history=history,
            progress_every=progress_every,
        )
        # Under torchrun nobody returns before rank 0 has written the last checkpoint, so
        # whatever uses the run folder next (eval, --resume on every rank) finds it whole.
        distributed.barrier()
    except KeyboardInterrupt as stop:
        stopped_by = signals.signal_of(stop)
    except NonFiniteLossError as err:
        raise RunDivergedError(err, run_dir, len(history)) from err
    return RunResult(run_dir, cfg, history, stopped_by, examples_per_sec(history))


def _title(cfg: TrainConfig) -> str:
    return f"{cfg.model} ({cfg.device})"


# ---- pieces ------------------------------------------------------------------------------------


def _config_info(cfg: TrainConfig, dataset: data.Dataset, model: nn.Module) -> dict:
    """What config.json records: every setting, the data, the device and the versions."""
    return {
        "config": cfg.to_dict(),
        "model": {"params": sum(p.numel() for p in model.parameters())},
        "data": {
            "source": dataset.source,
            "train_images": len(dataset.train),
            "test_images": len(dataset.test),
        },
        "device": _device_info(cfg.device),
        "world_size": distributed.world_size(),  # processes that trained together (torchrun)
        "versions": _versions(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _device_info(device: str) -> dict:
    if device.startswith("cuda"):
        return {"device": device, "name": torch.cuda.get_device_name(device)}
    return {
        "device": device,
        "name": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def _versions() -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("cnnshape", "torchvision"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions

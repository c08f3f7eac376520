"""Training runs a user can keep: a run folder, fresh or resumed, and its evaluation.

A run is planned first (`plan_fresh`, `plan_resume`: the settings resolved, a resumed run's
checkpoint read and its policy applied, nothing written) and then executed (`execute`: data
loaded, the folder written, the loop run), so the caller can check the plan before anything
happens (``cnnshape.api`` walks the model at the run's size, for the header's FLOPs and to
refuse a size the model cannot take). Everything returns plain data; nothing here prints.

The run folder holds config.json, metrics.csv, curves.png and checkpoint.pt, all rewritten
after every epoch.
"""

from __future__ import annotations

import contextlib
import csv
import json
import platform
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from .._common import atomic_write
from ..errors import CnnshapeError
from ..models.batchnorm import BatchNorm as ScratchBatchNorm
from ..registry import get_spec
from . import checkpoint, data, distributed
from .config import TrainConfig, TrainSettings, resume_config
from .curves import plot_history
from .events import EpochStats, OnEvent, RunStart, examples_per_sec
from .loop import (
    NonFiniteLossError,
    check_sync_bn,
    confusion_matrix,
    fit,
    make_optimizer,
    make_scaler,
    prepare_model,
)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"


@dataclass(frozen=True)
class Plan:
    """A run about to start or continue, decided before anything is loaded or written."""

    config: TrainConfig
    out: Path | None  # the run folder: given, the resumed one, or None for runs/<model>-<time>
    state: dict | None = None  # the checkpoint a resumed run continues from

    @property
    def history(self) -> list[EpochStats]:
        return [EpochStats(**row) for row in self.state["history"]] if self.state else []


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    config: TrainConfig
    history: list[EpochStats]  # every finished epoch, resumed ones included
    interrupted: bool  # Ctrl-C stopped it; checkpoint.pt holds the last finished epoch
    examples_per_sec: float  # the book's figure over all finished epochs


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


def plan_fresh(settings: TrainSettings, out: str | None = None) -> Plan:
    return Plan(settings.resolve(), Path(out).expanduser() if out is not None else None)


def plan_resume(run_dir: str | Path, settings: TrainSettings, out: str | None = None) -> Plan:
    """Continue a run from its last finished epoch, with its own config (`resume_config`)."""
    folder = checkpoint.resolve_path(run_dir).parent
    if out is not None and Path(out).expanduser().resolve() != folder.resolve():
        raise CnnshapeError(
            f"--out cannot change when resuming: the run's folder is {folder}.",
            "Leave out --out; a resumed run writes to its own folder.",
        )
    state = checkpoint.load(run_dir)
    config = resume_config(TrainConfig.from_dict(state["config"]), settings)
    finished = len(state["history"])
    if finished >= config.epochs:
        raise CnnshapeError(
            f"The run has already finished its {finished} epochs.",
            f"Pass --epochs {finished + 10} (say) to train it longer.",
        )
    return Plan(config, folder, state)


def execute(
    plan: Plan,
    flops_per_image: int,
    on_event: OnEvent | None = None,
    *,
    progress_every: float = 0.25,
) -> RunResult:
    """Load the data, write the run folder, train. KeyboardInterrupt ends the run cleanly
    (``result.interrupted``); a non-finite loss raises RunDivergedError."""
    cfg = plan.config
    torch.manual_seed(cfg.seed)  # the default init of biases and BatchNorm happens at build
    model = get_spec(cfg.model).build()
    optimizer, scaler = None, None
    if plan.state is not None:
        model.load_state_dict(plan.state["model"])
        prepare_model(model, cfg)  # before the optimizer state, which follows its parameters
        optimizer = make_optimizer(model, cfg)
        optimizer.load_state_dict(plan.state["optimizer"])
        scaler = make_scaler(cfg)
        if plan.state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(plan.state["scaler"])
    check_sync_bn(model, cfg)
    dataset = load_data(cfg)
    # Rank 0 alone creates the run folder (under torchrun the others learn its name).
    run_dir = distributed.broadcast_from_main(_run_dir(plan) if distributed.is_main() else None)
    if distributed.is_main():
        write_config(run_dir, cfg, dataset, model)
    start = RunStart(
        cfg,
        sum(p.numel() for p in model.parameters()),
        flops_per_image,
        dataset.source,
        len(dataset.train),
        len(dataset.test),
        str(run_dir),
        start_epoch=len(plan.history),
        world_size=distributed.world_size(),
    )
    return _train(
        model,
        dataset,
        cfg,
        run_dir,
        start,
        on_event,
        optimizer=optimizer,
        scaler=scaler,
        history=plan.history,
        progress_every=progress_every,
    )


def _train(
    model: nn.Module,
    dataset: data.Dataset,
    cfg: TrainConfig,
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
    main = distributed.is_main()  # under torchrun only rank 0 writes and reports

    def handle(event) -> None:
        if isinstance(event, EpochStats):
            history.append(event)
            # Saved before the caller sees the event, so whatever the caller does next
            # (a Ctrl-C included) the finished epoch is on disk. ``model`` is the bare
            # module, never the DDP wrapper: its state_dict has no "module." prefix.
            if main:
                save_epoch(run_dir, model, optimizer, scaler, cfg, history)
        if on_event is not None and main:
            on_event(event)

    handle(start)
    interrupted = False
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
    except KeyboardInterrupt:
        interrupted = True
    except NonFiniteLossError as err:
        raise RunDivergedError(err, run_dir, len(history)) from err
    return RunResult(run_dir, cfg, history, interrupted, examples_per_sec(history))


def save_epoch(
    run_dir: Path, model: nn.Module, optimizer, scaler, cfg: TrainConfig, history: list[EpochStats]
) -> None:
    """metrics.csv, curves.png and checkpoint.pt for the epochs in ``history``, each atomic,
    all three written before a Ctrl-C that arrives meanwhile takes effect."""
    with _sigint_deferred():
        write_metrics(run_dir / METRICS_FILE, history)
        plot_history(
            history, run_dir / CURVES_FILE, title=f"{cfg.model} ({cfg.device})", epochs=cfg.epochs
        )
        checkpoint.save(
            run_dir / checkpoint.FILENAME,
            model=model,
            optimizer=optimizer,
            scaler=scaler,
            epoch=len(history),
            config=cfg.to_dict(),
            history=[asdict(s) for s in history],
        )


@contextlib.contextmanager
def _sigint_deferred():
    """Hold back SIGINT for the duration, then deliver it to the handler that was there."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; atomic writes still hold
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)


# ---- pieces ------------------------------------------------------------------------------------


def load_data(cfg: TrainConfig) -> data.Dataset:
    """The run's dataset, cut to its limits, on its device (under torchrun, the first process
    on each machine loads first: it may be downloading into the shared cache)."""
    with distributed.local_main_first():
        dataset = data.load(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    return dataset.head(cfg.train_limit, cfg.test_limit).to(cfg.device)


def _run_dir(plan: Plan) -> Path:
    """The folder a run writes: the resumed one, the one given, or a new runs/<model>-<time>."""
    if plan.state is not None:
        return plan.out
    if plan.out is not None:
        if (plan.out / checkpoint.FILENAME).exists():
            raise CnnshapeError(
                f"{plan.out} already holds a run.",
                f"Continue it with --resume {plan.out}, or choose another --out.",
            )
        plan.out.mkdir(parents=True, exist_ok=True)
        return plan.out
    stem = Path("runs") / f"{plan.config.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, n = stem, 1
    while run_dir.exists():  # two runs started in the same second
        n += 1
        run_dir = stem.with_name(f"{stem.name}-{n}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_config(run_dir: Path, cfg: TrainConfig, dataset: data.Dataset, model: nn.Module):
    info = {
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
    text = json.dumps(info, indent=2) + "\n"
    atomic_write(run_dir / CONFIG_FILE, lambda tmp: tmp.write_text(text))


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


def write_metrics(path: Path, history: list[EpochStats]) -> None:
    names = [f.name for f in fields(EpochStats)]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            writer.writerows(asdict(s) for s in history)

    atomic_write(path, write)


def read_metrics(path: str | Path) -> list[EpochStats]:
    with Path(path).open(newline="") as f:
        return [
            EpochStats(epoch=int(row.pop("epoch")), **{k: float(v) for k, v in row.items()})
            for row in csv.DictReader(f)
        ]


# ---- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassAccuracy:
    name: str
    correct: int
    total: int
    accuracy: float


@dataclass(frozen=True)
class BatchNormParams:
    """One BatchNorm layer's learned scale and shift, flattened (the book's
    ``net[1].gamma.reshape((-1,))``)."""

    name: str  # qualified module name, e.g. "1"
    type: str  # BatchNorm2d, BatchNorm1d, or BatchNorm (the book's scratch layer)
    gamma: list[float]
    beta: list[float]


@dataclass(frozen=True)
class EvalResult:
    checkpoint: Path
    model: str
    epoch: int  # finished epochs in the checkpoint
    device: str
    data_source: str
    test_acc: float
    per_class: list[ClassAccuracy]
    confusion: list[list[int]]  # [true class][predicted class]
    classes: tuple[str, ...]
    batch_norm: list[BatchNormParams]


def evaluate_run(path: str | Path, settings: TrainSettings | None = None) -> EvalResult:
    """Test accuracy, per-class accuracy, confusion matrix and BatchNorm parameters of a run
    folder's (or a checkpoint file's) model, on the data it was trained on unless told.

    ``settings`` may give ``device``, ``dataset``, ``data_dir``, ``test_limit`` and
    ``batch_size``; precision and channels_last are chosen for the device.
    """
    settings = settings or TrainSettings()
    state = checkpoint.load(path)
    recorded = TrainConfig.from_dict(state["config"])
    cfg = TrainSettings(
        model=recorded.model,
        batch_size=settings.batch_size or recorded.batch_size,
        size=recorded.size,
        device=settings.device,
        dataset=settings.dataset or recorded.dataset,
        data_dir=settings.data_dir or recorded.data_dir,
        seed=recorded.seed,
        test_limit=settings.test_limit,
    ).resolve()
    model = get_spec(cfg.model).build()
    model.load_state_dict(state["model"])
    prepare_model(model, cfg)
    dataset = data.load(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    test = dataset.test.head(cfg.test_limit).to(cfg.device)
    counts = confusion_matrix(model, test, cfg, num_classes=len(dataset.classes))
    return EvalResult(
        checkpoint=checkpoint.resolve_path(path),
        model=cfg.model,
        epoch=state["epoch"],
        device=cfg.device,
        data_source=dataset.source,
        test_acc=counts.trace().item() / max(counts.sum().item(), 1),
        per_class=_per_class(counts, dataset.classes),
        confusion=counts.tolist(),
        classes=dataset.classes,
        batch_norm=batch_norm_params(model),
    )


def _per_class(counts: torch.Tensor, classes: tuple[str, ...]) -> list[ClassAccuracy]:
    result = []
    for i, name in enumerate(classes):
        correct, total = int(counts[i, i]), int(counts[i].sum())
        result.append(ClassAccuracy(name, correct, total, correct / total if total else 0.0))
    return result


def batch_norm_params(model: nn.Module) -> list[BatchNormParams]:
    """gamma/beta of every BatchNorm layer: torch's (weight/bias) and the scratch one's."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            gamma, beta = module.weight, module.bias
        elif isinstance(module, ScratchBatchNorm):
            gamma, beta = module.gamma, module.beta
        else:
            continue
        found.append(
            BatchNormParams(
                name,
                type(module).__name__,
                gamma.detach().reshape(-1).tolist(),
                beta.detach().reshape(-1).tolist(),
            )
        )
    return found

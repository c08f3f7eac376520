"""Training runs a user can keep: what ``cnnshape train`` and ``cnnshape eval`` call.

``train_run`` resolves the settings, loads the data, writes a run directory (config.json,
metrics.csv, curves.png, checkpoint.pt after every epoch) and trains; ``resume_run``
continues a run directory; ``evaluate_run`` measures a checkpoint on the test split.
Everything returns plain data; nothing here prints.
"""

from __future__ import annotations

import contextlib
import csv
import json
import platform
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, data, distributed
from .api import show
from .errors import CnnshapeError
from .models.batchnorm import BatchNorm as ScratchBatchNorm
from .plot import plot_history
from .registry import get_spec
from .sources import is_reference
from .train import (
    EpochStats,
    NonFiniteLossError,
    OnEvent,
    RunStart,
    TrainConfig,
    check_sync_bn,
    confusion_matrix,
    examples_per_sec,
    fit,
    make_optimizer,
    make_scaler,
    prepare_model,
)
from .walk import count_flops

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    config: TrainConfig  # resolved
    history: list[EpochStats]  # every finished epoch, resumed ones included
    interrupted: bool  # Ctrl-C stopped it; checkpoint.pt holds the last finished epoch
    examples_per_sec: float  # the book's figure over all finished epochs


def make_config(model: str, *, epochs: int | None = None, lr: float | None = None,
                batch_size: int | None = None, size: int | None = None,
                **settings) -> TrainConfig:
    """A TrainConfig with the model's seed recipe for every hyperparameter not given.

    ``settings`` are the other TrainConfig fields (device, precision, seed, dataset, ...).
    """
    if is_reference(model):
        # Training needs the chapter's recipe and 1-channel Fashion-MNIST inputs.
        raise CnnshapeError(f"train takes the chapter's registered models, not {model}.",
                            "Run `cnnshape list` to see them; `show`, `compare` and `sizes` "
                            "take torchvision, timm and your own models.")
    spec = get_spec(model)
    return TrainConfig(
        model=spec.name,
        epochs=spec.recipe.epochs if epochs is None else epochs,
        lr=spec.recipe.lr if lr is None else lr,
        batch_size=spec.recipe.batch_size if batch_size is None else batch_size,
        size=spec.size if size is None else size,
        **settings,
    )


# ---- train and resume ---------------------------------------------------------------------------

def train_run(cfg: TrainConfig, on_event: OnEvent | None = None, *,
              progress_every: float = 0.25) -> RunResult:
    """Train a fresh run. KeyboardInterrupt ends it cleanly (``result.interrupted``); a
    non-finite loss raises NonFiniteLossError (``.run_dir``, ``.last_epoch`` added)."""
    cfg = cfg.resolve()
    torch.manual_seed(cfg.seed)  # the default init of biases and BatchNorm happens at build
    model = get_spec(cfg.model).build()
    flops = forward_flops(model, cfg)  # also refuses a size the model cannot take, early
    check_sync_bn(model, cfg)
    dataset = load_data(cfg)
    # Rank 0 alone creates the run directory (under torchrun the others learn its name).
    run_dir = distributed.broadcast_from_main(_new_run_dir(cfg) if distributed.is_main() else None)
    if distributed.is_main():
        write_config(run_dir, cfg, dataset, model)
    return _train(model, dataset, cfg, run_dir, on_event, flops=flops,
                  progress_every=progress_every)


def resume_run(run_dir: str | Path, on_event: OnEvent | None = None, *,
               epochs: int | None = None, device: str | None = None,
               progress_every: float = 0.25) -> RunResult:
    """Continue a run from its last finished epoch, with the settings it was started with.

    ``epochs`` raises the total (train longer); ``device`` moves it (precision and
    channels_last are then chosen afresh for that device).
    """
    state = checkpoint.load(run_dir)
    cfg = TrainConfig.from_dict(state["config"])
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    if device is not None:
        cfg = replace(cfg, device=device, precision="auto", channels_last=None)
    cfg = cfg.resolve()
    history = [EpochStats(**row) for row in state["history"]]
    if len(history) >= cfg.epochs:
        raise CnnshapeError(f"The run has already finished its {len(history)} epochs.",
                            f"Pass --epochs {len(history) + 10} (say) to train it longer.")
    model = get_spec(cfg.model).build()
    model.load_state_dict(state["model"])
    flops = forward_flops(model, cfg)
    check_sync_bn(model, cfg)
    dataset = load_data(cfg)
    prepare_model(model, cfg)  # before the optimizer state, which follows its parameters
    optimizer = make_optimizer(model, cfg)
    optimizer.load_state_dict(state["optimizer"])
    scaler = make_scaler(cfg)
    if state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    run_dir = checkpoint.resolve_path(run_dir).parent
    if distributed.is_main():
        write_config(run_dir, cfg, dataset, model)
    return _train(model, dataset, cfg, run_dir, on_event, flops=flops, optimizer=optimizer,
                  scaler=scaler, history=history, progress_every=progress_every)


def _train(model: nn.Module, dataset: data.Dataset, cfg: TrainConfig, run_dir: Path,
           on_event: OnEvent | None, *, flops: int, optimizer=None, scaler=None,
           history: list[EpochStats] | None = None, progress_every: float) -> RunResult:
    history = list(history or [])
    optimizer = optimizer or make_optimizer(model, cfg)
    scaler = scaler or make_scaler(cfg)

    main = distributed.is_main()  # under torchrun only rank 0 writes and reports

    def handle(event) -> None:
        if isinstance(event, RunStart):
            event = replace(event, run_dir=str(run_dir), flops_per_image=flops)
        if isinstance(event, EpochStats):
            history.append(event)
            # Saved before the caller sees the event, so whatever the caller does next
            # (a Ctrl-C included) the finished epoch is on disk. ``model`` is the bare
            # module, never the DDP wrapper: its state_dict has no "module." prefix.
            if main:
                save_epoch(run_dir, model, optimizer, scaler, cfg, history)
        if on_event is not None and main:
            on_event(event)

    interrupted = False
    try:
        fit(model, dataset, cfg, handle, optimizer=optimizer, scaler=scaler, history=history,
            progress_every=progress_every)
        # Under torchrun nobody returns before rank 0 has written the last checkpoint, so
        # whatever uses the run directory next (eval, --resume on every rank) finds it whole.
        distributed.barrier()
    except KeyboardInterrupt:
        interrupted = True
    except NonFiniteLossError as err:
        err.run_dir, err.last_epoch = run_dir, len(history)
        kept = (f" The last good checkpoint (epoch {len(history)}) is kept in {run_dir}."
                if history else " No epoch had finished, so there is no checkpoint.")
        err.hint = (err.hint or "") + kept
        raise
    return RunResult(run_dir, cfg, history, interrupted, examples_per_sec(history))


def save_epoch(run_dir: Path, model: nn.Module, optimizer, scaler, cfg: TrainConfig,
               history: list[EpochStats]) -> None:
    """metrics.csv, curves.png and checkpoint.pt for the epochs in ``history``, each atomic,
    all three written before a Ctrl-C that arrives meanwhile takes effect."""
    with _sigint_deferred():
        write_metrics(run_dir / METRICS_FILE, history)
        plot_history(history, run_dir / CURVES_FILE, title=f"{cfg.model} ({cfg.device})",
                     epochs=cfg.epochs)
        checkpoint.save(run_dir / checkpoint.FILENAME, model=model, optimizer=optimizer,
                        scaler=scaler, epoch=len(history), config=cfg.to_dict(),
                        history=[asdict(s) for s in history])


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

def forward_flops(model: nn.Module, cfg: TrainConfig) -> int:
    """Forward FLOPs of one image, counted on one real image (milliseconds).

    A size the model cannot take is explained by the inspection walk instead (the layer that
    refuses it and the sizes it accepts), so a run fails before it loads data or writes.
    """
    try:
        return count_flops(model, (1, 1, cfg.size, cfg.size))
    except Exception:
        show(cfg.model, (cfg.size, cfg.size))  # raises a WalkError that says why
        raise


def load_data(cfg: TrainConfig) -> data.Dataset:
    """The run's dataset, cut to its limits, on its device (under torchrun, the first process
    on each machine loads first: it may be downloading into the shared cache)."""
    with distributed.local_main_first():
        dataset = data.load(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    return dataset.head(cfg.train_limit, cfg.test_limit).to(cfg.device)


def _new_run_dir(cfg: TrainConfig) -> Path:
    if cfg.out is not None:
        run_dir = Path(cfg.out).expanduser()
        if (run_dir / checkpoint.FILENAME).exists():
            raise CnnshapeError(f"{run_dir} already holds a run.",
                                f"Continue it with --resume {run_dir}, or choose another --out.")
    else:
        stem = Path("runs") / f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
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
        "data": {"source": dataset.source, "train_images": len(dataset.train),
                 "test_images": len(dataset.test)},
        "device": _device_info(cfg.device),
        "world_size": distributed.world_size(),  # processes that trained together (torchrun)
        "versions": _versions(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(info, indent=2) + "\n"
    checkpoint.atomic_write(run_dir / CONFIG_FILE, lambda tmp: tmp.write_text(text))


def _device_info(device: str) -> dict:
    if device.startswith("cuda"):
        return {"device": device, "name": torch.cuda.get_device_name(device)}
    return {"device": device, "name": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads()}


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

    checkpoint.atomic_write(path, write)


def read_metrics(path: str | Path) -> list[EpochStats]:
    with Path(path).open(newline="") as f:
        return [EpochStats(epoch=int(row.pop("epoch")), **{k: float(v) for k, v in row.items()})
                for row in csv.DictReader(f)]


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


def evaluate_run(path: str | Path, *, device: str = "auto", data_dir: str | None = None,
                 dataset: str | None = None, batch_size: int | None = None,
                 test_limit: int | None = None) -> EvalResult:
    """Test accuracy, per-class accuracy, confusion matrix and BatchNorm parameters of a run
    directory's (or a checkpoint file's) model, on the dataset it was trained on unless told."""
    state = checkpoint.load(path)
    cfg = replace(TrainConfig.from_dict(state["config"]), device=device, precision="auto",
                  channels_last=None, test_limit=test_limit)
    cfg = replace(cfg, dataset=dataset or cfg.dataset, data_dir=data_dir or cfg.data_dir,
                  batch_size=batch_size or cfg.batch_size).resolve()
    model = get_spec(cfg.model).build()
    model.load_state_dict(state["model"])
    prepare_model(model, cfg)
    dataset = data.load(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    test = dataset.test.head(cfg.test_limit).to(cfg.device)
    counts = confusion_matrix(model, test, cfg, num_classes=len(dataset.classes))
    return EvalResult(
        checkpoint=checkpoint.resolve_path(path), model=cfg.model, epoch=state["epoch"],
        device=cfg.device, data_source=dataset.source,
        test_acc=counts.trace().item() / max(counts.sum().item(), 1),
        per_class=_per_class(counts, dataset.classes), confusion=counts.tolist(),
        classes=dataset.classes, batch_norm=batch_norm_params(model),
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
        found.append(BatchNormParams(name, type(module).__name__,
                                     gamma.detach().reshape(-1).tolist(),
                                     beta.detach().reshape(-1).tolist()))
    return found

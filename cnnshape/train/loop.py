"""The seed's ``d2l.train_ch6``, kept faithful by default and made fast: one loop, a few switches.

Faithful: Xavier-uniform init of exact ``nn.Linear``/``nn.Conv2d`` weights, plain ``SGD(lr)``,
``CrossEntropyLoss``, running example-weighted train loss/accuracy per epoch in train mode,
then test accuracy over the whole test split in eval mode under ``no_grad`` (evaluate.py).
Each batch is one `step.train_step`, the step `cnnshape memory` predicts.

Fast: the data is on the device (see data.py); per-batch metrics are written into a device
buffer and read back only at progress points, so the host never waits for the device inside
the batch loop except a few times per second. Device-dependent switches (autocast precision,
channels_last, cudnn.benchmark, torch.compile) are settings of the same loop, and all but
cudnn.benchmark also run on CPU, where the tests exercise them.

The loop never prints: it reports through an ``on_event`` callback (``events.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import step as step_mod
from ..errors import CnnshapeError
from ..models.batchnorm import BatchNorm as ScratchBatchNorm
from ..registry import is_reference
from . import data as data_mod
from . import distributed
from .config import TrainConfig
from .data import Dataset, Split
from .evaluate import accuracy
from .events import BatchProgress, EpochStats, OnEvent, RunEnd, examples_per_sec
from .model import prepare_model


class NonFiniteLossError(CnnshapeError):
    """The training loss became NaN or infinite: the run cannot go on."""

    def __init__(self, epoch: int, batch: int, lr: float):
        super().__init__(
            f"The training loss became non-finite (NaN or inf) in epoch {epoch} at batch {batch}.",
            f"The learning rate ({lr:g}) is probably too high for this model: "
            f"try a lower --lr, e.g. {lr / 2:g}.",
        )
        self.epoch = epoch
        self.batch = batch
        self.lr = lr


# ---- the book's init, optimizer and loss --------------------------------------------------------


def init_weights(model: nn.Module) -> None:
    """train_ch6's init: xavier_uniform_ on modules whose type is exactly Linear or Conv2d.

    ``model.apply`` as the book does, so the random numbers are drawn in the book's order.
    """

    def init(module: nn.Module) -> None:
        if type(module) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)

    model.apply(init)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return step_mod.make_optimizer("sgd", model.parameters(), lr=cfg.lr)


def make_scaler(cfg: TrainConfig) -> torch.amp.GradScaler:
    return step_mod.make_scaler(cfg.precision, cfg.device_type)


def _configure_backends(cfg: TrainConfig) -> None:
    if cfg.device_type == "cuda":
        # Fixed input shapes: let cuDNN time its algorithms once and keep the fastest.
        torch.backends.cudnn.benchmark = True
        # fp32 must mean the book's fp32 numerics, not TF32 convolutions (PyTorch's default).
        torch.backends.cudnn.allow_tf32 = cfg.precision != "fp32"


# ---- the loop -----------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    on_event: OnEvent | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    history: Sequence[EpochStats] = (),
    progress_every: float = 0.25,
) -> list[EpochStats]:
    """Train ``model`` for the epochs of ``cfg`` not yet in ``history``; returns the full history.

    A fresh run (empty ``history``) of a chapter network starts, as train_ch6 does, with
    ``init_weights``; its randomness comes from the global RNG, so seed it before building the
    model. Other models keep the initialization their own code gave them. Every epoch
    then seeds its shuffle and the global RNG (dropout) from ``cfg.seed`` and the epoch number,
    so a resumed run (model, optimizer, scaler and history restored) repeats an uninterrupted
    one exactly on CPU. ``data`` must already be on ``cfg.device``. Raises NonFiniteLossError
    when the loss stops being finite; KeyboardInterrupt passes through untouched.
    """
    emit = on_event or (lambda event: None)
    history = list(history)
    if not history and not is_reference(cfg.model):
        init_weights(model)
    prepare_model(model, cfg)
    _configure_backends(cfg)
    optimizer = optimizer or make_optimizer(model, cfg)
    scaler = scaler or make_scaler(cfg)
    step_model, eval_model = _step_and_eval_models(model, cfg)
    n_train = epoch_length(model, len(data.train), cfg)
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        started = time.perf_counter()
        loss, acc, train_seconds = _train_epoch(
            step_model, optimizer, scaler, data.train, n_train, cfg, epoch, emit, progress_every
        )
        distributed.broadcast_buffers(model)  # every rank tests the model rank 0 saves
        test_acc = accuracy(eval_model, data.test, cfg)
        stats = EpochStats(
            epoch,
            loss,
            acc,
            test_acc,
            n_train / train_seconds,
            train_seconds,
            time.perf_counter() - started,
        )
        history.append(stats)
        emit(stats)
    emit(RunEnd(history, examples_per_sec(history), cfg.device))
    return history


def epoch_length(model: nn.Module, n: int, cfg: TrainConfig) -> int:
    """How many of the ``n`` training images an epoch trains on.

    All of them, except for a model with BatchNorm when the last batch would give some process
    exactly one image (batch size 100 and 601 images, or a rank's share under torchrun):
    BatchNorm cannot normalize one image in training, and the book's loop would stop with
    "Expected more than 1 value per channel". That last batch is left out of every epoch, as
    a DataLoader's ``drop_last`` would; the run's header says so.
    """
    batch_norm = (nn.modules.batchnorm._BatchNorm, ScratchBatchNorm)
    if not any(isinstance(m, batch_norm) for m in model.modules()):
        return n
    return data_mod.without_single_shares(n, cfg.batch_size, distributed.world_size())


def _step_and_eval_models(model: nn.Module, cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """What the training steps call and what evaluation calls.

    One process: the model (compiled on request) for both. Under torchrun: DDP around it for
    the steps (it all-reduces the gradients during backward; BatchNorm converted to
    SyncBatchNorm first with --sync-bn), and the bare model for evaluation, where each rank
    tests its share of the test set without any collective per batch.
    """
    if not distributed.active():
        step_model = torch.compile(model) if cfg.compile else model
        return step_model, step_model
    if cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: same parameters
    index = torch.device(cfg.device).index
    ddp = DistributedDataParallel(model, device_ids=None if index is None else [index])
    if cfg.compile:
        return torch.compile(ddp), torch.compile(model)
    return ddp, model


def check_sync_bn(model: nn.Module, cfg: TrainConfig) -> None:
    """Refuse --sync-bn where it cannot work, before a run writes anything."""
    if not (cfg.sync_bn and distributed.active()):
        return  # one process sees the whole batch: there is nothing to synchronize
    if any(isinstance(m, ScratchBatchNorm) for m in model.modules()):
        raise CnnshapeError(
            f"--sync-bn cannot convert {cfg.model}'s from-scratch BatchNorm (the book's own "
            "layer, not torch.nn.BatchNorm*): SyncBatchNorm replaces torch's layers only.",
            "Drop --sync-bn (each rank then keeps its own statistics), or use lenet-bn.",
        )
    if cfg.device_type != "cuda":
        raise CnnshapeError(
            "--sync-bn needs CUDA devices: torch's SyncBatchNorm has no CPU implementation.",
            "Drop --sync-bn on CPU.",
        )


def epoch_seed(seed: int, epoch: int) -> int:
    """One seed per (run seed, epoch): what makes epoch k the same whether resumed or not."""
    return (seed * 1_000_003 + epoch) % 2**63


def _train_epoch(
    model,
    optimizer,
    scaler,
    split: Split,
    n: int,
    cfg: TrainConfig,
    epoch: int,
    emit: OnEvent,
    progress_every: float,
) -> tuple[float, float, float]:
    """One pass over the first ``n`` images of the training split's shuffled order (all of
    them but a dropped last batch, see `epoch_length`); returns (mean loss, accuracy, seconds).

    Under torchrun every rank walks the same global batches and computes on its share of each
    (`step.train_step` says how its loss makes the one-process step).
    """
    model.train()
    seed = epoch_seed(cfg.seed, epoch)
    rank, world = distributed.rank(), distributed.world_size()
    # Dropout's stream (the shuffle has its own generator below): one per rank, or every rank
    # would drop the same units in the same rows of its share.
    torch.manual_seed(seed + 1 + rank * 2**40)
    total = data_mod.num_batches(n, cfg.batch_size)
    # Row 0: each batch's mean loss (a rank's part of it); row 1: its correct predictions.
    # Written on the device (no sync) and read back only at progress points.
    per_batch = torch.zeros(2, total, device=cfg.device)
    sharded = distributed.active()
    loss_fn = nn.CrossEntropyLoss(reduction="sum" if sharded else "mean")
    due = _progress_schedule(progress_every, total)
    started = time.perf_counter()
    for i, (X, y) in enumerate(
        data_mod.batches(
            split,
            cfg.batch_size,
            cfg.size,
            shuffle_seed=seed,
            channels_last=cfg.channels_last,
            part=(rank, world),
            length=n,
            augment=cfg.augment,
        )
    ):
        y_hat, loss = step_mod.train_step(
            model,
            X,
            y,
            optimizer,
            scaler,
            loss_fn,
            cfg.precision,
            cfg.device_type,
            global_batch=data_mod.batch_length(n, cfg.batch_size, i) if sharded else None,
            world=world,
        )
        per_batch[0, i] = loss.detach()
        per_batch[1, i] = (y_hat.argmax(dim=1) == y).sum()
        if due(i + 1):
            emit(_progress(per_batch, i + 1, n, cfg, epoch, started))
    last = _progress(per_batch, total, n, cfg, epoch, started)  # syncs: the epoch is done
    seconds = time.perf_counter() - started
    emit(last)
    return last.train_loss, last.train_acc, seconds


def _progress_schedule(progress_every: float, total: int) -> Callable[[int], bool]:
    """Whether to report after ``done`` batches (never after the last: the epoch end does).

    One process: every ``progress_every`` seconds. Under torchrun: every twentieth of the epoch
    (every batch when ``progress_every`` is 0), by batch count, because reading the metrics is
    then a collective that every rank must join at the same batch, and clocks differ.
    """
    if distributed.active():
        every = 1 if progress_every == 0 else max(1, total // 20)
        return lambda done: done < total and done % every == 0
    next_report = time.perf_counter() + progress_every

    def due(done: int) -> bool:
        nonlocal next_report
        if done >= total or time.perf_counter() < next_report:
            return False
        next_report = time.perf_counter() + progress_every
        return True

    return due


def _progress(
    per_batch: torch.Tensor, done: int, n: int, cfg: TrainConfig, epoch: int, started: float
) -> BatchProgress:
    """Read the per-batch metrics back (the one host sync) and check the loss is finite.

    Checking only here, not after every batch, keeps the host from waiting on the device each
    step; the price is that a diverged run trains on for up to one progress interval before
    it stops. Every batch's loss is kept, so the batch named is still the first bad one.
    Under torchrun the metrics are summed over ranks first, so every rank sees the same
    values and a non-finite loss stops all of them at the same batch.
    """
    totals = distributed.all_reduce_sum(per_batch[:, :done].clone())
    losses, correct = totals.tolist()
    bad = next((i for i, value in enumerate(losses) if not math.isfinite(value)), None)
    if bad is not None:
        raise NonFiniteLossError(epoch, bad + 1, cfg.lr)
    sizes = [data_mod.batch_length(n, cfg.batch_size, i) for i in range(done)]
    seen = sum(sizes)
    loss = sum(value * n for value, n in zip(losses, sizes, strict=True)) / seen
    elapsed = max(time.perf_counter() - started, 1e-9)
    return BatchProgress(
        epoch,
        cfg.epochs,
        done,
        data_mod.num_batches(n, cfg.batch_size),
        loss,
        sum(correct) / seen,
        seen / elapsed,
    )

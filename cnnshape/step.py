"""The training step: the one `cnnshape train` runs, `cnnshape memory` predicts on fake tensors
and the allocator measurement runs for real. Written once, so that a prediction is a prediction
of the step that trains.

A step is ``zero_grad``, the forward and the loss under autocast (bf16/fp16), the backward of
the (scaled) loss, and the optimizer step through the GradScaler. Its phases are named, and a
`StepWatch` may wrap each one and replace the backward pass: the memory predictor counts every
storage of each phase and replays backward with the autograd engine's memory behaviour, while
training and the allocator measurement run it as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def make_optimizer(
    name: str, params, lr: float | None = None, foreach: bool | None = None
) -> torch.optim.Optimizer:
    """``name`` (one of OPTIMIZERS) with PyTorch's defaults; ``lr`` None: 0.1 for SGD, the
    default for Adam(W). ``foreach`` None lets torch.optim choose, as it does for training."""
    if name in ("sgd", "momentum"):
        momentum = 0.9 if name == "momentum" else 0
        return torch.optim.SGD(
            params, lr=0.1 if lr is None else lr, momentum=momentum, foreach=foreach
        )
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {name!r}")
    adam = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return adam(params, foreach=foreach) if lr is None else adam(params, lr=lr, foreach=foreach)


def make_scaler(
    precision: str, device_type: str, init_scale: float = 2.0**16
) -> torch.amp.GradScaler:
    """fp16 needs loss scaling against underflowing gradients; for bf16/fp32 a pass-through.

    ``GradScaler("cuda")`` switches itself off on a machine without a GPU; the device name
    only serves that check (the scaler's tensors go where the loss is), so a prediction for
    CUDA made on such a machine asks for a CPU scaler instead.
    """
    fp16 = precision == "fp16"
    scaler = torch.amp.GradScaler(device_type, init_scale=init_scale, enabled=fp16)
    if fp16 and not scaler.is_enabled():
        scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, enabled=True)
    return scaler


@contextlib.contextmanager
def autocast(precision: str, device_type: str) -> Iterator[None]:
    """``torch.autocast(device_type, dtype)`` for bf16/fp16, nothing for fp32.

    Set through the thread-local switches that ``torch.autocast.__enter__`` itself sets (the
    same calls, in the same order), because ``torch.autocast("cuda")`` turns itself off on a
    machine without a GPU, where the memory predictor still runs CUDA's step on fake tensors.
    """
    if precision == "fp32":
        yield
        return
    was_enabled = torch.is_autocast_enabled(device_type)
    was_dtype = torch.get_autocast_dtype(device_type)
    was_caching = torch.is_autocast_cache_enabled()
    torch.set_autocast_enabled(device_type, True)
    torch.set_autocast_dtype(device_type, AUTOCAST_DTYPES[precision])
    torch.autocast_increment_nesting()
    torch.set_autocast_cache_enabled(True)
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()  # frees the cached bf16/fp16 weight copies
        torch.set_autocast_enabled(device_type, was_enabled)
        torch.set_autocast_dtype(device_type, was_dtype)
        torch.set_autocast_cache_enabled(was_caching)


class StepWatch:
    """What runs around a step's phases (zero_grad, forward, backward, optimizer): by default
    nothing, and backward as autograd runs it."""

    def phase(self, name: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()


UNWATCHED = StepWatch()


def train_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss_fn: nn.Module,
    precision: str,
    device_type: str,
    *,
    global_batch: int | None = None,
    world: int = 1,
    watch: StepWatch = UNWATCHED,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimization step on (inputs, labels); returns (logits, loss) for the metrics.

    One process: ``loss_fn`` is the mean cross-entropy of the batch. Under torchrun each rank
    holds a share of the global batch: ``loss_fn`` sums over the share, ``global_batch`` divides
    it into the rank's part of the global mean, and the backward runs on that times ``world``,
    because DDP averages gradients over ranks: the step is the one-process step, uneven shares
    included.
    """
    with watch.phase("zero_grad"):
        optimizer.zero_grad()  # set_to_none: the last step's gradients are freed here
    with watch.phase("forward"), autocast(precision, device_type):
        logits = model(inputs)
        loss = loss_fn(logits, labels)
        if global_batch is not None:
            loss = loss / global_batch
    with watch.phase("backward"):
        watch.backward(scaler.scale(loss * world if world != 1 else loss))
    with watch.phase("optimizer"):
        scaler.step(optimizer)
        scaler.update()
    return logits, loss

"""What a run checks before it writes anything, on its network built on the meta device (no
weights allocated): that the network takes the run's input and gives one logit per class (the
walk `show` makes, which also counts the FLOPs the run's header states), and, on CUDA, that a
training step fits in the device's free memory (the memory predictor, `cnnshape memory`).
"""

from __future__ import annotations

from dataclasses import replace

from .._common import byte_size
from ..errors import CnnshapeError
from ..inspect import memory
from ..inspect.report import Report
from ..inspect.sizes import walk_explained
from . import distributed
from .config import TrainConfig
from .model import build_model, input_channels


def check_size(cfg: TrainConfig) -> None:
    """Refuse, before any data is read, a size the model cannot take: the walk names the
    layer that refuses it and the sizes the model accepts. The data's channels and classes
    are not known yet: a fresh run is walked at the model's default channels."""
    _walk(replace(cfg, channels=input_channels(cfg.model, cfg.channels)))


def forward_flops(cfg: TrainConfig) -> int:
    """Forward FLOPs of one training image through the network built for the run's channels
    and classes; an Error if its output is not one logit per class."""
    report = _walk(cfg)
    if report.output_shape != [1, cfg.num_classes]:
        raise CnnshapeError(
            f"{cfg.model} gives an output of shape {report.output_shape} for one "
            f"{cfg.channels}x{cfg.size}x{cfg.size} image, not one logit per class: "
            f"[1, {cfg.num_classes}] for the data's {cfg.num_classes} classes.",
            "Give the model a num_classes keyword argument (train passes it), or build its "
            f"last layer for {cfg.num_classes} classes.",
        )
    return report.total_flops


def _walk(cfg: TrainConfig) -> Report:
    model = build_model(cfg, device="meta")
    return walk_explained(model, [(1, cfg.channels, cfg.size, cfg.size)], name=cfg.model)


def check_step_fits(cfg: TrainConfig, free_bytes: int) -> None:
    """Refuse a run whose training step cannot fit in ``free_bytes`` (a CUDA device's free
    memory, with the run's data already there): the predicted step, under torchrun the
    largest rank's share of a batch. Says the largest batch that fits. A run predicted to fit
    can still run out (cuDNN workspaces and the allocator's fragmentation are not predicted):
    this stops only the ones that cannot."""
    world = distributed.world_size()
    share = -(-cfg.batch_size // world)
    model = build_model(cfg, device="meta")
    image = (cfg.channels, cfg.size, cfg.size)
    options = {
        "optimizer": "sgd",
        "precision": cfg.precision,
        "device": cfg.device,
        "channels_last": cfg.channels_last,
    }
    step = memory.predict_step(model, (share, *image), **options)
    need = max(step.peak, step.first_step_peak)
    if need <= free_bytes:
        return
    largest = memory.largest_batch(model, image, free_bytes, **options) * world
    raise CnnshapeError(
        f"{cfg.model} at batch {cfg.batch_size} does not fit on {cfg.device}: a training "
        f"step needs {byte_size(need)} (predicted), and {byte_size(free_bytes)} is free "
        "besides the run's data.",
        (f"Use --batch-size {largest} or less (the largest that fits), " if largest else "")
        + "a smaller --size, or a GPU with more free memory; `cnnshape memory` explains.",
    )

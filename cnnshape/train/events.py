"""What a training run reports while it runs: plain dataclasses, complete when made.

The run (``run.py``) sends `RunStart`; the loop (``loop.py``) sends `BatchProgress`,
`EpochStats` and `RunEnd`. Displays (``display.py``), tests and a distributed run's rank 0
all consume the same events through one ``on_event`` callback; nothing in the training path
prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import TrainConfig


@dataclass(frozen=True)
class RunStart:
    config: TrainConfig
    params: int
    flops_per_image: int  # forward FLOPs of one image at config.size (the inspection walk's)
    data_source: str
    n_train: int
    n_test: int
    run_dir: str
    start_epoch: int = 0  # epochs already finished (0 unless resuming)
    world_size: int = 1  # processes training together (torchrun); 1: a plain run
    # Images each epoch leaves out: a last batch that would give BatchNorm one image (loop.py)
    left_out_per_epoch: int = 0
    notes: tuple[str, ...] = ()  # what a reader should know first (a repaired run folder)


@dataclass(frozen=True)
class BatchProgress:
    epoch: int  # 1-based
    epochs: int
    batch: int  # batches done in this epoch
    batches: int
    train_loss: float  # running, example-weighted, over this epoch so far
    train_acc: float
    images_per_sec: float


@dataclass(frozen=True)
class EpochStats:
    """One finished epoch: the event the loop sends at its end, and one row of metrics.csv."""

    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    test_acc: float
    images_per_sec: float  # training images / train_seconds
    train_seconds: float  # time in the training loop only (the book's timer)
    seconds: float  # the whole epoch: training and evaluation


@dataclass(frozen=True)
class RunEnd:
    history: list[EpochStats]
    examples_per_sec: float  # the book's figure: all training examples / time in training
    device: str


Event = RunStart | BatchProgress | EpochStats | RunEnd
OnEvent = Callable[[Event], None]


def examples_per_sec(history: list[EpochStats]) -> float:
    """The book's figure over all finished epochs: examples / seconds inside training steps."""
    examples = sum(s.images_per_sec * s.train_seconds for s in history)
    seconds = sum(s.train_seconds for s in history)
    return examples / seconds if seconds else 0.0

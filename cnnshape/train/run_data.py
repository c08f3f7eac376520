"""A run's data as its model takes it: loaded, cut to the run's limits, in the model's
channels, normalized if the run is, on the run's device (or streamed there).

Channels: a chapter network (and a timm model, and your code that takes ``in_channels``) is
built for the data's channels; otherwise gray images are repeated into RGB (torchvision
takes RGB) or RGB made gray by PIL's own formula, for your first convolution's channels."""

from __future__ import annotations

from dataclasses import replace

from ..errors import CnnshapeError
from . import data, distributed
from .config import TrainConfig
from .data import Dataset, Split
from .model import input_channels


def load(cfg: TrainConfig) -> Dataset:
    """The run's dataset, cut to its limits, in the channels the model takes, normalized if
    the run is, on its device or streamed there when it does not fit (under torchrun, the
    first process on each machine loads first: it may be downloading into the shared cache).

    A run with --normalize uses the statistics it recorded (a resumed run) or, starting,
    those of the images it trains on: the --train-limit head, at the data's stored size, in
    the model's channels. The channels are converted before the data moves, so that whether
    it fits on the device is judged at the size it will have there."""
    with distributed.local_main_first():
        dataset = data.load(
            cfg.dataset, cfg.data_dir, seed=cfg.seed, size=cfg.size, skip_bad=cfg.skip_bad
        )
    dataset = dataset.head(cfg.train_limit, cfg.test_limit)
    dataset = converted(dataset, input_channels(cfg.model, dataset.channels), cfg.model)
    normalization = data.Normalization.recorded(cfg)
    if cfg.normalize and normalization is None:
        normalization = data.channel_stats(dataset.train.images)
    return dataset.normalized(normalization).to(cfg.device)


def converted(dataset: Dataset, channels: int, model: str) -> Dataset:
    """``dataset`` with its images in ``channels`` (itself when they already are)."""
    if dataset.channels == channels:
        return dataset
    if {dataset.channels, channels} != {1, 3}:
        raise CnnshapeError(
            f"{model} takes {channels}-channel images and {dataset.source} has "
            f"{dataset.channels}: cnnshape converts only between gray and RGB.",
            "Give the model an in_channels keyword argument (train passes the data's), or "
            "train on images with its channels.",
        )
    how = "repeated into RGB" if channels == 3 else "made gray"
    return replace(
        dataset,
        train=_split(dataset.train, channels),
        test=_split(dataset.test, channels),
        notes=(*dataset.notes, f"images {how}: {model} takes {channels} channels"),
    )


def _split(split: Split, channels: int) -> Split:
    if channels == 1:
        return replace(split, images=data.gray(split.images))
    return replace(split, images=split.images.unsqueeze(1).expand(-1, 3, -1, -1).contiguous())

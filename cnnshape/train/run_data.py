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
from .data import Dataset
from .model import input_channels


def load(cfg: TrainConfig) -> Dataset:
    """The run's dataset, cut to its limits, in the channels the model takes, normalized if
    the run is, on its device or streamed there when it does not fit (under torchrun, the
    first process on each machine loads first: it may be downloading into the shared cache).

    A run with --normalize uses the statistics it recorded (a resumed run) or, starting,
    those of the images it trains on: the --train-limit head, at the data's stored size, in
    the model's channels. The images stay in their stored channels (the device holds them so,
    and judges whether they fit so); each batch is converted (`data.in_channels`)."""
    with distributed.local_main_first():
        dataset = data.load(
            cfg.dataset, cfg.data_dir, seed=cfg.seed, size=cfg.size, skip_bad=cfg.skip_bad
        )
    dataset = dataset.head(cfg.train_limit, cfg.test_limit)
    dataset = converted(dataset, input_channels(cfg.model, dataset.channels), cfg.model)
    normalization = data.Normalization.recorded(cfg)
    if cfg.normalize and normalization is None:
        normalization = data.channel_stats(dataset.train.images, dataset.train.as_channels)
    return dataset.normalized(normalization).to(cfg.device)


def converted(dataset: Dataset, channels: int, model: str) -> Dataset:
    """``dataset`` whose batches come in ``channels`` (itself when they already do)."""
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
        train=dataset.train.converted(channels),
        test=dataset.test.converted(channels),
        notes=(*dataset.notes, f"images {how}: {model} takes {channels} channels"),
    )

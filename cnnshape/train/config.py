"""A run's settings, in two types: what a person asked for, and what the run does.

`TrainSettings` holds what was given (``None``: not given) and may say ``auto``. It is
resolved once, at the edge, into a `TrainConfig`: every hyperparameter filled from the
model's seed recipe, the device and precision concrete, the data folder absolute. The loop,
the checkpoint and config.json only ever see a `TrainConfig`, so nothing downstream wonders
whether ``auto`` has been decided yet.

Resuming is a policy on the two: a run continues with its own `TrainConfig`; a setting given
again must agree with it, except the few that may change (`resume_config`).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .._common import default_precision, resolve_device
from ..errors import CnnshapeError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100", "folder", "synthetic")
SPLIT_SIZES = (60_000, 10_000)  # Fashion-MNIST's training and test images


@dataclass(frozen=True)
class TrainSettings:
    """What a person asked for; ``None`` means not given (the seed recipe or a default)."""

    model: str | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    size: int | None = None  # input height and width the images are resized to
    device: str | None = None  # auto | cpu | cuda | cuda:N
    precision: str | None = None  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    channels_last: bool | None = None  # on for CUDA (fast there), off for CPU (slower)
    compile: bool | None = None
    sync_bn: bool | None = None  # under torchrun: SyncBatchNorm, statistics over all ranks
    seed: int | None = None
    dataset: str | None = None  # one of DATASETS
    data_dir: str | None = None  # None: the cache directory, downloading when online
    train_limit: int | None = None  # train on the first N images only (quick runs)
    test_limit: int | None = None  # test on the first N images only
    skip_bad: bool | None = None  # an image folder: leave out images that cannot be decoded
    augment: bool | None = None  # random crop (padding 4) and flip of training batches
    normalize: bool | None = None  # by the training images' per-channel mean and std

    def given(self) -> dict[str, object]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    def resolve(self) -> TrainConfig:
        """The concrete config: the seed recipe where nothing was given, ``auto`` decided."""
        if self.model is None:
            raise CnnshapeError(
                "Which model? Give a name, or --resume RUN_DIR.",
                "Run `cnnshape list` to see every model.",
            )
        from .model import model_source  # builds on the inspection layer: only when asked

        _check_numbers(self)
        source = model_source(self.model)
        device = resolve_device(self.device or "auto")
        cuda = device.startswith("cuda")
        return TrainConfig(
            model=source.name,
            epochs=_given(self.epochs, source.recipe.epochs),
            lr=_given(self.lr, source.recipe.lr),
            batch_size=_given(self.batch_size, source.recipe.batch_size),
            size=_given(self.size, source.size),
            device=device,
            precision=_precision(self.precision, device),
            channels_last=_given(self.channels_last, cuda),
            compile=bool(self.compile),
            sync_bn=bool(self.sync_bn),
            seed=_given(self.seed, 0),
            dataset=_given(self.dataset, "fashion-mnist"),
            data_dir=_absolute(self.data_dir),
            train_limit=self.train_limit,
            test_limit=self.test_limit,
            skip_bad=bool(self.skip_bad),
            augment=bool(self.augment),
            normalize=bool(self.normalize),
        )


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run, concrete: what the loop runs and what a checkpoint records."""

    model: str
    epochs: int
    lr: float
    batch_size: int
    size: int
    device: str  # cpu | cuda:N
    precision: str  # fp32 | bf16 | fp16
    channels_last: bool
    compile: bool
    sync_bn: bool
    seed: int
    dataset: str
    data_dir: str | None  # absolute; None: the cache directory
    train_limit: int | None
    test_limit: int | None
    skip_bad: bool = False
    augment: bool = False  # the book has none
    normalize: bool = False  # the book has none either
    # What the data is, recorded once it is loaded (`with_data`) so that a resumed run, eval
    # and predict build the same model and prepare images alike. The defaults are
    # Fashion-MNIST's, which every run recorded before these were.
    classes: tuple[str, ...] | None = None  # None: Fashion-MNIST's ten
    channels: int = 1
    image_size: int = 28  # the side images are stored at, before resizing to ``size``
    # With ``normalize``: the training images' per-channel mean and std, in [0, 1], computed
    # once by the run that started (`data.channel_stats`) and reused by everything after it.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def num_classes(self) -> int:
        return 10 if self.classes is None else len(self.classes)

    @property
    def device_type(self) -> str:
        return self.device.partition(":")[0]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A recorded config, also one written by an older cnnshape (extra keys ignored)."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        for name in ("classes", "mean", "std"):
            if known.get(name) is not None:
                known[name] = tuple(known[name])  # JSON has lists only
        return cls(**known)

    def with_data(
        self, classes: tuple[str, ...], channels: int, image_size: int, normalization=None
    ) -> TrainConfig:
        """The config with what its data is; ``normalization`` (a `data.Normalization`, or
        None: the run has none) records the statistics its inputs are normalized by."""
        stats = {"mean": normalization.mean, "std": normalization.std} if normalization else {}
        return replace(
            self, classes=tuple(classes), channels=channels, image_size=image_size, **stats
        )


# What --resume lets change: the length of the run, and where it runs and reads its data.
MAY_CHANGE_ON_RESUME = ("epochs", "device", "data_dir")
_FLAGS = {
    "model": "MODEL",
    "batch_size": "--batch-size",
    "channels_last": "--channels-last",
    "sync_bn": "--sync-bn",
    "train_limit": "--train-limit",
    "test_limit": "--test-limit",
    "data_dir": "--data-dir",
}


def flag(setting: str) -> str:
    """How a person types a setting: ``batch_size`` -> ``--batch-size``."""
    return _FLAGS.get(setting, "--" + setting.replace("_", "-"))


def resume_config(recorded: TrainConfig, asked: TrainSettings) -> TrainConfig:
    """The config a resumed run continues with.

    ``--epochs`` sets a new total; ``--device`` moves the run (precision and channels_last are
    then chosen for the new device unless given); ``--data-dir`` says where the data is now.
    Any other setting given again must agree with the run, as a person re-running their
    command with ``--resume`` added would give it; one that differs is refused, naming both
    values, rather than silently ignored.
    """
    _check_numbers(asked)
    given = asked.given()
    moving = "device" in given
    for name, value in given.items():
        if name in MAY_CHANGE_ON_RESUME or (moving and name in ("precision", "channels_last")):
            continue
        ours = _as_recorded(name, value, recorded)
        if ours != getattr(recorded, name):
            raise CnnshapeError(
                f"{flag(name)} cannot change when resuming: the run has "
                f"{getattr(recorded, name)!r}, not {ours!r}.",
                f"Leave out {flag(name)}; --resume may change only --epochs (a new total), "
                "--device and --data-dir.",
            )
    config = replace(
        recorded,
        epochs=_given(asked.epochs, recorded.epochs),
        data_dir=_absolute(asked.data_dir) or recorded.data_dir,
    )
    if moving:
        device = resolve_device(asked.device)
        config = replace(
            config,
            device=device,
            precision=_precision(asked.precision, device),
            channels_last=_given(asked.channels_last, device.startswith("cuda")),
        )
    return config


def _as_recorded(name: str, value, recorded: TrainConfig):
    """A given value in the form the run records it (a model alias -> its name, ...)."""
    if name == "model":
        from .model import model_source

        return model_source(value).name
    if name == "precision" and value == "auto":
        return _precision(value, recorded.device)
    return value


# ---- checks and choices -----------------------------------------------------------------------


def _given(value, default):
    return default if value is None else value


def _absolute(path: str | None) -> str | None:
    """A data folder as an absolute path, so a resume from another folder still finds it."""
    return None if path is None else str(Path(os.path.expanduser(path)).resolve())


def _precision(asked: str | None, device: str) -> str:
    _check(
        (asked or "auto") in PRECISIONS,
        f"--precision must be one of {', '.join(PRECISIONS)}, not {asked!r}.",
    )
    return default_precision(device) if asked in (None, "auto") else asked


# Beyond these a run fails late (after its first epoch, or on a GPU only) with an error that
# names no setting: an int64 counts epochs and images, torch.manual_seed takes these seeds,
# and an lr a float32 cannot hold overflows SGD's step on the float32 weights. A batch holds
# at most every training image: a larger one is the same batch, but CUDA's memory check
# would build a batch of that size.
_INT64_MAX = 2**63 - 1
_LARGEST = {
    "epochs": (_INT64_MAX, "2^63 - 1"),
    "batch_size": (SPLIT_SIZES[0], f"{SPLIT_SIZES[0]:,} (the training images)"),
    "train_limit": (_INT64_MAX, "2^63 - 1"),
    "test_limit": (_INT64_MAX, "2^63 - 1"),
}
_SEEDS = (-(2**63), 2**64 - 1)
_FLOAT32 = (1.401298464324817e-45, 3.4028234663852886e38)  # its smallest and largest > 0


def _check_numbers(s: TrainSettings) -> None:
    counts = {
        "epochs": s.epochs,
        "batch_size": s.batch_size,
        "size": s.size,  # how large a model can take, the walk of its layers says
        "train_limit": s.train_limit,
        "test_limit": s.test_limit,
    }
    for name, value in counts.items():
        _check(value is None or value >= 1, f"{flag(name)} must be at least 1, not {value}.")
        largest, said = _LARGEST.get(name, (math.inf, ""))
        _check(
            value is None or value <= largest, f"{flag(name)} must be at most {said}, not {value}."
        )
    _check(
        s.lr is None or _FLOAT32[0] <= s.lr <= _FLOAT32[1],  # False for nan
        f"--lr must be a positive number a float32 holds ({_FLOAT32[0]:.2g} to "
        f"{_FLOAT32[1]:.2g}), not {s.lr}.",
    )
    _check(
        s.seed is None or _SEEDS[0] <= s.seed <= _SEEDS[1],
        f"--seed must be from -2^63 to 2^64 - 1 (what torch.manual_seed takes), not {s.seed}.",
    )
    _check(
        s.dataset is None or s.dataset in DATASETS,
        f"--dataset must be one of {', '.join(DATASETS)}, not {s.dataset!r}.",
    )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise CnnshapeError(message, "Run `cnnshape train --help` for the allowed values.")

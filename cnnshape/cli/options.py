"""The options the commands share, declared once: shared ``Annotated`` aliases, option groups
(dataclasses whose fields are options), choices, and the parsers that turn a malformed value
into click's usage error (exit 2)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Annotated

import typer

from .._common import parse_bytes, writable_target
from ..errors import CnnshapeError
from ..inspect.inputs import check_names, parse_input
from ..inspect.report import CONVENTION_NAMES
from ..train.config import DATASETS, PRECISIONS
from ..views import Format


def with_options(**groups: type):
    """Give a command the options of dataclasses whose fields are typer options.

    ``@with_options(shape=InputOptions)`` adds --size, --batch, ... to the command's
    parameters, and calls it with ``shape=InputOptions(size=..., batch=..., ...)``: each
    option is declared once, in its dataclass, however many commands take it.
    """

    def decorate(command):
        own = [p for p in inspect.signature(command).parameters.values() if p.name not in groups]
        added = []
        for cls in groups.values():
            hints = typing.get_type_hints(cls, include_extras=True)
            added += [
                inspect.Parameter(
                    f.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=f.default,
                    annotation=hints[f.name],
                )
                for f in dataclasses.fields(cls)
            ]

        @functools.wraps(command)
        def wrapper(**kwargs):
            for group, cls in groups.items():
                names = [f.name for f in dataclasses.fields(cls)]
                kwargs[group] = cls(**{name: kwargs.pop(name) for name in names})
            return command(**kwargs)

        own_hints = typing.get_type_hints(command, include_extras=True)
        own = [p.replace(annotation=own_hints.get(p.name, p.annotation)) for p in own]
        params = own + added
        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


ModelArgument = Annotated[
    str,
    typer.Argument(
        help="A registry name (see `cnnshape list`), torchvision:NAME (any family; "
        "NAME@WEIGHTS: as that weights entry builds it), timm:NAME, path/to/file.py:Net or "
        "package.module:factory."
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        metavar="DEVICE",
        help="auto (the first GPU, else the CPU), cpu, cuda or cuda:N. Default: auto.",
    ),
]
FormatOption = Annotated[
    Format,
    typer.Option(
        "--format", "-f", help="table for people; json, csv or markdown for scripts and docs."
    ),
]


# ---- option values: parsed where click parses, so a malformed one exits 2 -------------------


def parse_size(text: str) -> tuple[int, int]:
    """'96' -> (96, 96); '224x192' -> (224, 192) (height x width)."""
    shown = text if len(text) <= 40 else f"{text[:20]}...{text[-10:]}"
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*", text)
    if not match:
        raise CnnshapeError(
            f"{shown!r} is not a size.",
            "Give one number for a square input (--size 96) or HxW (--size 224x192).",
        )
    if any(len(digits) > 18 for digits in match.groups() if digits):
        raise CnnshapeError(f"{shown!r} is too large: a tensor side is at most 2^63 - 1.")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    if height < 1 or width < 1:
        raise CnnshapeError(f"{shown!r}: height and width must be at least 1.")
    return height, width


def parse_square(text: str) -> int:
    """train's --size: '96' or '96x96' -> 96 (a run resizes its images to a square)."""
    height, width = parse_size(text)
    if height != width:
        raise CnnshapeError(f"{text!r}: training resizes images to a square.", "Give one number.")
    return height


def writable_path(text: str) -> str:
    """A file option (--plot): checked before any work, so a path cnnshape may not write
    (a device, a FIFO, a folder) fails at once instead of after the walk."""
    writable_target(text)
    return text


def parse_fit(text: str) -> int:
    """--fit 24GB -> 24 * 10^9 bytes."""
    try:
        return parse_bytes(text)
    except ValueError as err:
        raise CnnshapeError(f"{text!r} is not a memory size: {err}.") from None


def parsed_by(parse):
    """A typer callback from a parser: a CnnshapeError becomes click's bad-value error (exit
    2, as for every malformed option), and the parsed value is what the command receives."""

    def callback(value):
        if value is None:
            return None
        try:
            return parse(value)
        except CnnshapeError as err:
            raise typer.BadParameter(f"{err.message} {err.hint or ''}".strip()) from None

    return callback


SizeOption = Annotated[
    str | None,
    typer.Option(
        "--size",
        "-s",
        metavar="N|HxW",
        callback=parsed_by(parse_size),
        help="Input height and width: one number for a square, or HxW. Default: the model's own.",
    ),
]
ChannelsOption = Annotated[
    int | None,
    typer.Option(
        "--in-channels",
        min=1,
        help="Input channels. Registry models are built for them (default 1, Fashion-MNIST); "
        "other models are built as published and this must match their first convolution "
        "(default: its channels, 3 for torchvision).",
    ),
]
ClassesOption = Annotated[
    int | None,
    typer.Option(
        "--classes", min=1, help="Output classes (default: registry 10, torchvision/timm 1000)."
    ),
]
MemoryFlag = Annotated[
    bool,
    typer.Option(
        "--memory",
        help="Also predict a training step's memory (plain SGD, on --device): show adds what "
        "each layer saves for backward, compare each model's peak. `cnnshape memory` explains.",
    ),
]


def batch_option(help: str):
    """--batch-size (alias --batch), the same option in every command that takes a batch."""
    return Annotated[
        int | None, typer.Option("--batch-size", "--batch", min=1, metavar="N", help=help)
    ]


NoCacheOption = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Walk afresh instead of answering from the result cache (`cnnshape cache info`).",
    ),
]


InputOption = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        "-i",
        metavar="[NAME=]DIMS[:DTYPE]",
        callback=parsed_by(lambda texts: check_names([parse_input(t) for t in texts]) or None),
        help="An input of any rank and dtype, repeatable, in forward's order: 1x1x16000 (a "
        "waveform), 2x3x16x112x112 (a clip), ids=1x128:int64 (a keyword argument; integer "
        "inputs are zeros, a valid index). Replaces --size, --batch and --in-channels, "
        "the shorthand for one image.",
    ),
]


@dataclass
class InputOptions:
    """The dummy inputs a model is walked with (show, compare)."""

    size: SizeOption = None
    batch: batch_option("Images per batch of the dummy input (default 1).") = None
    in_channels: ChannelsOption = None
    classes: ClassesOption = None
    input: InputOption = None

    def shape(self) -> dict:
        return {
            "size": self.size,
            "batch": self.batch or 1,
            "in_channels": self.in_channels,
            "num_classes": self.classes,
            "inputs": only_one_way(self.input, self.size, self.batch, self.in_channels),
        }


def only_one_way(inputs, size, batch, in_channels):
    """--input, or the image shorthand: not both."""
    shorthand = [
        flag
        for flag, value in (
            ("--size", size),
            ("--batch-size", batch),
            ("--in-channels", in_channels),
        )
        if value is not None
    ]
    if inputs and shorthand:
        raise CnnshapeError(
            f"--input and {', '.join(shorthand)} both say what to walk the model with.",
            "Give --input alone (any rank, several), or --size/--batch-size/--in-channels "
            "for one image.",
        )
    return inputs


@dataclass
class TimeOptions:
    """--time: measured latency (show, compare)."""

    time: Annotated[
        bool,
        typer.Option(
            "--time",
            help="Also measure: run the real model (random weights and input) and time "
            "it, on --device.",
        ),
    ] = False
    device: DeviceOption = None
    warmup: Annotated[
        int,
        typer.Option(
            min=0, help="--time: runs before measuring (allocator, cuDNN autotuning, caches)."
        ),
    ] = 3
    repeats: Annotated[
        int,
        typer.Option(
            min=1, help="--time: measured runs; the median and interquartile range are reported."
        ),
    ] = 20

    def settings(self):
        from ..api import TimeSettings

        return TimeSettings(self.device or "auto", self.warmup, self.repeats) if self.time else None


def plot_option(help: str):
    """--plot FILE.png, checked before any work (`writable_path`), in every command that draws."""
    return Annotated[
        str | None,
        typer.Option("--plot", metavar="FILE.png", callback=parsed_by(writable_path), help=help),
    ]


@dataclass
class OutputOptions:
    """Where the result goes (show, compare)."""

    plot: plot_option("Also draw the figures as a PNG picture (a new or regular file).") = None
    format: FormatOption = Format.table


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An option's choices as typer shows and checks them (--help lists them)."""
    return Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


Dataset = _choices("Dataset", DATASETS)
Precision = _choices("Precision", PRECISIONS)
# step.OPTIMIZERS (a test keeps them equal): that module imports torch, --help may not.
Optimizer = _choices("Optimizer", ("sgd", "momentum", "adam", "adamw"))


def choice_value(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


Convention = _choices("Convention", CONVENTION_NAMES)


@dataclass
class CountOptions:
    """How MACs are counted (show, compare)."""

    convention: Annotated[
        Convention,
        typer.Option(
            "--convention",
            help="torch: FlopCounterMode's formulas (matrix products, convolutions, "
            "attention; biases, norms, activations, pooling and additions left out on "
            "purpose). fvcore, ptflops: reproduce those tools' totals (fvcore also counts "
            "batch/layer norm and upsampling; ptflops biases, norms, activations and pooling "
            "by module). Ops a convention has no formula for are named and mark the count "
            "partial.",
        ),
    ] = Convention.torch
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Make a partial count an error naming the ops."),
    ] = False

    def settings(self) -> dict:
        return {"convention": self.convention.value, "strict": self.strict}


@dataclass
class DataOptions:
    """Which images a run trains or is evaluated on (train, eval)."""

    dataset: Annotated[
        Dataset | None,
        typer.Option(
            help="mnist, cifar10, cifar100: from --data-dir or downloaded as Fashion-MNIST "
            "is; folder: your images in --data-dir (train/ and test/ or val/, one folder per "
            "class); synthetic: random images (smoke runs, benchmarks). "
            "Default: fashion-mnist (eval: the run's)."
        ),
    ] = None
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            help="Folder with the dataset: the four IDX files (gzipped or not), "
            "cifar-10-batches-py/ or cifar-100-python/, or the image folder. "
            "Default: the run's (eval, --resume), else $CNNSHAPE_DATA or "
            "~/.cache/cnnshape/DATASET, downloaded when online.",
        ),
    ] = None
    test_limit: Annotated[
        int | None, typer.Option("--test-limit", help="Test on the first N test images only.")
    ] = None

"""The `cnnshape` command line: parse options, call one library function, render the result.

Data goes to stdout, messages to stderr, so `cnnshape show resnet18 --format json | jq` works.
Importing this module imports neither torch nor matplotlib: `--help` and `list` answer at
once, and each command imports the library (``cnnshape.api``) when it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import os
import re
import sys
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console

from . import __version__
from ._common import launch_rank, launched, parse_bytes, writable_target
from .errors import CnnshapeError, WalkError
from .inspect.inputs import check_names, parse_input
from .inspect.report import CONVENTION_NAMES, DEFAULT_UP_TO
from .train.config import DATASETS, PRECISIONS
from .views import Format, View, json_text, table, to_string

HELP = """See convolutional networks layer by layer: output shapes, parameters, MACs/FLOPs,
valid input sizes; and train them on Fashion-MNIST the way d2l does, fast.

Counting convention: MACs = multiply-accumulates of convolutions and Linear layers; FLOPs = 2 x
MACs, as torch.utils.flop_counter counts them. Biases, BatchNorm, activations, pooling,
additions and concatenation are not counted. Shapes and counts come from meta tensors:
nothing is computed or allocated, at any input size.
"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    # Plain click errors read "Error: <what>" after a usage line; rich would draw a box.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

_debug = False


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (data) or stderr (messages), made when needed: piped output
    has no terminal width to fit, so tables there take their natural width, not 80."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH)


PIPED_WIDTH = 10_000  # wider than any table: piped, a table is never fitted to a width


def fitted(view: View, out: Console):
    """``view`` as a table that fits ``out``'s terminal (piped: at its natural width)."""
    return table(view, out.width if out.is_terminal else None)


# ---- errors -----------------------------------------------------------------------------------


def friendly_errors(command):
    """Turn CnnshapeError into `Error: ...` + `Hint: ...` on stderr, exit 1; no traceback.

    With --debug (or CNNSHAPE_DEBUG=1) the traceback is shown instead.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:  # a command's own chosen exit code (130 after Ctrl-C)
            raise
        except CnnshapeError as err:
            if _debug:
                raise
            if launch_rank() != 0:
                # Under torchrun every rank has the same settings and code: rank 0 says it.
                raise typer.Exit(1) from None
            if isinstance(err, WalkError) and err.partial.rows:
                from .inspect.render import report_view

                partial = report_view(err.partial)
                partial.title, partial.footer = "Layers computed before the failure", []
                err_console = console(stderr=True)
                err_console.print(fitted(partial, err_console))
            _print_error(err.message, err.hint)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM while training (train/signals.py)
            # Also where a SIGTERM lands while an error unwinds: under torchrun, rank 0 is
            # stopped as soon as another rank fails, often before its own error is printed.
            from .train.signals import signal_of, stop_reason

            signum = signal_of(stop)
            if launch_rank() == 0:
                where = "[rank 0] " if launched() else ""
                print(f"{where}Interrupted ({stop_reason(signum)}).", file=sys.stderr)
            raise typer.Exit(128 + signum) from None
        except SystemExit as exit:  # not ours (typer.Exit is not a SystemExit): a model's code
            if _debug:
                raise
            _print_error(
                f"the model's code called sys.exit({exit.code!r}).",
                "cnnshape runs the model's code; it must return, not exit the process.",
            )
            raise typer.Exit(1) from None
        except BrokenPipeError:  # `cnnshape show ... | head`: the reader left, nothing to say
            # Python's documented recipe: point stdout at devnull so the flush at exit is quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except Exception as err:  # a bug in cnnshape, not a user mistake
            if _debug:
                raise
            hint = _RANK_FAILED_HINT if launched() else _INTERNAL_HINT
            _print_error(f"internal error: {type(err).__name__}: {err}", hint)
            raise typer.Exit(1) from None

    return wrapper


_INTERNAL_HINT = "Run again with --debug for the traceback, and please report it."
# When one rank dies, the others fail in their next collective with a connection error.
_RANK_FAILED_HINT = (
    "Under torchrun one rank's failure stops all the others: the rank that "
    "failed first names the cause. --debug shows the tracebacks."
)


def _print_error(message: str, hint: str | None) -> None:
    # Plain print, not rich: rich would wrap long lines and read [brackets] as markup.
    # Under torchrun a failure can be one rank's own: say which.
    where = f"[rank {launch_rank()}] " if launched() else ""
    print(f"{where}Error: {message}", file=sys.stderr)
    if hint:
        print(f"Hint: {hint}", file=sys.stderr)


# ---- options, declared once -------------------------------------------------------------------


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
        help="A registry name (see `cnnshape list`), torchvision:NAME, timm:NAME, "
        "path/to/file.py:Net or package.module:factory."
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


def _parsed(parse):
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
        callback=_parsed(parse_size),
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
        callback=_parsed(lambda texts: check_names([parse_input(t) for t in texts]) or None),
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
        from .api import TimeSettings

        return TimeSettings(self.device or "auto", self.warmup, self.repeats) if self.time else None


@dataclass
class OutputOptions:
    """Where the result goes (show, compare)."""

    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            metavar="FILE.png",
            callback=_parsed(writable_path),
            help="Also draw the figures as a PNG picture (a new or regular file).",
        ),
    ] = None
    format: FormatOption = Format.table


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An option's choices as typer shows and checks them (--help lists them)."""
    return Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


Dataset = _choices("Dataset", DATASETS)
Precision = _choices("Precision", PRECISIONS)
# inspect.memory.OPTIMIZERS (a test keeps them equal): that module imports torch, --help may not.
Optimizer = _choices("Optimizer", ("sgd", "momentum", "adam", "adamw"))


def _value(choice: Enum | None) -> str | None:
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
            help="synthetic: random images (smoke runs, benchmarks). "
            "Default: fashion-mnist (eval: the run's)."
        ),
    ] = None
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            help="Folder with the four Fashion-MNIST IDX files (gzipped or not). "
            "Default: the run's (eval, --resume), else $CNNSHAPE_DATA or "
            "~/.cache/cnnshape/fashion-mnist, downloaded when online.",
        ),
    ] = None
    test_limit: Annotated[
        int | None, typer.Option("--test-limit", help="Test on the first N test images only.")
    ] = None


@contextlib.contextmanager
def model_prints_to_stderr() -> Iterator[None]:
    """A model's own print() (at import, in __init__, in forward) goes to stderr: stdout
    carries only the data, so `show net.py:Net -f json | jq` parses whatever the model says."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def emit(view: View, fmt: Format) -> None:
    if fmt is Format.table:
        out = console()
        # In a terminal long footer lines wrap to its width; piped, each stays one line.
        out.print(fitted(view, out), soft_wrap=not out.is_terminal)
    else:
        print(to_string(view, fmt))


# ---- commands ---------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        print(f"cnnshape {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="CNNSHAPE_DEBUG", help="Show Python tracebacks for errors."),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    global _debug
    _debug = debug
    # A command's process counts no triton kernel: spare it triton's import (flop_formulas).
    from .inspect import flop_formulas

    flop_formulas.skip_triton()


class Source(str, Enum):
    registry = "registry"
    torchvision = "torchvision"
    timm = "timm"


@app.command("list")
@friendly_errors
def list_command(
    source: Annotated[
        Source,
        typer.Option(
            help="registry: the chapter's models; torchvision or timm: what those libraries "
            "offer, to inspect as torchvision:NAME or timm:NAME."
        ),
    ] = Source.registry,
    format: FormatOption = Format.table,
) -> None:
    """Every registered architecture: aliases, default input, params, MACs/FLOPs, book section.

    With --source torchvision: every torchvision classification model with its published
    parameters, GFLOPS and minimum size (metadata of its weights, read offline).
    """
    from .inspect import render

    if source is Source.registry:
        from .registry import list_specs  # the registry's checked metadata: no model is built

        emit(render.list_view(list_specs()), format)
    elif source is Source.torchvision:
        from . import api

        emit(render.torchvision_list_view(api.torchvision_entries()), format)
    else:
        from .inspect.sources import timm_names

        emit(render.timm_list_view(timm_names()), format)


@app.command()
@friendly_errors
@with_options(shape=InputOptions, count=CountOptions, timing=TimeOptions, output=OutputOptions)
def show(
    model: ModelArgument,
    depth: Annotated[
        int,
        typer.Option(
            min=1, help="1: the book's `for layer in net` (top-level layers); 2+: open blocks."
        ),
    ] = 1,
    rf: Annotated[
        bool,
        typer.Option("--rf", help="Add each layer's receptive field and jump (height x width)."),
    ] = False,
    ops: Annotated[
        bool,
        typer.Option(
            "--ops",
            help="Also show the functional ops on the path (cat, add, relu, flatten, ...) "
            "under the block whose forward runs them; the totals do not change.",
        ),
    ] = False,
    memory: MemoryFlag = False,
    no_cache: NoCacheOption = False,
    *,
    shape: InputOptions,
    count: CountOptions,
    timing: TimeOptions,
    output: OutputOptions,
) -> None:
    """Walk a dummy input through MODEL layer by layer: output shape, params, MACs, FLOPs.

    MACs count the multiply-accumulates of convolutions and Linear layers; FLOPs = 2 x MACs.
    --rf adds receptive fields; --time measures each layer on --device (measured, not
    derived: real forward passes).
    Examples: cnnshape show googlenet --size 96 --depth 2;
    cnnshape show torchvision:resnet50 (built on the meta device: no weights downloaded).
    """
    from . import api
    from .inspect.render import report_view

    with model_prints_to_stderr():
        report = api.show(
            model,
            **shape.shape(),
            depth=depth,
            ops=ops,
            **count.settings(),
            timed=timing.settings(),
            memory_on=(timing.device or "auto") if memory else None,
            cache=not no_cache,
        )
    if output.plot is not None:
        from .inspect.pictures import plot_report

        plot_report(report, output.plot)
    emit(report_view(report, fields=rf), output.format)


@app.command()
@friendly_errors
@with_options(shape=InputOptions, count=CountOptions, timing=TimeOptions, output=OutputOptions)
def compare(
    models: Annotated[
        list[str],
        typer.Argument(
            help="Names, aliases, shell patterns ('lenet*'), 'all', or references such as "
            "torchvision:resnet50 and path/to/file.py:Net."
        ),
    ],
    memory: MemoryFlag = False,
    no_cache: NoCacheOption = False,
    *,
    shape: InputOptions,
    count: CountOptions,
    timing: TimeOptions,
    output: OutputOptions,
) -> None:
    """Several models side by side, each figure also relative to the first (x0.28).

    Without --size each model uses its own default input size. With --time, each model's
    measured throughput (images/s at --batch) is added.
    """
    from . import api
    from .inspect.render import compare_view

    with model_prints_to_stderr():
        summaries = api.compare(
            models,
            **shape.shape(),
            **count.settings(),
            timed=timing.settings(),
            memory_on=(timing.device or "auto") if memory else None,
            cache=not no_cache,
        )
    if output.plot is not None:
        from .inspect.pictures import plot_compare

        plot_compare(summaries, output.plot)
    emit(compare_view(summaries), output.format)


@app.command()
@friendly_errors
def sizes(
    model: ModelArgument,
    up_to: Annotated[
        int, typer.Option("--up-to", min=1, help="Largest square size to check.")
    ] = DEFAULT_UP_TO,
    in_channels: ChannelsOption = None,
    input: InputOption = None,
    no_cache: NoCacheOption = False,
    format: FormatOption = Format.table,
) -> None:
    """Which square input sizes MODEL accepts, and the first layer that refuses the others.

    Every size from 1 to --up-to is checked on meta tensors (no arithmetic).
    """
    from . import api
    from .inspect.render import sizes_view

    with model_prints_to_stderr():
        scan = api.valid_sizes(
            model,
            in_channels=in_channels,
            inputs=only_one_way(input, None, None, in_channels),
            up_to=up_to,
            cache=not no_cache,
        )
    emit(sizes_view(scan), format)


# ---- memory -----------------------------------------------------------------------------------

OptimizerOption = Annotated[
    Optimizer,
    typer.Option(
        help="sgd (the book's train_ch6), momentum (SGD, 0.9), adam or adamw; each with "
        "PyTorch's defaults and its foreach or for-loop choice for the device."
    ),
]


@app.command()
@friendly_errors
def memory(
    model: ModelArgument,
    size: SizeOption = None,
    batch: batch_option("Images per batch. Default: the seed recipe's (registry), else 32.") = None,
    in_channels: ChannelsOption = None,
    classes: ClassesOption = None,
    input: InputOption = None,
    optimizer: OptimizerOption = Optimizer.sgd,
    precision: Annotated[
        Precision,
        typer.Option(help="auto: as train (bf16 autocast on CUDA, fp32 on the CPU)."),
    ] = Precision.auto,
    device: Annotated[
        str,
        typer.Option(
            metavar="DEVICE",
            help="auto, cpu, cuda or cuda:N: the device to predict for (cuda needs no GPU here).",
        ),
    ] = "auto",
    fit: Annotated[
        str | None,
        typer.Option(
            metavar="SIZE",
            callback=_parsed(parse_fit),
            help="A memory budget (24GB, 16GiB, 512MB): the largest batch that fits in it. "
            "Default with a CUDA GPU: the device's total memory.",
        ),
    ] = None,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            metavar="FILE.png",
            callback=_parsed(writable_path),
            help="Draw memory against batch size (a new or regular file).",
        ),
    ] = None,
    measure: Annotated[
        bool,
        typer.Option(
            "--measure",
            help="Also run the real step on the CPU and measure its peak by the allocator's "
            "own events (torch.profiler): how close the prediction is, here. It allocates "
            "what it measures.",
        ),
    ] = False,
    format: FormatOption = Format.table,
) -> None:
    """Will it fit? The peak memory of one training step of MODEL, predicted without the memory.

    The step cnnshape train runs (zero_grad, forward and loss under autocast, backward,
    optimizer step) runs on fake tensors, every tensor's allocation and release tracked, so
    any batch and size costs the same and allocates nothing. Shows what is live at the
    peak (parameters, gradients, optimizer state, the batch, activations saved for backward,
    backward temporaries), when it happens, the layers that save the most, the batch-size
    law (fixed + per image), and with --fit (or a CUDA GPU) the largest batch that fits.
    Examples: cnnshape memory resnet18; cnnshape memory alexnet --batch 128 --optimizer
    adam --precision bf16; cnnshape memory torchvision:resnet50 --fit 24GB.
    """
    from . import api
    from .inspect.render import memory_view

    with model_prints_to_stderr():
        report = api.memory(
            model,
            size,
            batch=batch,
            in_channels=in_channels,
            num_classes=classes,
            inputs=only_one_way(input, size, batch, in_channels),
            optimizer=optimizer.value,
            precision=precision.value,
            device=device,
            fit=fit,
            curve=plot is not None,
            measure=measure,
        )
    if plot is not None:
        from .inspect.pictures import plot_memory

        plot_memory(report, plot)
    emit(memory_view(report), format)


# ---- the result cache -------------------------------------------------------------------------

cache_app = typer.Typer(
    help="The result cache: answers of show, compare and sizes kept on disk, so a repeated "
    "question needs no torch. Where: $CNNSHAPE_CACHE_DIR, else ~/.cache/cnnshape/results; "
    "bounded by $CNNSHAPE_CACHE_MAX (default 100MB, least recently used first out); "
    "CNNSHAPE_NO_CACHE=1 or --no-cache turns it off.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
@friendly_errors
def cache_info(format: FormatOption = Format.table) -> None:
    """Where the cache is, how many entries it holds (and how many this version can use), and
    its size against its bound."""
    from . import api
    from .inspect.render import cache_view

    emit(cache_view(api.cache_info()), format)


@cache_app.command("clear")
@friendly_errors
def cache_clear(format: FormatOption = Format.table) -> None:
    """Remove cnnshape's entries from the cache folder; nothing else in it is touched."""
    from . import api
    from .inspect.render import cache_view

    emit(cache_view(api.clear_cache(), removed=True), format)


# ---- training ---------------------------------------------------------------------------------


@app.command()
@friendly_errors
@with_options(data=DataOptions)
def train(
    model: Annotated[
        str | None, typer.Argument(help="Model name or alias. May be left out with --resume.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Epochs (default: the model's seed recipe, 10). With --resume: the new total."
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the seed's).")] = None,
    batch_size: batch_option(
        "Images per batch (under torchrun: the global batch). Default: the seed recipe's."
    ) = None,
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            "-s",
            metavar="N",
            callback=_parsed(parse_square),
            help="Side of the square the images are resized to (default: the seed's).",
        ),
    ] = None,
    device: DeviceOption = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            help="auto: bf16 autocast on CUDA, fp32 on the CPU; fp32: the book's numerics. "
            "Default: auto (with --resume: the run's)."
        ),
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile", help="torch.compile the model (slow to start). Default: off."
        ),
    ] = None,
    sync_bn: Annotated[
        bool | None,
        typer.Option(
            "--sync-bn",
            help="Under torchrun: torch.nn.SyncBatchNorm, BatchNorm statistics over "
            "the whole global batch (CUDA only; not the book's from-scratch BatchNorm of "
            "lenet-bn-scratch). Default: each rank normalizes with its own share's statistics, "
            "as DDP does, and the checkpoint keeps rank 0's running statistics. No effect in one "
            "process.",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for init, shuffling and dropout. Default: 0.")
    ] = None,
    train_limit: Annotated[
        int | None,
        typer.Option("--train-limit", help="Train on the first N images only (quick runs)."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            help="Run folder: new or empty, or one a run started but never saved an epoch in "
            "(default: runs/<model>-<timestamp>)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Use an --out folder that holds other files (cnnshape replaces its own "
            "config.json, metrics.csv, curves.png and checkpoint.pt there).",
        ),
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(help="Continue the run in this folder from its last finished epoch."),
    ] = None,
    format: FormatOption = Format.table,
    *,
    data: DataOptions,
) -> None:
    """Train MODEL on Fashion-MNIST the way d2l's train_ch6 does: the book's numerics on the
    CPU, bf16 autocast and channels_last on a GPU (--precision fp32 for the book's there too).

    The book's recipe: Xavier init, plain SGD, cross-entropy, bilinear resize, no
    normalization or augmentation, the seed's lr/batch/size/epochs. Fast: the data lives on
    the device and the loop does not wait for the GPU between batches; on CUDA, bf16
    autocast (fp32 where the GPU has no bf16) and channels_last.

    The run folder gets config.json, metrics.csv, curves.png and checkpoint.pt after
    every epoch; one process owns it at a time. Ctrl-C or SIGTERM stops after saving the
    last finished epoch (exit 130 or 143); continue with --resume DIR, which may change
    only --epochs (a new total), --device and --data-dir; any other setting given again
    must agree with the run.

    Several GPUs or machines: launch with torchrun (torchrun --nproc_per_node=8 -m cnnshape
    train resnet18): DistributedDataParallel, one process per GPU (gloo on CPU).
    --batch-size and --lr stay the global batch and its learning rate, split across ranks;
    BatchNorm uses each rank's own statistics unless --sync-bn; only rank 0 prints and
    writes the run folder.

    --format table prints the book's two final lines; json the whole history; csv and
    markdown the per-epoch table.

    Example: cnnshape train nin --epochs 10
    """
    from . import api
    from .train import distributed
    from .train.config import TrainSettings
    from .train.display import TrainDisplay, book_lines, history_view, stopped_message
    from .train.signals import stop_on_signals

    settings = TrainSettings(
        model=model,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        size=size,
        device=device,
        precision=_value(precision),
        compile=compile,
        sync_bn=sync_bn,
        seed=seed,
        dataset=_value(data.dataset),
        data_dir=data.data_dir,
        train_limit=train_limit,
        test_limit=data.test_limit,
    )
    speaker = launch_rank() == 0  # under torchrun rank 0 speaks for everyone
    display = TrainDisplay(console(stderr=True), enabled=speaker)
    with stop_on_signals(), distributed.session(), display, model_prints_to_stderr():
        if resume is not None:
            result = api.resume(resume, settings, display, out=out)
        else:
            result = api.train(settings, display, out=out, force=force)
    if result.stopped_by is not None:
        if speaker:
            console(stderr=True).print(stopped_message(result), highlight=False)
        raise typer.Exit(128 + result.stopped_by)
    if not speaker:
        return
    if format is Format.json:
        _print_json(
            {
                "run_dir": str(result.run_dir),
                "config": result.config.to_dict(),
                "history": [asdict(s) for s in result.history],
                "examples_per_sec": result.examples_per_sec,
            }
        )
    elif format is Format.table:
        print(book_lines(result))
    else:
        print(to_string(history_view(result), format))


def _print_json(data) -> None:
    print(json_text(data))


@app.command("eval")
@friendly_errors
@with_options(data=DataOptions)
def evaluate(
    run: Annotated[str, typer.Argument(help="A run folder or a checkpoint.pt file.")],
    batch_norm: Annotated[
        bool, typer.Option("--bn", help="Also show every BatchNorm layer's learned gamma and beta.")
    ] = False,
    device: DeviceOption = None,
    format: FormatOption = Format.table,
    *,
    data: DataOptions,
) -> None:
    """Test accuracy of a trained run: per class, confusion matrix, BatchNorm gamma/beta.

    --format csv and markdown print the per-class table.
    """
    from . import api
    from .train.config import TrainSettings
    from .train.display import eval_tables, per_class_view

    settings = TrainSettings(
        device=device,
        dataset=_value(data.dataset),
        data_dir=data.data_dir,
        test_limit=data.test_limit,
    )
    with model_prints_to_stderr():
        result = api.evaluate(run, settings)
    if format is Format.json:
        doc = asdict(result)
        if not batch_norm:
            doc.pop("batch_norm")
        _print_json(doc)
    elif format is Format.table:
        out = console()
        for part in eval_tables(result, batch_norm, out.width if out.is_terminal else None):
            out.print(part)
    else:
        print(to_string(per_class_view(result), format))

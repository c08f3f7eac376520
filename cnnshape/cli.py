"""The `cnnshape` command line: parse options, call one library function, render the result.

Data goes to stdout, messages to stderr, so `cnnshape show resnet18 --format json | jq` works.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Annotated

import typer
from rich.console import Console

from . import __version__, api
from .errors import CnnshapeError
from .render import Format, compare_view, list_view, report_view, sizes_view, table, to_string
from .sizes import DEFAULT_UP_TO
from .walk import WalkError

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

# Piped output has no terminal width to fit: let tables take their natural width, not 80.
stdout = Console(width=None if sys.stdout.isatty() else 250)
stderr = Console(stderr=True, width=None if sys.stderr.isatty() else 250)
_debug = False


def friendly_errors(command):
    """Turn CnnshapeError into `Error: ...` + `Hint: ...` on stderr, exit 1; no traceback.

    With --debug (or CNNSHAPE_DEBUG=1) the traceback is shown instead.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CnnshapeError as err:
            if _debug:
                raise
            if isinstance(err, WalkError) and err.partial.rows:
                partial = report_view(err.partial)
                partial.title, partial.footer = "Layers computed before the failure", []
                stderr.print(table(partial))
            _print_error(err.message, err.hint)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            stderr.print("Interrupted.")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `cnnshape show ... | head`: the reader left, nothing to say
            # Python's documented recipe: point stdout at devnull so the flush at exit is quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except Exception as err:  # a bug in cnnshape, not a user mistake
            if _debug:
                raise
            _print_error(f"internal error: {type(err).__name__}: {err}",
                         "Run again with --debug for the traceback, and please report it.")
            raise typer.Exit(1) from None

    return wrapper


def _print_error(message: str, hint: str | None) -> None:
    # Plain print, not rich: rich would wrap long lines and read [brackets] as markup.
    print(f"Error: {message}", file=sys.stderr)
    if hint:
        print(f"Hint: {hint}", file=sys.stderr)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'96' -> (96, 96); '224x192' -> (224, 192) (height x width)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*", text)
    if not match:
        raise CnnshapeError(
            f"--size {text!r} is not a size.",
            "Give one number for a square input (--size 96) or HxW (--size 224x192).")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    if height < 1 or width < 1:
        raise CnnshapeError(f"--size {text!r}: height and width must be at least 1.")
    return height, width


def emit(view, fmt: Format) -> None:
    if fmt is Format.table:
        stdout.print(table(view))
    else:
        print(to_string(view, fmt))


# ---------------------------------------------------------------- options shared by commands

SizeOption = Annotated[str | None, typer.Option(
    "--size", "-s", metavar="N|HxW",
    help="Input height and width: one number for a square, or HxW. Default: the model's own.")]
BatchOption = Annotated[int, typer.Option(min=1, help="Batch size of the dummy input.")]
ChannelsOption = Annotated[int, typer.Option(
    "--in-channels", min=1, help="Input channels (1 for Fashion-MNIST, 3 for RGB).")]
ClassesOption = Annotated[int, typer.Option("--classes", min=1, help="Output classes.")]
FormatOption = Annotated[Format, typer.Option(
    "--format", "-f", help="table for people; json, csv or markdown for scripts and docs.")]


def _version(value: bool) -> None:
    if value:
        print(f"cnnshape {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="CNNSHAPE_DEBUG", help="Show Python tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    global _debug
    _debug = debug


@app.command("list")
@friendly_errors
def list_command(format: FormatOption = Format.table) -> None:
    """Every registered architecture: aliases, default input, params, MACs/FLOPs, book section."""
    emit(list_view(api.list_entries()), format)


@app.command()
@friendly_errors
def show(
    model: Annotated[str, typer.Argument(help="Model name or alias (see `cnnshape list`).")],
    size: SizeOption = None,
    batch: BatchOption = 1,
    in_channels: ChannelsOption = 1,
    classes: ClassesOption = 10,
    depth: Annotated[int, typer.Option(
        min=1, help="1: the book's `for layer in net` (top-level layers); 2+: open blocks.")] = 1,
    format: FormatOption = Format.table,
) -> None:
    """Walk a dummy input through MODEL layer by layer: output shape, params, MACs, FLOPs.

    MACs count the multiply-accumulates of convolutions and Linear layers; FLOPs = 2 x MACs.
    Example: cnnshape show googlenet --size 96 --depth 2
    """
    report = api.show(model, parse_size(size), batch=batch, in_channels=in_channels,
                      num_classes=classes, depth=depth)
    emit(report_view(report), format)


@app.command()
@friendly_errors
def compare(
    models: Annotated[list[str], typer.Argument(
        help="Names, aliases, shell patterns ('lenet*') or 'all'.")],
    size: SizeOption = None,
    batch: BatchOption = 1,
    in_channels: ChannelsOption = 1,
    classes: ClassesOption = 10,
    format: FormatOption = Format.table,
) -> None:
    """Several models side by side, each figure also relative to the first (x0.28).

    Without --size each model uses its own default input size.
    """
    summaries = api.compare(models, parse_size(size), batch=batch, in_channels=in_channels,
                            num_classes=classes)
    emit(compare_view(summaries), format)


@app.command()
@friendly_errors
def sizes(
    model: Annotated[str, typer.Argument(help="Model name or alias.")],
    up_to: Annotated[int, typer.Option(
        "--up-to", min=1, help="Largest square size to check.")] = DEFAULT_UP_TO,
    in_channels: ChannelsOption = 1,
    format: FormatOption = Format.table,
) -> None:
    """Which square input sizes MODEL accepts, and the first layer that refuses the others.

    Every size from 1 to --up-to is checked on meta tensors (no arithmetic).
    """
    emit(sizes_view(api.valid_sizes(model, in_channels=in_channels, up_to=up_to)), format)

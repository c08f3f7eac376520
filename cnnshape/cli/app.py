"""The Typer app and its top-level options (--debug, --version); the commands register
themselves on it from their own modules."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import errors

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
    errors.show_tracebacks(debug)
    # A command's process counts no triton kernel: spare it triton's import (flop_formulas).
    from ..inspect import flop_formulas

    flop_formulas.skip_triton()

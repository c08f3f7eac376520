"""`cnnshape graph MODEL -o FILE`: the walk drawn as a diagram (SVG, PNG, HTML, DOT,
Mermaid, JSON), with show's model and input options."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer

from ..errors import WalkError
from .app import app
from .errors import friendly_errors
from .options import (
    CountOptions,
    InputOptions,
    ModelArgument,
    NoCacheOption,
    parsed_by,
    with_options,
)
from .output import model_prints_to_stderr


class Shade(str, Enum):
    macs = "macs"
    params = "params"
    memory = "memory"


def checked_output(path: str) -> str:
    """-o: the extension and the path, checked where click parses (exit 2, nothing walked)."""
    from ..graph.formats import check_output  # plain Python, no torch: still cheap

    return check_output(path)


@app.command()
@friendly_errors
@with_options(shape=InputOptions, count=CountOptions)
def graph(
    model: ModelArgument,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            callback=parsed_by(checked_output),
            help="Where to draw: the extension picks the format, .svg, .png, .html (one "
            "offline page: pan, zoom, click to open blocks), .dot, .mmd (Mermaid) or .json.",
        ),
    ],
    depth: Annotated[
        int, typer.Option(min=1, help="1: the top-level layers; 2+: open the blocks (as show).")
    ] = 1,
    ops: Annotated[
        bool,
        typer.Option("--ops", help="Also draw the functional ops (cat, add, relu, flatten, ...)."),
    ] = False,
    rf: Annotated[
        bool, typer.Option("--rf", help="Add each node's receptive field to its label.")
    ] = False,
    fold: Annotated[
        bool,
        typer.Option("--fold", help="Draw a run of identical consecutive blocks once, 'x N'."),
    ] = False,
    shade: Annotated[
        Shade | None,
        typer.Option(
            "--shade",
            help="Colour the nodes by their MACs, parameters or output memory, with a legend.",
        ),
    ] = None,
    no_cache: NoCacheOption = False,
    *,
    shape: InputOptions,
    count: CountOptions,
) -> None:
    """Draw MODEL's layers and the tensors between them into FILE, with show's figures on
    every node (they sum to show's totals).

    Examples: cnnshape graph googlenet --depth 3 --ops -o googlenet.svg;
    cnnshape graph resnet18 --depth 2 --fold --shade macs -o resnet18.html.
    """
    from .. import api
    from ..graph import formats

    how = formats.Drawing(depth, ops, fold, shade.value if shade else None, rf)
    try:
        with model_prints_to_stderr():
            report = api.show(
                model,
                **shape.shape(),
                **formats.walk(output, depth, ops),
                **count.settings(),
                cache=not no_cache,
            )
    except WalkError as err:
        # The graph up to the layer that refused, that layer marked; then show's error.
        drawn = formats.draw(err.partial, output, how, failure=err)
        print(f"Drew {output} up to the failing layer ({_size(drawn)}).", file=sys.stderr)
        raise
    drawn = formats.draw(report, output, how)
    print(f"Drew {output}: {_size(drawn)}.", file=sys.stderr)


def _size(graph) -> str:
    layers = sum(1 for n in graph.nodes if n.kind in ("module", "op"))
    return f"{layers} nodes, {len(graph.edges)} edges"

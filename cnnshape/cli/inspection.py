"""Inspection: list, show, compare, sizes."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..inspect.report import DEFAULT_UP_TO
from ..views import Format
from .app import app
from .errors import friendly_errors
from .options import (
    ChannelsOption,
    CountOptions,
    FormatOption,
    InputOption,
    InputOptions,
    MemoryFlag,
    ModelArgument,
    NoCacheOption,
    OutputOptions,
    TimeOptions,
    only_one_way,
    with_options,
)
from .output import emit, model_prints_to_stderr


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

    With --source torchvision: every torchvision model (classification, segmentation,
    detection, video, optical flow, quantized) with its published parameters, GFLOPS and
    minimum size (metadata of its weights, read offline).
    """
    from ..inspect import render

    if source is Source.registry:
        from ..registry import list_specs  # the registry's checked metadata: no model is built

        emit(render.list_view(list_specs()), format)
    elif source is Source.torchvision:
        from .. import api

        emit(render.torchvision_list_view(api.torchvision_entries()), format)
    else:
        from ..inspect.sources import timm_names

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
    from .. import api
    from ..inspect.render import report_view

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
        from ..inspect.pictures import plot_report

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
    from .. import api
    from ..inspect.render import compare_view

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
        from ..inspect.pictures import plot_compare

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
    from .. import api
    from ..inspect.render import sizes_view

    with model_prints_to_stderr():
        scan = api.valid_sizes(
            model,
            in_channels=in_channels,
            inputs=only_one_way(input, None, None, in_channels),
            up_to=up_to,
            cache=not no_cache,
        )
    emit(sizes_view(scan), format)

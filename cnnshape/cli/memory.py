"""`cnnshape memory`: a training step's predicted peak, and the largest batch that fits."""

from __future__ import annotations

from typing import Annotated

import typer

from ..views import Format
from .app import app
from .errors import friendly_errors
from .options import (
    ChannelsOption,
    ClassesOption,
    FormatOption,
    InputOption,
    ModelArgument,
    Optimizer,
    Precision,
    SizeOption,
    batch_option,
    only_one_way,
    parse_fit,
    parsed_by,
    plot_option,
)
from .output import emit, model_prints_to_stderr

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
            callback=parsed_by(parse_fit),
            help="A memory budget (24GB, 16GiB, 512MB): the largest batch that fits in it. "
            "Default with a CUDA GPU: the device's total memory.",
        ),
    ] = None,
    plot: plot_option("Draw memory against batch size (a new or regular file).") = None,
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
    from .. import api
    from ..inspect.render import memory_view

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
        from ..inspect.pictures import plot_memory

        plot_memory(report, plot)
    emit(memory_view(report), format)

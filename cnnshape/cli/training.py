"""`cnnshape train` and `cnnshape eval`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from .._common import launch_rank
from ..views import Format, to_string
from .app import app
from .errors import friendly_errors
from .options import (
    DataOptions,
    DeviceOption,
    FormatOption,
    Precision,
    batch_option,
    choice_value,
    parse_square,
    parsed_by,
    with_options,
)
from .output import console, model_prints_to_stderr, print_json


@app.command()
@friendly_errors
@with_options(data=DataOptions)
def train(
    model: Annotated[
        str | None,
        typer.Argument(
            help="A registry name (see `cnnshape list`), torchvision:NAME (a classifier, "
            "without weights), timm:NAME, path/to/file.py:Net or package.module:factory. "
            "May be left out with --resume."
        ),
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
            callback=parsed_by(parse_square),
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
    skip_bad: Annotated[
        bool | None,
        typer.Option(
            "--skip-bad",
            help="--dataset folder: leave out the images that cannot be decoded (and say how "
            "many) instead of stopping at the first.",
        ),
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment",
            help="Random crop (from the image padded by 4 pixels) and horizontal flip of every "
            "training image, on the device. Default: off, as the book.",
        ),
    ] = None,
    normalize: Annotated[
        bool | None,
        typer.Option(
            "--normalize",
            help="Normalize every input by the training images' per-channel mean and std "
            "(computed once, when the run starts, over the images it trains on: the "
            "--train-limit head, at the data's stored size, in the model's channels, in [0, 1]; "
            "after --augment's crop and flip). Recorded in config.json: --resume, eval and "
            "predict use the same. Default: off, as the book.",
        ),
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
    """Train MODEL on Fashion-MNIST (or --dataset) the way d2l's train_ch6 does: the book's
    numerics on the CPU, bf16 autocast and channels_last on a GPU (--precision fp32 for the
    book's there too).

    The book's recipe: Xavier init, plain SGD, cross-entropy, bilinear resize, no
    normalization or augmentation (--normalize and --augment add them), the seed's
    lr/batch/size/epochs. Fast: the data lives on the device (or streams there, when it
    would take more than half its free memory) and the loop does not wait for the GPU
    between batches; on CUDA, bf16 autocast (fp32 where the GPU has no bf16) and
    channels_last.

    Models outside the chapter are built for the data's classes (torchvision: num_classes;
    timm: in_chans and num_classes; your code: in_channels and num_classes where it takes
    them), keep their own initialization, train with the chapter's ResNet-18 recipe (lr
    0.05, batch 256, 10 epochs) at their own input size (torchvision: the weights' crop,
    timm: its pretrained config's, your code: 224), and get gray or RGB images as their
    first layer takes them.

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
    from .. import api
    from ..train import distributed
    from ..train.config import TrainSettings
    from ..train.display import TrainDisplay, book_lines, history_view, stopped_message
    from ..train.signals import stop_on_signals

    settings = TrainSettings(
        model=model,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        size=size,
        device=device,
        precision=choice_value(precision),
        compile=compile,
        sync_bn=sync_bn,
        seed=seed,
        dataset=choice_value(data.dataset),
        data_dir=data.data_dir,
        train_limit=train_limit,
        test_limit=data.test_limit,
        skip_bad=skip_bad,
        augment=augment,
        normalize=normalize,
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
        print_json(
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
    from .. import api
    from ..train.config import TrainSettings
    from ..train.display import eval_tables, per_class_view

    settings = TrainSettings(
        device=device,
        dataset=choice_value(data.dataset),
        data_dir=data.data_dir,
        test_limit=data.test_limit,
    )
    with model_prints_to_stderr():
        result = api.evaluate(run, settings)
    if format is Format.json:
        doc = asdict(result)
        if not batch_norm:
            doc.pop("batch_norm")
        print_json(doc)
    elif format is Format.table:
        out = console()
        for part in eval_tables(result, batch_norm, out.width if out.is_terminal else None):
            out.print(part)
    else:
        print(to_string(per_class_view(result), format))

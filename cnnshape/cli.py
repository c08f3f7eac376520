"""The `cnnshape` command line: parse options, call one library function, render the result.

Data goes to stdout, messages to stderr, so `cnnshape show resnet18 --format json | jq` works.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
from dataclasses import asdict
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console

from . import __version__, api, distributed
from .errors import CnnshapeError
from .render import (
    Format,
    compare_view,
    list_view,
    report_view,
    sizes_view,
    table,
    timm_list_view,
    to_string,
    torchvision_list_view,
)
from .run import evaluate_run, make_config, resume_run, train_run
from .sizes import DEFAULT_UP_TO
from .sources import timm_names
from .trainview import TrainDisplay, book_lines, eval_tables
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
        except typer.Exit:  # a command's own chosen exit code (130 after Ctrl-C)
            raise
        except CnnshapeError as err:
            if _debug:
                raise
            if distributed.launch_rank() != 0:
                # Under torchrun every rank has the same settings and code: rank 0 says it.
                raise typer.Exit(1) from None
            if isinstance(err, WalkError) and err.partial.rows:
                partial = report_view(err.partial)
                partial.title, partial.footer = "Layers computed before the failure", []
                stderr.print(table(partial))
            _print_error(err.message, err.hint)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            if distributed.launch_rank() == 0:
                stderr.print("Interrupted.")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `cnnshape show ... | head`: the reader left, nothing to say
            # Python's documented recipe: point stdout at devnull so the flush at exit is quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except Exception as err:  # a bug in cnnshape, not a user mistake
            if _debug:
                raise
            _print_error(f"internal error: {type(err).__name__}: {err}", _INTERNAL_HINT
                         if not distributed.launched() else _RANK_FAILED_HINT)
            raise typer.Exit(1) from None

    return wrapper


_INTERNAL_HINT = "Run again with --debug for the traceback, and please report it."
# When one rank dies, the others fail in their next collective with a connection error.
_RANK_FAILED_HINT = ("Under torchrun one rank's failure stops all the others: the rank that "
                     "failed first names the cause. --debug shows the tracebacks.")


def _print_error(message: str, hint: str | None) -> None:
    # Plain print, not rich: rich would wrap long lines and read [brackets] as markup.
    # Under torchrun a failure can be one rank's own: say which.
    where = f"[rank {distributed.launch_rank()}] " if distributed.launched() else ""
    print(f"{where}Error: {message}", file=sys.stderr)
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
ChannelsOption = Annotated[int | None, typer.Option(
    "--in-channels", min=1, help="Input channels. Registry models are built for them (default "
    "1, Fashion-MNIST); other models are built as published and this must match their first "
    "convolution (default: its channels, 3 for torchvision).")]
ClassesOption = Annotated[int | None, typer.Option(
    "--classes", min=1, help="Output classes (default: registry 10, torchvision/timm 1000).")]
ModelArgument = Annotated[str, typer.Argument(
    help="A registry name (see `cnnshape list`), torchvision:NAME, timm:NAME, "
    "path/to/file.py:Net or package.module:factory.")]
TimeOption = Annotated[bool, typer.Option(
    "--time", help="Also measure: run the real model (random weights and input) and time it.")]
DeviceOption = Annotated[str, typer.Option(
    help="Where --time runs: auto (first GPU, else CPU), cpu, cuda or cuda:N.")]
WarmupOption = Annotated[int, typer.Option(
    min=0, help="--time: runs before measuring (allocator, cuDNN autotuning, caches).")]
RepeatsOption = Annotated[int, typer.Option(
    min=1, help="--time: measured runs; the median and interquartile range are reported.")]
PlotOption = Annotated[str | None, typer.Option(
    "--plot", metavar="FILE.png", help="Also draw the figures as a PNG picture.")]
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


class Source(str, Enum):
    registry = "registry"
    torchvision = "torchvision"
    timm = "timm"


@app.command("list")
@friendly_errors
def list_command(
    source: Annotated[Source, typer.Option(
        help="registry: the chapter's models; torchvision or timm: what those libraries "
        "offer, to inspect as torchvision:NAME or timm:NAME.")] = Source.registry,
    format: FormatOption = Format.table,
) -> None:
    """Every registered architecture: aliases, default input, params, MACs/FLOPs, book section.

    With --source torchvision: every torchvision classification model with its published
    parameters, GFLOPS and minimum size (metadata of its weights, read offline).
    """
    if source is Source.registry:
        emit(list_view(api.list_entries()), format)
    elif source is Source.torchvision:
        emit(torchvision_list_view(api.torchvision_entries()), format)
    else:
        emit(timm_list_view(timm_names()), format)


@app.command()
@friendly_errors
def show(
    model: ModelArgument,
    size: SizeOption = None,
    batch: BatchOption = 1,
    in_channels: ChannelsOption = None,
    classes: ClassesOption = None,
    depth: Annotated[int, typer.Option(
        min=1, help="1: the book's `for layer in net` (top-level layers); 2+: open blocks.")] = 1,
    rf: Annotated[bool, typer.Option(
        "--rf", help="Add each layer's receptive field and jump (height x width).")] = False,
    time: TimeOption = False,
    device: DeviceOption = "auto",
    warmup: WarmupOption = 3,
    repeats: RepeatsOption = 20,
    plot: PlotOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Walk a dummy input through MODEL layer by layer: output shape, params, MACs, FLOPs.

    MACs count the multiply-accumulates of convolutions and Linear layers; FLOPs = 2 x MACs.
    --rf adds receptive fields; --time measures each layer on --device (measured, not
    derived: real forward passes).
    Examples: cnnshape show googlenet --size 96 --depth 2;
    cnnshape show torchvision:resnet50 (built on the meta device: no weights downloaded).
    """
    timed = api.TimeSettings(device, warmup, repeats) if time else None
    report = api.show(model, parse_size(size), batch=batch, in_channels=in_channels,
                      num_classes=classes, depth=depth, timed=timed)
    if plot is not None:
        from .plot import plot_report

        plot_report(report, plot)
    emit(report_view(report, fields=rf), format)


@app.command()
@friendly_errors
def compare(
    models: Annotated[list[str], typer.Argument(
        help="Names, aliases, shell patterns ('lenet*'), 'all', or references such as "
        "torchvision:resnet50 and path/to/file.py:Net.")],
    size: SizeOption = None,
    batch: BatchOption = 1,
    in_channels: ChannelsOption = None,
    classes: ClassesOption = None,
    time: TimeOption = False,
    device: DeviceOption = "auto",
    warmup: WarmupOption = 3,
    repeats: RepeatsOption = 20,
    plot: PlotOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Several models side by side, each figure also relative to the first (x0.28).

    Without --size each model uses its own default input size. With --time, each model's
    measured throughput (images/s at --batch) is added.
    """
    timed = api.TimeSettings(device, warmup, repeats) if time else None
    summaries = api.compare(models, parse_size(size), batch=batch, in_channels=in_channels,
                            num_classes=classes, timed=timed)
    if plot is not None:
        from .plot import plot_compare

        plot_compare(summaries, plot)
    emit(compare_view(summaries), format)


@app.command()
@friendly_errors
def sizes(
    model: ModelArgument,
    up_to: Annotated[int, typer.Option(
        "--up-to", min=1, help="Largest square size to check.")] = DEFAULT_UP_TO,
    in_channels: ChannelsOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Which square input sizes MODEL accepts, and the first layer that refuses the others.

    Every size from 1 to --up-to is checked on meta tensors (no arithmetic).
    """
    emit(sizes_view(api.valid_sizes(model, in_channels=in_channels, up_to=up_to)), format)


# ---------------------------------------------------------------- training

class Output(str, Enum):
    table = "table"
    json = "json"


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


@app.command()
@friendly_errors
def train(
    model: Annotated[str | None, typer.Argument(
        help="Model name or alias. Leave out with --resume.")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Epochs (default: the model's seed recipe, 10). With --resume: the new total.")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the seed's).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Batch size (default: the seed's).")] = None,
    size: Annotated[int | None, typer.Option(
        help="Input height and width the images are resized to (default: the seed's).")] = None,
    device: Annotated[str, typer.Option(
        help="auto (first GPU, else CPU), cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(
        help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 (the book's numerics), bf16, "
        "fp16.")] = "auto",
    compile: Annotated[bool, typer.Option(
        "--compile/--no-compile", help="torch.compile the model (slow to start).")] = False,
    sync_bn: Annotated[bool, typer.Option(
        "--sync-bn", help="Under torchrun: torch.nn.SyncBatchNorm, BatchNorm statistics over "
        "the whole global batch (CUDA only; not the book's from-scratch BatchNorm of "
        "lenet-bn-scratch). Default: each rank normalizes with its own share's statistics, "
        "as DDP does, and the checkpoint keeps rank 0's running statistics. No effect in one "
        "process.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for init, shuffling and dropout.")] = 0,
    dataset: Annotated[str, typer.Option(
        help="fashion-mnist, or synthetic (random images: smoke runs, benchmarks).")
    ] = "fashion-mnist",
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Folder with the four Fashion-MNIST IDX files (gzipped or not). "
        "Default: $CNNSHAPE_DATA or ~/.cache/cnnshape/fashion-mnist, downloaded when online.")
    ] = None,
    out: Annotated[str | None, typer.Option(
        help="Run directory (default: runs/<model>-<timestamp>).")] = None,
    resume: Annotated[str | None, typer.Option(
        help="Continue the run in this directory from its last finished epoch.")] = None,
    train_limit: Annotated[int | None, typer.Option(
        "--train-limit", help="Train on the first N images only (quick runs).")] = None,
    test_limit: Annotated[int | None, typer.Option(
        "--test-limit", help="Test on the first N images only.")] = None,
    format: Annotated[Output, typer.Option(
        "--format", "-f", help="table: the book's final lines; json: the whole history.")
    ] = Output.table,
) -> None:
    """Train MODEL on Fashion-MNIST the way d2l's train_ch6 does, fast.

    Faithful by default: Xavier init, plain SGD, cross-entropy, bilinear resize, no
    normalization or augmentation, the seed's lr/batch/size/epochs. Fast: the data lives on
    the device and the loop does not wait for the GPU between batches; on CUDA, bf16
    autocast and channels_last (--precision fp32 gives the book's numerics).

    The run directory gets config.json, metrics.csv, curves.png and checkpoint.pt after
    every epoch. Ctrl-C stops after saving the last finished epoch (exit 130); continue
    with --resume DIR.

    Several GPUs or machines: launch with torchrun (torchrun --nproc_per_node=8 -m cnnshape
    train resnet18): DistributedDataParallel, one process per GPU (gloo on CPU).
    --batch-size and --lr stay the global batch and its learning rate, split across ranks;
    BatchNorm uses each rank's own statistics unless --sync-bn; only rank 0 prints and
    writes the run directory.

    Example: cnnshape train nin --epochs 10
    """
    with distributed.session():
        result = _train_or_resume(model, resume, epochs=epochs, lr=lr, batch_size=batch_size,
                                  size=size, device=device, precision=precision,
                                  compile=compile, sync_bn=sync_bn, seed=seed, dataset=dataset,
                                  data_dir=data_dir, out=out, train_limit=train_limit,
                                  test_limit=test_limit)
    if result.interrupted:
        _say_interrupted(result)
        raise typer.Exit(130)
    if distributed.launch_rank() != 0:
        return  # rank 0 reports for everyone
    if format is Output.json:
        _print_json({"run_dir": str(result.run_dir), "config": result.config.to_dict(),
                     "history": [asdict(s) for s in result.history],
                     "examples_per_sec": result.examples_per_sec})
    else:
        print(book_lines(result))


# What --resume takes from the run it continues: (option, parameter) pairs.
_RUN_SETTINGS = (("--lr", "lr"), ("--batch-size", "batch_size"), ("--size", "size"),
                 ("--out", "out"), ("--train-limit", "train_limit"),
                 ("--test-limit", "test_limit"), ("--sync-bn", "sync_bn"))


def _train_or_resume(model, resume, *, epochs, device, **settings):
    """The run, shown by a TrainDisplay on rank 0 (under torchrun the others show nothing)."""
    display = TrainDisplay(stderr) if distributed.launch_rank() == 0 else contextlib.nullcontext()
    with display:
        if resume is not None:
            given = {"MODEL": model, **{flag: settings[name] for flag, name in _RUN_SETTINGS}}
            fixed = [flag for flag, value in given.items() if value not in (None, False)]
            if fixed:
                raise CnnshapeError(
                    f"--resume continues a run with its own settings; {', '.join(fixed)} "
                    "cannot change.", "Only --epochs (a new total) and --device may be given.")
            return resume_run(resume, display, epochs=epochs,
                              device=None if device == "auto" else device)
        if model is None:
            raise CnnshapeError("Which model? Give a name, or --resume RUN_DIR.",
                                "Run `cnnshape list` to see every model.")
        return train_run(make_config(model, epochs=epochs, device=device, **settings), display)


def _say_interrupted(result) -> None:
    if distributed.launch_rank() != 0:
        return
    if result.history:
        stderr.print(f"Interrupted. Epoch {len(result.history)} is saved in "
                     f"{result.run_dir}; continue with:\n"
                     f"  cnnshape train --resume {result.run_dir}", highlight=False)
    else:
        stderr.print("Interrupted before the first epoch finished: nothing to resume.")


@app.command("eval")
@friendly_errors
def evaluate(
    run: Annotated[str, typer.Argument(help="A run directory or a checkpoint.pt file.")],
    batch_norm: Annotated[bool, typer.Option(
        "--bn", help="Also show every BatchNorm layer's learned gamma and beta.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Fashion-MNIST folder (default: the one the run used).")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="fashion-mnist or synthetic (default: the run's).")] = None,
    test_limit: Annotated[int | None, typer.Option(
        "--test-limit", help="Only the first N test images.")] = None,
    format: Annotated[Output, typer.Option("--format", "-f")] = Output.table,
) -> None:
    """Test accuracy of a trained run: per class, confusion matrix, BatchNorm gamma/beta."""
    result = evaluate_run(run, device=device, data_dir=data_dir, dataset=dataset,
                          test_limit=test_limit)
    if format is Output.json:
        data = asdict(result)
        if not batch_norm:
            data.pop("batch_norm")
        _print_json(data)
    else:
        for table_ in eval_tables(result, batch_norm):
            stdout.print(table_)

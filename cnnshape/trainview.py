"""What a person sees of a training run and of an evaluation (rich, on stderr and stdout).

``TrainDisplay`` consumes the loop's events (cnnshape.train): a header before the first
epoch, a progress bar per epoch, one line per finished epoch, and the book's two final lines.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .render import human
from .train import BatchProgress, EpochStats, RunEnd, RunStart

# Below this train accuracy after an epoch the network is guessing (10 classes: 0.10). The
# book's NiN sometimes ends at 0.10: say so instead of printing numbers that look like results.
CHANCE_MARGIN = 1.5

EPOCH_HEADER = f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'test acc':>8}  " \
               f"{'img/s':>9}  {'seconds':>7}"


class TrainDisplay:
    """An ``on_event`` callback that renders the run; use it as a context manager."""

    def __init__(self, console: Console, num_classes: int = 10):
        self.console = console
        self.num_classes = num_classes
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.3f}  "
                       "{task.fields[speed]:,.0f} img/s"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self.task = None

    def __enter__(self) -> TrainDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, event) -> None:
        if isinstance(event, RunStart):
            self._header(event)
        elif isinstance(event, BatchProgress):
            self._batch(event)
        elif isinstance(event, EpochStats):
            self._epoch(event)
        elif isinstance(event, RunEnd):
            self._end(event)

    def _header(self, e: RunStart) -> None:
        c = e.config
        flops = f"{human(e.flops_per_image)}FLOPs" if e.flops_per_image else "?"
        lines = [
            f"[bold]{c.model}[/]: {e.params:,} params, {flops} per image forward "
            f"at {c.size}x{c.size}",
            f"device {c.device}, precision {c.precision}, channels_last "
            f"{'on' if c.channels_last else 'off'}, compile {'on' if c.compile else 'off'}",
            f"data {e.data_source}: {e.n_train:,} train / {e.n_test:,} test images",
            f"epochs {c.epochs}, lr {c.lr:g}, batch size {c.batch_size}, seed {c.seed}",
            f"run directory {e.run_dir}",
        ]
        if e.world_size > 1:
            lines.append(f"DDP over {e.world_size} processes: each takes ~"
                         f"{c.batch_size // e.world_size} images of every global batch; "
                         f"BatchNorm {'synced' if c.sync_bn else 'statistics per rank'}")
        if e.start_epoch:
            lines.append(f"resuming after epoch {e.start_epoch}")
        for line in lines:
            self.console.print(line, highlight=False)
        self.console.print(EPOCH_HEADER, style="bold", highlight=False)

    def _batch(self, e: BatchProgress) -> None:
        fields = {"epoch": f"{e.epoch}/{e.epochs}", "loss": e.train_loss, "acc": e.train_acc,
                  "speed": e.images_per_sec}
        if self.task is None:
            self.task = self.progress.add_task("", total=e.batches, **fields)
        self.progress.update(self.task, completed=e.batch, total=e.batches, **fields)

    def _epoch(self, s: EpochStats) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.console.print(f"{s.epoch:>5}  {s.train_loss:>10.4f}  {s.train_acc:>9.3f}  "
                           f"{s.test_acc:>8.3f}  {s.images_per_sec:>9,.0f}  {s.seconds:>7.1f}",
                           highlight=False)

    def _end(self, e: RunEnd) -> None:
        # Judged at the end, not per epoch: sigmoid LeNets sit at chance for a while and then
        # learn; a run that ends there has failed (as the book's NiN sometimes does).
        final = e.history[-1].train_acc if e.history else None
        if final is not None and final < CHANCE_MARGIN / self.num_classes:
            self.console.print(
                f"[yellow]Warning:[/] the final train accuracy {final:.3f} is chance level: the "
                "network did not learn. Try a lower --lr or another --seed.", highlight=False)


def book_lines(result) -> str:
    """The two lines d2l's train_ch6 prints at the end."""
    last = result.history[-1]
    return (f"loss {last.train_loss:.3f}, train acc {last.train_acc:.3f}, "
            f"test acc {last.test_acc:.3f}\n"
            f"{result.examples_per_sec:.1f} examples/sec on {result.config.device}")


def eval_tables(result, show_batch_norm: bool) -> list:
    """Per-class accuracy, the confusion matrix and, on request, BatchNorm gamma/beta."""
    per_class = Table(title="Accuracy per class", title_justify="left")
    for header in ("class", "correct", "total", "accuracy"):
        per_class.add_column(header, justify="left" if header == "class" else "right")
    for c in result.per_class:
        per_class.add_row(c.name, f"{c.correct:,}", f"{c.total:,}", f"{c.accuracy:.3f}")

    confusion = Table(title="Confusion matrix (rows: true class, columns: predicted)",
                      title_justify="left")
    confusion.add_column("")
    for i in range(len(result.classes)):
        confusion.add_column(str(i), justify="right")
    for i, (name, row) in enumerate(zip(result.classes, result.confusion, strict=True)):
        confusion.add_row(f"{i} {name}", *(f"[bold]{n}[/]" if j == i else str(n)
                                           for j, n in enumerate(row)))
    summary = (f"{result.model} after epoch {result.epoch}, on {result.data_source}: "
               f"test accuracy {result.test_acc:.4f}")
    tables = [Text(summary, style="bold"), per_class, confusion]
    if show_batch_norm:
        bn = Table(title="BatchNorm scale (gamma) and shift (beta)", title_justify="left")
        for header in ("layer", "type", "gamma", "beta"):
            bn.add_column(header)
        for layer in result.batch_norm:
            bn.add_row(layer.name, layer.type, _values(layer.gamma), _values(layer.beta))
        if not result.batch_norm:
            bn.add_row("-", "this network has no BatchNorm layers", "", "")
        tables.append(bn)
    return tables


def _values(values: list[float], limit: int = 8) -> str:
    shown = ", ".join(f"{v:.3f}" for v in values[:limit])
    return shown + (f", ... ({len(values)} values)" if len(values) > limit else "")

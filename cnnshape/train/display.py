"""What a person sees of a training run and of an evaluation (rich, on stderr and stdout).

``TrainDisplay`` consumes a run's events (``events.py``): a header before the first
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
from rich.text import Text

from .._common import human
from ..views import Column, View, table
from .events import BatchProgress, EpochStats, RunEnd, RunStart
from .signals import stop_reason

# Below this train accuracy after an epoch the network is guessing (10 classes: 0.10). The
# book's NiN sometimes ends at 0.10: say so instead of printing numbers that look like results.
CHANCE_MARGIN = 1.5

EPOCH_HEADER = (
    f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'test acc':>8}  "
    f"{'img/s':>9}  {'seconds':>7}"
)


class TrainDisplay:
    """An ``on_event`` callback that renders the run; use it as a context manager."""

    def __init__(self, console: Console, num_classes: int = 10, enabled: bool = True):
        self.console = console
        self.num_classes = num_classes
        self.enabled = enabled  # off: under torchrun every rank but 0 shows nothing
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.3f}  "
                "{task.fields[speed]:,.0f} img/s"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = None

    def __enter__(self) -> TrainDisplay:
        return self

    def __exit__(self, *exc) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def __call__(self, event) -> None:
        if not self.enabled:
            return
        if isinstance(event, RunStart):
            # Started with the run, not before: stopping a progress display prints a blank
            # line, which an Error before the run starts would otherwise follow.
            self.progress.start()
            self._header(event)
        elif isinstance(event, BatchProgress):
            self._batch(event)
        elif isinstance(event, EpochStats):
            self._epoch(event)
        elif isinstance(event, RunEnd):
            self._end(event)

    def _header(self, e: RunStart) -> None:
        c = e.config
        if c.classes is not None:  # chance level is one over the data's classes
            self.num_classes = len(c.classes)
        flops = f"{human(e.flops_per_image)}FLOPs"
        lines = [
            f"[bold]{c.model}[/]: {e.params:,} params, {flops} per image forward "
            f"at {c.size}x{c.size}",
            f"device {c.device}, precision {c.precision}, channels_last "
            f"{'on' if c.channels_last else 'off'}, compile {'on' if c.compile else 'off'}",
            f"data {e.data_source}: {e.n_train:,} train / {e.n_test:,} test images",
            f"epochs {c.epochs}, lr {c.lr:g}, batch size {c.batch_size}, seed {c.seed}",
            f"run folder {e.run_dir}",
        ]
        if e.world_size > 1:
            lines.append(
                f"DDP over {e.world_size} processes: each takes ~"
                f"{c.batch_size // e.world_size} images of every global batch; "
                f"BatchNorm {'synced' if c.sync_bn else 'statistics per rank'}"
            )
        if e.left_out_per_epoch:
            n = e.left_out_per_epoch
            lines.append(
                f"each epoch leaves out its last batch ({n} image{'s' * (n > 1)}): it would give "
                "BatchNorm a batch of one image, which it cannot normalize"
            )
        if e.start_epoch:
            lines.append(f"resuming after epoch {e.start_epoch}")
        for line in e.notes:
            self.console.print(line, style="yellow", highlight=False)
        for line in lines:
            self.console.print(line, highlight=False)
        self.console.print(EPOCH_HEADER, style="bold", highlight=False)

    def _batch(self, e: BatchProgress) -> None:
        fields = {
            "epoch": f"{e.epoch}/{e.epochs}",
            "loss": e.train_loss,
            "acc": e.train_acc,
            "speed": e.images_per_sec,
        }
        if self.task is None:
            self.task = self.progress.add_task("", total=e.batches, **fields)
        self.progress.update(self.task, completed=e.batch, total=e.batches, **fields)

    def _epoch(self, s: EpochStats) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.console.print(
            f"{s.epoch:>5}  {s.train_loss:>10.4f}  {s.train_acc:>9.3f}  "
            f"{s.test_acc:>8.3f}  {s.images_per_sec:>9,.0f}  {s.seconds:>7.1f}",
            highlight=False,
        )

    def _end(self, e: RunEnd) -> None:
        # Judged at the end, not per epoch: sigmoid LeNets sit at chance for a while and then
        # learn; a run that ends there has failed (as the book's NiN sometimes does).
        final = e.history[-1].train_acc if e.history else None
        if final is not None and final < CHANCE_MARGIN / self.num_classes:
            self.console.print(
                f"[yellow]Warning:[/] the final train accuracy {final:.3f} is chance level: the "
                "network did not learn. Try a lower --lr or another --seed.",
                highlight=False,
            )


def stopped_message(result) -> str:
    """What a run stopped by Ctrl-C or SIGTERM left, and how to go on."""
    why = stop_reason(result.stopped_by)
    if result.complete:
        return (
            f"Stopped ({why}) after the last epoch was saved: the run in {result.run_dir} is "
            "complete."
        )
    if not result.history:
        return f"Stopped ({why}) before the first epoch finished: nothing to resume."
    return (
        f"Stopped ({why}). Epoch {len(result.history)} is saved in {result.run_dir}; continue "
        f"with:\n  cnnshape train --resume {result.run_dir}"
    )


def book_lines(result) -> str:
    """The two lines d2l's train_ch6 prints at the end."""
    last = result.history[-1]
    return (
        f"loss {last.train_loss:.3f}, train acc {last.train_acc:.3f}, "
        f"test acc {last.test_acc:.3f}\n"
        f"{result.examples_per_sec:.1f} examples/sec on {result.config.device}"
    )


HISTORY_COLUMNS = (
    Column("epoch", lambda s: s.epoch, numeric=True),
    Column("train loss", lambda s: s.train_loss, lambda s: f"{s.train_loss:.4f}", numeric=True),
    Column("train acc", lambda s: s.train_acc, lambda s: f"{s.train_acc:.3f}", numeric=True),
    Column("test acc", lambda s: s.test_acc, lambda s: f"{s.test_acc:.3f}", numeric=True),
    Column("img/s", lambda s: s.images_per_sec, lambda s: f"{s.images_per_sec:,.0f}", numeric=True),
    Column(
        "train seconds", lambda s: s.train_seconds, lambda s: f"{s.train_seconds:.1f}", numeric=True
    ),
    Column("seconds", lambda s: s.seconds, lambda s: f"{s.seconds:.1f}", numeric=True),
)


def history_view(result) -> View:
    """Every finished epoch of a run (train --format csv|markdown; metrics.csv's columns)."""
    return View(
        f"{result.config.model}: {result.run_dir}",
        list(HISTORY_COLUMNS),
        result.history,
        {},
        footer=[book_lines(result)],
    )


PER_CLASS_COLUMNS = (
    Column("class", lambda c: c.name),
    Column("correct", lambda c: c.correct, lambda c: f"{c.correct:,}", numeric=True),
    Column("total", lambda c: c.total, lambda c: f"{c.total:,}", numeric=True),
    Column("accuracy", lambda c: c.accuracy, lambda c: f"{c.accuracy:.3f}", numeric=True),
)


def per_class_view(result) -> View:
    """Test accuracy per class (eval --format csv|markdown, and the first table of eval)."""
    return View(
        "Accuracy per class",
        list(PER_CLASS_COLUMNS),
        result.per_class,
        {},
        footer=[_eval_summary(result)],
    )


def _eval_summary(result) -> str:
    return (
        f"{result.model} after epoch {result.epoch}, on {result.data_source}: "
        f"test accuracy {result.test_acc:.4f}"
    )


def confusion_view(result) -> View:
    """Counts of (true class, predicted class); the diagonal is the correct predictions."""
    rows = [
        (i, name, counts)
        for i, (name, counts) in enumerate(zip(result.classes, result.confusion, strict=True))
    ]

    def count(j):
        return Column(
            str(j),
            lambda r: r[2][j],
            lambda r: f"[bold]{r[2][j]}[/]" if r[0] == j else str(r[2][j]),
            numeric=True,
        )

    columns = [Column("", lambda r: f"{r[0]} {r[1]}")] + [count(j) for j in range(len(rows))]
    return View("Confusion matrix (rows: true class, columns: predicted)", columns, rows, {})


BATCH_NORM_COLUMNS = (
    Column("layer", lambda b: b.name),
    Column("type", lambda b: b.type),
    Column("gamma", lambda b: b.gamma, lambda b: _values(b.gamma)),
    Column("beta", lambda b: b.beta, lambda b: _values(b.beta)),
)


def batch_norm_view(result) -> View:
    footer = [] if result.batch_norm else ["This network has no BatchNorm layers."]
    return View(
        "BatchNorm scale (gamma) and shift (beta)",
        list(BATCH_NORM_COLUMNS),
        result.batch_norm,
        {},
        footer=footer,
    )


def eval_tables(result, show_batch_norm: bool, width: int | None = None) -> list:
    """The summary line, per-class accuracy, the confusion matrix and, on request, BatchNorm
    gamma/beta, as rich renderables at most ``width`` wide (`views.table`)."""
    per_class = per_class_view(result)
    per_class.footer = []  # the summary line comes first instead
    views = [per_class, confusion_view(result)]
    if show_batch_norm:
        views.append(batch_norm_view(result))
    return [Text(_eval_summary(result), style="bold"), *(table(v, width) for v in views)]


def _values(values: list[float], limit: int = 8) -> str:
    shown = ", ".join(f"{v:.3f}" for v in values[:limit])
    return shown + (f", ... ({len(values)} values)" if len(values) > limit else "")


# ---- predict -----------------------------------------------------------------------------------

PREDICTION_COLUMNS = (
    # The image once per group of rows in the table; on every row in CSV, which a script reads.
    Column("image", lambda row: row[0], lambda row: row[0] if row[1].rank == 1 else ""),
    Column("rank", lambda row: row[1].rank, numeric=True),
    Column("class", lambda row: row[1].name),
    Column(
        "probability",
        lambda row: row[1].probability,
        lambda row: f"{row[1].probability:.4f}",
        numeric=True,
    ),
)


def prediction_view(result) -> View:
    """Each image's top classes, one row per (image, class)."""
    rows = [(each.image, guess) for each in result.predictions for guess in each.top]
    return View(
        "Predictions",
        list(PREDICTION_COLUMNS),
        rows,
        {},
        footer=[f"{result.model} after epoch {result.epoch} ({result.checkpoint})"],
    )

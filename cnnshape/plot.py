"""Pictures: training curves (as d2l's Animator), a model's layers, models compared.

matplotlib is imported inside the functions: it costs a third of a second, which commands
that draw nothing should not pay."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .checkpoint import atomic_write
from .errors import CnnshapeError
from .train import EpochStats


def plot_history(history: Sequence[EpochStats], path: str | os.PathLike,
                 title: str | None = None, epochs: int | None = None) -> None:
    """Write the curves to ``path`` (atomically). ``epochs`` fixes the x range, as the book's
    plot spans all planned epochs from the start."""
    fig, (ax,) = _figure((5, 3.5), ncols=1)
    x = [s.epoch for s in history]
    ax.plot(x, [s.train_loss for s in history], "-", label="train loss")
    ax.plot(x, [s.train_acc for s in history], "m--", label="train acc")
    ax.plot(x, [s.test_acc for s in history], "g-.", label="test acc")
    ax.set_xlabel("epoch")
    ax.set_xlim(1, max(epochs or 0, x[-1] if x else 1, 2))
    ax.grid(True)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


# Inches; at DPI these give the pixel sizes the tests check.
DPI = 100
REPORT_WIDTH, REPORT_BASE, REPORT_PER_ROW = 13.0, 1.8, 0.3
COMPARE_SIZE = (8.0, 6.0)


def report_figure_size(rows: int) -> tuple[float, float]:
    return REPORT_WIDTH, REPORT_BASE + REPORT_PER_ROW * max(rows, 3)


def plot_report(report, path: str | os.PathLike) -> None:
    """One bar per layer, three panels side by side: where the parameters live, where the
    compute goes, and how the feature map shrinks (output height x width, channels)."""
    from matplotlib.ticker import MaxNLocator

    from .render import human, shape

    rows = plotted_rows(report)
    fig, axes = _figure(report_figure_size(len(rows)), ncols=3)
    names = [f"{r.name} {r.type}" for r in rows]
    y = list(range(len(rows)))
    panels = [
        ("Parameters", [r.params for r in rows], "tab:blue", [human(r.params) for r in rows]),
        ("MACs", [r.macs for r in rows], "tab:orange", [human(r.macs) for r in rows]),
        ("Output height (label: HxW, channels)", [_height(r) for r in rows], "tab:green",
         [_spatial_label(r, shape) for r in rows]),
    ]
    for ax, (title, values, color, labels) in zip(axes, panels, strict=True):
        ax.barh(y, values, color=color)
        ax.set_title(title)
        ax.set_xlim(0, max(max(values), 1) * 1.5)  # room for the labels
        for i, (value, label) in enumerate(zip(values, labels, strict=True)):
            ax.text(value, i, " " + label, va="center", fontsize=8)
        ax.set_yticks(y, names if ax is axes[0] else [""] * len(y), fontsize=8)
        ax.invert_yaxis()  # first layer on top, as in the table
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(4))  # room for labels such as "250.00 K"
        ax.xaxis.set_major_formatter(lambda v, _: human(v))  # 2.00 M, not 0.2 x 1e7
        ax.grid(True, axis="x", alpha=0.3)
    totals = (f"{report.model} at {shape(report.input_shape)}: {human(report.total_params)} "
              f"parameters, {human(report.total_macs)} MACs")
    fig.suptitle(totals)
    _save(fig, path)


def plotted_rows(report) -> list:
    """The table's finest rows: a block opened by --depth gives way to its layers, so the bars
    add up to the totals instead of counting a block and its layers twice."""
    names = [r.name for r in report.rows]
    return [r for r in report.rows if not any(n.startswith(r.name + ".") for n in names)]


def _height(row) -> int:
    s = row.output_shape
    return s[2] if s is not None and len(s) > 2 else 0


def _spatial_label(row, shape) -> str:
    s = row.output_shape
    if s is None:
        return "-"
    if len(s) > 2:
        return f"{'x'.join(map(str, s[2:]))}, {s[1]} ch"
    return shape(s)  # no spatial axes left (after Flatten): the whole shape


def plot_compare(summaries, path: str | os.PathLike) -> None:
    """Models placed by MACs (x) against parameters (y), log scales; marker area follows
    activation memory. Models that do not fit the input are left out."""
    from .render import human, megabytes

    fitted = [s for s in summaries if s.report is not None]
    fig, (ax,) = _figure(COMPARE_SIZE, ncols=1)
    memory = [s.report.activation_bytes for s in fitted]
    biggest = max(memory, default=1) or 1
    for s, mem in zip(fitted, memory, strict=True):
        r = s.report
        ax.scatter(r.total_macs, r.total_params, s=30 + 1500 * mem / biggest, alpha=0.5)
        ax.annotate(f"{s.model}\n{megabytes(mem)}", (r.total_macs, r.total_params),
                    fontsize=8, ha="center", va="center")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(0.25)
    ax.set_xlabel("MACs per forward pass (log)")
    ax.set_ylabel("parameters (log)")
    ax.xaxis.set_major_formatter(lambda v, _: human(v))
    ax.yaxis.set_major_formatter(lambda v, _: human(v))
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("Compute against size; marker area = activation memory")
    left_out = [s.model for s in summaries if s.report is None]
    if left_out:
        ax.text(0.01, 0.01, f"Do not fit the input, left out: {', '.join(left_out)}",
                transform=ax.transAxes, fontsize=8, color="dimgray")
    _save(fig, path)


def _figure(size: tuple[float, float], ncols: int):
    """A figure with an Agg canvas, not pyplot: no global figure state, no GUI backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save(fig, path) -> None:
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    except OSError as err:
        raise CnnshapeError(f"Cannot write the picture {path}: {err.strerror or err}.",
                            "Give a path in a folder that exists and you can write to.") from None

"""Pictures of a walk: a model's layers (show --plot), models compared (compare --plot).

matplotlib is imported by the functions that draw (``_common.new_figure``): it costs a third
of a second, which commands that draw nothing should not pay."""

from __future__ import annotations

import os

from .._common import atomic_write, byte_size, human, megabytes, new_figure
from ..errors import CnnshapeError
from .render import shape

# Inches (at _common.DPI, the pixel sizes the tests check).
REPORT_WIDTH, REPORT_BASE, REPORT_PER_ROW = 13.0, 1.8, 0.3
COMPARE_SIZE = (8.0, 6.0)


def report_figure_size(rows: int) -> tuple[float, float]:
    return REPORT_WIDTH, REPORT_BASE + REPORT_PER_ROW * max(rows, 3)


def plot_report(report, path: str | os.PathLike) -> None:
    """One bar per layer, three panels side by side: where the parameters live, where the
    compute goes, and how the feature map shrinks (output height x width, channels)."""
    from matplotlib.ticker import MaxNLocator

    rows = plotted_rows(report)
    fig, axes = new_figure(report_figure_size(len(rows)), ncols=3)
    names = [f"{r.name} {r.type}" for r in rows]
    y = list(range(len(rows)))
    panels = [
        ("Parameters", [r.params for r in rows], "tab:blue", [human(r.params) for r in rows]),
        ("MACs", [r.macs for r in rows], "tab:orange", [human(r.macs) for r in rows]),
        (
            "Output height (label: HxW, channels)",
            [_height(r) for r in rows],
            "tab:green",
            [_spatial_label(r) for r in rows],
        ),
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
    totals = (
        f"{report.model} at {shape(report.input_shape)}: {human(report.total_params)} "
        f"parameters, {human(report.total_macs)} MACs"
    )
    fig.suptitle(totals)
    save_png(fig, path)


def plotted_rows(report) -> list:
    """The table's finest rows: a block opened by --depth gives way to its layers, so the bars
    add up to the totals instead of counting a block and its layers twice."""
    names = [r.name for r in report.rows]
    return [r for r in report.rows if not any(n.startswith(r.name + ".") for n in names)]


def _height(row) -> int:
    s = row.output_shape
    return s[2] if s is not None and len(s) > 2 else 0


def _spatial_label(row) -> str:
    s = row.output_shape
    if s is None:
        return "-"
    if len(s) > 2:
        return f"{'x'.join(map(str, s[2:]))}, {s[1]} ch"
    return shape(s)  # no spatial axes left (after Flatten): the whole shape


def plot_compare(summaries, path: str | os.PathLike) -> None:
    """Models placed by MACs (x) against parameters (y), log scales; marker area follows
    activation memory. Models that do not fit the input are left out."""
    fitted = [s for s in summaries if s.report is not None]
    fig, (ax,) = new_figure(COMPARE_SIZE)
    memory = [s.report.activation_bytes for s in fitted]
    biggest = max(memory, default=1) or 1
    for s, mem in zip(fitted, memory, strict=True):
        r = s.report
        ax.scatter(r.total_macs, r.total_params, s=30 + 1500 * mem / biggest, alpha=0.5)
        ax.annotate(
            f"{s.model}\n{megabytes(mem)}",
            (r.total_macs, r.total_params),
            fontsize=8,
            ha="center",
            va="center",
        )
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
        ax.text(
            0.01,
            0.01,
            f"Do not fit the input, left out: {', '.join(left_out)}",
            transform=ax.transAxes,
            fontsize=8,
            color="dimgray",
        )
    save_png(fig, path)


def save_png(fig, path: str | os.PathLike) -> None:
    """Lay out and write ``fig`` as a PNG, atomically, or say why the path cannot be written."""
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    except OSError as err:
        raise CnnshapeError(
            f"Cannot write the picture {path}: {err.strerror or err}.",
            "Give a path in a folder that exists and you can write to.",
        ) from None


MEMORY_SIZE = (8.0, 5.0)  # inches


def plot_memory(report, path: str | os.PathLike) -> None:
    """The step's predicted peak against batch size: exact steps (dots), the batch-size law
    (line), and the budget with the largest batch that fits it (--fit)."""
    fig, (ax,) = new_figure(MEMORY_SIZE)
    batches = [b for b, _ in report.curve]
    ax.plot(batches, [peak / 1e9 for _, peak in report.curve], "o", label="predicted step peak")
    law = [(report.fixed_bytes + report.per_image_bytes * b) / 1e9 for b in batches]
    ax.plot(
        batches,
        law,
        "-",
        alpha=0.6,
        label=f"{byte_size(report.fixed_bytes)} + {byte_size(report.per_image_bytes)} per image",
    )
    if report.resident_bytes:
        totals = [(peak + report.resident_bytes) / 1e9 for _, peak in report.curve]
        ax.plot(batches, totals, "--", alpha=0.6, label="with the dataset (cnnshape train)")
    if report.budget_bytes:
        ax.axhline(
            report.budget_bytes / 1e9,
            color="tab:red",
            linestyle=":",
            label=f"budget {byte_size(report.budget_bytes)}",
        )
        if report.largest_batch:
            ax.axvline(
                report.largest_batch,
                color="tab:red",
                alpha=0.4,
                label=f"largest batch {report.largest_batch:,}",
            )
    ax.set_xlabel("batch size")
    ax.set_ylabel("GB")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    step = report.step
    ax.set_title(
        f"{report.model}: training step memory ({step.optimizer}, {step.precision}, {step.device})"
    )
    save_png(fig, path)

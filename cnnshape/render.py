"""Pure presentation: reports, comparisons and size scans -> table | JSON | CSV | Markdown.

Every view is first turned into a `View` (title, header, rows of display strings, raw rows,
footer, JSON data); each format then renders any view the same way.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .report import (
    COLUMNS,
    COUNTING_CONVENTION,
    FIELD_CONVENTION,
    FIELD_NOTE,
    MEMORY_CONVENTION,
    Report,
)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


@dataclass
class View:
    title: str
    headers: list[str]
    cells: list[list[str]]  # what a person reads
    raw: list[list[Any]]  # what a script reads (CSV)
    data: dict[str, Any]  # the JSON document
    footer: list[str] = field(default_factory=list)
    numeric: set[int] = field(default_factory=set)  # right-aligned columns


# ---------------------------------------------------------------- numbers and units

def human(n: float) -> str:
    """1234567 -> '1.23 M' (SI prefixes: K = 10^3, M = 10^6, G = 10^9, T = 10^12)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:g}"


def megabytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def shape(s: Sequence[int] | None) -> str:
    return "[" + ", ".join(map(str, s)) + "]" if s is not None else "-"


def _window(v) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else "x".join(map(str, v))


def ratio(r: float | None) -> str:
    return "" if r is None else f"x{r:.3g}"


# ---------------------------------------------------------------- views

_DISPLAY = {
    "output_shape": shape,
    "kernel_size": _window,
    "stride": _window,
    "padding": _window,
    "receptive_field": _window,
    "jump": _window,
    "time_ms": lambda t: "" if t is None else f"{t:.3f}",
    "time_iqr_ms": lambda t: "" if t is None else f"{t:.3f}",
    "params": lambda n: f"{n:,}",
    "macs": human,
    "flops": human,
}


def report_view(report: Report, fields: bool = False) -> View:
    """The walk's table; ``fields`` adds each layer's receptive field and jump (--rf)."""
    shown = {"rf": fields, "time": report.timing is not None, None: True}
    columns = [c for c in COLUMNS if shown[c.option]]
    cells, raw = [], []
    for row in report.rows:
        values = row.to_dict()
        display = [_DISPLAY.get(c.key, str)(values[c.key]) for c in columns]
        display[0] = "  " * (row.depth - 1) + display[0]  # the tree, indented by depth
        cells.append(display)
        raw.append([_csv_value(values[c.key]) for c in columns])
    batch = report.input_shape[0]
    footer = [
        f"Input shape: {shape(report.input_shape)}   Output shape: {shape(report.output_shape)}",
        f"Total params: {report.total_params:,}   Trainable params: {report.trainable_params:,}",
        f"Total MACs: {report.total_macs:,} ({human(report.total_macs)})   "
        f"Total FLOPs: {report.total_flops:,} ({human(report.total_flops)})"
        + (f"   for a batch of {batch}" if batch > 1 else ""),
        f"Parameter memory: {megabytes(report.param_bytes)}   "
        f"Activation memory: {megabytes(report.activation_bytes)}",
        COUNTING_CONVENTION,
        MEMORY_CONVENTION,
    ]
    data = report.to_dict()
    if fields:
        footer[0] += (f"   Receptive field: {_window(report.receptive_field) or 'none'}, "
                      f"jump {_window(report.jump) or 'none'}")
        footer.append(FIELD_CONVENTION)
    else:
        _drop(data, "receptive_field", "jump")
    if report.timing is not None:
        footer[3:3] = [_measured_line(report.timing)]
        footer.append(TIME_CONVENTION)
    else:
        _drop(data, "time_ms", "time_iqr_ms")
        del data["timing"]
    return View(
        title=f"{report.model} at {shape(report.input_shape)}, depth {report.depth}",
        headers=[c.header for c in columns],
        cells=cells,
        raw=raw,
        data=data,
        footer=footer,
        numeric={i for i, c in enumerate(columns) if c.numeric},
    )


def _drop(data: dict, *keys: str) -> None:
    """Optional columns are in the JSON only with their option, as in the table."""
    for doc in (data, *data["layers"]):
        for key in keys:
            doc.pop(key, None)


TIME_CONVENTION = (
    "Times are measured, not derived: real forward passes on a random input, eval mode, "
    "no_grad, median of the repeats after the warm-up runs; IQR = interquartile range. A "
    "layer's time includes its timing hooks (microseconds) and, on CUDA, a synchronize "
    "before and after; the whole forward is timed without hooks, so the layers need not add "
    "up to it. Other runs and machines will differ."
)


def _measured_line(t) -> str:
    threads = f" with {t.threads} CPU threads" if t.device == "cpu" else ""
    return (f"Measured on {t.device}{threads}: forward {t.forward.median_ms:.3f} ms "
            f"median (IQR {t.forward.spread_ms:.3f} ms), {t.images_per_sec:,.1f} images/s at "
            f"batch {t.batch}; {t.repeats} repeats after {t.warmup} warm-up runs")


def compare_view(summaries) -> View:
    headers = ["Model", "Input", "Output", "Params", "MACs", "FLOPs", "Act. memory",
               "Conv+Linear", "RF", "Valid sizes"]
    cells, raw = [], []
    for s in summaries:
        valid = ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in s.valid_sizes)
        valid = valid or "none"
        if s.report is None:
            cells.append([s.model, shape(s.input_shape), "does not fit", "", "", "", "", "",
                          "", valid])
            raw.append([s.model, shape(s.input_shape), "", "", "", "", "", "", "", valid])
            continue
        r, rel = s.report, s.relative or {}
        cells.append([
            s.model, shape(s.input_shape), shape(r.output_shape),
            f"{human(r.total_params)} {ratio(rel.get('params'))}",
            f"{human(r.total_macs)} {ratio(rel.get('macs'))}",
            f"{human(r.total_flops)} {ratio(rel.get('flops'))}",
            f"{megabytes(r.activation_bytes)} {ratio(rel.get('activation_bytes'))}",
            str(r.num_weight_layers), _window(r.receptive_field), valid,
        ])
        raw.append([s.model, shape(s.input_shape), shape(r.output_shape), r.total_params,
                    r.total_macs, r.total_flops, r.activation_bytes, r.num_weight_layers,
                    _window(r.receptive_field), valid])
    failures = [f"{s.model}: {s.error}" for s in summaries if s.report is None]
    footer = ["xN: relative to the first model that fits. " + COUNTING_CONVENTION,
              "Conv+Linear: number of convolution and Linear layers executed "
              "(VGG-11 has 11; ResNet-18 counts its three 1x1 shortcut convolutions too).",
              "RF: receptive field (HxW) of the last layer before global pooling. " + FIELD_NOTE,
              *failures]
    view = View("Comparison", headers, cells, raw, {"models": [s.to_dict() for s in summaries]},
                footer, numeric={3, 4, 5, 6, 7})
    timed = [s.timing for s in summaries if s.timing is not None]
    if timed:
        _add_throughput(view, summaries, timed[0])
    return view


def _add_throughput(view: View, summaries, timing) -> None:
    """The measured images/s column (compare --time), after the derived figures."""
    at = view.headers.index("RF")
    view.headers.insert(at, "Images/s")
    for cells, raw, s in zip(view.cells, view.raw, summaries, strict=True):
        rate = s.timing.images_per_sec if s.timing else None
        cells.insert(at, "" if rate is None else f"{rate:,.1f}")
        raw.insert(at, "" if rate is None else round(rate, 1))
    view.numeric.add(at)
    view.footer[3:3] = [
        f"Images/s: measured, not derived: batch {timing.batch} on {timing.device}, batch / "
        f"median forward time of {timing.repeats} runs after {timing.warmup} warm-up runs."]


def sizes_view(scan) -> View:
    cells, raw = [], []
    for lo, hi in scan.valid:
        cells.append([f"{lo}-{hi}" if lo != hi else str(lo), "accepted", "", ""])
        raw.append([lo, hi, "accepted", "", ""])
    for r in scan.invalid:
        cells.append([f"{r.lo}-{r.hi}" if r.lo != r.hi else str(r.lo), "refused", r.layer,
                      r.reason])
        raw.append([r.lo, r.hi, "refused", r.layer, r.reason])
    order = sorted(range(len(cells)), key=lambda i: raw[i][0])
    return View(
        title=f"{scan.model}: square inputs 1x{scan.in_channels}xSxS, S = 1..{scan.checked_up_to}",
        headers=["Sizes", "Result", "First layer to refuse", "Why (at the range's first size)"],
        cells=[cells[i] for i in order],
        raw=[raw[i] for i in order],
        data=scan.to_dict(),
        footer=[f"Accepted: {scan.describe_valid()}"],
    )


def list_view(entries) -> View:
    """entries: (spec, report at the spec's default size)."""
    headers = ["Name", "Aliases", "Input", "Params", "MACs", "FLOPs", "Book section",
               "Description"]
    cells, raw, models = [], [], []
    for spec, report in entries:
        size = f"{spec.size}x{spec.size}"
        cells.append([spec.name, ", ".join(spec.aliases), size, f"{report.total_params:,}",
                      human(report.total_macs), human(report.total_flops), spec.section,
                      spec.description])
        raw.append([spec.name, " ".join(spec.aliases), spec.size, report.total_params,
                    report.total_macs, report.total_flops, spec.section, spec.description])
        models.append({"name": spec.name, "aliases": list(spec.aliases), "size": spec.size,
                       "params": report.total_params, "macs": report.total_macs,
                       "flops": report.total_flops, "section": spec.section,
                       "description": spec.description,
                       "recipe": {"lr": spec.recipe.lr, "batch_size": spec.recipe.batch_size,
                                  "epochs": spec.recipe.epochs}})
    footer = ["MACs/FLOPs for one 1-channel image at the default input size. "
              + COUNTING_CONVENTION]
    return View("Registered models", headers, cells, raw, {"models": models}, footer,
                numeric={3, 4, 5})


def torchvision_list_view(entries) -> View:
    """entries: (name, published weights metadata). Figures are torchvision's, not walked."""
    headers = ["Name", "Params", "GMACs", "Min size", "Inspect as"]
    cells, raw, models = [], [], []
    for name, meta in entries:
        params, gmacs, min_size = meta.get("num_params"), meta.get("_ops"), meta.get("min_size")
        low = f"{min_size[0]}x{min_size[1]}" if min_size else ""
        cells.append([name, f"{params:,}" if params else "", f"{gmacs:g}" if gmacs else "",
                      low, f"torchvision:{name}"])
        raw.append([name, params or "", gmacs or "", low, f"torchvision:{name}"])
        models.append({"name": name, "params": params, "gmacs": gmacs,
                       "min_size": list(min_size) if min_size else None})
    footer = ["Params, GMACs (at the weights' crop size, 224 for most; torchvision calls them "
              "GFLOPS) and min size: torchvision's published metadata of the DEFAULT weights, "
              "read offline. `cnnshape show torchvision:NAME` walks the model itself."]
    return View("torchvision classification models", headers, cells, raw, {"models": models},
                footer, numeric={1, 2})


def timm_list_view(names: list[str]) -> View:
    return View("timm models", ["Name", "Inspect as"],
                [[n, f"timm:{n}"] for n in names], [[n, f"timm:{n}"] for n in names],
                {"models": [{"name": n} for n in names]})


# ---------------------------------------------------------------- formats

def table(view: View):
    t = Table(title=view.title, box=box.SIMPLE_HEAD, title_justify="left")
    for i, header in enumerate(view.headers):
        t.add_column(header, justify="right" if i in view.numeric else "left", no_wrap=True)
    for row in view.cells:
        t.add_row(*row)
    return Group(t, *(Text(line, style="dim" if i >= 4 else "") for i, line in
                      enumerate(view.footer)))


def to_string(view: View, fmt: Format) -> str:
    """JSON, CSV or Markdown as text (the table format goes through rich, see `table`)."""
    if fmt is Format.json:
        return _compact_number_lists(json.dumps(view.data, indent=2))
    if fmt is Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(view.headers)
        writer.writerows(view.raw)
        return buffer.getvalue().rstrip("\n")
    if fmt is Format.markdown:
        lines = [f"**{view.title}**", "", "| " + " | ".join(view.headers) + " |",
                 "|" + "|".join("---:" if i in view.numeric else "---"
                                for i in range(len(view.headers))) + "|"]
        lines += ["| " + " | ".join(c.strip().replace("|", "\\|") for c in row) + " |"
                  for row in view.cells]
        return "\n".join(lines + [""] + view.footer)
    raise ValueError(f"{fmt} is rendered by rich, not as a string")


def _compact_number_lists(text: str) -> str:
    """Put shapes like [1, 64, 24, 24] on one line instead of one number per line."""
    return re.sub(r"\[([-\d\s,.e]+)\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def _csv_value(v):
    if isinstance(v, list):
        return "x".join(map(str, v))
    return "" if v is None else v


# ---------------------------------------------------------------- Report display hooks

def report_renderable(report: Report):
    return table(report_view(report))


def to_text(report: Report, width: int = 140) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(report_renderable(report))
    return console.export_text()


def to_html(report: Report) -> str:
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(report_renderable(report))
    return console.export_html(inline_styles=True)

"""What inspection shows: reports, comparisons, size scans and listings as `View`s.

Each table is a column list applied to items (layer rows, model summaries, size ranges,
registry entries); ``cnnshape.views`` renders any view as a table, JSON, CSV or Markdown.
Adding a column is one entry in a column list.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

from rich.console import Console

from .._common import byte_size, human, megabytes
from ..views import Column, Note, View, choose, table
from .report import COUNTING_CONVENTION, FIELD_CONVENTION, FIELD_NOTE, MEMORY_CONVENTION, Report

# ---- numbers and units ------------------------------------------------------------------------


def shape(s: Sequence[int] | None) -> str:
    return "[" + ", ".join(map(str, s)) + "]" if s is not None else "-"


def window(v) -> str:
    """A kernel, stride, padding or field: 3x3 (or 'same')."""
    if v is None:
        return ""
    return v if isinstance(v, str) else "x".join(map(str, v))


def ratio(r: float | None) -> str:
    """x0.28, x12.3, x2,250: three significant digits, never an exponent; '–' where there
    is nothing to divide by (the first model has no parameters)."""
    if r is None:
        return "–"
    if r <= 0:
        return "x0"
    decimals = max(0, 2 - math.floor(math.log10(r)))
    text = f"{r:,.{decimals}f}"
    return "x" + (text.rstrip("0").rstrip(".") if "." in text else text)


def milliseconds(t: float | None) -> str:
    return "" if t is None else f"{t:.3f}"


def size_range(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _output_shapes(row) -> str:
    if row.output_shape is None and row.output_shapes:
        return "; ".join(map(shape, row.output_shapes))
    return shape(row.output_shape)


def _window_column(header: str, attribute: str, **options) -> Column:
    """A kernel, stride, padding, field or jump (3x3): a figure, never wrapped."""
    return Column(
        header,
        lambda r: getattr(r, attribute),
        lambda r: window(getattr(r, attribute)),
        breakable=False,
        **options,
    )


# ---- show -------------------------------------------------------------------------------------

LAYER_COLUMNS: tuple[Column, ...] = (
    Column("Layer", lambda r: r.name, lambda r: "  " * (r.depth - 1) + r.name),  # a tree
    Column("Type", lambda r: r.type, dispensable=1),
    Column("Output shape", lambda r: r.output_shape or r.output_shapes, _output_shapes),
    _window_column("Kernel", "kernel_size", dispensable=4),
    _window_column("Stride", "stride", dispensable=5),
    _window_column("Padding", "padding", dispensable=6),
    Column("Params", lambda r: r.params, lambda r: f"{r.params:,}", numeric=True),
    Column("MACs", lambda r: r.macs, lambda r: human(r.macs), numeric=True),
    # FLOPs = 2 x MACs (the footer says so): the first to go in a narrow terminal.
    Column("FLOPs", lambda r: r.flops, lambda r: human(r.flops), numeric=True, dispensable=8),
    _window_column("RF", "receptive_field", option="rf"),  # asked for: kept
    _window_column("Jump", "jump", option="rf", dispensable=7),
    Column(
        "Time (ms)",
        lambda r: r.time_ms,
        lambda r: milliseconds(r.time_ms),
        numeric=True,
        option="time",
    ),
    Column(
        "IQR (ms)",
        lambda r: r.time_iqr_ms,
        lambda r: milliseconds(r.time_iqr_ms),
        numeric=True,
        option="time",
        dispensable=3,
    ),
    Column(
        "Saved for backward",
        lambda r: r.saved_bytes,
        lambda r: "" if r.saved_bytes is None else byte_size(r.saved_bytes),
        numeric=True,
        option="memory",
    ),
)


def report_view(report: Report, fields: bool = False) -> View:
    """The walk's table; ``fields`` adds each layer's receptive field and jump (--rf)."""
    timed, predicted = report.timing is not None, report.step_memory is not None
    batch = _batch(report)
    facts = [
        _io_line(report),
        f"Total params: {report.total_params:,}   Trainable params: {report.trainable_params:,}",
        f"Total MACs: {report.total_macs:,} ({human(report.total_macs)})   "
        f"Total FLOPs: {report.total_flops:,} ({human(report.total_flops)})"
        + (f"   for a batch of {batch}" if batch > 1 else "")
        + ("" if report.complete else "   (partial: see below)"),
        f"Parameter memory: {megabytes(report.param_bytes)}   "
        f"Activation memory: {megabytes(report.activation_bytes)}",
    ]
    if not report.complete:
        facts.append(uncounted_line(report))
    if report.fallback:
        facts.append(f"Note: {report.fallback}.")
    notes = [Note(counting_note(report.convention)), Note(MEMORY_CONVENTION)]
    data = report.to_dict()
    if fields:
        facts[0] += (
            f"   Receptive field: {window(report.receptive_field) or 'none'}, "
            f"jump {window(report.jump) or 'none'}"
        )
        notes.append(Note(FIELD_CONVENTION))
    else:
        _drop(data, "receptive_field", "jump")
    if timed:
        facts.insert(3, _measured_line(report.timing))
        notes.append(Note(TIME_CONVENTION))
    else:
        _drop(data, "time_ms", "time_iqr_ms")
        del data["timing"]
    if predicted:
        step = report.step_memory
        facts.append(
            f"Training step (sgd, {step.precision}, {step.device}): peak {byte_size(step.peak)} "
            f"during {step.peak_phase}, {byte_size(step.saved_activations)} saved for backward "
            "(predicted; `cnnshape memory` for the breakdown)"
        )
    else:
        _drop(data, "saved_bytes")
        del data["train_step"]
    return View(
        title=f"{report.model} at {_inputs_text(report)}, depth {report.depth}",
        columns=choose(LAYER_COLUMNS, rf=fields, time=timed, memory=predicted),
        items=report.rows,
        data=data,
        footer=facts + notes,
    )


def counting_note(convention: str) -> str:
    """What the MACs count: the default's sentence, or the chosen convention's."""
    if convention == "torch":
        return COUNTING_CONVENTION
    from .conventions import CONVENTIONS  # only a walk under that convention gets here

    return (
        f"MACs as {convention} counts them: {CONVENTIONS[convention].description} FLOPs = 2 x MACs."
    )


def uncounted_line(report: Report) -> str:
    ops = ", ".join(f"{op} x {calls}" for op, calls in report.uncounted.items())
    return (
        f"Partial count: ops that compute but that {report.convention} has no formula for: "
        f"{ops} (--strict makes this an error)."
    )


def _single(report: Report) -> bool:
    """One positional input and one output tensor: the book's case, said as it always was."""
    inputs, outputs = report.inputs, report.outputs
    one = len(inputs) == 1 and not inputs[0]["name"] and inputs[0].get("count") is None
    return one and len(outputs) == 1


def _batch(report: Report) -> int:
    """The batch the totals are for: a list input's length (a detector's images), else the
    first input's first axis."""
    count = report.inputs[0].get("count") if report.inputs else None
    return count if count is not None else report.input_shape[0]


def _inputs_text(report: Report) -> str:
    """[1, 1, 96, 96]; several: image=[1, 3, 8, 8], [1, 5]; a dtype other than float32 too."""
    if not report.inputs or _single(report) and report.inputs[0]["dtype"] == "float32":
        return shape(report.input_shape)
    # A list of tensors (a detector's images): "a list of 2 x [3, 800, 800]".
    return ", ".join(_tensor_text(i, f"{i['name']}=" if i["name"] else "") for i in report.inputs)


def _tensor_text(tensor: dict, prefix: str) -> str:
    dtype = "" if tensor["dtype"] == "float32" else f" {tensor['dtype']}"
    listed = f"a list of {tensor['count']} x " if tensor.get("count") is not None else ""
    return f"{prefix}{listed}{shape(tensor['shape'])}{dtype}"


def _io_line(report: Report) -> str:
    if _single(report) or not report.outputs:
        inputs = _inputs_text(report)
        return f"Input shape: {inputs}   Output shape: {shape(report.output_shape)}"
    outputs = ", ".join(_tensor_text(o, f"{o['path']}: ") for o in report.outputs)
    return f"Inputs: {_inputs_text(report)}   Outputs: {outputs}"


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
    return (
        f"Measured on {t.device}{threads}: forward {t.forward.median_ms:.3f} ms "
        f"median (IQR {t.forward.spread_ms:.3f} ms), {t.images_per_sec:,.1f} images/s at "
        f"batch {t.batch}; {t.repeats} repeats after {t.warmup} warm-up runs"
    )


# ---- compare ----------------------------------------------------------------------------------


def _figure(
    header: str, key: str, attribute: str, text: Callable[[int], str], dispensable: int = 0
) -> Column:
    """A derived figure of a fitting model, with its ratio to the first one (x0.28)."""

    def value(s):
        return getattr(s.report, attribute) if s.report is not None else None

    def shown(s):
        if s.report is None:
            return ""
        return f"{text(value(s))} {ratio((s.relative or {}).get(key))}"

    return Column(header, value, shown, numeric=True, dispensable=dispensable)


def _images_per_sec(s) -> float | None:
    return round(s.timing.images_per_sec, 1) if s.timing is not None else None


def _per_second(rate: float | None) -> str:
    return "" if rate is None else f"{rate:,.1f}"


def _valid_sizes(s) -> str:
    if s.valid_sizes is None:
        return "–"  # not scanned
    return ", ".join(size_range(lo, hi) for lo, hi in s.valid_sizes) or "none"


def _output(s) -> str:
    return shape(s.report.output_shape) if s.report is not None else "does not fit"


COMPARE_COLUMNS: tuple[Column, ...] = (
    Column("Model", lambda s: s.model),
    Column("Input", lambda s: s.input_shape, lambda s: shape(s.input_shape)),
    Column("Output", lambda s: s.report and s.report.output_shape, _output),
    _figure("Params", "params", "total_params", human),
    _figure("MACs", "macs", "total_macs", human),
    _figure("FLOPs", "flops", "total_flops", human, dispensable=5),
    _figure("Act. memory", "activation_bytes", "activation_bytes", megabytes, dispensable=2),
    Column(
        "Conv+Linear",
        lambda s: s.report and s.report.num_weight_layers,
        numeric=True,
        dispensable=4,
    ),
    Column(
        "Images/s",
        _images_per_sec,
        lambda s: _per_second(_images_per_sec(s)),
        numeric=True,
        option="time",
    ),
    Column(
        "Train peak",
        lambda s: s.train_peak,
        lambda s: "" if s.train_peak is None else byte_size(s.train_peak),
        numeric=True,
        option="memory",
    ),
    Column(
        "RF",
        lambda s: s.report and s.report.receptive_field,
        lambda s: s.report and window(s.report.receptive_field) or "",
        breakable=False,
        dispensable=3,
    ),
    Column("Valid sizes", _valid_sizes, dispensable=1),
)


def compare_view(summaries) -> View:
    timed = next((s.timing for s in summaries if s.timing is not None), None)
    predicted = any(s.train_peak is not None for s in summaries)
    walked = [s.report for s in summaries if s.report is not None]
    convention = walked[0].convention if walked else "torch"
    notes = [
        Note("xN: relative to the first model that fits. " + counting_note(convention)),
        Note(
            "Conv+Linear: number of convolution and Linear layers executed "
            "(VGG-11 has 11; ResNet-18 counts its three 1x1 shortcut convolutions too)."
        ),
        Note(
            "RF: receptive field (per spatial axis: HxW for an image) of the last layer "
            "before global pooling. " + FIELD_NOTE
        ),
    ]
    if timed is not None:
        notes.append(
            Note(
                f"Images/s: measured, not derived: batch {timed.batch} on {timed.device}, batch / "
                f"median forward time of {timed.repeats} runs after {timed.warmup} warm-up runs."
            )
        )
    if predicted:
        notes.append(
            Note(
                "Train peak: predicted peak memory of one training step at each model's input "
                "(plain SGD, train's precision), not measured; `cnnshape memory MODEL` for "
                "the breakdown and the largest batch that fits."
            )
        )
    failures = [f"{s.model}: {s.error}" for s in summaries if s.report is None]
    failures += [f"{r.model}: {uncounted_line(r)}" for r in walked if not r.complete]
    return View(
        "Comparison",
        choose(COMPARE_COLUMNS, time=timed is not None, memory=predicted),
        summaries,
        {"models": [s.to_dict() for s in summaries]},
        footer=notes + failures,
    )


# ---- the result cache -------------------------------------------------------------------------

CACHE_COLUMNS = (
    Column("Folder", lambda c: c.directory),
    Column("Entries", lambda c: c.entries, lambda c: f"{c.entries:,}", numeric=True),
    Column("Usable", lambda c: c.current, lambda c: f"{c.current:,}", numeric=True),
    Column("Size", lambda c: c.bytes, lambda c: byte_size(c.bytes), numeric=True),
    Column("Bound", lambda c: c.max_bytes, lambda c: byte_size(c.max_bytes), numeric=True),
)


def cache_view(info, removed: bool = False) -> View:
    """`cache info`, or with ``removed`` what `cache clear` removed."""
    note = Note(
        "Usable: entries of this cnnshape and these torch/torchvision versions; when the "
        "cache reaches its bound, the others go first, then the least recently used."
    )
    title = "Removed from the result cache" if removed else "Result cache"
    return View(title, list(CACHE_COLUMNS), [info], info.to_dict(), [] if removed else [note])


# ---- sizes ------------------------------------------------------------------------------------

SIZE_COLUMNS: tuple[Column, ...] = (
    Column("Sizes", lambda r: size_range(r.lo, r.hi), breakable=False),
    Column("Result", lambda r: "accepted" if r.layer is None else "refused"),
    Column("First layer to refuse", lambda r: r.layer),
    Column("Why (at the range's first size)", lambda r: r.reason),
)


def _scanned_inputs(scan) -> str:
    return {1: "inputs", 2: "square inputs"}.get(scan.pattern.count("xS"), "inputs")


def _accepted(scan) -> str:
    if scan.valid:
        return scan.describe_valid()
    noun = {1: "length", 2: "square size"}.get(scan.pattern.count("xS"), "size")
    return f"no {noun} up to {scan.checked_up_to}"


def sizes_view(scan) -> View:
    return View(
        title=f"{scan.model}: {_scanned_inputs(scan)} {scan.pattern}, S = 1..{scan.checked_up_to}",
        columns=list(SIZE_COLUMNS),
        items=scan.ranges(),
        data=scan.to_dict(),
        footer=[f"Accepted: {_accepted(scan)}"],
    )


# ---- list -------------------------------------------------------------------------------------

REGISTRY_COLUMNS: tuple[Column, ...] = (
    Column("Name", lambda s: s.name, breakable=False),  # what a person types: kept whole
    Column("Aliases", lambda s: " ".join(s.aliases), lambda s: ", ".join(s.aliases)),
    Column("Input", lambda s: s.size, lambda s: f"{s.size}x{s.size}", breakable=False),
    Column("Params", lambda s: s.params, lambda s: f"{s.params:,}", numeric=True),
    Column("MACs", lambda s: s.macs, lambda s: human(s.macs), numeric=True),
    Column("FLOPs", lambda s: s.flops, lambda s: human(s.flops), numeric=True, dispensable=2),
    Column("Book section", lambda s: s.section),
    Column("Description", lambda s: s.description, dispensable=1),
)


def list_view(specs) -> View:
    """The registry: names, defaults and checked facts, from the registry's metadata alone."""
    models = [
        {
            "name": s.name,
            "aliases": list(s.aliases),
            "size": s.size,
            "params": s.params,
            "macs": s.macs,
            "flops": s.flops,
            "section": s.section,
            "description": s.description,
            "recipe": {
                "lr": s.recipe.lr,
                "batch_size": s.recipe.batch_size,
                "epochs": s.recipe.epochs,
            },
        }
        for s in specs
    ]
    note = "MACs/FLOPs for one 1-channel image at the default input size. " + COUNTING_CONVENTION
    return View(
        "Registered models", list(REGISTRY_COLUMNS), specs, {"models": models}, footer=[Note(note)]
    )


TORCHVISION_COLUMNS: tuple[Column, ...] = (
    Column("Name", lambda e: e[0]),
    Column("Family", lambda e: e[1]),
    Column(
        "Params",
        lambda e: e[2].get("num_params"),
        lambda e: f"{e[2]['num_params']:,}" if e[2].get("num_params") else "",
        numeric=True,
    ),
    Column(
        "GMACs",
        lambda e: e[2].get("_ops"),
        lambda e: f"{e[2]['_ops']:g}" if e[2].get("_ops") else "",
        numeric=True,
    ),
    Column("Min size", lambda e: window(e[2].get("min_size")), breakable=False),
    Column("Inspect as", lambda e: f"torchvision:{e[0]}", dispensable=1),
)


def torchvision_list_view(entries) -> View:
    """entries: (name, family, published weights metadata). Figures are torchvision's, not
    walked."""
    models = [
        {
            "name": name,
            "family": family,
            "params": meta.get("num_params"),
            "gmacs": meta.get("_ops"),
            "min_size": list(meta["min_size"]) if meta.get("min_size") else None,
        }
        for name, family, meta in entries
    ]
    note = (
        "Params, GMACs (torchvision calls them GFLOPS) and min size: torchvision's published "
        "metadata of the DEFAULT weights, read offline, measured at each model's documented "
        "input (the weights' crop size, 224 for most classifiers; 520 for segmentation; "
        "a list of one image for detection; 16-frame clips for video; two 512x512 images for "
        "optical flow). `cnnshape show torchvision:NAME` walks the model itself at that input."
    )
    return View(
        "torchvision models",
        list(TORCHVISION_COLUMNS),
        entries,
        {"models": models},
        footer=[Note(note)],
    )


TIMM_COLUMNS = (Column("Name", lambda n: n), Column("Inspect as", lambda n: f"timm:{n}"))


def timm_list_view(names: list[str]) -> View:
    return View("timm models", list(TIMM_COLUMNS), names, {"models": [{"name": n} for n in names]})


# ---- Report display hooks ---------------------------------------------------------------------


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


# ---- memory -----------------------------------------------------------------------------------

STEP_MEMORY_CONVENTION = (
    "Predicted, not measured: the training step cnnshape train runs (zero_grad, forward and "
    "loss under autocast, backward, optimizer step) on fake tensors, every storage's "
    "allocation and release tracked; the steady state is the 2nd step and every later one. "
    "Not modelled: scratch a kernel frees before it returns (oneDNN's or im2col's on the CPU, "
    "cuDNN's and cuBLAS's on CUDA: the Bound line), the CUDA allocator's fragmentation beyond "
    "its 512-byte blocks, the CUDA context. Measured gaps: benchmarks/RESULTS.md."
)
_KIND_LABELS = {
    "parameters": "Parameters",
    "buffers": "Buffers (BatchNorm statistics)",
    "gradients": "Gradients",
    "optimizer state": "Optimizer state",
    "inputs": "Input batch and labels",
    "activations": "Activations kept for backward",
    "backward temporaries": "Backward temporaries",
    "optimizer temporaries": "Optimizer temporaries",
}
MEMORY_COLUMNS: tuple[Column, ...] = (
    Column("Live at the peak", lambda k: _KIND_LABELS.get(k[0], k[0])),
    Column("Bytes", lambda k: k[1], lambda k: f"{k[1]:,}", numeric=True),
    Column("MB", lambda k: round(k[1] / 1e6, 2), lambda k: f"{k[1] / 1e6:,.2f}", numeric=True),
    Column("Share", lambda k: round(k[2], 4), lambda k: f"{k[2]:.1%}", numeric=True),
)


def memory_view(report) -> View:
    """A training step's predicted peak: what is live at it, and what to do about it."""
    step = report.step
    kinds = [kind for kind in _KIND_LABELS if step.at_peak.get(kind)]
    kinds += [kind for kind in step.at_peak if kind not in _KIND_LABELS and step.at_peak[kind]]
    items = [(kind, step.at_peak[kind], step.at_peak[kind] / step.peak) for kind in kinds]
    items.append(("Peak of the step", step.peak, 1.0))
    facts = [
        f"Peak: {byte_size(step.peak)} during {step.peak_phase} (steady state: the 2nd step and "
        f"every later one); the first step: {byte_size(step.first_step_peak)} during "
        f"{step.first_step_peak_phase}.",
        f"At the end of the forward autograd holds {byte_size(step.saved_activations)} for "
        f"backward; the backward pass adds up to {byte_size(step.backward_transient)} on top.",
        f"Per batch: {byte_size(report.fixed_bytes)} + {byte_size(report.per_image_bytes)} per "
        "image (the batch-size law, from exact steps at batches 8 and 16).",
        f"FLOPs of the step: {human(step.forward_flops)} forward (with the loss), "
        f"{human(step.backward_flops)} backward, {human(step.optimizer_flops)} in the "
        f"optimizer: {human(step.flops)} (FlopCounterMode's formulas; FLOPs = 2 x MACs).",
    ]
    if report.resident_bytes is not None:
        facts.append(
            f"cnnshape train also keeps Fashion-MNIST on the device "
            f"({byte_size(report.resident_bytes)}): a run at batch {step.input_shape[0]} needs "
            f"{byte_size(report.train_total)}."
        )
    if report.budget_bytes is not None:
        facts.append(_fit_line(report))
    facts.append(_bound_line(report))
    if report.measured is not None:
        facts.append(_allocator_line(report))
    heaviest = sorted(step.layers, key=lambda layer: -layer.saved_bytes)[:3]
    if heaviest:
        facts.append(
            "Saved for backward the most: "
            + ", ".join(f"{x.name} ({x.type}) {byte_size(x.saved_bytes)}" for x in heaviest)
            + "  (show --memory: every layer)"
        )
    return View(
        f"{report.model}: one training step at {shape(step.input_shape)}, {step.optimizer}, "
        f"{step.precision}, on {step.device}",
        list(MEMORY_COLUMNS),
        items,
        report.to_dict(),
        footer=facts + [Note(STEP_MEMORY_CONVENTION)],
    )


def _bound_line(report) -> str:
    """The rule, the same on every machine (the range it gives depends on the threads)."""
    bound = report.bound
    if bound is None or bound.above is None:
        why = bound.basis if bound else "not measured"
        return f"Bound: none stated on {report.step.device} ({why})."
    above = bound.above[report.step.precision]
    return (
        f"Bound: the allocator's peak is this prediction -{bound.below_bytes} B to "
        f"+max({above:.0%}, {bound.per_thread_bytes // 1024} KiB per thread): kernel scratch, "
        f"{bound.basis}."
    )


def _allocator_line(report) -> str:
    measured, peak, (low, high) = report.measured, report.step.peak, report.allocator_range
    inside = "inside" if low <= measured.peak <= high else "OUTSIDE (please report it)"
    return (
        f"Measured on this CPU (the real step, by the allocator's own events): "
        f"{byte_size(measured.peak)}, predicted / measured {peak / measured.peak:.3f}, {inside} "
        f"the bound ({byte_size(low)} to {byte_size(high)} at {report.threads} threads); "
        f"without kernel scratch (what no tensor holds): {byte_size(measured.tensor_peak)}."
    )


def _fit_line(report) -> str:
    what = "a cnnshape train run (step and dataset)" if report.resident_bytes else "the step"
    budget = f"{byte_size(report.budget_bytes)} ({report.budget_source})"
    if not report.largest_batch:
        return f"Not even one image fits: {what} at batch 1 needs more than {budget}."
    line = f"Largest batch for which {what} fits in {budget}: {report.largest_batch:,}"
    if report.budget_cap is not None:
        # Torch counts bytes in int64: a bigger budget cannot be searched (and is no device).
        cap = byte_size(report.budget_cap)
        return f"{line}, a cap: torch counts bytes in int64, so the budget was searched as {cap}."
    return line + "."

"""The library calls the CLI makes: the inspection path (show, compare, sizes) and the training
path (train, resume, evaluate), joined here and nowhere else.

The two paths never import each other. Where training needs inspection (the header's FLOPs
per image, and refusing an input size the model cannot take, with the reason and the sizes it
does take) this module walks the model and hands the result to the run.

Importing this module does not import torch: each call imports what it uses, so an answer
found in the result cache (``cache=True``, what the CLI asks for) costs no torch at all.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._common import default_precision
from .errors import CnnshapeError, WalkError
from .inspect import cache as result_cache
from .inspect.inputs import InputSpec, as_specs, check, check_names
from .inspect.report import DEFAULT_UP_TO, Report, SizeScan
from .registry import get_spec, is_reference, list_specs, match_specs
from .train.config import TrainSettings

if TYPE_CHECKING:
    from torch import nn

    from .inspect.fit import MemoryReport
    from .inspect.sources import Target
    from .inspect.timing import Timing
    from .train.evaluate import EvalResult
    from .train.events import OnEvent
    from .train.run import Plan, RunResult

# ---- inspection -------------------------------------------------------------------------------


def list_models() -> list[str]:
    """Names of every registered architecture, in the book's order."""
    return [spec.name for spec in list_specs()]


def torchvision_entries() -> list[tuple[str, str, dict]]:
    """Every torchvision model: its name, its family and its DEFAULT weights' published
    metadata."""
    from .inspect.sources import torchvision_meta
    from .inspect.torchvision_models import families

    return [(name, family, torchvision_meta(name)) for name, family in families().items()]


def get_model(name: str, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """Build a registered network with real (PyTorch default) weights."""
    return get_spec(name).build(in_channels=in_channels, num_classes=num_classes)


def summary(
    model: nn.Module,
    input_size: Any = None,
    depth: int = 1,
    *,
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    ops: bool = False,
    convention: str = "torch",
    name: str | None = None,
) -> Report:
    """Walk ``model`` on dummy inputs, as torchinfo's ``summary`` takes them.

    ``input_size``: one shape (``(1, 1, 224, 224)``) or a list of shapes, one per positional
    input. ``args`` and ``kwargs``: positional and keyword inputs, each a shape, a tensor (its
    shape and dtype; its values are not used) or an `InputSpec`. ``ops`` adds functional ops
    (``cat``, ``add``, ``relu``) as rows. ``convention``: how MACs are counted, ``torch``
    (FlopCounterMode's), ``fvcore`` or ``ptflops`` (those tools' totals); the report names
    the ops the convention has no formula for. Returns a Report that prints as a table (terminal,
    Jupyter) and has ``.to_dict()``. If a layer refuses the input, raises WalkError naming it
    and, for inputs with spatial axes, the sizes the network does accept.
    """
    from .inspect.sizes import walk_explained
    from .inspect.walk import DataDependent

    specs = _specs(input_size, args, kwargs)
    options = {"ops": ops, "convention": convention}
    try:
        return walk_explained(model, specs, depth, name=name, **options)
    except DataDependent as needs_values:
        if any(p.is_meta for p in model.parameters()):
            raise CnnshapeError(
                f"{name or type(model).__name__} reads its tensors' values ({needs_values}): "
                "a model on the meta device cannot be walked.",
                "Build it with real weights (on the CPU): the walk then runs it for real.",
            ) from None
        return _walked_for_real(model, specs, depth, name, needs_values, options)


@contextlib.contextmanager
def _seeded() -> Iterator[None]:
    """Random numbers from seed 0, the caller's generator state untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _walked_for_real(model, specs, depth, name, needs_values, options) -> Report:
    """The walk on real random inputs (seed 0), saying why: the honest fallback for a model
    whose shapes depend on values (a detector's non-maximum suppression)."""

    from .inspect.walk import walk

    with _seeded():
        report = walk(model, specs, depth, name=name, real=True, **options)
    report.fallback = (
        f"walked on real tensors on the CPU (random weights and inputs, seed 0): "
        f"{needs_values} reads its tensors' values, which meta tensors do not have; the "
        "shapes after it depend on them"
    )
    return report


def _specs(input_size, args=(), kwargs=None) -> list[InputSpec]:
    specs = as_specs(input_size) if input_size is not None else []
    specs += as_specs(list(args)) if args else []
    for key, value in (kwargs or {}).items():
        (spec,) = as_specs([value])
        specs.append(replace(spec, name=key))
    if not specs:
        raise CnnshapeError("No input to walk the model with.", "Give input_size, args or kwargs.")
    return check_names(specs)


def build_for_inspection(
    ref: str, in_channels: int | None = None, num_classes: int | None = None
) -> tuple[Target, nn.Module, int]:
    """Resolve a model reference and build it on the meta device: no weights are allocated
    or initialized (VGG: 0.5 GB, 2 s). Returns the target, the model and its input channels.
    """
    from .inspect.sources import resolve

    _check_positive(in_channels=in_channels, classes=num_classes)
    target = resolve(ref)
    model, channels = target.build(in_channels, num_classes)
    return target, model, channels


@dataclass(frozen=True)
class TimeSettings:
    """How to measure (--time): where, and how many runs to discard and to keep."""

    device: str = "auto"  # auto, cpu, cuda, cuda:N
    warmup: int = 3
    repeats: int = 20


@result_cache.cached(
    "show", Report, measured=lambda a: a["timed"] is not None or a["memory_on"] is not None
)
def show(
    name: str,
    size: tuple[int, int] | None = None,
    *,
    batch: int = 1,
    in_channels: int | None = None,
    num_classes: int | None = None,
    inputs: list[InputSpec] | None = None,
    depth: int = 1,
    ops: bool = False,
    convention: str = "torch",
    strict: bool = False,
    timed: TimeSettings | None = None,
    memory_on: str | None = None,
    cache: bool = False,
) -> Report:
    """Walk a model at ``size`` (default: the size the book, or ImageNet, uses).

    ``name``: a registry name, ``torchvision:NAME``, ``timm:NAME``, ``file.py:Net`` or
    ``package.module:factory`` (see cnnshape.inspect.sources). Channels and classes default to
    the model's own (registry: 1 and 10; torchvision and timm: 3 and 1000). ``inputs`` (specs
    of any rank, dtype and number, see ``inspect.inputs``) replace the one image of ``size``,
    ``batch`` and ``in_channels``. ``ops`` adds functional ops as rows. ``convention``: how
    MACs are counted (torch, fvcore, ptflops); ``strict`` refuses a partial count (ops the
    convention has no formula for). ``timed`` also runs
    the model for real and fills ``report.timing`` and each layer's measured time.
    ``memory_on`` (a device) predicts a training step's memory (`memory`, with plain SGD) and
    fills ``report.step_memory`` and what each row saves for backward. ``cache``: answer from
    (and remember in) the result cache (``cnnshape.inspect.cache``).
    """
    target, model, specs = _target_and_inputs(name, size, batch, in_channels, num_classes, inputs)
    report = _walk_target(
        target, model, specs, in_channels, num_classes, depth, ops=ops, convention=convention
    )
    if strict:
        _check_complete(report)
    if memory_on is not None:
        report.step_memory = _train_step(model, report, memory_on)
        for row in report.rows:
            row.saved_bytes = sum(
                layer.saved_bytes
                for layer in report.step_memory.layers
                if layer.name == row.name or layer.name.startswith(row.name + ".")
            )
    if timed is not None:
        layers = [row for row in report.rows if row.kind == "module"]
        report.timing, calls = _measure(
            target, in_channels, num_classes, specs, timed, [row.name for row in layers]
        )
        for row, (layer, measured) in zip(layers, calls, strict=True):
            assert row.name == layer, "the timed forward ran other layers than the walk"
            row.time_ms, row.time_iqr_ms = measured.median_ms, measured.spread_ms
    return report


def _walk_target(
    target, model, specs, in_channels, num_classes, depth=1, explained=True, **options
) -> Report:
    """The walk of a model built on the meta device (``explained``: a refused size names
    the sizes it takes); one that reads its tensors' values is built again with real
    weights on the CPU and walked for real, saying so."""
    from .inspect.sizes import walk_explained
    from .inspect.walk import DataDependent, walk

    try:
        report = (walk_explained if explained else walk)(
            model, specs, depth, name=target.name, **options
        )
    except DataDependent as needs_values:
        # Seeded weights as well as inputs: how many boxes survive a detector's NMS, and so
        # its heads' counts, depend on both.
        with _seeded():
            real_model, _ = target.build(in_channels, num_classes, device="cpu")
        report = _walked_for_real(real_model, specs, depth, target.name, needs_values, options)
    if target.note:
        report.fallback = "; ".join(filter(None, [target.note, report.fallback]))
    return report


def _check_complete(report: Report) -> None:
    """--strict: a count that left out ops with arithmetic is an error naming them."""
    if report.complete:
        return
    ops = ", ".join(f"{op} ({calls} calls)" for op, calls in report.uncounted.items())
    raise CnnshapeError(
        f"{report.model}'s count is partial: the {report.convention} convention has no formula "
        f"for {ops}.",
        "Leave out --strict for the partial count, or try another --convention.",
    )


def _target_and_inputs(name, size, batch, in_channels, num_classes, inputs):
    """The model built for inspection, and what it is walked with: ``inputs``, or one image
    batch at ``size`` (default: the model's own) with its channels."""
    _check_positive(batch=batch)
    target, model, channels = build_for_inspection(name, in_channels, num_classes)
    if inputs:
        return target, model, check_names([check(spec) for spec in inputs])
    return target, model, target.default_inputs(model, batch, channels, size)


def _measure(
    target: Target,
    in_channels,
    num_classes,
    specs: list[InputSpec],
    timed: TimeSettings,
    layers: list[str] | None = None,
):
    """Build the model for real on the chosen device and time it (inspect.timing)."""
    from ._common import resolve_device
    from .inspect.timing import time_model

    _check_positive(repeats=timed.repeats)
    if timed.warmup < 0:
        raise CnnshapeError(f"--warmup must be at least 0, not {timed.warmup}.")
    device = resolve_device(timed.device)
    try:
        model, _ = target.build(in_channels, num_classes, device=device)
        return time_model(model, specs, warmup=timed.warmup, repeats=timed.repeats, layers=layers)
    except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
        if not _out_of_memory(err):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(err))
        size = f" (one allocation alone: {int(asked[1]) / 1e9:,.1f} GB)" if asked else ""
        raise CnnshapeError(
            f"Not enough memory on {device} to time {target.name} at "
            f"{', '.join(spec.describe() for spec in specs)}{size}.",
            "--time runs the real model: give a smaller --batch or --size (the table "
            "without --time needs no memory at any size).",
        ) from None


def _out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, MemoryError) or "out of memory" in text or "can't allocate" in text


def scan_sizes(
    model: nn.Module,
    in_channels: int = 1,
    up_to: int = DEFAULT_UP_TO,
    *,
    inputs: list[InputSpec] | None = None,
    name: str | None = None,
) -> SizeScan:
    """Every size S = 1..up_to of the first input's spatial axes that any ``model`` accepts
    (by default square images ``1 x in_channels x S x S``), and why it refuses the others."""
    from .inspect.sizes import scan_sizes as scan
    from .inspect.walk import DataDependent

    try:
        return scan(model, inputs or in_channels, up_to, name=name)
    except DataDependent as needs_values:
        raise CnnshapeError(
            f"{name or type(model).__name__} reads its tensors' values ({needs_values}): the "
            "size scan walks every size on meta tensors, which have none.",
            "Try one size, walked for real: cnnshape show MODEL --size S.",
        ) from None


@result_cache.cached("sizes", SizeScan, measured=lambda a: False)
def valid_sizes(
    name: str,
    *,
    in_channels: int | None = None,
    num_classes: int | None = None,
    inputs: list[InputSpec] | None = None,
    up_to: int = DEFAULT_UP_TO,
    cache: bool = False,
) -> SizeScan:
    """Every size 1..up_to a model accepts (square images, or the first of ``inputs`` along
    its spatial axes), and why it refuses the rest."""
    target, model, specs = _target_and_inputs(name, None, 1, in_channels, num_classes, inputs)
    return scan_sizes(model, up_to=up_to, inputs=specs, name=target.name)


@dataclass
class ModelSummary:
    """One model in a comparison: the walk's totals plus its valid input sizes."""

    model: str
    input_shape: list[int]
    # None: not scanned (no spatial axes, or a model that reads its values: see scan_sizes)
    valid_sizes: list[tuple[int, int]] | None
    report: Report | None  # None when the model does not accept the input
    error: str | None = None
    relative: dict[str, float | None] | None = None  # each figure / the first model's
    timing: Timing | None = None  # measured whole forward, with --time
    train_peak: int | None = None  # predicted peak bytes of a training step, with --memory

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> ModelSummary:
        """The inverse of ``dataclasses.asdict`` for an unmeasured summary (the cache's)."""
        report = fields["report"] and Report.from_fields(fields["report"])
        scanned = fields["valid_sizes"]
        valid = None if scanned is None else [tuple(r) for r in scanned]
        return cls(**{**fields, "report": report, "valid_sizes": valid})

    def figures(self) -> dict[str, int]:
        r = self.report
        assert r is not None
        return {
            "params": r.total_params,
            "macs": r.total_macs,
            "flops": r.total_flops,
            "activation_bytes": r.activation_bytes,
        }

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "input_shape": self.input_shape}
        if self.report is None:
            data["error"] = self.error
        else:
            data["output_shape"] = self.report.output_shape
            data.update(self.figures())
            data["weight_layers"] = self.report.num_weight_layers
            data["convention"] = self.report.convention
            data["complete"] = self.report.complete
            data["uncounted"] = self.report.uncounted
            data["receptive_field"] = self.report.receptive_field
            data["relative"] = self.relative
            if self.timing is not None:
                data["timing"] = self.timing.to_dict()
            if self.train_peak is not None:
                data["train_peak_bytes"] = self.train_peak
        scanned = self.valid_sizes
        data["valid_sizes"] = None if scanned is None else [[lo, hi] for lo, hi in scanned]
        return data


def compare(
    patterns: list[str],
    size: tuple[int, int] | None = None,
    *,
    batch: int = 1,
    in_channels: int | None = None,
    num_classes: int | None = None,
    inputs: list[InputSpec] | None = None,
    convention: str = "torch",
    strict: bool = False,
    timed: TimeSettings | None = None,
    memory_on: str | None = None,
    cache: bool = False,
) -> list[ModelSummary]:
    """Summaries of several models (names, 'lenet*' patterns, 'all', references such as
    'torchvision:resnet50'), each relative to the first.

    A model that refuses ``size`` gets a row with the reason instead of failing the comparison.
    ``timed`` also measures each model's whole forward at ``batch`` (images/s); ``memory_on``
    (a device) predicts each one's training-step peak at its input. ``cache``: as for `show`,
    model by model.
    """
    _check_positive(batch=batch)
    summaries = [
        _summarize(
            ref,
            size,
            batch=batch,
            in_channels=in_channels,
            num_classes=num_classes,
            inputs=inputs,
            convention=convention,
            timed=timed,
            memory_on=memory_on,
            cache=cache,
        )
        for ref in _expand(patterns)
    ]
    if strict:
        for s in summaries:
            if s.report is not None:
                _check_complete(s.report)
    base = next((s for s in summaries if s.report is not None), None)
    if base is not None:
        for s in summaries:
            if s.report is not None:
                s.relative = {k: _ratio(v, base.figures()[k]) for k, v in s.figures().items()}
    return summaries


def _expand(patterns: list[str]) -> list[str]:
    """Registry patterns become names; references outside the registry stay as they are."""
    refs: list[str] = []
    for pattern in patterns:
        found = [pattern] if is_reference(pattern) else [s.name for s in match_specs([pattern])]
        refs += [r for r in found if r not in refs]
    return refs


@result_cache.cached(
    "summary",
    ModelSummary,
    measured=lambda a: a["timed"] is not None or a["memory_on"] is not None,
)
def _summarize(
    ref, size, *, batch, in_channels, num_classes, inputs, convention, timed, memory_on, cache
) -> ModelSummary:

    target, model, specs = _target_and_inputs(ref, size, batch, in_channels, num_classes, inputs)
    shape = list(specs[0].shape)
    valid = _valid_sizes_if_known(model, specs, target.name) if len(shape) > 2 else None
    try:
        report = _walk_target(
            target, model, specs, in_channels, num_classes, explained=False, convention=convention
        )
    except WalkError as err:
        return ModelSummary(target.name, shape, valid, None, error=err.message)
    timing = _measure(target, in_channels, num_classes, specs, timed)[0] if timed else None
    train_peak = _train_step(model, report, memory_on).peak if memory_on else None
    return ModelSummary(target.name, shape, valid, report, timing=timing, train_peak=train_peak)


def _valid_sizes_if_known(model, specs, name) -> list[tuple[int, int]] | None:
    """compare's sizes column: None for a model that reads its values (no scan can say)."""
    from .inspect.sizes import scan_sizes as scan
    from .inspect.walk import DataDependent

    try:
        return scan(model, specs, name=name).valid
    except DataDependent:
        return None


def _ratio(value: int, base: int) -> float | None:
    """value / base; None where the first model has none of it (a model without parameters)."""
    return value / base if base else None


def _check_positive(**values: int | None) -> None:
    for option, value in values.items():
        if value is not None and value < 1:
            raise CnnshapeError(f"--{option.replace('_', '-')} must be at least 1, not {value}.")


def cache_info() -> result_cache.CacheInfo:
    """Where the result cache is, its entries and its size (`cnnshape cache info`)."""
    return result_cache.info()


def clear_cache() -> result_cache.CacheInfo:
    """Remove every entry of the result cache, and nothing else; what was removed."""
    return result_cache.clear()


# ---- memory -----------------------------------------------------------------------------------

DEFAULT_MEMORY_BATCH = 32  # outside the registry there is no seed recipe to take a batch from


def memory(
    name: str,
    size: tuple[int, int] | None = None,
    *,
    batch: int | None = None,
    in_channels: int | None = None,
    num_classes: int | None = None,
    inputs: list[InputSpec] | None = None,
    optimizer: str = "sgd",
    precision: str = "auto",
    device: str = "auto",
    fit: int | None = None,
    curve: bool = False,
    measure: bool = False,
) -> MemoryReport:
    """The predicted peak memory of one training step of a model, as ``cnnshape train`` runs
    it, on fake tensors (no memory used, any batch): a breakdown, the batch-size law, and with
    ``fit`` (bytes) or a CUDA device, the largest batch that fits.

    ``batch`` defaults to the seed recipe's for registry models (32 otherwise); ``precision``
    auto is train's (bf16 on CUDA, fp32 on the CPU). ``device`` may be ``cuda`` without a GPU:
    the prediction is for a CUDA device. Registry models also get what a training run keeps
    on the device besides (Fashion-MNIST), counted in ``fit``. ``measure`` also runs the real
    step on the CPU and measures its peak by the allocator's own events (it allocates what it
    measures).
    """
    from .inspect.fit import memory_report
    from .train import data

    target, model, channels = build_for_inspection(name, in_channels, num_classes)
    registry = not is_reference(name)
    if batch is None:
        batch = get_spec(name).recipe.batch_size if registry else DEFAULT_MEMORY_BATCH
    _check_positive(batch=batch)
    device, total = _memory_device(device)
    if precision == "auto":
        precision = default_precision(device)
    budget, source = (fit, "--fit") if fit is not None else (total, f"{device}'s total memory")
    shape = _step_input(target, model, size, batch, channels, inputs)
    # A size the model refuses fails here, explained; so does an output no loss can take.
    _check_classifier(summary(model, shape, name=target.name))
    if measure and device != "cpu":
        raise CnnshapeError(
            "--measure runs the real step on the CPU, not on " + device + ".",
            "Use --device cpu; for CUDA, benchmarks/memory_gpu.py compares with the GPU.",
        )
    try:
        report = memory_report(
            model,
            target.name,
            shape,
            optimizer=optimizer,
            precision=precision,
            device=device,
            resident=data.resident_bytes() if registry else None,
            budget=budget,
            budget_source=source if budget else None,
            curve=curve,
        )
    except ValueError as err:
        if "Expected more than 1 value per channel" in str(err):
            raise CnnshapeError(
                f"{target.name} has BatchNorm, which cannot train on a batch of one image.",
                "Give --batch 2 or more.",
            ) from None
        raise CnnshapeError(str(err)) from None  # an option the predictor does not know
    if measure:
        report.measured = _measured_step(
            target, in_channels, num_classes, shape, optimizer, precision
        )
    return report


def _step_input(target, model, size, batch, channels, inputs) -> tuple[int, ...]:
    """The batch a training step takes: one floating input (the model's default input of
    ``size``, or the one ``inputs`` gives, of any rank), as ``cnnshape train`` feeds its
    models."""
    specs = inputs or target.default_inputs(model, batch, channels, size)
    (spec, *more) = specs
    floating = (spec.dtype or "float32") in _FLOAT_INPUTS
    if more or spec.name or spec.count is not None or not floating:
        raise CnnshapeError(
            f"memory predicts a training step on one floating input batch, not "
            f"{', '.join(i.describe() for i in specs)}.",
            "Give one --input such as 32x1x16000, as cnnshape train feeds a model its images.",
        )
    return check(spec).shape


_FLOAT_INPUTS = ("float32", "float64", "float16", "bfloat16")


def _measured_step(target, in_channels, num_classes, shape, optimizer, precision):
    """The real step's second run on the CPU, measured by the allocator (memory --measure)."""
    from .inspect.allocator import measure_cpu

    def build():
        return target.build(in_channels, num_classes, device="cpu")[0]

    try:
        return measure_cpu(build, shape, optimizer, precision, steps=2)[-1]
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        raise CnnshapeError(
            f"Not enough memory to measure {target.name} at {'x'.join(map(str, shape))}: "
            "--measure runs the real step.",
            "Give a smaller --batch, or leave out --measure (the prediction needs no memory).",
        ) from None


def _train_step(model: nn.Module, walked: Report, device: str):
    """A training step's predicted memory at the walk's input: plain SGD, train's precision."""
    from .inspect.memory import predict_step

    _check_classifier(walked)
    device, _ = _memory_device(device)
    precision = default_precision(device)
    return predict_step(model, tuple(walked.input_shape), device=device, precision=precision)


def _check_classifier(walked: Report) -> None:
    """The step cnnshape predicts is train's: cross-entropy on (batch, classes) logits."""
    out = walked.output_shape
    if out is None or len(out) != 2:
        shown = "not one tensor" if out is None else "x".join(map(str, out))
        raise CnnshapeError(
            f"{walked.model} gives {shown}: a training step's memory is predicted for a "
            "classifier, whose output is (batch, classes), as cnnshape train's cross-entropy "
            "takes it.",
            "Show its forward pass without --memory, or end the model in a classifier.",
        )


def _memory_device(name: str) -> tuple[str, int | None]:
    """The device to predict for, and its total memory when it is a GPU of this machine. A
    CUDA device is predicted for even without one (fake tensors need no GPU)."""
    import torch

    from ._common import resolve_device

    if name.startswith("cuda") and not torch.cuda.is_available():
        return "cuda", None
    device = resolve_device(name)
    if device.startswith("cuda"):
        return device, torch.cuda.get_device_properties(device).total_memory
    return device, None


# ---- training ---------------------------------------------------------------------------------


def train(
    settings: TrainSettings,
    on_event: OnEvent | None = None,
    *,
    out: str | os.PathLike | None = None,
    force: bool = False,
    progress_every: float = 0.25,
) -> RunResult:
    """Train a model (any source: see cnnshape.train.model) as d2l's train_ch6 does.

    ``out``: the run folder (default runs/<model>-<time>); ``force`` takes one that is not
    empty and not a run (cnnshape's files there are replaced)."""
    from .train.run import plan_fresh

    return _execute(plan_fresh(settings, out, force), on_event, progress_every)


def resume(
    run_dir: str,
    settings: TrainSettings | None = None,
    on_event: OnEvent | None = None,
    *,
    out: str | None = None,
    progress_every: float = 0.25,
) -> RunResult:
    """Continue a run folder from its last finished epoch (settings: see resume_config)."""
    from .train.run import plan_resume

    plan = plan_resume(run_dir, settings or TrainSettings(), out=out)
    return _execute(plan, on_event, progress_every)


def evaluate(run_dir: str, settings: TrainSettings | None = None) -> EvalResult:
    """Test accuracy, per class, confusion matrix and BatchNorm parameters of a run."""
    from .train.evaluate import evaluate_run

    return evaluate_run(run_dir, settings)


def _execute(plan: Plan, on_event: OnEvent | None, progress_every: float) -> RunResult:
    from .train.run import execute

    with plan:  # the run folder stays locked from planning (a resume) to the run's end
        return execute(plan, on_event, progress_every=progress_every)


__all__ = [
    "CnnshapeError",
    "ModelSummary",
    "Report",
    "SizeScan",
    "TimeSettings",
    "compare",
    "evaluate",
    "get_model",
    "list_models",
    "memory",
    "resume",
    "scan_sizes",
    "show",
    "summary",
    "train",
    "valid_sizes",
]

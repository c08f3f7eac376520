"""The inspection walk: one forward pass of dummy inputs, node by node, with no real arithmetic.

The inputs are meta tensors (for a model built on the meta device, as the CLI builds them)
or fake tensors (``FakeTensorMode``, for a model with real weights): every op computes its
output's shape, dtype and device, but no data, so the walk costs the same at 4096x4096 as
at 28x28 and never allocates activations. The pass is captured as a dataflow graph of
module calls and functional ops (``capture.py``). MACs are counted under a convention
(``conventions.py``): by default at the dispatch level with the formulas of
``torch.utils.flop_counter`` (the ones ``FlopCounterMode`` uses), so functional ops inside a
module's forward (``F.conv2d``, ``x @ w``) count too, and the totals equal
``FlopCounterMode``'s exactly; ``fvcore`` and ``ptflops`` reproduce those tools' totals. Ops
that compute but that the convention has no formula for are named, and make the total
partial. Receptive fields are tracked in the same pass, also at the dispatch level
(``fields.py``). The few ops whose meta kernels are slow Python get their shapes from exact
rules (``shapes.py``), so a walk costs milliseconds, not PyTorch start-up.

This is the one way cnnshape counts: ``show``, ``compare`` and the training header all walk.
(Counting on real tensors would differ: on the CPU, ``FlopCounterMode`` does not see
``scaled_dot_product_attention``, whose CPU kernel it has no formula for.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .._common import input_device_and_dtype, left_as_it_was
from ..errors import CnnshapeError, WalkError
from .capture import Capture, Node
from .conventions import CONVENTIONS, Tally
from .fields import FieldTracker
from .inputs import InputSpec, as_specs
from .report import Edge, Report, Row, Shape
from .shapes import ShapeRules


def walk(
    model: nn.Module,
    inputs: Any,
    depth: int = 1,
    *,
    name: str | None = None,
    ops: bool = False,
    real: bool = False,
    convention: str = "torch",
) -> Report:
    """Walk dummy inputs through ``model`` and report every layer (and with ``ops``, every
    functional op on the path: ``cat``, ``add``, ``relu``, ...).

    On meta or fake tensors, unless ``real``: then the model runs on real random inputs
    where its weights are (a detector's non-maximum suppression has a data-dependent output
    shape, which no meta tensor can compute; `DataDependent` says when that is needed).

    ``inputs``: a shape ``(1, 3, 224, 224)``, a list of shapes (one per positional input),
    `InputSpec`s (a dtype, a keyword) or tensors (their shape and dtype). ``depth`` 1 lists
    the model's direct children (the book's ``for layer in net``); deeper levels expand
    blocks, in execution order. The model is left exactly as it was: same mode, same device,
    same buffers, no hooks.
    """
    specs = as_specs(inputs)
    if depth < 1:
        raise CnnshapeError(
            f"Depth must be at least 1, not {depth}.",
            "Use --depth 1 for the top-level layers, 2 to open blocks, ...",
        )
    name = name or type(model).__name__
    check_no_cycle(model, name)
    _check_signature(model, specs, name)
    tally = Tally(_convention(convention), model)
    fields = FieldTracker()
    capture = Capture(model, lambda: 2 * tally.macs)  # FLOPs = 2 x MACs in every convention
    with shape_only(model, real=real) as dummy:
        args, kwargs, inputs_given = [], {}, []
        for index, spec in enumerate(specs):
            node_id = input_id(index, spec)
            tensors = [dummy(spec) for _ in range(spec.count or 1)]
            for tensor in tensors:
                capture.mark_input(tensor, node_id)
                if tensor.is_floating_point() and not fields.seeded:
                    fields.seed(tensor)  # receptive fields are over the first float input's
            value = tensors if spec.count is not None else tensors[0]
            if spec.name:
                kwargs[spec.name] = value
            else:
                args.append(value)
            dtype = str(tensors[0].dtype).removeprefix("torch.")
            inputs_given.append({**spec.to_dict(), "dtype": dtype, "id": node_id})
        try:
            with tally, fields, capture.hooked():  # tally's module hooks count first
                output = model(*args, **kwargs)
        except (Exception, SystemExit) as exc:  # a model's own code may call sys.exit()
            failing = capture.open[-1] if capture.open else None
            if not real and _data_dependent(exc):
                where = failing.name if failing is not None else name
                what = f"{capture.failed_op} in {where}" if capture.failed_op else where
                raise DataDependent(what) from exc
            raise _walk_error(
                name, inputs_given, depth, ops, model, capture, tally, failing, exc
            ) from exc
        return _report(name, inputs_given, depth, ops, model, capture, tally, output, fields)


class DataDependent(Exception):
    """The model reads its tensors' values (non-maximum suppression, ``nonzero``,
    ``.item()``): only real tensors can walk it."""


_DATA_DEPENDENT = (
    "data-dependent",
    "data-independent",
    "DynamicOutputShape",
    "DataDependentOutput",
    "cannot be called on meta tensors",
    "trying to run this operator with meta Tensors",
)


def _data_dependent(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in _DATA_DEPENDENT)


def input_id(index: int, spec: InputSpec) -> str:
    """The graph's name for an input: ``input:0``, or ``input:ids`` for a keyword."""
    return f"input:{spec.name or index}"


def _check_signature(model: nn.Module, specs: list[InputSpec], name: str) -> None:
    """The inputs against forward's signature, before anything runs: the wrong number of
    inputs or an unknown keyword says what forward takes."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # a builtin or C++ forward: let the call say
        return
    positional = [object()] * sum(1 for s in specs if not s.name)
    try:
        signature.bind(*positional, **{s.name: object() for s in specs if s.name})
    except TypeError as err:
        given = ", ".join(s.describe() for s in specs)
        raise CnnshapeError(
            f"{name}.forward{signature} cannot take the inputs {given}: {err}.",
            "Give one --input per argument forward takes, in order (NAME=DIMS for a keyword).",
        ) from None


def check_no_cycle(model: nn.Module, name: str) -> None:
    """Refuse a module that is its own submodule: PyTorch's recursive methods (eval(), to(),
    apply()) would never end on it."""

    def visit(module: nn.Module, path: list[tuple[str, nn.Module]]) -> None:
        for child_name, child in module._modules.items():
            if child is None:
                continue
            ancestors = [m for _, m in path]
            if any(child is m for m in ancestors):
                where = ".".join(n for n, _ in path[1:]) + ("." if len(path) > 1 else "")
                raise CnnshapeError(
                    f"{name} contains itself: its submodule {where}{child_name} is "
                    f"{_qualified(path, child)}, so walking it would never end.",
                    "A module cannot be its own submodule: keep the back-reference out of "
                    "PyTorch's sight (e.g. in a list, or with object.__setattr__).",
                )
            visit(child, [*path, (child_name, child)])

    visit(model, [("", model)])


def _qualified(path: list[tuple[str, nn.Module]], module: nn.Module) -> str:
    names = [n for n, m in path]
    at = next(i for i, (_, m) in enumerate(path) if m is module)
    return ".".join(names[1 : at + 1]) or "the model itself"


def _convention(name: str):
    if name not in CONVENTIONS:
        raise CnnshapeError(
            f"Unknown counting convention {name!r}.", f"Use one of {', '.join(CONVENTIONS)}."
        )
    return CONVENTIONS[name]


def _report(name, inputs, depth, ops, model, capture, tally, output, fields) -> Report:
    nodes = [n for n in capture.nodes if n.finished]
    modules = [n for n in nodes if n.kind == "module"]
    leaves = [n for n in modules if n.is_leaf_module]
    params = list(model.parameters())
    shown = [n for n in nodes if n.depth <= depth and (ops or n.kind == "module")]
    sources = _ShownSources({n.id for n in shown}, {n.id: n for n in capture.nodes}, depth)
    outputs = _tensor_paths(output, "out")
    field = fields.largest
    return Report(
        model=name,
        input_shape=list(inputs[0]["shape"]),
        depth=depth,
        rows=[_row(n, fields, sources.of_node(n)) for n in shown],
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_flops=2 * tally.macs,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        activation_bytes=sum(_bytes_of(n.outputs) for n in leaves),
        num_weight_layers=sum(isinstance(n.module, _WEIGHT_LAYERS) for n in modules),
        output_shape=list(outputs[0][1].shape) if len(outputs) == 1 else None,
        receptive_field=list(field.rf) if field else None,
        jump=list(field.jump) if field else None,
        inputs=inputs,
        outputs=[
            {
                "path": path,
                "shape": list(t.shape),
                "dtype": str(t.dtype).removeprefix("torch."),
                "source": sources.single(capture.source_of(t)),
            }
            for path, t in outputs
        ],
        ops_shown=ops,
        convention=tally.convention.name,
        uncounted=dict(sorted(tally.uncounted.items())),
    )


_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


def _row(node, fields, sources) -> Row:
    m = node.module
    first = node.outputs[0] if node.outputs else None
    output_shape = list(first.shape) if first is not None and len(node.outputs) == 1 else None
    spatial_dims = len(output_shape) - 2 if output_shape else 2
    field = fields.field_of(first) if first is not None else None
    return Row(
        name=node.name,
        type=node.type,
        depth=node.depth,
        output_shape=output_shape,
        params=sum(p.numel() for p in m.parameters()) if m is not None else 0,
        flops=node.flops,
        kernel_size=_as_list(getattr(m, "kernel_size", None), spatial_dims),
        stride=_as_list(getattr(m, "stride", None), spatial_dims),
        padding=_as_list(getattr(m, "padding", None), spatial_dims),
        receptive_field=list(field.rf) if field else None,
        jump=list(field.jump) if field else None,
        kind=node.kind,
        id=node.id,
        inputs=[Edge(source, shape) for source, shape in sources],
        output_shapes=[list(t.shape) for t in node.outputs] if len(node.outputs) > 1 else None,
    )


class _ShownSources:
    """Where each tensor comes from, among the nodes shown: a layer deeper than ``depth``
    stands for the block at ``depth`` around it, and a hidden op (no --ops) for the nodes its
    own inputs come from. Each node's answer is found once, without recursion: MaxViT's
    thousands of hidden reshapes branch and rejoin (followed naively, exponential)."""

    def __init__(self, visible: set[str], by_id: dict, depth: int):
        self.visible, self.by_id, self.depth = visible, by_id, depth
        self.found: dict[str, list[str]] = {}

    def of_node(self, node) -> list[tuple[str, Shape]]:
        found = []
        for source, shape in node.sources:
            for shown in self.of(source):
                if (shown, shape) not in found:
                    found.append((shown, shape))
        return found

    def single(self, source: str | None) -> str | None:
        shown = self.of(source)
        return shown[0] if len(shown) == 1 else None

    def of(self, source: str | None) -> list[str]:
        if source is None:
            return []
        pending = [source]
        while pending:
            current = pending[-1]
            if current in self.found:
                pending.pop()
                continue
            shown = self._shown_as(current)
            if shown is not None:
                self.found[current] = shown
                pending.pop()
                continue
            inner = [s for s, _ in self.by_id[current].sources if s is not None]
            unknown = [s for s in inner if s not in self.found]
            if unknown:
                pending += unknown
                continue
            self.found[current] = list(dict.fromkeys(s for i in inner for s in self.found[i]))
            pending.pop()
        return self.found[source]

    def _shown_as(self, source: str) -> list[str] | None:
        """The source itself, or the block shown around it; None for a hidden op."""
        if source in self.visible or source.startswith("input:"):
            return [source]
        node = self.by_id[source]
        ancestor = node.parent
        while ancestor is not None and ancestor.depth > self.depth:
            ancestor = ancestor.parent
        if node.depth > self.depth and ancestor is not None and ancestor.id in self.visible:
            return [ancestor.id]
        return None


def _described(given: dict) -> str:
    """1x3x224x224 (as the messages have always said it), ids=1x128:int64."""
    text = fmt_shape(given["shape"])
    if given["dtype"] not in ("float32", "float64", "float16", "bfloat16"):
        text += f":{given['dtype']}"
    return f"{given['name']}={text}" if given["name"] else text


def _tensor_paths(output, path: str) -> list[tuple[str, torch.Tensor]]:
    """Every tensor of an output with its path: out, out[0], out["map"], out.logits."""
    if isinstance(output, torch.Tensor):
        return [(path, output)]
    if isinstance(output, dict):  # Hugging Face's ModelOutput is a dict too
        items = [(f"{path}[{key!r}]", value) for key, value in output.items()]
    elif isinstance(output, (tuple, list)):
        fields_ = getattr(output, "_fields", None)  # a namedtuple: by name
        keys = [f".{f}" for f in fields_] if fields_ else [f"[{i}]" for i in range(len(output))]
        items = [(path + key, value) for key, value in zip(keys, output, strict=True)]
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        items = [(f"{path}.{f.name}", getattr(output, f.name)) for f in dataclasses.fields(output)]
    else:
        return []
    return [found for key, value in items for found in _tensor_paths(value, key)]


def _walk_error(name, inputs, depth, ops, model, capture, tally, failing, exc) -> WalkError:
    partial = _report(name, inputs, depth, ops, model, capture, tally, None, FieldTracker())
    shape = ", ".join(_described(i) for i in inputs)
    if failing is None:
        reason = _first_line(exc)
        if capture.failed_op:
            reason = f"its {capture.failed_op}: {reason}"
        return WalkError(
            f"{name} cannot take a {shape} input: {reason}",
            layer=None,
            layer_type=None,
            input_shape=None,
            reason=reason,
            partial=partial,
        )
    layer_type = type(failing.module).__name__
    reason = explain_failure(failing.module, failing.input_shape, exc, capture.nodes)
    if capture.failed_op and not failing.is_leaf_module:
        reason = f"its {capture.failed_op}: {reason}"
    message = (
        f"{name} cannot take a {shape} input: layer {failing.name} ({layer_type}) "
        f"receives {fmt_shape(failing.input_shape)}, and {reason}."
    )
    return WalkError(
        message,
        layer=failing.name,
        layer_type=layer_type,
        input_shape=failing.input_shape,
        reason=reason,
        partial=partial,
    )


def explain_failure(
    module: nn.Module, input_shape: Shape | None, exc: Exception, calls: list[Node]
) -> str:
    """Say in words why ``module`` could not take ``input_shape``."""
    if isinstance(exc, SystemExit):
        return f"its code called sys.exit({exc.code!r})"
    if input_shape is not None and isinstance(module, nn.Linear):
        got = input_shape[-1]
        if got != module.in_features:
            reason = f"it expects {module.in_features} input features, not {got}"
            flatten = next(
                (c for c in reversed(calls) if isinstance(c.module, nn.Flatten) and c.finished),
                None,
            )
            if flatten is not None and flatten.input_shape and len(flatten.input_shape) > 2:
                flattened = fmt_shape(flatten.input_shape[1:])
                reason += f" (= {flattened} from layer {flatten.name} Flatten)"
            return reason
    rank = _rank_refused(module, input_shape)
    if rank is not None:
        return rank
    in_channels = getattr(module, "in_channels", None)
    if input_shape is not None and in_channels is not None and len(input_shape) > 1:
        if input_shape[1] != in_channels:
            return f"it expects {in_channels} input channels, not {input_shape[1]}"
    kernel = getattr(module, "kernel_size", None)
    if input_shape is not None and kernel is not None:
        spatial = input_shape[2:]
        dims = len(spatial)
        if not isinstance(kernel, int) and len(kernel) != dims:
            return _first_line(exc)
        kernel = _as_list(kernel, dims)
        padding = getattr(module, "padding", 0)
        if not isinstance(padding, str):
            padding = _as_list(padding, dims)
            dilation = _as_list(getattr(module, "dilation", 1), dims)
            needed = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
            padded = [s + 2 * p for s, p in zip(spatial, padding, strict=True)]
            if any(have < need for have, need in zip(padded, needed, strict=True)):
                padded_note = f" ({fmt_shape(padded)} padded)" if any(padding) else ""
                return (
                    f"its {fmt_shape(needed)} window is larger than the "
                    f"{fmt_shape(spatial)}{padded_note} input"
                )
    return _first_line(exc)


_SPATIAL_AXES = re.compile(r"([123])d$")  # Conv1d, MaxPool3d, BatchNorm2d, ...
_AXIS_NAMES = {1: "length", 2: "height, width", 3: "depth, height, width"}


def _rank_refused(module: nn.Module, input_shape: Shape | None) -> str | None:
    """Why a 1-D, 2-D or 3-D layer refuses an input of the wrong rank (a Conv1d given an
    image), or None when the rank is not the problem. A convolution or pooling layer takes
    (batch, channels, *axes) or the same without the batch; BatchNorm has no unbatched form
    (BatchNorm1d's 2-D input is (batch, features))."""
    axes = _SPATIAL_AXES.search(type(module).__name__)
    if input_shape is None or axes is None:
        return None
    n, rank = int(axes[1]), len(input_shape)
    batched = f"{n + 2}-D input (batch, channels, {_AXIS_NAMES[n]})"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if rank == n + 2 or (n == 1 and rank == 2):
            return None
        also = ", or 2-D (batch, features)" if n == 1 else ""
        return f"it takes {batched}{also}, not {rank}-D"
    in_channels = getattr(module, "in_channels", None)
    if rank == n + 1 and in_channels not in (None, input_shape[0]):
        return (
            f"it reads a {n + 1}-D input as one sample without the batch (channels, "
            f"{_AXIS_NAMES[n]}), with {input_shape[0]} channels, not the {in_channels} it "
            f"expects; with the batch it takes {n + 2}-D input"
        )
    if rank in (n + 1, n + 2):
        return None
    return f"it takes {batched}, or {n + 1}-D without the batch, not {rank}-D"


@contextlib.contextmanager
def shape_only(
    model: nn.Module, real: bool = False
) -> Iterator[Callable[[InputSpec], torch.Tensor]]:
    """Run ``model`` on data-free dummy inputs: yields ``dummy(spec) -> tensor``.

    Inside: eval mode (BatchNorm1d at batch 1 works; dropout is a no-op), no autograd, and
    meta or fake tensors, so nothing is computed or allocated; with ``real``, real random
    inputs where the model's weights are. On exit the model is as it was. A floating input
    without a dtype of its own takes the model's (a float64 model gets float64 images); an
    integer one is zeros, a valid index into any Embedding.
    """
    device, model_dtype = input_device_and_dtype(model)

    def dummy(spec: InputSpec) -> torch.Tensor:
        dtype = getattr(torch, spec.dtype) if spec.dtype else model_dtype
        if real and (dtype.is_floating_point or dtype.is_complex):
            return torch.rand(spec.shape, dtype=dtype, device=device)  # an image's 0..1
        return torch.zeros(spec.shape, dtype=dtype, device=device)

    data_free = contextlib.nullcontext() if real else _no_real_arithmetic(model)
    rules = contextlib.nullcontext() if real else ShapeRules()  # rules answer without data
    with left_as_it_was(model), torch.no_grad(), data_free, rules:
        model.eval()
        yield dummy


def _no_real_arithmetic(model: nn.Module):
    """Meta tensors for a model built on the meta device; fake tensors for a real one.

    Both give shapes without data. Plain meta is about 3x faster per op than FakeTensorMode's
    bookkeeping, and needs no weights at all, so the CLI builds registry models on meta.
    """
    tensors = [*model.parameters(), *model.buffers()]
    if tensors and all(t.is_meta for t in tensors):
        return contextlib.nullcontext()
    from torch._subclasses.fake_tensor import FakeTensorMode  # imported only when needed

    return FakeTensorMode(allow_non_fake_inputs=True)


def _bytes_of(output) -> int:
    if isinstance(output, torch.Tensor):
        return output.numel() * output.element_size()
    if isinstance(output, (tuple, list)):
        return sum(_bytes_of(o) for o in output)
    if isinstance(output, dict):
        return sum(_bytes_of(o) for o in output.values())
    return 0


def _as_list(value, dims: int):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return [value] * dims
    return list(value)


def fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape) if shape is not None else "?"


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"its code called sys.exit({exc.code!r})"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

"""The inspection walk: one forward pass of a dummy input, layer by layer, with no real arithmetic.

The input is a meta tensor (for a model built on the meta device, as the CLI builds them) or
a fake tensor (``FakeTensorMode``, for a model with real weights): every op computes its
output's shape, dtype and device, but no data, so the walk costs the same at 4096x4096 as
at 28x28 and never allocates activations. FLOPs are counted at the dispatch level with the
formulas of ``torch.utils.flop_counter`` (the ones ``FlopCounterMode`` uses), so functional
ops inside a module's forward (``F.conv2d``, ``x @ w``) count too, and the totals equal
``FlopCounterMode``'s exactly. Receptive fields are tracked in the same pass, also at the
dispatch level (``fields.py``). The few ops whose meta kernels are slow Python get their
shapes from exact rules (``shapes.py``), so a walk costs milliseconds, not PyTorch start-up.

This is the one way cnnshape counts FLOPs: ``show``, ``compare`` and the training header all
walk. (Counting on real tensors would differ: on the CPU, ``FlopCounterMode`` does not see
``scaled_dot_product_attention``, whose CPU kernel it has no formula for.)
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .._common import input_device_and_dtype, left_as_it_was
from ..errors import CnnshapeError, WalkError
from . import flop_formulas
from .fields import Field, FieldTracker
from .report import Report, Row, Shape
from .shapes import ShapeRules

flop_registry = flop_formulas.flop_registry()


class _FlopCounter(TorchDispatchMode):
    """Running FLOP total of every aten op dispatched while active."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # PyTorch wraps __torch_dispatch__ in dynamo.disable, which imports torch._dynamo
        # (about a second) on first call. Counting never runs under torch.compile.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.flops += count(*args, **kwargs, out_val=out)
        return out


@dataclass
class _Call:
    """One module call, filled in by the pre-hook (start) and the post-hook (end)."""

    name: str
    module: nn.Module
    input_shape: Shape | None
    flops_at_start: int
    output_shape: Shape | None = None
    output_bytes: int = 0
    flops: int = 0
    field: Field | None = None
    finished: bool = False

    @property
    def depth(self) -> int:
        return self.name.count(".") + 1

    def to_row(self) -> Row:
        m = self.module
        spatial_dims = len(self.output_shape) - 2 if self.output_shape else 2
        return Row(
            name=self.name,
            type=type(m).__name__,
            depth=self.depth,
            output_shape=self.output_shape,
            params=sum(p.numel() for p in m.parameters()),
            flops=self.flops,
            kernel_size=_as_list(getattr(m, "kernel_size", None), spatial_dims),
            stride=_as_list(getattr(m, "stride", None), spatial_dims),
            padding=_as_list(getattr(m, "padding", None), spatial_dims),
            receptive_field=list(self.field.rf) if self.field else None,
            jump=list(self.field.jump) if self.field else None,
        )


def walk(
    model: nn.Module,
    input_shape: tuple[int, ...] | list[int],
    depth: int = 1,
    *,
    name: str | None = None,
) -> Report:
    """Walk a dummy input of ``input_shape`` through ``model`` and report every layer.

    ``depth`` 1 lists the model's direct children (the book's ``for layer in net``); deeper
    levels expand blocks, in execution order. The model is left exactly as it was: same mode,
    same device, same buffers, no hooks.
    """
    input_shape = _check_input_shape(input_shape)
    if depth < 1:
        raise CnnshapeError(
            f"Depth must be at least 1, not {depth}.",
            "Use --depth 1 for the top-level layers, 2 to open blocks, ...",
        )
    name = name or type(model).__name__
    check_no_cycle(model, name)
    qualified = {m: n for n, m in model.named_modules() if n}
    calls: list[_Call] = []
    open_calls: list[_Call] = []  # the modules whose forward is running, innermost last
    counter = _FlopCounter()
    fields = FieldTracker()

    def before(module, args):
        first = args[0] if args else None
        shape = list(first.shape) if isinstance(first, torch.Tensor) else None
        call = _Call(qualified[module], module, shape, counter.flops)
        calls.append(call)
        open_calls.append(call)

    def after(module, args, output):
        call = open_calls.pop()
        call.output_shape = _shape_of(output)
        call.output_bytes = _bytes_of(output)
        call.flops = counter.flops - call.flops_at_start
        call.field = fields.field_of(output)
        call.finished = True

    handles = []
    with shape_only(model) as dummy:
        try:
            for module in qualified:
                handles.append(module.register_forward_pre_hook(before))
                handles.append(module.register_forward_hook(after))
            x = dummy(input_shape)
            fields.seed(x)
            with counter, fields:
                output = model(x)
        except (Exception, SystemExit) as exc:  # a model's own code may call sys.exit()
            failing = open_calls[-1] if open_calls else None
            raise _walk_error(
                name, input_shape, depth, model, calls, counter.flops, failing, exc
            ) from exc
        finally:
            for handle in handles:
                handle.remove()

    return _report(
        name, input_shape, depth, model, calls, counter.flops, _shape_of(output), fields.largest
    )


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


def _report(
    name, input_shape, depth, model, calls, total_flops, output_shape, field: Field | None = None
) -> Report:
    finished = [c for c in calls if c.finished]
    leaves = [c for c in finished if not any(True for _ in c.module.children())]
    params = list(model.parameters())
    return Report(
        model=name,
        input_shape=list(input_shape),
        depth=depth,
        rows=[c.to_row() for c in finished if c.depth <= depth],
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_flops=total_flops,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        activation_bytes=sum(c.output_bytes for c in leaves),
        num_weight_layers=sum(isinstance(c.module, _WEIGHT_LAYERS) for c in finished),
        output_shape=output_shape,
        receptive_field=list(field.rf) if field else None,
        jump=list(field.jump) if field else None,
    )


_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


def _walk_error(
    name, input_shape, depth, model, calls, flops, failing: _Call | None, exc
) -> WalkError:
    partial = _report(name, input_shape, depth, model, calls, flops, None)
    shape = fmt_shape(input_shape)
    if failing is None:
        reason = _first_line(exc)
        return WalkError(
            f"{name} cannot take a {shape} input: {reason}",
            layer=None,
            layer_type=None,
            input_shape=None,
            reason=reason,
            partial=partial,
        )
    layer_type = type(failing.module).__name__
    reason = explain_failure(failing.module, failing.input_shape, exc, calls)
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
    module: nn.Module, input_shape: Shape | None, exc: Exception, calls: list[_Call]
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


def _check_input_shape(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise CnnshapeError(
            f"Input shape {shape} is not a tuple of positive integers.",
            "Give (batch, channels, height, width), e.g. (1, 1, 224, 224).",
        )
    if math.prod(shape) > _LARGEST_TENSOR:
        raise CnnshapeError(
            f"An input of shape {fmt_shape(shape)} has {math.prod(shape):.3g} elements, more "
            "than a PyTorch tensor can hold (2^63 - 1).",
            "Give a smaller --batch, --size or --in-channels.",
        )
    return shape


_LARGEST_TENSOR = 2**63 - 1  # sizes and element counts are int64 in PyTorch


@contextlib.contextmanager
def shape_only(model: nn.Module) -> Iterator[Callable[[tuple[int, ...]], torch.Tensor]]:
    """Run ``model`` on data-free dummy inputs: yields ``dummy(shape) -> tensor``.

    Inside: eval mode (BatchNorm1d at batch 1 works; dropout is a no-op), no autograd, and
    meta or fake tensors, so nothing is computed or allocated. On exit the model is as it was.
    """
    device, dtype = input_device_and_dtype(model)
    with left_as_it_was(model), torch.no_grad(), _no_real_arithmetic(model), ShapeRules():
        model.eval()
        yield lambda shape: torch.empty(shape, dtype=dtype, device=device)


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


def _shape_of(output) -> Shape | None:
    return list(output.shape) if isinstance(output, torch.Tensor) else None


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

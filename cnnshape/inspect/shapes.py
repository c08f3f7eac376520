"""Exact output shapes for the few ops whose meta kernels are slow Python, so a walk never
pays for PyTorch's Python decompositions.

On meta and fake tensors many aten ops find their output shape in Python: ``addmm``,
``cat``, ``mean``, ``native_batch_norm`` and in-place activations fall into decompositions
that, on their first call, import ``torch._dynamo`` (about a second); convolution and pooling
have Python meta kernels whose checks import sympy (half a second). That is start-up paid for
nothing (nothing here is compiled or symbolic). For those ops, and for pointwise arithmetic,
`ShapeRules` answers with an empty tensor of the right shape and dtype.

Every rule is exact by construction: it only answers the cases it fully understands
(contiguous floating tensors of one dtype, plain settings) and hands everything else to
PyTorch's own kernel. The refusals a size scan meets at every model (a window larger than
its input, a Linear layer's width) are raised with the meta kernel's own message. Tests
compare every rule, outputs and refusals alike, with PyTorch's meta kernels on the
registry's and torchvision's models.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Float-in, float-out pointwise ops common in CNN forwards: the output is the broadcast of
# the inputs, in their dtype. Their in-place variants (relu_, add_, ...) return their first
# input, whose shape the broadcast must keep.
_POINTWISE_NAMES = (
    "relu", "sigmoid", "tanh", "hardtanh", "clamp", "gelu", "silu", "hardswish", "hardsigmoid",
    "leaky_relu", "elu", "add", "sub", "mul", "div", "sqrt", "rsqrt", "exp", "neg",
)  # fmt: skip
POINTWISE = {getattr(aten, name) for name in _POINTWISE_NAMES}
POINTWISE_IN_PLACE = {
    getattr(aten, name + "_") for name in _POINTWISE_NAMES if hasattr(aten, name + "_")
}


class ShapeRules(TorchDispatchMode):
    """While active, the ops in ``RULES`` get their output from a shape rule."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # PyTorch wraps a mode's __torch_dispatch__ in dynamo.disable unless told not to,
        # which imports torch._dynamo on the first op. Nothing here runs under torch.compile.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _rule_for(func)
        if rule is not None and not kwargs.get("out"):
            result = rule(*args, **kwargs)
            if result is not None:
                return result
        return func(*args, **kwargs)


def _rule_for(func):
    packet = func._overloadpacket
    if packet in POINTWISE and not func._schema.is_mutable:  # not the out= overloads
        return _pointwise
    if packet in POINTWISE_IN_PLACE:
        return _pointwise_in_place
    return RULES.get(func)


# ---- the rules: each returns the output, or None to let PyTorch's kernel decide ---------------


def _one_float_dtype(tensors, contiguous: bool = True) -> torch.dtype | None:
    """The common dtype when every tensor is floating point and of one dtype, and, where the
    output's layout follows the inputs', contiguous (the plain case), else None."""
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) == 1 and next(iter(dtypes)).is_floating_point:
        if not contiguous or all(t.is_contiguous() for t in tensors):
            return dtypes.pop()
    return None


def _tensors(args, kwargs) -> list[torch.Tensor]:
    return [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]


def _broadcast(tensors) -> list[int] | None:
    """The broadcast of the tensors' shapes, or None where they do not broadcast (the op
    then raises its own error). Plain integers: torch.broadcast_shapes imports sympy."""
    ndim = max(t.dim() for t in tensors)
    out = [1] * ndim
    for t in tensors:
        for axis, size in enumerate(t.shape, start=ndim - t.dim()):
            if size != 1:
                if out[axis] not in (1, size):
                    return None
                out[axis] = size
    return out


def _pointwise(*args, **kwargs):
    tensors = _tensors(args, kwargs)
    dtype = _one_float_dtype(tensors) if tensors else None
    shape = _broadcast(tensors) if dtype is not None else None
    if shape is None:
        return None
    return torch.empty(shape, dtype=dtype, device=tensors[0].device)


def _pointwise_in_place(self, *args, **kwargs):
    tensors = [self, *_tensors(args, kwargs)]
    if _one_float_dtype(tensors) is None or _broadcast(tensors) != list(self.shape):
        return None
    return self  # an in-place op returns its first input, which keeps its shape


def _mm(a, b):
    # A matrix product's output is a new contiguous matrix whatever its inputs' layout (a
    # Linear layer passes its weight transposed).
    if a.dim() != 2 or b.dim() != 2 or _one_float_dtype([a, b], contiguous=False) is None:
        return None
    if a.shape[1] != b.shape[0]:
        # The meta kernel's own words (an input size a Linear layer refuses, often).
        raise RuntimeError(
            f"a and b must have same reduction dim, but got {list(a.shape)} X {list(b.shape)}."
        )
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)


def _addmm(bias, a, b, *, beta=1, alpha=1):
    if _one_float_dtype([bias, a], contiguous=False) is None:
        return None
    out = _mm(a, b)
    return out if out is not None and _broadcast([bias, out]) == list(out.shape) else None


def _cat(tensors, dim=0):
    tensors = list(tensors)
    first = tensors[0] if tensors else None
    if first is None or first.dim() == 0 or _one_float_dtype(tensors) is None:
        return None
    dim = dim % first.dim()
    rest = [s for i, s in enumerate(first.shape) if i != dim]
    for t in tensors:  # same rank, same sizes except along dim (no legacy 1-D empties)
        if t.dim() != first.dim() or [s for i, s in enumerate(t.shape) if i != dim] != rest:
            return None
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return torch.empty(shape, dtype=first.dtype, device=first.device)


def _mean(x, dim=None, keepdim=False, *, dtype=None):
    if not dim or dtype is not None or _one_float_dtype([x]) is None or x.dim() == 0:
        return None  # no dims means "all of them" in some versions: let PyTorch decide
    dim = [dim] if isinstance(dim, int) else list(dim)
    axes = {d % x.dim() for d in dim}
    if len(axes) != len(dim):
        return None  # a repeated axis is an error PyTorch reports
    shape = [1 if i in axes else s for i, s in enumerate(x.shape) if keepdim or i not in axes]
    return torch.empty(shape, dtype=x.dtype, device=x.device)


def _convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """PyTorch's formula, (size + 2 padding - dilation (kernel - 1) - 1) // stride + 1, for
    plain (not transposed) convolutions."""
    spatial = x.dim() - 2
    if transposed or spatial < 1 or weight.dim() != x.dim() or x.shape[0] < 1:
        return None
    if _one_float_dtype([x, weight]) is None or x.shape[1] != weight.shape[1] * groups:
        return None
    if bias is not None and bias.shape != weight.shape[:1]:
        return None
    stride, padding, dilation = (_per_axis(v, spatial) for v in (stride, padding, dilation))
    if None in (stride, padding, dilation) or min(stride) < 1:
        return None
    padded = [size + 2 * p for size, p in zip(x.shape[2:], padding, strict=True)]
    reach = [d * (k - 1) + 1 for k, d in zip(weight.shape[2:], dilation, strict=True)]
    if any(have < need for have, need in zip(padded, reach, strict=True)):
        # The meta kernel's own words (an input smaller than a window, as in a size scan).
        raise RuntimeError(
            f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). "
            f"Kernel size: ({' x '.join(map(str, reach))}). "
            "Kernel size can't be greater than actual input size"
        )
    sizes = [(have - need) // s + 1 for have, need, s in zip(padded, reach, stride, strict=True)]
    return torch.empty((x.shape[0], weight.shape[0], *sizes), dtype=x.dtype, device=x.device)


def _pooled_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool):
    """PyTorch's pooling_output_shape, or None where the layer's settings are refused."""
    reach = dilation * (kernel - 1) + 1
    if kernel < 1 or stride < 1 or dilation < 1 or pad < 0 or pad > kernel // 2:
        return None
    out = (size + 2 * pad - reach + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def _pool2d(x, kernel, stride, padding, dilation, ceil_mode):
    if x.dim() != 4 or min(x.shape) < 1 or _one_float_dtype([x]) is None:
        return None
    kernel, padding, dilation = (_per_axis(v, 2) for v in (kernel, padding, dilation))
    stride = _per_axis(stride, 2) if stride else kernel
    if None in (kernel, stride, padding, dilation):
        return None
    sizes = [
        _pooled_size(*args, ceil_mode)
        for args in zip(x.shape[2:], kernel, stride, padding, dilation, strict=True)
    ]
    if None in sizes:
        return None
    if min(sizes) < 1:
        # The meta kernel's own words (an input smaller than a window, as in a size scan).
        given, calculated = (f"{x.shape[1]}x{h}x{w}" for h, w in (x.shape[2:], sizes))
        raise RuntimeError(
            f"Given input size: ({given}). Calculated output size: ({calculated}). "
            "Output size is too small"
        )
    return [x.shape[0], x.shape[1], *sizes]


def _max_pool2d(x, kernel, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    shape = _pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    if shape is None:
        return None
    values = torch.empty(shape, dtype=x.dtype, device=x.device)
    return values, torch.empty(shape, dtype=torch.int64, device=x.device)


def _avg_pool2d(
    x,
    kernel,
    stride=(),
    padding=(0,),
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    if divisor_override == 0:
        return None
    shape = _pool2d(x, kernel, stride, padding, (1,), ceil_mode)
    return None if shape is None else torch.empty(shape, dtype=x.dtype, device=x.device)


def _per_axis(value, axes: int) -> list[int] | None:
    """An int or a list of one or ``axes`` ints, as one int per axis (None: malformed)."""
    value = [value] if isinstance(value, int) else list(value)
    if len(value) == 1:
        return value * axes
    return value if len(value) == axes else None


def _batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps):
    if x.dim() < 2 or _one_float_dtype([x]) is None:
        return None
    channels = x.shape[1]
    per_channel = [t for t in (weight, bias, running_mean, running_var) if t is not None]
    if any(t.shape != (channels,) for t in per_channel):
        return None
    # The saved mean and inverse std are kept in float32 for half inputs, as PyTorch does.
    stats_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return (
        torch.empty(x.shape, dtype=x.dtype, device=x.device),
        torch.empty((channels,), dtype=stats_dtype, device=x.device),
        torch.empty((channels,), dtype=stats_dtype, device=x.device),
    )


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    n = len(normalized_shape)
    if n == 0 or x.dim() < n or list(x.shape[-n:]) != list(normalized_shape):
        return None
    if _one_float_dtype([x]) is None or any(
        t is not None and list(t.shape) != list(normalized_shape) for t in (weight, bias)
    ):
        return None
    stats_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    stats = [*x.shape[:-n], *([1] * n)]
    return (
        torch.empty(x.shape, dtype=x.dtype, device=x.device),
        torch.empty(stats, dtype=stats_dtype, device=x.device),
        torch.empty(stats, dtype=stats_dtype, device=x.device),
    )


def _softmax(x, dim, half_to_float=False):
    if _one_float_dtype([x]) is None or half_to_float:
        return None
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


RULES = {
    aten.convolution.default: _convolution,
    aten.max_pool2d_with_indices.default: _max_pool2d,
    aten.avg_pool2d.default: _avg_pool2d,
    aten.mm.default: _mm,
    aten.addmm.default: _addmm,
    aten.cat.default: _cat,
    aten.mean.dim: _mean,
    aten.native_batch_norm.default: _batch_norm,
    aten.native_layer_norm.default: _layer_norm,
    aten._softmax.default: _softmax,
}

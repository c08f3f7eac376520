"""Receptive fields, tracked tensor by tensor during the walk.

Every tensor the forward produces gets a `Field`: per spatial axis (height, width, ...) the
receptive field (how many input positions, padding included, one output position can
depend on) and the jump (input positions between neighbouring output positions). It is
computed at the dispatch level, so functional ops and custom blocks need no special case:

- convolution and pooling with a fixed window grow it: ``rf += (k - 1) * dilation * jump``
  and ``jump *= stride`` (padding shifts a field but does not change its size);
- adaptive pooling uses PyTorch's own windows (start ``floor(j*in/out)``, end
  ``ceil((j+1)*in/out)``): the largest window and the largest step between windows. Global
  pooling (output 1, or a mean/max over the spatial axes) makes each output depend on every
  input position: the field becomes the whole input's, ``rf + (in - 1) * jump``;
- every other op (activations, BatchNorm, ``x + identity``, ``torch.cat``, views) takes the
  largest field and jump among its inputs: the largest field over all paths. The jump
  comes from inputs not globally pooled when there are any (a squeeze-and-excitation scale
  widens the field, not the spacing).

A field belongs to the model input's axes, not a tensor's: permutes and reshapes (ConvNeXt's
channels-last blocks, a channel shuffle) carry it unchanged, and windowed ops apply to their
trailing axes, as PyTorch's do. The model's field is the largest one not derived from global
pooling alone. Not modelled: transposed convolutions and upsampling (no field), attention
(a transformer's tokens keep their patch's field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary


@dataclass(frozen=True)
class Field:
    """The receptive field of a tensor, per spatial axis of the model's input (height first)."""

    rf: tuple[int, ...]
    jump: tuple[int, ...]
    pooled: bool = False  # derived from global pooling alone (its field spans the whole input)


_aten = torch.ops.aten
_WINDOWED = {  # op -> index of its dilation argument (None: the op has none)
    _aten.max_pool1d: 4,
    _aten.max_pool2d: 4,
    _aten.max_pool3d: 4,
    _aten.max_pool2d_with_indices: 4,
    _aten.max_pool3d_with_indices: 4,
    _aten.avg_pool1d: None,
    _aten.avg_pool2d: None,
    _aten.avg_pool3d: None,
}
_ADAPTIVE = {
    _aten._adaptive_avg_pool2d,
    _aten._adaptive_avg_pool3d,
    _aten.adaptive_max_pool2d,
    _aten.adaptive_max_pool3d,
}
# adaptive_avg_pool2d(x, 1) reaches the dispatcher as x.mean((-1, -2), keepdim=True).
_REDUCTIONS = {_aten.mean, _aten.sum, _aten.amax}
_NOT_MODELLED = {
    _aten.upsample_nearest2d,
    _aten.upsample_bilinear2d,
    _aten._upsample_nearest_exact2d,
    _aten.upsample_bicubic2d,
}
_GROWING = {_aten.convolution, *_WINDOWED, *_ADAPTIVE, *_REDUCTIONS, *_NOT_MODELLED}


class FieldTracker(TorchDispatchMode):
    """While active, remembers the Field of every tensor derived from the `seed`ed input."""

    def __init__(self):
        super().__init__()
        self.fields = WeakTensorKeyDictionary()  # no id reuse: entries die with their tensor
        self.largest: Field | None = None  # the model's field: the largest not pooled
        self.seeded = False

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # as _FlopCounter: no torch._dynamo import (a second) for nothing

    def seed(self, x: torch.Tensor) -> None:
        """Fields are over ``x``'s spatial axes (all but batch and channels)."""
        self.seeded = True
        if x.dim() > 2:
            self.fields[x] = Field((1,) * (x.dim() - 2), (1,) * (x.dim() - 2))

    def field_of(self, output) -> Field | None:
        """A layer's field; None unless its output still has spatial axes (after Flatten)."""
        if isinstance(output, torch.Tensor) and output.dim() > 2:
            return self.fields.get(output)
        return None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        known = [self.fields[t] for t in inputs if t in self.fields]
        if known:
            op = func._overloadpacket
            field = _grown(op, args, kwargs, known[0]) if op in _GROWING else _merge(known)
            for t in tree_leaves(out):
                if field is not None and isinstance(t, torch.Tensor):
                    self._assign(t, field)
        return out

    def _assign(self, t: torch.Tensor, field: Field) -> None:
        self.fields[t] = field
        if (
            t.dim() > 2
            and not field.pooled
            and (self.largest is None or math.prod(field.rf) > math.prod(self.largest.rf))
        ):
            self.largest = field


def _grown(op, args, kwargs, field: Field) -> Field | None:
    """Ops with a window over the trailing (spatial) axes grow their first argument's field."""
    x, dims = args[0], len(field.rf)
    if op is _aten.convolution:
        weight, stride, dilation, transposed = args[1], args[3], args[5], args[6]
        if transposed or weight.dim() - 2 != dims:
            return None
        return _window(field, weight.shape[2:], stride, dilation)
    if op in _WINDOWED:
        kernel = _expand(args[1], dims)
        stride = _expand(args[2], dims) if len(args) > 2 and args[2] else kernel
        at = _WINDOWED[op]
        dilation = _expand(args[at], dims) if at is not None and len(args) > at else [1] * dims
        return _window(field, kernel, stride, dilation)
    if op in _ADAPTIVE:
        return _adaptive(field, list(x.shape[-dims:]), _expand(args[1], dims))
    if op in _REDUCTIONS:
        return _reduction(field, x, args[1] if len(args) > 1 else kwargs.get("dim"))
    return None  # _NOT_MODELLED


def _expand(value, dims: int) -> list[int]:
    """A window's sizes for the ``dims`` trailing axes the field has. A 1-D op can reach the
    dispatcher as its 2-D form on an unsqueezed tensor (max_pool1d as max_pool2d with a
    1 x k window): the window's leading sizes then belong to no axis of the field."""
    value = [value] if isinstance(value, int) else list(value)
    if len(value) == 1:
        return value * dims
    return ([1] * (dims - len(value)) + value)[-dims:]


def _window(field: Field, kernel, stride, dilation) -> Field:
    rf = tuple(
        r + (k - 1) * d * j
        for r, k, d, j in zip(field.rf, kernel, dilation, field.jump, strict=True)
    )
    jump = tuple(j * s for j, s in zip(field.jump, stride, strict=True))
    return Field(rf, jump, field.pooled)  # a layer after global pooling stays after it


def _adaptive(field: Field, sizes: list[int], outs: list[int]) -> Field:
    kernel, step = [], []
    for n, out in zip(sizes, outs, strict=True):
        starts = [math.floor(j * n / out) for j in range(out)]
        ends = [math.ceil((j + 1) * n / out) for j in range(out)]
        kernel.append(max(e - s for s, e in zip(starts, ends, strict=True)))
        step.append(max((b - a for a, b in zip(starts, starts[1:], strict=False)), default=n))
    grown = _window(field, kernel, step, [1] * len(sizes))
    return Field(grown.rf, grown.jump, pooled=field.pooled or all(o == 1 for o in outs))


def _reduction(field: Field, x: torch.Tensor, dim) -> Field:
    """mean/sum/amax over spatial axes: global pooling on those axes."""
    dims = len(field.rf)
    if dim is None or x.dim() < dims + 2:
        return field
    reduced = {d % x.dim() for d in ([dim] if isinstance(dim, int) else dim)}
    spatial = [x.dim() - dims + axis in reduced for axis in range(dims)]
    kernel = [s if r else 1 for s, r in zip(x.shape[-dims:], spatial, strict=True)]
    grown = _window(field, kernel, kernel, [1] * dims)
    return Field(grown.rf, grown.jump, pooled=field.pooled or all(spatial))


def _merge(known: list[Field]) -> Field:
    """The largest field over all inputs (a branch's, a shortcut's, a concatenated one's).

    The jump comes from the inputs not globally pooled when there are any: a squeeze-and-
    excitation scale (one value per channel, broadcast) widens the field, not the spacing.
    """
    spaced = [f for f in known if not f.pooled] or known
    dims = range(len(known[0].rf))
    return Field(
        tuple(max(f.rf[i] for f in known) for i in dims),
        tuple(max(f.jump[i] for f in spaced) for i in dims),
        pooled=all(f.pooled for f in known),
    )

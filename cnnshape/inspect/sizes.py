"""Which square input sizes a network accepts, and why the others fail.

Every size from 1 to ``up_to`` is checked, none is guessed. It stays cheap because a layer's
output shape depends only on its input shape: each layer's result is memoized per input
shape, and after the first strided layer most sizes collapse onto a few shapes (AlexNet's
1024 sizes cost about 1,100 layer calls instead of 22,000). All on meta/fake tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CnnshapeError, WalkError
from .report import DEFAULT_UP_TO, Report, SizeRange, SizeScan
from .walk import shape_only, walk


@dataclass(frozen=True)
class _Failed:
    layer: str  # qualified name of the layer that refused its input


def scan_sizes(
    model: nn.Module, in_channels: int = 1, up_to: int = DEFAULT_UP_TO, *, name: str | None = None
) -> SizeScan:
    """Check every square input ``1x{in_channels}xSxS`` for S in 1..up_to."""
    if up_to < 1:
        raise CnnshapeError(f"The largest size to check must be at least 1, not {up_to}.")
    name = name or type(model).__name__
    with shape_only(model) as dummy:
        propagate = _Propagator(model, dummy)
        with propagate.installed():
            outcomes = [propagate((1, in_channels, s, s)) for s in range(1, up_to + 1)]

    valid, failed_runs = [], []
    for lo, hi, outcome in _runs(outcomes):
        if isinstance(outcome, _Failed):
            failed_runs.append((lo, hi))
        else:
            valid.append((lo, hi))
    invalid = [_explain(model, name, in_channels, lo, hi) for lo, hi in failed_runs]
    return SizeScan(name, in_channels, up_to, valid, invalid)


class _Refused(Exception):
    def __init__(self, failed: _Failed):
        super().__init__(failed.layer)
        self.failed = failed


# Layers whose output shape is their input shape by definition: the scan skips calling them
# (BatchNorm on meta tensors runs a slow Python decomposition).
_SHAPE_PRESERVING = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Identity)


class _Propagator:
    """Routes every submodule's forward through a memo keyed by (module, input shape).

    A cached call returns a fresh dummy tensor of the remembered shape, so the work for a
    layer is done once per distinct input shape, inside custom blocks (Residual, Inception,
    DenseBlock) as well as in nn.Sequential. A refused input is remembered too, with the name
    of the innermost layer that refused it.
    """

    def __init__(self, model: nn.Module, dummy):
        self.model = model
        self.dummy = dummy
        self.memo: dict[tuple[int, tuple[int, ...]], tuple[int, ...] | _Failed | None] = {}

    def __call__(self, shape: tuple[int, ...]) -> tuple[int, ...] | _Failed | None:
        try:
            out = self.model(self.dummy(shape))
        except _Refused as refused:
            return refused.failed
        except (Exception, SystemExit):  # a model's own code may call sys.exit()
            return _Failed("(model)")
        return tuple(out.shape) if isinstance(out, torch.Tensor) else None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        # An instance attribute `forward` shadows the class's method for nn.Module.__call__;
        # deleting it afterwards restores the module exactly.
        patched = [m for _, m in self.model.named_modules() if "forward" not in vars(m)]
        for name, module in self.model.named_modules():
            if module in patched:
                module.forward = self._memoized(module, name or "(model)", module.forward)
        try:
            yield
        finally:
            for module in patched:
                del module.forward

    def _memoized(self, module: nn.Module, name: str, forward):
        def call(*args, **kwargs):
            x = args[0] if len(args) == 1 and not kwargs else None
            if not isinstance(x, torch.Tensor):
                return forward(*args, **kwargs)  # not a single-tensor call: nothing to key on
            key = (id(module), tuple(x.shape))
            if key not in self.memo:
                self.memo[key] = self._output_shape(module, name, forward, x)
            result = self.memo[key]
            if isinstance(result, _Failed):
                raise _Refused(result)
            return forward(x) if result is None else self.dummy(result)

        return call

    def _output_shape(self, module, name, forward, x):
        if isinstance(module, _SHAPE_PRESERVING):
            return tuple(x.shape)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and x.shape[1:2] == (
            module.num_features,
        ):
            try:
                module._check_input_dim(x)  # its rank (BatchNorm1d takes no image), cheaply
            except ValueError:
                return _Failed(name)
            return tuple(x.shape)
        try:
            out = forward(x)
        except _Refused as refused:
            return refused.failed
        except (Exception, SystemExit):  # a model's own code may call sys.exit()
            return _Failed(name)
        return tuple(out.shape) if isinstance(out, torch.Tensor) else None


def _runs(outcomes):
    """Group consecutive sizes (1-based) whose outcome is alike: valid, or failed at one layer."""

    def kind(o):
        return o if isinstance(o, _Failed) else "ok"

    start = 0
    for i in range(1, len(outcomes) + 1):
        if i == len(outcomes) or kind(outcomes[i]) != kind(outcomes[start]):
            yield start + 1, i, outcomes[start]
            start = i


def _explain(model, name, in_channels, lo, hi) -> SizeRange:
    """Walk once at the first failing size of a run to say why in words."""
    try:
        walk(model, (1, in_channels, lo, lo), name=name)
    except WalkError as err:
        return SizeRange(lo, hi, err.layer or "(model)", err.reason)
    # Unreachable unless the model's shapes depend on more than the input shape.
    return SizeRange(lo, hi, "(model)", "failed during the size scan only")


def walk_explained(
    model: nn.Module, input_shape: tuple[int, ...], depth: int = 1, *, name: str | None = None
) -> Report:
    """``walk``, and when an image-shaped input is refused, an error whose hint names the
    square sizes the model does accept (none: no hint, the failure is not about size)."""
    try:
        return walk(model, input_shape, depth, name=name)
    except WalkError as err:
        if len(input_shape) != 4 or err.hint is not None:
            raise
        scan = scan_sizes(model, input_shape[1], name=name)
        if not scan.valid:
            raise
        raise err.with_hint(
            f"{scan.model} accepts square inputs of size {scan.describe_valid()}."
        ) from err

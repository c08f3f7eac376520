"""Which input sizes a network accepts, and why the others fail: every size S of the first
input's spatial axes (a square image SxS, a waveform of length S, a clip SxSxS).

Every size from 1 to ``up_to`` is checked, none is guessed. It stays cheap because a layer's
output shape depends only on its input shape: each layer's result is memoized per input
shape, and after the first strided layer most sizes collapse onto a few shapes (AlexNet's
1024 sizes cost about 1,100 layer calls instead of 22,000). All on meta/fake tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..errors import CnnshapeError, WalkError
from .inputs import InputSpec, as_specs
from .report import DEFAULT_UP_TO, Report, SizeRange, SizeScan
from .walk import shape_only, walk


@dataclass(frozen=True)
class _Failed:
    layer: str  # qualified name of the layer that refused its input


def scan_sizes(
    model: nn.Module,
    inputs: int | Sequence[InputSpec] = 1,
    up_to: int = DEFAULT_UP_TO,
    *,
    name: str | None = None,
) -> SizeScan:
    """Check every size S in 1..up_to of the first input's spatial axes (all but batch and
    channels, each set to S), the other inputs as given. ``inputs`` may be just the channels
    of one image: ``1 x in_channels x S x S``."""
    if up_to < 1:
        raise CnnshapeError(f"The largest size to check must be at least 1, not {up_to}.")
    specs = _scanned(inputs)
    name = name or type(model).__name__
    with shape_only(model) as dummy:
        propagate = _Propagator(model, dummy, specs)
        with propagate.installed():
            outcomes = [propagate(s) for s in range(1, up_to + 1)]

    valid, failed_runs = [], []
    for lo, hi, outcome in _runs(outcomes):
        if isinstance(outcome, _Failed):
            failed_runs.append((lo, hi))
        else:
            valid.append((lo, hi))
    invalid = [_explain(model, name, specs, lo, hi) for lo, hi in failed_runs]
    first = specs[0]
    pattern = "x".join(map(str, first.shape[:2])) + "xS" * (len(first.shape) - 2)
    return SizeScan(name, first.shape[1], up_to, valid, invalid, pattern=pattern)


def _scanned(inputs: int | Sequence[InputSpec]) -> list[InputSpec]:
    specs = [InputSpec((1, inputs, 1, 1))] if isinstance(inputs, int) else list(inputs)
    if len(specs[0].shape) < 3:
        raise CnnshapeError(
            f"The input {specs[0].describe()} has no spatial axis to scan (it is "
            "batch x features).",
            "`cnnshape sizes` scans the axes after batch and channels: give such an input.",
        )
    return specs


def at_size(specs: Sequence[InputSpec], size: int) -> list[InputSpec]:
    """The inputs with the first one's spatial axes set to ``size``."""
    first = specs[0]
    scanned = replace(first, shape=(*first.shape[:2], *[size] * (len(first.shape) - 2)))
    return [scanned, *specs[1:]]


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

    def __init__(self, model: nn.Module, dummy, specs: list[InputSpec]):
        self.model = model
        self.dummy = dummy
        self.specs = specs
        self.memo: dict[tuple[int, tuple[int, ...]], tuple[int, ...] | _Failed | None] = {}

    def __call__(self, size: int) -> tuple[int, ...] | _Failed | None:
        args, kwargs = [], {}
        for spec in at_size(self.specs, size):
            if spec.name:
                kwargs[spec.name] = self.dummy(spec)
            else:
                args.append(self.dummy(spec))
        try:
            out = self.model(*args, **kwargs)
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
            if result is None:
                return forward(x)
            return self.dummy(InputSpec(result, str(x.dtype).removeprefix("torch.")))

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


def _explain(model, name, specs, lo, hi) -> SizeRange:
    """Walk once at the first failing size of a run to say why in words."""
    try:
        walk(model, at_size(specs, lo), name=name)
    except WalkError as err:
        return SizeRange(lo, hi, err.layer or "(model)", err.reason)
    # Unreachable unless the model's shapes depend on more than the input shape.
    return SizeRange(lo, hi, "(model)", "failed during the size scan only")


def walk_explained(
    model: nn.Module, inputs, depth: int = 1, *, name: str | None = None, **options
) -> Report:
    """``walk`` (``options``: its ``ops``, ``convention``), and when an input with spatial
    axes is refused, an error whose hint names the sizes the model does accept (none: no
    hint, the failure is not about size)."""
    try:
        return walk(model, inputs, depth, name=name, **options)
    except WalkError as err:
        specs = as_specs(inputs)
        if len(specs[0].shape) < 3 or err.hint is not None:
            raise
        scan = scan_sizes(model, specs, name=name)
        if not scan.valid:
            raise
        raise err.with_hint(f"{scan.model} accepts {scan.what} {scan.describe_valid()}.") from err

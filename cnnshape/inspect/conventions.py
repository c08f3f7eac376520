"""Counting conventions: one forward pass counted the way PyTorch, fvcore and ptflops count it.

Users compare cnnshape's MACs with fvcore's and ptflops' and find three numbers for one
network (ResNet-18 at 224x224: 1.81 G, 1.82 G, 1.83 G). None of them is a bug: each tool
counts different things. A convention reproduces one tool's total exactly, so that the
difference has a name. The unit is MACs everywhere (one multiply-add = 1); FLOPs = 2 x MACs
whatever the convention.

The tools count at three levels, and so does a `Convention`:

- ``count``: one aten op, as a ``TorchDispatchMode`` sees it. ``torch`` counts here (the
  formulas of ``FlopCounterMode``), and so does ``fvcore``: fvcore counts the ops of a
  TorchScript trace, where composite ops are still whole (``aten::linear``,
  ``aten::matmul``); at dispatch they arrive as their pieces (``mm``, ``addmm``, ``bmm``),
  whose counts add up to the same.
- ``module_count``: one call of an ``nn.Module``. ptflops' default backend in 0.7.5 is
  ``pytorch`` (the default of ``get_model_complexity_info``, although its README says
  ``aten``): forward hooks on the module types it knows, matched by exact type.
- ``function_count``: one call of a torch function, as a ``TorchFunctionMode`` sees it.
  While it runs, ptflops also patches ``F.relu`` and a few more activations, the pooling
  functions, ``F.softmax``, ``F.interpolate`` and ``torch.matmul``/``mm``/``bmm``/``addmm``/
  ``baddbmm``/``add``/``mul`` with their Tensor methods.

How the levels combine (`Tally` does exactly this; the walk must do the same):

1. A module the convention counts as a whole adds ``module_count`` when its forward
   returns. While it runs, nothing inside it is counted at the module or op level: ptflops
   sums its hooks from the root down and stops at a module it knows.
2. A function call the convention counts adds ``function_count`` wherever it is, inside
   counted modules too: ptflops' patched functions count everywhere, which is why it counts
   an ``nn.ReLU`` twice (the module's hook, then the ``F.relu`` of its forward). The ops
   inside the call are not counted again. An operator (``x + y``) is no call: see
   `Convention.counts_function`.
3. Every other aten op adds ``count``. One that computes but that the convention neither
   counts nor leaves out on purpose is `arithmetic_without_formula`: the total is partial.

Where a tool's own level cannot be seen from these three, the totals differ, by exactly:

- fvcore, on meta tensors: ``scaled_dot_product_attention``, which fvcore does not count,
  falls apart on meta into its math, and fvcore's formula counts that math's two ``bmm``:
  B x heads x L x S x (E + Ev) per call. On CPU tensors it stays one op, uncounted.
- fvcore: a convolution with string padding (``"same"``, ``"valid"``) is traced as
  ``aten::_convolution_mode``, which fvcore does not count; here it is counted. An
  ``einsum`` is counted by its pieces, not by fvcore's ``np.einsum_path`` estimate. And
  ``adaptive_avg_pool2d`` to 1x1 reaches dispatch as ``mean(dim=[-1, -2], keepdim=True)``,
  counted as the pool, so a ``mean`` written that way is counted too.
- ptflops: a patched function that another torch function calls is hidden from a
  ``TorchFunctionMode``: the ``torch.bmm`` and ``softmax`` inside
  ``F.multi_head_attention_forward`` when an ``nn.MultiheadAttention`` returns its weights
  (its default; 2 x B x heads x L x S x E/heads + B x heads x L x S), ``torch.matmul``
  inside ``Tensor.__rmatmul__``; and ``F.upsample`` is no torch function at all (only the
  ``interpolate`` it calls is seen). ptflops counts those; this does not. Its experimental
  hooks (RNN, LSTM, GRU and their cells, torchvision's ``DeformConv2d``, timm's
  ``Attention``) are not reproduced: their ops show as arithmetic without a formula. And
  ptflops runs batch 1 and divides its module hooks (not its function hooks) by the batch;
  a convention counts the whole batch.

One more for every dispatch-level count: on CPU tensors (fake ones too) under no_grad,
``nn.MultiheadAttention`` runs fused, as one ``_native_multi_head_attention`` op that no
convention has a formula for, projections included. On meta, with grad, or while a
``TorchFunctionMode`` is active (ptflops' ``Tally``), it runs op by op.
"""

from __future__ import annotations

import contextlib
import dis
import math
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from . import flop_formulas

aten = torch.ops.aten

# An op formula takes one aten call as a TorchDispatchMode sees it: (func, args, kwargs, out).
OpFormula = Callable[..., "int | None"]


@dataclass(frozen=True)
class Convention:
    """How one tool counts MACs: formulas per aten op, per module type and per function."""

    name: str
    description: str
    ops: Mapping[torch._ops.OpOverloadPacket, OpFormula]
    left_out: frozenset  # aten packets that compute but are not counted, on purpose
    modules: Mapping[type[nn.Module], Callable[..., int]] = field(default_factory=dict)
    functions: Mapping[Callable, Callable[..., int]] = field(default_factory=dict)

    def count(self, func, args, kwargs, out) -> int | None:
        """MACs of one aten op call, or None when this convention does not count it."""
        formula = self.ops.get(func._overloadpacket)
        return None if formula is None else formula(func, args, kwargs, out)

    def counts_module(self, module: nn.Module) -> bool:
        """Whether ``module`` is counted as a whole (ask before its forward runs)."""
        return type(module) in self.modules

    def module_count(self, module: nn.Module, args: tuple, output) -> int | None:
        """MACs of one module call, from its positional inputs and output as a forward hook
        gets them, or None: count what runs inside it instead."""
        formula = self.modules.get(type(module))
        return None if formula is None else int(formula(module, args, output))

    def counts_function(self, func, caller: FrameType) -> bool:
        """Whether a torch function call is counted as a whole. Ask in a TorchFunctionMode's
        ``__torch_function__``, before the call, with ``caller = sys._getframe(1)``.

        ``x + y`` reaches the mode as ``Tensor.add``, as ``x.add(y)`` does, but Python runs
        the operator without looking the method up, so the tools that patch methods
        (ptflops) do not see it: the caller's bytecode tells the operator from the call.
        """
        return func in self.functions and not _runs_operator(caller)

    def function_count(self, func, args, kwargs, out) -> int | None:
        """MACs of one torch function call (as a TorchFunctionMode sees it), or None."""
        formula = self.functions.get(func)
        return None if formula is None else int(formula(*args, **kwargs))


def _runs_operator(frame: FrameType) -> bool:
    return dis.opname[frame.f_code.co_code[frame.f_lasti]].startswith(("BINARY_", "INPLACE_"))


def arithmetic_without_formula(func, convention: Convention) -> bool:
    """Whether an aten op computes (it is no view, copy or metadata op) and ``convention``
    neither counts it nor leaves it out on purpose."""
    packet = func._overloadpacket
    if func.is_view or torch.Tag.inplace_view in func.tags or packet in _NO_ARITHMETIC:
        return False
    if func.namespace == "prim":  # metadata a fake tensor answers (prim.device, prim.layout)
        return False
    return packet not in convention.ops and packet not in convention.left_out


class Tally:
    """MACs of what ``model`` runs while this is active, counted under ``convention``, and
    the aten ops that computed without a formula (``uncounted``: name -> calls).

    A walk can count with it and read ``macs`` in its own module hooks: Tally's forward
    hooks go first, so a module's count is in when the walk's hook for it runs.
    """

    def __init__(self, convention: Convention, model: nn.Module):
        self.convention = convention
        self.model = model
        self.macs = 0
        self.uncounted: Counter[str] = Counter()
        self._in_module = 0  # counted modules running now
        self._in_function = 0  # counted function calls running now
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> Tally:
        if self.convention.modules:
            for module in self.model.modules():
                hooks = (
                    module.register_forward_pre_hook(self._module_starts),
                    # First among the module's hooks: another hook sees the module counted.
                    module.register_forward_hook(self._module_ends, prepend=True),
                )
                for hook in hooks:
                    self._exit.callback(hook.remove)
        if self.convention.functions:
            self._exit.enter_context(_Functions(self))
        self._exit.enter_context(_Ops(self))
        return self

    def __exit__(self, *exc) -> None:
        self._exit.close()

    def _module_starts(self, module, args) -> None:
        if self.convention.counts_module(module):
            self._in_module += 1

    def _module_ends(self, module, args, output) -> None:
        if self.convention.counts_module(module):
            self._in_module -= 1
            if not self._in_module:
                self.macs += self.convention.module_count(module, args, output)

    def _function(self, func, caller, args, kwargs):
        if not self.convention.counts_function(func, caller):
            return func(*args, **kwargs)
        self._in_function += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self._in_function -= 1
        self.macs += self.convention.function_count(func, args, kwargs, out)
        return out

    def _op(self, func, args, kwargs, out) -> None:
        if self._in_module or self._in_function:
            return
        macs = self.convention.count(func, args, kwargs, out)
        if macs is not None:
            self.macs += macs
        elif arithmetic_without_formula(func, self.convention):
            self.uncounted[func._overloadpacket.__name__] += 1


class _Functions(TorchFunctionMode):
    def __init__(self, tally: Tally):
        super().__init__()
        self.tally = tally

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.tally._function(func, sys._getframe(1), args, kwargs or {})


class _Ops(TorchDispatchMode):
    def __init__(self, tally: Tally):
        super().__init__()
        self.tally = tally

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # As in the walk: PyTorch would wrap __torch_dispatch__ in dynamo.disable, which
        # imports torch._dynamo (about a second). Counting never runs under torch.compile.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.tally._op(func, args, kwargs, out)
        return out


def _packets(*names: str) -> frozenset:
    """The aten packets of ``names``, with their in-place variants (relu and relu_)."""
    in_place = (getattr(aten, name + "_", None) for name in names)
    return frozenset((*(getattr(aten, name) for name in names), *filter(None, in_place)))


# Ops that move, copy or create data without arithmetic; views are told by their schema.
_NO_ARITHMETIC = _packets(
    "_unsafe_view", "clone", "copy", "_to_copy", "contiguous", "cat", "stack",
    "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "roll", "flip", "repeat",
    "index", "index_select", "gather", "index_put", "slice_scatter", "select_scatter",
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros",
    "zeros_like", "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like",
    "new_full", "fill", "zero", "arange", "scalar_tensor", "lift_fresh", "lift_fresh_copy",
    "detach", "_local_scalar_dense", "resize",
)  # fmt: skip


# ---- torch: FlopCounterMode's formulas, halved -------------------------------------------

_torch_formulas = flop_formulas.flop_registry()


def _halved(func, args, kwargs, out) -> int:
    # Every one of them counts a multiply-add as 2 FLOPs.
    return _torch_formulas[func._overloadpacket](*args, **kwargs, out_val=out) // 2


# What FlopCounterMode leaves out by design: it counts the ops that hold nearly all of a
# network's arithmetic, and none of these elementwise ops, norms, pools and reductions.
_MEMORY_BOUND = _packets(
    "add", "sub", "mul", "div", "neg", "abs", "pow", "sqrt", "rsqrt", "exp", "log", "tanh",
    "sigmoid", "relu", "hardtanh", "clamp", "clamp_min", "clamp_max", "gelu", "silu",
    "hardswish", "hardsigmoid", "leaky_relu", "elu", "_prelu_kernel", "addcmul", "addcdiv",
    "lerp", "where", "masked_fill", "eq", "ne", "lt", "le", "gt", "ge", "native_dropout",
    "mean", "sum", "amax", "max", "var", "var_mean", "std", "_softmax", "_safe_softmax",
    "_log_softmax", "native_batch_norm", "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training", "cudnn_batch_norm", "miopen_batch_norm",
    "native_layer_norm", "native_group_norm", "max_pool2d", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "avg_pool2d", "avg_pool3d", "_adaptive_avg_pool2d",
    "_adaptive_avg_pool3d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "upsample_linear1d",
    "upsample_bilinear2d", "upsample_bicubic2d", "upsample_trilinear3d", "grid_sampler_2d",
    "grid_sampler_3d",
)  # fmt: skip


TORCH = Convention(
    name="torch",
    description="PyTorch's FlopCounterMode, whose FLOPs are 2 per multiply-add: matrix "
    "products, convolutions and attention; it leaves out biases, elementwise ops, "
    "normalization, pooling and reductions on purpose.",
    ops=dict.fromkeys(_torch_formulas, _halved),
    left_out=_MEMORY_BOUND,
)


# ---- fvcore: FlopCountAnalysis's handles, from fvcore/nn/jit_handles.py -------------------


def _argument(func, args, kwargs, name: str, missing=None):
    """The argument ``name`` of an aten call, given or default; ``missing`` if it has none."""
    for i, argument in enumerate(func._schema.arguments):
        if argument.name == name:
            return args[i] if i < len(args) else kwargs.get(name, argument.default_value)
    return missing


def _fv_norm(func, args, kwargs, out) -> int:
    # "5 is just a rough estimate" (fvcore): layer and group norm, and batch norm in
    # training (which is also how ATen runs instance norm).
    has_affine = _argument(func, args, kwargs, "weight") is not None
    return args[0].numel() * (5 if has_affine else 4)


def _fv_batch_norm(func, args, kwargs, out) -> int:
    if _argument(func, args, kwargs, "training", missing=False):
        return _fv_norm(func, args, kwargs, out)
    has_affine = _argument(func, args, kwargs, "weight") is not None
    return args[0].numel() * (2 if has_affine else 1)


def _fv_output(scale: int) -> OpFormula:
    return lambda func, args, kwargs, out: scale * out.numel()


def _fv_input(func, args, kwargs, out) -> int:
    return args[0].numel()


def _fv_global_average(func, args, kwargs, out) -> int | None:
    # ATen runs adaptive_avg_pool2d to 1x1 as this mean; fvcore counts the pool (its input)
    # and no other mean.
    dims = _argument(func, args, kwargs, "dim")
    keepdim = _argument(func, args, kwargs, "keepdim")
    return args[0].numel() if list(dims or ()) == [-1, -2] and keepdim else None


# The ops of fvcore's _IGNORED_OPS ("technically truly 0 flops") that compute.
_FVCORE_IGNORED = _packets(
    "relu", "clamp", "max", "floor", "floor_divide", "remainder", "eq", "ge", "gt",
    "bitwise_not", "bitwise_and", "masked_fill", "native_dropout",
)  # fmt: skip

FVCORE = Convention(
    name="fvcore",
    description="fvcore's FlopCountAnalysis, whose 'flops' are MACs: convolutions and "
    "matrix products without biases, batch norm (2 per element), layer and group norm (5), "
    "upsampling and adaptive average pooling; it leaves out relu and clamp on purpose and "
    "has no formula for other elementwise ops, max pooling or attention.",
    ops={
        **dict.fromkeys(
            (aten.convolution, aten._convolution, aten.addmm, aten.mm, aten.bmm), _halved
        ),
        **dict.fromkeys(
            (
                aten.native_batch_norm,
                aten._native_batch_norm_legit,
                aten._native_batch_norm_legit_no_training,
                aten.cudnn_batch_norm,
                aten.miopen_batch_norm,
            ),
            _fv_batch_norm,
        ),
        aten.native_layer_norm: _fv_norm,
        aten.native_group_norm: _fv_norm,
        aten.upsample_nearest2d: _fv_output(1),
        aten.upsample_bilinear2d: _fv_output(4),
        aten._adaptive_avg_pool2d: _fv_input,
        aten.mean: _fv_global_average,
        aten.grid_sampler_2d: _fv_output(4),
        aten.grid_sampler_3d: _fv_output(4),
        aten.cudnn_grid_sampler: _fv_output(4),
    },
    left_out=_FVCORE_IGNORED,
)


# ---- ptflops: the pytorch backend's hooks, from ptflops/pytorch_ops.py --------------------


def _pt_conv(module, args, output, transposed: bool = False) -> int:
    x = args[0]
    batch = x.shape[0]
    per_position = math.prod(module.kernel_size) * module.in_channels
    per_position *= module.out_channels // module.groups
    positions = batch * math.prod((x if transposed else output).shape[2:])
    bias = batch * math.prod(output.shape[1:]) if module.bias is not None else 0
    return per_position * positions + bias


def _pt_conv_transposed(module, args, output) -> int:
    return _pt_conv(module, args, output, transposed=True)


def _pt_output(module, args, output) -> int:
    return output.numel()


def _pt_input(module, args, output) -> int:
    return args[0].numel()


def _pt_norm(module, args, output) -> int:
    # Batch, instance and group norm have `affine`; LayerNorm's is elementwise_affine.
    return args[0].numel() * (2 if getattr(module, "affine", False) else 1)


def _pt_linear(module, args, output) -> int:
    x = args[0]
    bias = output.shape[-1] if module.bias is not None else 0
    return (x.shape[-1] * output.shape[-1] + bias) * math.prod(x.shape[:-1])


def _pt_upsample(module, args, output) -> int:
    return output[0].numel()  # ptflops counts the first image of the batch


def _pt_attention(module, args, output) -> int:
    q, k, v = args
    batch, length_dim = (
        (q.shape[0], 1) if getattr(module, "batch_first", False) else (q.shape[1], 0)
    )
    qlen, klen, vlen = (t.shape[length_dim] for t in (q, k, v))
    qdim, kdim, vdim = (t.shape[2] for t in (q, k, v))
    heads = module.num_heads
    macs = qlen * qdim  # scaling q
    macs += qlen * qdim * qdim + klen * kdim * kdim + vlen * vdim * vdim  # projections
    if module.in_proj_bias is not None:
        macs += (qlen + klen + vlen) * qdim
    per_head = qlen * klen * (qdim // heads) + qlen * klen + qlen * klen * (vdim // heads)
    macs += heads * per_head  # q k^T, softmax, weights v
    macs += qlen * vdim * (vdim + 1)  # output projection, with its bias
    return batch * macs


def _pt_numel(input, *args, **kwargs) -> int:
    return input.numel()


def _pt_interpolate(*args, **kwargs) -> int:
    input = kwargs.get("input", args[0] if args else None)
    size = kwargs.get("size", args[1] if len(args) > 1 else None)
    if size is not None:
        if isinstance(size, (tuple, list)):
            return math.prod(size) * math.prod(input.shape[:2])
        return int(size) ** (input.dim() - 2) * math.prod(input.shape[:2])
    scale = kwargs.get("scale_factor", args[2] if len(args) > 2 else None)
    if isinstance(scale, tuple) and len(scale) == input.dim() - 2:
        return input.numel() * int(math.prod(scale))
    return input.numel() * scale ** (input.dim() - 2)


def _pt_matmul(input, other, *args, **kwargs) -> int:
    return math.prod(input.shape) * other.shape[-1]


def _pt_addmm(input, mat1, mat2, *, beta=1, alpha=1, out=None) -> int:
    return math.prod(mat1.shape) * mat2.shape[-1] + (math.prod(input.shape) if beta else 0)


def _pt_elementwise(input, other, *args, **kwargs) -> int:
    if not isinstance(input, torch.Tensor):
        return other.numel() if isinstance(other, torch.Tensor) else 1
    if not isinstance(other, torch.Tensor):
        return input.numel()
    # ptflops lines the two shapes up from the left, not from the right as broadcasting does.
    rank = max(input.dim(), other.dim())
    padded = [(list(t.shape) + [1] * rank)[:rank] for t in (input, other)]
    return math.prod(max(a, b) for a, b in zip(*padded, strict=True))


PTFLOPS = Convention(
    name="ptflops",
    description="ptflops' default (pytorch) backend, in MACs: hooks on the nn.Module types "
    "it knows (convolution and Linear with their biases, norms, activations, pooling, "
    "upsampling, attention), plus calls of F.relu, F.*pool*, F.softmax, torch.matmul, "
    "add, mul and a few more, so an nn.ReLU counts twice; operators (+, *, @), F.linear "
    "and other modules count nothing.",
    ops={},
    left_out=frozenset(),  # ptflops: "unsupported operations are not contributing"
    modules={
        **dict.fromkeys((nn.Conv1d, nn.Conv2d, nn.Conv3d), _pt_conv),
        **dict.fromkeys(
            (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _pt_conv_transposed
        ),
        **dict.fromkeys((nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6, nn.GELU), _pt_output),
        **dict.fromkeys(
            (
                *(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d),
                *(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d),
                *(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d),
                *(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
            ),
            _pt_input,
        ),
        **dict.fromkeys(
            (
                *(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
                *(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d),
                *(nn.GroupNorm, nn.LayerNorm),
            ),
            _pt_norm,
        ),
        nn.Linear: _pt_linear,
        nn.Upsample: _pt_upsample,
        nn.MultiheadAttention: _pt_attention,
    },
    functions={
        **dict.fromkeys(
            (
                *(F.relu, F.prelu, F.elu, F.relu6, F.gelu, F.silu, F.softmax),
                *(F.avg_pool1d, F.avg_pool2d, F.avg_pool3d),
                *(F.max_pool1d, F.max_pool2d, F.max_pool3d),
                *(F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d),
                *(F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d),
                # What F.max_pool2d(..., return_indices=True) and the like hand the mode.
                *(F.max_pool1d_with_indices, F.max_pool2d_with_indices),
                *(F.max_pool3d_with_indices, F.adaptive_max_pool1d_with_indices),
                *(F.adaptive_max_pool2d_with_indices, F.adaptive_max_pool3d_with_indices),
            ),
            _pt_numel,
        ),
        F.interpolate: _pt_interpolate,
        **dict.fromkeys(
            (*(torch.matmul, torch.mm, torch.bmm), *(torch.Tensor.matmul, torch.Tensor.mm)),
            _pt_matmul,
        ),
        torch.Tensor.bmm: _pt_matmul,
        **dict.fromkeys((torch.addmm, torch.Tensor.addmm, torch.baddbmm), _pt_addmm),
        **dict.fromkeys(
            (torch.mul, torch.Tensor.mul, torch.add, torch.Tensor.add), _pt_elementwise
        ),
    },
)

CONVENTIONS: dict[str, Convention] = {c.name: c for c in (TORCH, FVCORE, PTFLOPS)}

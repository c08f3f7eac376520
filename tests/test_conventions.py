"""Each counting convention gives the total of the tool it is named after, exactly.

fvcore and ptflops run as their users run them: on CPU tensors, on a model built without
weights (random init) in eval mode. The conventions count the same architecture the way the
walk does: built on the meta device, in eval mode, under no_grad. Where the two cannot
agree, the difference asserted is the one conventions.py documents, to the MAC.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision.models as tvm
from ptflops import get_model_complexity_info
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnshape.inspect.conventions import (
    CONVENTIONS,
    FVCORE,
    PTFLOPS,
    TORCH,
    Tally,
    arithmetic_without_formula,
)
from cnnshape.registry import list_specs

with warnings.catch_warnings():  # fvcore's losses are TorchScript: deprecated on import
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

aten = torch.ops.aten

# name: (builder, input shape); ImageNet models at their sizes, the book's at theirs.
MODELS = {
    "resnet18": (tvm.resnet18, (1, 3, 224, 224)),
    "resnet50": (tvm.resnet50, (1, 3, 224, 224)),
    "mobilenet_v2": (tvm.mobilenet_v2, (1, 3, 224, 224)),
    "densenet121": (tvm.densenet121, (1, 3, 224, 224)),
    "vgg11": (tvm.vgg11, (1, 3, 224, 224)),
    "googlenet": (
        lambda: tvm.googlenet(init_weights=False, aux_logits=False),
        (1, 3, 224, 224),
    ),
    "inception_v3": (lambda: tvm.inception_v3(init_weights=False), (1, 3, 299, 299)),
    "efficientnet_b0": (tvm.efficientnet_b0, (1, 3, 224, 224)),
    "convnext_tiny": (tvm.convnext_tiny, (1, 3, 224, 224)),
    "vit_b_16": (tvm.vit_b_16, (1, 3, 224, 224)),
    "swin_t": (tvm.swin_t, (1, 3, 224, 224)),
    **{f"d2l-{spec.name}": (spec.build, (1, 1, spec.size, spec.size)) for spec in list_specs()},
}


def _as_the_walk_counts(build, shape) -> tuple[dict[str, Tally], int]:
    """Every convention's tally and FlopCounterMode's FLOPs, on meta, in eval, no_grad."""
    with torch.device("meta"):
        model = build().eval()
    x = torch.empty(shape, device="meta")
    tallies = {}
    with torch.no_grad():
        for convention in CONVENTIONS.values():
            with Tally(convention, model) as tally:
                model(x)
            tallies[convention.name] = tally
        with FlopCounterMode(display=False) as flop_counter:
            model(x)
    return tallies, flop_counter.get_total_flops()


def _fvcore(model: nn.Module, x: torch.Tensor):
    analysis = FlopCountAnalysis(model, (x,))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis.total()


def _ptflops(model: nn.Module, shape) -> int:
    macs, _ = get_model_complexity_info(
        model, tuple(shape[1:]), as_strings=False, print_per_layer_stat=False
    )
    return macs


def _attention_math_on_meta(vit) -> int:
    """The MACs of the two bmm in the math each scaled_dot_product_attention becomes on
    meta (B x heads x L x S x (E + Ev) per call), which fvcore's own count leaves out."""
    batch, heads = 1, vit.encoder.layers[0].num_heads
    per_call = batch * heads * vit.seq_length**2 * 2 * (vit.hidden_dim // heads)
    return len(vit.encoder.layers) * per_call


@pytest.mark.parametrize("name", MODELS)
def test_totals_are_the_tools_totals(name):
    build, shape = MODELS[name]
    tallies, torch_flops = _as_the_walk_counts(build, shape)
    model = build().eval()
    x = torch.randn(shape)

    assert torch_flops % 2 == 0 and tallies["torch"].macs == torch_flops // 2
    assert tallies["torch"].uncounted == {}  # nothing in these models lacks a formula
    difference = _attention_math_on_meta(model) if name == "vit_b_16" else 0
    assert tallies["fvcore"].macs == _fvcore(model, x) + difference
    assert tallies["ptflops"].macs == _ptflops(model, shape)


def test_fvcore_counts_attention_as_fvcore_on_cpu_tensors():
    # The vit_b_16 difference above is meta's alone: on the CPU, attention stays one op.
    # With grad, as fvcore traces: under no_grad nn.MultiheadAttention would take its fused
    # fast path on the CPU, one op with no formula in any convention, projections included.
    model = tvm.vit_b_16().eval()
    x = torch.randn(1, 3, 224, 224)
    with Tally(FVCORE, model) as tally:
        model(x)
    assert tally.macs == _fvcore(model, x)
    assert tally.uncounted["_scaled_dot_product_flash_attention_for_cpu"] == 12


class _Arithmetic(nn.Module):
    """Every way of writing an addition, a product and a matrix product."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 5))
        self.scale = nn.Parameter(torch.randn(4, 1, 1))  # lined up from the left by ptflops

    def forward(self, x):
        y = x + x + x.add(x) + torch.add(x, x)
        z = x * 2 + x.mul(2) + torch.mul(x, self.scale)
        m = x @ self.w + x.matmul(self.w) + torch.matmul(x, self.w)
        batched = torch.bmm(x[:, 0], x[:, 1].mT)
        with_bias = torch.addmm(self.w[0], x.flatten(1)[:, :8], self.w)
        return y.sum() + z.sum() + m.sum() + batched.sum() + with_bias.sum()


def test_ptflops_counts_calls_not_operators():
    model, x = _Arithmetic(), torch.randn(1, 4, 6, 8)
    with torch.no_grad(), Tally(PTFLOPS, model) as tally:
        model(x)
    assert tally.macs == _ptflops(model, x.shape)
    assert tally.uncounted["add"] > 0  # x + x, seen at dispatch


def test_ptflops_attention_weights_are_the_documented_difference():
    # nn.MultiheadAttention returns its weights by default: F.multi_head_attention_forward
    # then calls torch.bmm twice and softmax, which ptflops counts and a mode cannot see.
    batch, length, dim, heads = 1, 10, 16, 2

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

        def forward(self, x):
            return self.attention(x, x, x)[0]

    model, x = Attention().eval(), torch.randn(batch, length, dim)
    with Tally(PTFLOPS, model) as tally:
        model(x)
    bmm = batch * heads * length * length * (dim // heads)
    softmax = batch * heads * length * length
    assert _ptflops(model, x.shape) - tally.macs == 2 * bmm + softmax


def test_fvcore_same_padding_is_the_documented_difference():
    # fvcore's trace names a convolution with string padding _convolution_mode, unhandled.
    model, x = nn.Conv2d(3, 8, kernel_size=3, padding="same"), torch.randn(1, 3, 10, 10)
    with Tally(FVCORE, model) as tally:
        model(x)
    assert _fvcore(model, x) == 0
    assert tally.macs == 8 * 3 * 3 * 3 * 10 * 10


class _Spectrum(nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x.permute(0, 1, 3, 2).reshape(1, 4, -1).contiguous())


@pytest.mark.parametrize("convention", CONVENTIONS.values(), ids=CONVENTIONS)
def test_arithmetic_without_formula_is_reported_and_views_are_not(convention):
    model = _Spectrum()
    with torch.no_grad(), Tally(convention, model) as tally:
        model(torch.empty(1, 4, 6, 6, device="meta"))
    assert tally.macs == 0
    assert tally.uncounted == {"_fft_r2c": 1}
    assert arithmetic_without_formula(aten._fft_r2c.default, convention)
    for moves_data in (aten.view, aten.reshape, aten._unsafe_view, aten.permute, aten.clone):
        assert not arithmetic_without_formula(moves_data.default, convention)


def test_left_out_on_purpose_is_not_without_formula():
    relu = aten.relu.default
    assert not arithmetic_without_formula(relu, TORCH)  # FlopCounterMode counts no relu
    assert not arithmetic_without_formula(relu, FVCORE)  # in fvcore's _IGNORED_OPS
    # ptflops counts relu through nn.ReLU and F.relu only; a bare aten relu it misses.
    assert arithmetic_without_formula(relu, PTFLOPS)
    assert arithmetic_without_formula(aten.add.Tensor, FVCORE)  # fvcore: "unsupported"

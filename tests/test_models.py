"""Every registered model, checked against references cnnshape did not write:
sum(p.numel()), torch.utils.flop_counter.FlopCounterMode, torchinfo, and the shapes the book prints.
"""

import importlib

import pytest
import torch
from seed_shapes import SEED_SHAPES
from torch.utils.flop_counter import FlopCounterMode

import cnnshape
from cnnshape.registry import get_spec, list_specs

SPECS = list_specs()
NAMES = [s.name for s in SPECS]


def test_the_chapters_networks_are_all_registered():
    assert NAMES == [
        "lenet",
        "alexnet",
        "vgg",
        "vgg-small",
        "nin",
        "googlenet",
        "lenet-bn-scratch",
        "lenet-bn",
        "resnet18",
        "densenet",
    ]


@pytest.fixture(scope="module", params=NAMES)
def built(request):
    """(spec, real model, report of the meta-built model at the default size)."""
    spec = get_spec(request.param)
    model = spec.build()
    report = cnnshape.show(spec.name, depth=99)
    return spec, model, report


def test_total_params_equal_sum_of_numel(built):
    _, model, report = built
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert report.trainable_params == report.total_params


def test_total_flops_equal_flop_counter_mode_on_a_real_forward(built):
    spec, model, report = built
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 1, spec.size, spec.size))
    assert report.total_flops == counter.get_total_flops()
    assert report.total_macs * 2 == report.total_flops


def test_params_agree_with_torchinfo(built):
    torchinfo = pytest.importorskip("torchinfo")
    spec, model, report = built
    stats = torchinfo.summary(
        model, input_size=(1, 1, spec.size, spec.size), verbose=0, device="cpu"
    )
    assert report.total_params == stats.total_params


def test_a_container_row_is_the_sum_of_its_children(built):
    _, _, report = built
    rows = report.rows
    for row in rows:
        children = [
            r for r in rows if r.depth == row.depth + 1 and r.name.rsplit(".", 1)[0] == row.name
        ]
        if children:
            assert row.params == sum(c.params for c in children), row.name
            assert row.flops == sum(c.flops for c in children), row.name


def test_top_level_rows_are_the_books_loop_over_layers(built):
    spec, model, _ = built
    report = cnnshape.show(spec.name)  # depth 1
    x = torch.zeros(1, 1, spec.size, spec.size)
    expected = []
    model.eval()
    with torch.no_grad():
        for name, layer in model.named_children():  # the book: for layer in net: X = layer(X)
            x = layer(x)
            expected.append((name, type(layer).__name__, list(x.shape)))
    assert [(r.name, r.type, r.output_shape) for r in report.rows] == expected


def test_real_output_shape_matches(built):
    spec, model, report = built
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 1, spec.size, spec.size))
    assert report.output_shape == list(out.shape) == [1, 10]


@pytest.mark.parametrize(("name", "size"), list(SEED_SHAPES))
def test_the_seeds_printed_shapes(name, size):
    report = cnnshape.show(name, (size, size))
    assert [r.output_shape for r in report.rows] == SEED_SHAPES[(name, size)]


def test_lenet_matches_the_published_counts():
    report = cnnshape.show("lenet")
    assert report.total_params == 61_706
    assert report.total_macs == 416_520
    assert report.total_flops == 833_040


def test_the_seeds_blocks_keep_their_shapes():
    from cnnshape.models.densenet import DenseBlock, transition_block
    from cnnshape.models.resnet import Residual

    x = torch.rand(4, 3, 6, 6)
    assert Residual(3, 3)(x).shape == (4, 3, 6, 6)
    assert Residual(3, 6, use_1x1conv=True, strides=2)(x).shape == (4, 6, 3, 3)
    y = DenseBlock(2, 3, 10)(torch.randn(4, 3, 8, 8))
    assert y.shape == (4, 23, 8, 8)
    assert transition_block(23, 10)(y).shape == (4, 10, 4, 4)


def test_block_class_names_are_the_books():
    types = {r.type for name in NAMES for r in cnnshape.show(name, depth=9).rows}
    assert {"Inception", "Residual", "DenseBlock", "BatchNorm"} <= types


def test_vgg_small_divides_every_channel_count_by_four():
    big = [r.output_shape[1] for r in cnnshape.show("vgg").rows[:5]]
    small = [r.output_shape[1] for r in cnnshape.show("vgg-small").rows[:5]]
    assert small == [c // 4 for c in big]


@pytest.mark.parametrize("name", NAMES)
def test_in_channels_and_classes_reach_the_first_and_last_layer(name):
    report = cnnshape.show(name, in_channels=3, num_classes=7)
    assert report.input_shape[1] == 3
    assert report.output_shape == [1, 7]
    model = cnnshape.get_model(name, in_channels=3, num_classes=7)
    assert report.total_params == sum(p.numel() for p in model.parameters())


def test_the_registrys_metadata_is_what_the_builder_builds(built):
    """`cnnshape list` reads params and MACs from the registry without building anything:
    they must be the built model's, counted by sum(numel) and FlopCounterMode (above)."""
    spec, model, report = built
    assert spec.params == sum(p.numel() for p in model.parameters())
    assert spec.macs == report.total_macs and spec.flops == report.total_flops
    module, _, function = spec.builder.partition(":")
    builder = getattr(importlib.import_module(f"cnnshape.models.{module}"), function)
    assert spec.description == builder.__doc__.strip().splitlines()[0]

"""inspect/shapes.py against PyTorch's own meta kernels: every answer a rule gives, output or
refusal, must be the kernel's, on the registry's and torchvision's models."""

from __future__ import annotations

import collections

import pytest
import torch

from cnnshape import api
from cnnshape.inspect import shapes, sizes, walk
from cnnshape.registry import list_specs

TORCHVISION = ["resnet18", "mobilenet_v2", "densenet121", "googlenet", "efficientnet_b0",
               "convnext_tiny", "squeezenet1_0", "vit_b_16"]  # fmt: skip


class CrossCheck(shapes.ShapeRules):
    """Asks each rule, then the real kernel, compares them, and goes on with the kernel's."""

    answered: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = shapes._rule_for(func)
        if rule is None or kwargs.get("out"):
            return func(*args, **kwargs)
        try:
            ours, our_error = rule(*args, **kwargs), None
        except RuntimeError as err:
            ours, our_error = None, err
        try:
            theirs = func(*args, **kwargs)
        except RuntimeError as err:
            assert our_error is not None, f"{func}: the kernel refused, the rule answered"
            assert str(our_error) == str(err), func
            type(self).answered[str(func._overloadpacket)] += 1
            raise
        assert our_error is None, f"{func}: the rule refused: {our_error}"
        if ours is not None:
            assert _described(ours) == _described(theirs), func
            type(self).answered[str(func._overloadpacket)] += 1
        return theirs


def _described(result):
    if isinstance(result, torch.Tensor):
        return (tuple(result.shape), result.dtype, result.device.type)
    return tuple(_described(r) for r in result)


class NoRules(shapes.ShapeRules):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.fixture
def cross_checked(monkeypatch):
    CrossCheck.answered.clear()
    monkeypatch.setattr(walk, "ShapeRules", CrossCheck)
    return CrossCheck.answered


REFS = [spec.name for spec in list_specs()] + [f"torchvision:{name}" for name in TORCHVISION]


@pytest.mark.parametrize("ref", REFS)
def test_every_rule_answers_as_the_meta_kernel(ref, cross_checked):
    target, model, channels = api.build_for_inspection(ref)
    report = walk.walk(model, (2, channels, target.size, target.size), depth=9)
    assert report.output_shape is not None
    assert cross_checked["aten.convolution"] > 0  # the rules were asked, and agreed


def test_refusals_carry_the_meta_kernels_words(cross_checked):
    # A size scan meets every kind of refusal the rules raise themselves.
    for ref in ("alexnet", "lenet", "vgg-small", "torchvision:squeezenet1_0"):
        _, model, channels = api.build_for_inspection(ref)
        sizes.scan_sizes(model, channels, up_to=80)
    assert {"aten.convolution", "aten.max_pool2d_with_indices", "aten.avg_pool2d",
            "aten.addmm"} <= set(cross_checked)  # fmt: skip


@pytest.mark.parametrize("name", [spec.name for spec in list_specs()])
def test_walks_and_scans_are_the_same_without_the_rules(name, monkeypatch):
    fast = api.show(name, depth=9).to_dict()
    fast_scan = api.valid_sizes(name, up_to=64)
    monkeypatch.setattr(walk, "ShapeRules", NoRules)
    assert api.show(name, depth=9).to_dict() == fast
    assert api.valid_sizes(name, up_to=64) == fast_scan


class Zoo(torch.nn.Module):
    """The ops the registry's models do not use, each once."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, dilation=2)
        self.norm = torch.nn.LayerNorm(8)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        F = torch.nn.functional
        x = F.leaky_relu(self.conv(x), inplace=True)
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        x = F.avg_pool2d(x, 2, ceil_mode=True, count_include_pad=False)
        y = torch.cat([F.elu(x), F.hardswish(x), F.hardsigmoid(x), torch.tanh(x)], dim=1)
        y = y.exp().neg().clamp(-1, 1).mean((2, 3), keepdim=True).flatten(1)[:, :8]
        y = self.norm(y * torch.rsqrt(y.abs() + 1) / torch.sqrt(y.abs() + 2) - 1)
        return torch.softmax(self.head(y), dim=-1) @ torch.ones(4, 2)


def test_every_rule_is_exercised_somewhere(cross_checked):
    with torch.device("meta"):
        zoo = Zoo()
    walk.walk(zoo, (2, 3, 17, 19))
    for ref in ("resnet18", "densenet"):
        api.show(ref)
    rules = {str(op._overloadpacket) for op in shapes.RULES}
    assert rules <= set(cross_checked), rules - set(cross_checked)

"""Receptive fields and jumps, against fields computed by hand and published values."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import cli
from torch import nn

import cnnshape


def conv(k, s=1, d=1, c=2):
    return nn.Conv2d(c, c, k, stride=s, dilation=d)


def field(model, size=(32, 32)):
    """(receptive field, jump) of the model, each [height, width]."""
    report = cnnshape.summary(model, (1, 2, *size), depth=9)
    return report.receptive_field, report.jump


@pytest.mark.parametrize(
    ("layers", "rf", "jump"),
    [
        ([conv(3), conv(3)], [5, 5], [1, 1]),
        ([conv(3, s=2), conv(3)], [7, 7], [2, 2]),
        ([conv((1, 7)), conv((7, 1))], [7, 7], [1, 1]),
        ([conv((1, 7))], [1, 7], [1, 1]),  # height and width apart
        ([conv(3, d=2)], [5, 5], [1, 1]),
        ([nn.MaxPool2d(2), conv(3)], [6, 6], [2, 2]),
        (
            [nn.AvgPool2d(3, stride=2, padding=1), nn.MaxPool2d(3, stride=1, dilation=2)],
            [11, 11],
            [2, 2],
        ),
        ([conv(7, s=2), nn.MaxPool2d(3, 2)], [11, 11], [4, 4]),  # a ResNet stem
    ],
)
def test_stacks_computed_by_hand(layers, rf, jump):
    assert field(nn.Sequential(*layers)) == (rf, jump)


class Residual(nn.Module):
    """x + two 3x3 convolutions, with functional ops: the longer path wins."""

    def __init__(self):
        super().__init__()
        self.a, self.b = conv(3), conv(3)

    def forward(self, x):
        return F.relu(x[..., 2:-2, 2:-2] + self.b(F.relu(self.a(x))))


class Branches(nn.Module):
    """An Inception-style concatenation of 1x1, 3x3 and 5x5 paths."""

    def __init__(self):
        super().__init__()
        self.p1 = nn.Conv2d(2, 1, 1)
        self.p3 = nn.Conv2d(2, 1, 3, padding=1)
        self.p5 = nn.Sequential(nn.Conv2d(2, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1))

    def forward(self, x):
        return torch.cat([self.p1(x), self.p3(x), self.p5(x)], dim=1)


def test_branches_take_the_largest_field():
    assert field(Residual()) == ([5, 5], [1, 1])
    assert field(Branches()) == ([5, 5], [1, 1])


def test_rows_carry_each_layers_field_and_flatten_ends_it():
    with torch.device("meta"):
        model = nn.Sequential(conv(3), conv(3, s=2), nn.Flatten(), nn.Linear(2 * 7 * 7, 3))
    rows = cnnshape.summary(model, (1, 2, 18, 18)).rows
    assert [(r.receptive_field, r.jump) for r in rows] == [
        ([3, 3], [1, 1]),
        ([5, 5], [2, 2]),
        (None, None),
        (None, None),
    ]


def test_global_pooling_spans_the_whole_input_but_is_not_the_models_field():
    model = nn.Sequential(conv(3), nn.AdaptiveAvgPool2d(1))
    report = cnnshape.summary(model, (1, 2, 10, 10))
    # The 3x3 conv leaves 8x8 positions 1 apart: together they cover 3 + 7 = 10.
    assert (report.rows[1].receptive_field, report.rows[1].jump) == ([10, 10], [8, 8])
    assert report.receptive_field == [3, 3]


def test_adaptive_pooling_uses_pytorchs_windows():
    # 7 -> 3: windows [0, 3), [2, 5), [4, 7): 3 wide, 2 apart.
    report = cnnshape.summary(nn.AdaptiveMaxPool2d(3), (1, 2, 7, 7))
    assert (report.receptive_field, report.jump) == ([3, 3], [2, 2])


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = conv(3)

    def forward(self, x):
        x = self.c(x)
        return x * torch.sigmoid(F.adaptive_avg_pool2d(x, 1))


def test_squeeze_excitation_widens_the_field_not_the_jump():
    # After the scale every position depends on the whole 8x8 map: 3 + 7 = 10.
    assert field(SqueezeExcite(), (10, 10)) == ([10, 10], [1, 1])


@pytest.mark.parametrize(("name", "rf"), [("alexnet", 195), ("vgg16", 212), ("resnet50", 427)])
def test_published_fields_of_torchvision_models(name, rf):
    # Published for the last convolution or pooling layer of the features, as cnnshape's.
    report = cnnshape.show(f"torchvision:{name}")
    assert (report.receptive_field, report.jump) == ([rf, rf], [32, 32])


def test_cli_rf_columns_and_json():
    plain = json.loads(cli("show", "lenet", "-f", "json").stdout)
    assert "receptive_field" not in plain and "receptive_field" not in plain["layers"][0]
    doc = json.loads(cli("show", "lenet", "--rf", "-f", "json").stdout)
    # LeNet: 5x5 conv, 2x2 pool, 5x5 conv, 2x2 pool: 5, 6, 14, 16.
    assert [layer["receptive_field"] for layer in doc["layers"][:6]] == [
        [5, 5],
        [5, 5],
        [6, 6],
        [14, 14],
        [14, 14],
        [16, 16],
    ]
    assert doc["receptive_field"] == [16, 16] and doc["jump"] == [4, 4]
    table = cli("show", "lenet", "--rf").stdout
    assert "16x16" in table and "Jump" in table
    compared = json.loads(cli("compare", "lenet", "alexnet", "-f", "json").stdout)
    assert [m["receptive_field"] for m in compared["models"]] == [[16, 16], [195, 195]]

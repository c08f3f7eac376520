"""The walk follows the tensors: any inputs, any rank, any output, and every op on the path.

References cnnshape did not write: the real forward pass on the CPU (its output shapes), and
torch.fx's graph of the same model (its functional ops)."""

from __future__ import annotations

import collections
import json
import operator
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from conftest import assert_clean_error, cli
from torch import nn

from cnnshape import api
from cnnshape.inspect import inputs as input_specs
from cnnshape.inspect.inputs import InputSpec, parse_input
from cnnshape.inspect.walk import walk
from cnnshape.registry import get_spec


def registry_walk(name, depth=10, ops=True):
    spec = get_spec(name)
    model = spec.build(in_channels=1, num_classes=10)
    return walk(model, (1, 1, spec.size, spec.size), depth, ops=ops)


def ops_of(report, kind):
    return [r for r in report.rows if r.kind == "op" and r.type == kind]


# ---- the book's joins, as the book writes them ----------------------------------------------


def test_googlenet_joins_four_branches_nine_times():
    report = registry_walk("googlenet")
    cats = ops_of(report, "cat")
    assert len(cats) == 9 and all(len(c.inputs) == 4 for c in cats)
    for cat in cats:  # the branches' channels add up to the block's
        assert sum(edge.shape[1] for edge in cat.inputs) == cat.output_shape[1]
    first = cats[0]
    assert (first.name, first.output_shape) == ("2.0.cat", [1, 256, 12, 12])


def test_resnet18_adds_its_input_back_eight_times():
    adds = ops_of(registry_walk("resnet18"), "add_")  # the book's Y += X
    assert len(adds) == 8 and all(len(a.inputs) == 2 for a in adds)


def test_densenet_concatenates_sixteen_times():
    cats = ops_of(registry_walk("densenet"), "cat")
    assert len(cats) == 16 and all(len(c.inputs) == 2 for c in cats)


@pytest.mark.parametrize("name", ["googlenet", "resnet18", "densenet", "nin", "lenet-bn-scratch"])
@pytest.mark.parametrize("depth", [1, 2, 3, 10])
def test_ops_never_change_the_totals_and_every_edge_leads_to_a_node(name, depth):
    with_ops, without = registry_walk(name, depth, ops=True), registry_walk(name, depth, ops=False)
    assert with_ops.total_flops == without.total_flops
    assert with_ops.total_params == without.total_params
    module_rows = [r for r in with_ops.rows if r.kind == "module"]
    assert [r.name for r in module_rows] == [r.name for r in without.rows]
    for report in (with_ops, without):
        known = {r.id for r in report.rows} | {i["id"] for i in report.inputs}
        for row in report.rows:
            assert {e.source for e in row.inputs} <= known, (row.name, row.inputs)
        assert {o["source"] for o in report.outputs} <= known


def test_at_depth_one_the_books_networks_are_chains():
    for name in ("lenet", "alexnet", "vgg", "nin", "googlenet", "resnet18", "densenet"):
        report = registry_walk(name, depth=1, ops=False)
        previous = "input:0"
        for row in report.rows:
            assert [e.source for e in row.inputs] == [previous], (name, row.name)
            previous = row.id
        assert report.outputs[0]["source"] == previous


def test_functional_ops_match_torch_fx_on_a_torchvision_resnet():
    from torchvision.models import resnet18

    model = resnet18()
    traced = torch.fx.symbolic_trace(model)
    fx_adds = [
        n for n in traced.graph.nodes if n.op == "call_function" and n.target is operator.add
    ]
    fx_flattens = [n for n in traced.graph.nodes if n.target is torch.flatten]
    report = walk(model.to("meta"), (1, 3, 224, 224), depth=10, ops=True)
    assert len(ops_of(report, "add_") + ops_of(report, "add")) == len(fx_adds) == 8
    assert len(ops_of(report, "flatten")) == len(fx_flattens) == 1


# ---- any rank ---------------------------------------------------------------------------------


class Audio(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 9, stride=4)
        self.bn = nn.BatchNorm1d(8)
        self.pool = nn.MaxPool1d(4)
        self.conv2 = nn.Conv1d(8, 16, 9, stride=4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.conv2(self.pool(torch.relu(self.bn(self.conv(x))))))


class Video(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2))
        self.bn = nn.BatchNorm3d(8)
        self.pool = nn.MaxPool3d(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x):
        return self.head(self.pool(self.bn(self.conv(x))))


def real_shapes(model, *args, **kwargs):
    """Every leaf module's output shape in a real CPU forward: the reference."""
    shapes, handles = {}, []
    for name, module in model.named_modules():
        if name and next(module.children(), None) is None:
            handles.append(
                module.register_forward_hook(
                    lambda m, a, out, name=name: shapes.__setitem__(name, list(out.shape))
                )
            )
    with torch.no_grad():
        model.eval()(*args, **kwargs)
    for handle in handles:
        handle.remove()
    return shapes


@pytest.mark.parametrize(
    ("model", "shape", "field"),
    [(Audio, (2, 1, 4000), [149]), (Video, (1, 3, 8, 32, 32), [4, 7, 7])],
)
def test_one_and_three_dimensional_models_walk_like_the_real_forward(model, shape, field):
    net = model()
    reference = real_shapes(net, torch.randn(shape))
    report = walk(net, shape, depth=3)
    walked = {r.name: r.output_shape for r in report.rows if r.name in reference}
    assert walked == reference
    conv = next(r for r in report.rows if r.name == "conv")
    assert len(conv.kernel_size) == len(conv.stride) == len(shape) - 2
    assert report.receptive_field == field


def test_sizes_scan_the_axes_of_the_given_input(tmp_path):
    scan = api.scan_sizes(Audio(), inputs=[InputSpec((1, 1, 4000))], up_to=300)
    assert scan.pattern == "1x1xS" and scan.valid == [(149, 300)]
    assert [(r.lo, r.hi, r.layer) for r in scan.invalid] == [
        (1, 8, "conv"),
        (9, 20, "pool"),
        (21, 148, "conv2"),
    ]
    video = api.scan_sizes(Video(), inputs=[InputSpec((1, 3, 4, 4, 4))], up_to=12)
    assert video.pattern == "1x3xSxSxS" and video.valid == [(3, 12)]  # H, W: 5x5 padded 2


# ---- several inputs, keywords, dtypes ----------------------------------------------------------


class ImageAndMeta(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.meta = nn.Linear(5, 4)
        self.head = nn.Linear(8, 2)

    def forward(self, image, meta):
        return self.head(torch.cat([self.conv(image).mean((2, 3)), self.meta(meta)], 1))


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, ids, mask=None):
        h = self.emb(ids)
        if mask is not None:
            h = h * mask.unsqueeze(-1)
        return {"logits": self.out(h.mean(1)), "hidden": h}


def test_two_positional_inputs_and_their_edges():
    report = api.summary(ImageAndMeta(), [(1, 3, 8, 8), (1, 5)], depth=2, ops=True)
    rows = {r.name: r for r in report.rows}
    assert [e.source for e in rows["conv"].inputs] == ["input:0"]
    assert [e.source for e in rows["meta"].inputs] == ["input:1"]
    assert [e.shape for e in rows["cat"].inputs] == [[1, 4], [1, 4]]
    assert report.output_shape == [1, 2]


def test_keyword_and_integer_inputs_from_tensors_shapes_and_specs():
    ids = torch.randint(0, 100, (2, 7))
    for given in (
        {"kwargs": {"ids": ids}},
        {"args": (InputSpec((2, 7), "int64"),)},
        {"kwargs": {"ids": InputSpec((2, 7), "int64"), "mask": (2, 7)}},
    ):
        report = api.summary(Tokens(), **given)
        assert report.inputs[0]["dtype"] == "int64"
        paths = {o["path"]: o["shape"] for o in report.outputs}
        assert paths == {"out['logits']": [2, 3], "out['hidden']": [2, 7, 16]}


class Paths(NamedTuple):
    map: torch.Tensor
    score: torch.Tensor


@dataclass
class Output:
    map: torch.Tensor
    extra: tuple


class Structured(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        score = y.flatten(1).sum(1)
        if self.kind == "namedtuple":
            return Paths(y, score)
        if self.kind == "dataclass":
            return Output(y, (score, [score]))
        return [y, {"score": score}]


@pytest.mark.parametrize(
    ("kind", "paths"),
    [
        ("namedtuple", ["out.map", "out.score"]),
        ("dataclass", ["out.map", "out.extra[0]", "out.extra[1][0]"]),
        ("list", ["out[0]", "out[1]['score']"]),
    ],
)
def test_every_output_tensor_has_its_path(kind, paths):
    report = api.summary(Structured(kind), (1, 3, 8, 8))
    assert [o["path"] for o in report.outputs] == paths
    assert report.outputs[0]["shape"] == [1, 4, 6, 6]


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.b = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.a(x)
        view = y.view(-1)
        view.add_(1)  # written through a view: y now comes from the add_
        return self.b(y) + x


def test_an_in_place_write_through_a_view_is_where_later_readers_read_from():
    report = api.summary(InPlace(), (1, 3, 4, 4), ops=True)
    rows = {r.name: r for r in report.rows}
    assert [e.source for e in rows["b"].inputs] == [rows["add_"].id]
    assert sorted(e.source for e in rows["add"].inputs) == sorted([rows["b"].id, "input:0"])


# ---- the command line -----------------------------------------------------------------------

MODELS = """
import torch
from torch import nn


class Audio(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 9, stride=4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        return self.head(self.conv(x))


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, ids, mask=None):
        return self.out(self.emb(ids).mean(1))
"""


@pytest.fixture
def models(tmp_path):
    (tmp_path / "models.py").write_text(MODELS)
    return str(tmp_path / "models.py")


def test_show_takes_inputs_of_any_rank_and_dtype(models):
    result = cli("show", f"{models}:Audio", "--input", "1x1x16000", "-f", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["input_shape"] == [1, 1, 16000] and doc["output_shape"] == [1, 10]
    tokens = cli("show", f"{models}:Tokens", "-i", "ids=2x9:int64", "-f", "json")
    assert tokens.exit_code == 0, tokens.stderr
    assert json.loads(tokens.stdout)["inputs"][0] == {
        "name": "ids",
        "shape": [2, 9],
        "dtype": "int64",
        "count": None,
        "id": "input:ids",
    }


def test_every_command_that_takes_a_model_takes_inputs(models):
    audio = f"{models}:Audio"
    for command in (
        ["compare", audio, "lenet"],
        ["sizes", audio, "--up-to", "40"],
        ["memory", audio, "--device", "cpu"],
        ["show", audio, "--time", "--repeats", "1", "--warmup", "0"],
        ["show", audio, "--memory", "--device", "cpu"],
    ):
        result = cli(*command, "--input", "4x1x400")
        assert result.exit_code == 0, (command, result.stderr)
    memory = json.loads(
        cli("memory", audio, "-i", "4x1x400", "--device", "cpu", "-f", "json").stdout
    )
    assert memory["input_shape"] == [4, 1, 400]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("1x3x", "'1x3x' is not a shape"),
        ("1x3:float99", "'float99' is not a dtype"),
        ("0x3x8x8", "every size must be at least 1"),
        ("x=", "is not an input"),
        ("9" * 30, "is not a shape"),
    ],
)
def test_a_malformed_input_is_a_usage_error(spec, says):
    result = assert_clean_error(cli("show", "lenet", "--input", spec), says)
    assert result.exit_code == 2


def test_inputs_that_forward_cannot_take_name_its_signature(models):
    for inputs, says in (
        (["-i", "1x5", "-i", "1x5", "-i", "1x5"], "forward(ids, mask=None)"),
        (["-i", "ids=1x5:int64", "-i", "other=1x5"], "unexpected keyword argument 'other'"),
        (["-i", "mask=1x5"], "missing a required argument: 'ids'"),
    ):
        assert_clean_error(cli("show", f"{models}:Tokens", *inputs), says)
    assert_clean_error(cli("show", "lenet", "-i", "1x1x28x28", "-i", "1x1x28x28"), "forward(")


def test_inputs_and_the_image_shorthand_are_one_or_the_other():
    assert_clean_error(
        cli("show", "lenet", "--input", "1x1x28x28", "--size", "28"), "--input and --size"
    )
    assert_clean_error(cli("show", "lenet", "-i", "x=1x1x28x28", "-i", "1x1x28x28"), "positional")


def test_memory_takes_one_floating_input(models):
    assert_clean_error(
        cli("memory", f"{models}:Tokens", "-i", "ids=2x9:int64"), "one floating input batch"
    )


def test_ops_rows_are_cached_apart_from_plain_rows():
    plain = json.loads(cli("show", "resnet18", "--depth", "3", "-f", "json").stdout)
    with_ops = json.loads(cli("show", "resnet18", "--depth", "3", "--ops", "-f", "json").stdout)
    again = json.loads(cli("show", "resnet18", "--depth", "3", "--ops", "-f", "json").stdout)
    assert with_ops == again and with_ops["ops_shown"] and not plain["ops_shown"]
    kinds = collections.Counter(layer["kind"] for layer in with_ops["layers"])
    assert kinds["op"] > 0 and "op" not in {layer["kind"] for layer in plain["layers"]}
    assert with_ops["total_flops"] == plain["total_flops"]


def test_the_dtypes_an_input_may_name_are_torchs():
    for name, canonical in input_specs.DTYPES.items():
        assert getattr(torch, name) is getattr(torch, canonical)
    assert parse_input("ids=1x128:long") == InputSpec((1, 128), "int64", "ids")
    assert parse_input(" 2 x 3 x 16x112x112 ") == InputSpec((2, 3, 16, 112, 112))


class StackedImages(nn.Module):
    """Takes a list of images, as torchvision's detectors do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images):
        return self.conv(torch.stack(images))


def test_a_list_input_is_said_as_a_list_and_its_length_is_the_batch():
    from cnnshape.inspect import render

    report = walk(StackedImages(), [InputSpec((3, 8, 8), count=2)])
    assert report.inputs[0]["count"] == 2 and report.output_shape == [2, 4, 6, 6]
    facts = "\n".join(render.report_view(report).footer)
    assert "Inputs: a list of 2 x [3, 8, 8]" in facts and "for a batch of 2" in facts

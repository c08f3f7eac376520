"""Models from outside the registry: torchvision by name (checked against torchvision's own
published metadata), timm, and the user's own files and modules."""

import json
import sys
import textwrap

import pytest
import torchvision
from conftest import assert_clean_error
from conftest import cli as run

import cnnshape
from cnnshape import api
from cnnshape.errors import CnnshapeError


def published(name):
    return torchvision.models.get_model_weights(name).DEFAULT.meta


# These forwards use torch.flatten, F.relu, x + identity and torch.cat between modules.
@pytest.mark.parametrize(
    "name", ["resnet18", "resnet50", "alexnet", "vgg16", "googlenet", "densenet121", "mobilenet_v2"]
)
def test_counts_equal_torchvisions_published_metadata(name):
    report = cnnshape.show(f"torchvision:{name}")  # defaults: 3x224x224, 1000 classes
    meta = published(name)
    assert report.input_shape == [1, 3, 224, 224] and report.output_shape == [1, 1000]
    assert report.total_params == meta["num_params"]
    # torchvision's "GFLOPS" are GMACs, rounded to 3 decimals.
    assert report.total_macs / 1e9 == pytest.approx(meta["_ops"], rel=0.01)


@pytest.mark.parametrize("name", ["alexnet", "googlenet"])
def test_smallest_valid_size_is_torchvisions_min_size(name):
    low, _ = published(name)["min_size"]
    scan = api.valid_sizes(f"torchvision:{name}", up_to=low + 3)
    assert scan.valid == [(low, low + 3)]


def test_torchvision_models_are_built_on_meta_without_weights():
    _, model, channels = api.build_for_inspection("torchvision:vgg16")
    assert channels == 3
    assert all(p.is_meta for p in model.parameters())


def test_torchvision_classes_follow_the_option():
    assert cnnshape.show("torchvision:resnet18", num_classes=7).output_shape == [1, 7]


def test_in_channels_must_match_a_published_first_layer():
    assert_clean_error(
        run("show", "torchvision:resnet18", "--in-channels", "1"),
        "built for 3 input channels, not 1",
        "Hint:",
    )
    assert run("show", "torchvision:resnet18", "--in-channels", "3").exit_code == 0


def test_unknown_torchvision_name_suggests_close_ones():
    assert_clean_error(run("show", "torchvision:resnet5"), "resnet50", "list --source")


def test_list_torchvision_shows_the_published_figures():
    result = run("list", "--source", "torchvision", "-f", "json")
    assert result.exit_code == 0, result.stderr
    models = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert models["resnet50"]["params"] == 25557032
    assert models["alexnet"]["min_size"] == [63, 63]
    assert set(models) == set(torchvision.models.list_models())  # every family


def test_timm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # None in sys.modules: import fails
    assert_clean_error(run("show", "timm:resnet50"), "timm is not installed", "pip install timm")
    assert_clean_error(run("list", "--source", "timm"), "timm is not installed")


def test_timm_builds_with_in_chans_at_its_pretrained_configs_size():
    timm = pytest.importorskip("timm")  # the test extra installs it
    report = cnnshape.show("timm:resnet18", in_channels=1)
    assert report.input_shape == [1, 1, 224, 224] and report.output_shape == [1, 1000]
    built = timm.create_model("resnet18", in_chans=1)
    assert report.total_params == sum(p.numel() for p in built.parameters())
    assert cnnshape.show("timm:vit_base_patch16_384").input_shape == [1, 3, 384, 384]


# ---------------------------------------------------------------- your own code

USER_FILE = """
import torch
import torch.nn.functional as F
from torch import nn

from helper import WIDTH  # a neighbouring file, as `python net.py` would import it


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, WIDTH, 3, padding=1)
        self.left = nn.Conv2d(WIDTH, WIDTH, 3, padding=1)
        self.right = nn.Conv2d(WIDTH, WIDTH, 1)
        self.fc = nn.Linear(2 * WIDTH, 5)

    def forward(self, x):
        x = F.relu(self.conv(x))
        x = torch.cat([self.left(x) + x, self.right(x)], dim=1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def factory():
    return Net()


def not_a_model():
    return 42


def needs_arguments(width):
    return Net()


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(99, 5)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


answer = 42
"""


@pytest.fixture
def user_file(tmp_path):
    (tmp_path / "helper.py").write_text("WIDTH = 4\n")
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(USER_FILE))
    return str(path)


@pytest.mark.parametrize("attr", ["Net", "factory"])
def test_user_file_class_or_factory(user_file, attr):
    report = cnnshape.show(f"{user_file}:{attr}", (8, 8), depth=9)
    # Channels default to the first convolution's (2); the file's own imports work.
    assert report.input_shape == [1, 2, 8, 8] and report.output_shape == [1, 5]
    conv, left, right = 2 * 4 * 9, 4 * 4 * 9, 4 * 4
    assert report.total_params == conv + 4 + left + 4 + right + 4 + 8 * 5 + 5
    assert report.total_macs == 64 * (conv + left + right) + 8 * 5


def test_user_module_factory():
    report = cnnshape.show("torchvision.models:resnet18")
    assert report.total_params == published("resnet18")["num_params"]


def test_missing_file(tmp_path):
    assert_clean_error(run("show", f"{tmp_path}/nope.py:Net"), "No file", "Hint:")


def test_missing_module():
    assert_clean_error(run("show", "no_such_package.models:Net"), "No module named")


def test_missing_attribute_suggests_close_names(user_file):
    assert_clean_error(
        run("show", f"{user_file}:Nett"), "no attribute 'Nett'", "Did you mean Net", "factory"
    )


@pytest.mark.parametrize(
    ("attr", "fragment"),
    [
        ("answer", "is not an nn.Module but a int"),
        ("not_a_model", "returned a int, not an nn.Module"),
        ("needs_arguments", "whose other arguments have defaults"),
    ],
)
def test_objects_that_are_not_models(user_file, attr, fragment):
    assert_clean_error(run("show", f"{user_file}:{attr}"), fragment)


def test_failing_forward_names_the_layer(user_file):
    assert_clean_error(
        run("show", f"{user_file}:Broken", "--size", "8"),
        "layer fc (Linear)",
        "expects 99 input features",
    )


def test_classes_cannot_change_user_code(user_file):
    with pytest.raises(CnnshapeError, match="--classes cannot change"):
        cnnshape.show(f"{user_file}:Net", num_classes=3)


def test_compare_mixes_sources_each_with_its_own_defaults(user_file):
    result = run("compare", "lenet", "torchvision:alexnet", f"{user_file}:Net", "-f", "json")
    assert result.exit_code == 0, result.stderr
    shapes = [m["input_shape"] for m in json.loads(result.stdout)["models"]]
    assert shapes == [[1, 1, 28, 28], [1, 3, 224, 224], [1, 2, 224, 224]]


def test_your_code_that_takes_in_channels_and_num_classes_is_built_for_them(tmp_path):
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "def net(in_channels=2, num_classes=5):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(4, num_classes))\n"
    )
    ref = f"{tmp_path / 'net.py'}:net"
    own = cnnshape.show(ref)  # its own defaults
    assert own.input_shape == [1, 2, 224, 224] and own.output_shape == [1, 5]
    asked = cnnshape.show(ref, in_channels=3, num_classes=7)
    assert asked.input_shape == [1, 3, 224, 224] and asked.output_shape == [1, 7]

"""`cnnshape train` on any model source: torchvision, timm and the user's own code, built for
the data's channels and classes, at the model's own input size."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from conftest import assert_clean_error, cli
from image_files import write_folder
from PIL import Image

from cnnshape import api
from cnnshape.errors import CnnshapeError
from cnnshape.train.config import TrainSettings
from cnnshape.train.model import build_model, run_name
from cnnshape.train.predict import predict

pytest.importorskip("timm")  # the test extra installs it

NET = """
from torch import nn

class Net(nn.Module):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(4, num_classes),
        )

    def forward(self, x):
        return self.body(x)

def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 10))

class SevenClasses(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7)
        )

    def forward(self, x):
        return self.body(x)
"""


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(NET))
    return path


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("colours"), per_class=(8, 4))


def quick(model: str, **settings) -> TrainSettings:
    base = {"epochs": 1, "batch_size": 8, "device": "cpu", "dataset": "synthetic"}
    return TrainSettings(model, **{**base, "train_limit": 16, "test_limit": 8, **settings})


def recorded(run_dir) -> dict:
    return json.loads((run_dir / "config.json").read_text())["config"]


def test_your_own_class_is_built_for_the_datas_channels_and_classes(net_file, tmp_path):
    result = api.train(quick(f"{net_file}:Net", size=16), out=str(tmp_path / "run"))
    config = recorded(result.run_dir)
    assert config["model"] == f"{net_file.resolve()}:Net"  # absolute: resumable from anywhere
    assert (config["channels"], config["size"], len(result.history)) == (1, 16, 1)
    model = build_model(result.config)
    assert model.body[0].in_channels == 1 and model.body[-1].out_features == 10


def test_a_model_without_convolutions_gets_the_datas_channels(net_file, tmp_path):
    result = api.train(quick(f"{net_file}:mlp", size=16), out=str(tmp_path / "run"))
    assert result.config.channels == 1 and len(result.history) == 1


def test_a_model_with_other_classes_is_refused_before_any_folder(net_file, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(CnnshapeError, match=r"output of shape \[1, 7\].*\[1, 10\]") as err:
        api.train(quick(f"{net_file}:SevenClasses", size=16), out=str(out))
    assert "num_classes keyword" in err.value.hint
    assert not out.exists()


def test_torchvision_gets_rgb_and_trains_resumes_evaluates_and_predicts(tmp_path):
    out = tmp_path / "run"
    notes = []
    result = api.train(
        quick("torchvision:resnet18", size=32),
        lambda event: notes.extend(getattr(event, "notes", ())),
        out=str(out),
    )
    assert result.config.channels == 3 and result.config.size == 32
    assert any("repeated into RGB" in note for note in notes)
    model = build_model(result.config)
    assert model.fc.out_features == 10
    resumed = api.resume(str(out), TrainSettings(epochs=2))
    assert [e.epoch for e in resumed.history] == [1, 2]
    assert api.evaluate(str(out)).classes[:2] == ("T-shirt/top", "Trouser")
    Image.new("L", (28, 28), 128).save(tmp_path / "gray.png")
    (image,) = predict(out, [tmp_path / "gray.png"], top=10).predictions
    assert abs(sum(guess.probability for guess in image.top) - 1) < 1e-4


def test_torchvisions_own_initialization_is_kept():
    """The book's Xavier init is the chapter's; torchvision's models keep kaiming_normal_."""
    settings = quick("torchvision:resnet18", size=32)
    result_config = settings.resolve().with_data(tuple("abcdefghij"), 3, 32)
    torch.manual_seed(0)
    ours = build_model(result_config)
    torch.manual_seed(0)
    import torchvision

    theirs = torchvision.models.resnet18(num_classes=10)
    assert torch.equal(ours.conv1.weight, theirs.conv1.weight)


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("torchvision:resnet18", 224),
        ("torchvision:inception_v3", 299),  # its weights' crop
        ("timm:resnet18", 224),
        ("timm:vit_base_patch16_384", 384),  # timm's pretrained config
        ("lenet", 28),  # the registry's
    ],
)
def test_the_default_size_is_the_models_own(model, size):
    assert TrainSettings(model).resolve().size == size


def test_timm_is_built_with_in_chans_and_num_classes(colour_folder, tmp_path):
    result = api.train(
        quick("timm:resnet18", dataset="folder", data_dir=str(colour_folder), size=32),
        out=str(tmp_path / "run"),
    )
    assert (result.config.channels, result.config.num_classes) == (3, 3)
    model = build_model(result.config)
    assert model.conv1.in_channels == 3 and model.fc.out_features == 3


def test_googlenet_trains_on_its_main_head():
    config = quick("torchvision:googlenet", size=64).resolve().with_data(tuple("abc"), 3, 64)
    model = build_model(config).train()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3)  # a tensor, not GoogLeNetOutputs


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("torchvision:fcn_resnet50", "is a segmentation model"),
        ("torchvision:resnet18@IMAGENET1K_V1", "without weights"),
        ("torchvision:resnet81", "Did you mean resnet18"),
    ],
)
def test_what_train_cannot_take_is_one_error(model, message, tmp_path):
    assert_clean_error(cli("train", model, "--out", tmp_path / "run"), message)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_is_named_after_the_model():
    assert run_name("torchvision:resnet18") == "resnet18"
    assert run_name("/home/me/models/net.py:Net") == "Net"
    assert run_name("lenet-bn") == "lenet-bn"

"""`cnnshape predict` as a user runs it: top-k classes of image files and folders, by a run's
model, prepared exactly as the run's training images were."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_clean_error, cli
from image_files import class_image, write_folder

from cnnshape.train import checkpoint, data, image_folder
from cnnshape.train.config import TrainConfig
from cnnshape.train.model import build_model
from cnnshape.train.predict import predict


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A colour image folder and a run trained on it for one epoch."""
    where = tmp_path_factory.mktemp("predict")
    root = write_folder(where / "imgs")
    result = cli(
        "train", "lenet-bn", "--dataset", "folder", "--data-dir", root, "--device", "cpu",
        "--epochs", "1", "--out", where / "run",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return root, where / "run"


@pytest.fixture(autouse=True)
def _private_data_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CNNSHAPE_DATA", str(tmp_path_factory.getbasetemp() / "predict-cache"))


def test_probabilities_are_the_models_on_the_training_tensors(folder_run):
    """predict decodes a file as training did: its answer is the model's on the cached
    training tensor of that very file."""
    root, run = folder_run
    image = root / "train" / "green" / "4.jpg"
    result = predict(run, [image], top=3)
    state = checkpoint.load(run)
    cfg = TrainConfig.from_dict(state["config"])
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    training = image_folder.load(root, cfg.size).train
    index = 6 + 4  # six blue images, then green 0..5
    with torch.no_grad():
        expected = model(data.to_input(training.images[index : index + 1], cfg.size)).softmax(1)[0]
    [only] = result.predictions
    assert [g.name for g in only.top] == [cfg.classes[i] for i in expected.argsort(descending=True)]
    assert [g.probability for g in only.top] == pytest.approx(
        expected.sort(descending=True).values.tolist(), abs=1e-6
    )


def test_the_table_json_and_csv_of_files_and_folders(folder_run):
    root, run = folder_run
    table = cli("predict", run, root / "test" / "red", root / "train" / "blue" / "0.png")
    assert table.exit_code == 0, table.stderr
    assert "probability" in table.stdout and "test/red/2.webp" in table.stdout

    doc = json.loads(cli("predict", run, root / "test" / "red", "-f", "json").stdout)
    assert doc["classes"] == ["blue", "green", "red"] and doc["epoch"] == 1
    images = [p["image"] for p in doc["predictions"]]
    assert images == [
        str(root / "test" / "red" / f"{i}.{e}") for i, e in enumerate(("png", "jpg", "webp"))
    ]
    for each in doc["predictions"]:
        probabilities = [g["probability"] for g in each["top"]]
        assert len(each["top"]) == 3  # default 5, but there are only three classes
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)

    rows = cli("predict", run, root / "test" / "red" / "0.png", "--top", "2", "-f", "csv")
    lines = rows.stdout.strip().splitlines()
    assert lines[0] == "image,rank,class,probability" and len(lines) == 3
    assert [line.split(",")[1] for line in lines[1:]] == ["1", "2"]


def test_a_fashion_mnist_run_takes_a_colour_photo_as_one_channel(tmp_path):
    run = tmp_path / "run"
    trained = cli(
        "train", "lenet", "--dataset", "synthetic", "--epochs", "1", "--train-limit", "300",
        "--test-limit", "100", "--device", "cpu", "--out", run,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    photo = tmp_path / "photo.jpg"
    class_image("red", 3).resize((200, 150)).save(photo)
    doc = json.loads(cli("predict", run, photo, "-f", "json").stdout)
    [only] = doc["predictions"]
    assert len(only["top"]) == 5 and {g["name"] for g in only["top"]} <= set(data.CLASSES)


def test_a_missing_run_image_or_undecodable_file_is_one_error(folder_run, tmp_path):
    root, run = folder_run
    good = root / "test" / "red" / "0.png"
    assert_clean_error(cli("predict", tmp_path / "nothing", good), "No checkpoint at")
    assert_clean_error(cli("predict", run, tmp_path / "absent.png"), "There is no image at")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert_clean_error(cli("predict", run, good, broken), f"{broken} cannot be decoded")
    (tmp_path / "empty").mkdir()
    assert_clean_error(cli("predict", run, tmp_path / "empty"), "holds no images")

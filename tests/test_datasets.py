"""The datasets beyond Fashion-MNIST: MNIST, CIFAR-10/100 and image folders, their cache, and
bad data as a user meets it (one Error: line naming the file, no run folder)."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, cli
from image_files import class_image, write_cifar, write_folder, write_mnist
from PIL import Image

from cnnshape import api
from cnnshape._common import human
from cnnshape.errors import CnnshapeError
from cnnshape.train import data, image_folder


@pytest.fixture(autouse=True)
def _private_data_cache(tmp_path, monkeypatch):
    """Each test's own data cache (the image-folder cache lives there), never the user's."""
    monkeypatch.setenv("CNNSHAPE_DATA", str(tmp_path / "data-cache"))


# ---- MNIST and CIFAR ---------------------------------------------------------------------------


def test_mnist_reads_torchvisions_layout_with_digit_classes(tmp_path):
    dataset = data.load("mnist", write_mnist(tmp_path / "m"))
    assert dataset.classes == tuple("0123456789") and dataset.channels == 1
    assert dataset.train.images.shape == (12, 28, 28) and len(dataset.test) == 6
    assert dataset.train.labels.tolist() == [i % 10 for i in range(12)]


def test_mnist_in_the_shared_cache_is_never_fashion_mnists_flat_files(tmp_path, monkeypatch):
    """$CNNSHAPE_DATA may hold Fashion-MNIST's files flat; MNIST has the same file names."""
    from fmnist_files import write_fashion_dir

    cache = write_fashion_dir(tmp_path / "shared", n_train=10, n_test=10)
    monkeypatch.setenv("CNNSHAPE_DATA", str(cache))
    tried = []
    monkeypatch.setattr(data, "torchvision_download", lambda *args: tried.append(args) or 1 / 0)
    with pytest.raises(CnnshapeError, match="MNIST was not found .* downloading them failed"):
        data.load("mnist")
    ((name, folder),) = tried
    assert name == "MNIST" and folder.parent == cache  # into a folder of its own in the cache
    assert not folder.exists() and not (cache / "MNIST").exists()  # tidied away
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{name}.gz" for name in data.FILES.values()
    )


def test_cifar10_pickles_become_channel_first_uint8(tmp_path):
    root = write_cifar(tmp_path)
    dataset = data.load("cifar10", root)
    assert (
        dataset.train.images.shape == (40, 3, 32, 32) and dataset.train.images.dtype == torch.uint8
    )
    assert dataset.classes == tuple(f"class{i}" for i in range(10)) and dataset.channels == 3
    # CIFAR stores each image as its red plane, then green, then blue, row by row.
    with (root / "cifar-10-batches-py" / "data_batch_1").open("rb") as f:
        first = pickle.load(f, encoding="latin1")
    red_of_pixel_0_1 = first["data"][0][1]
    blue_of_pixel_1_0 = first["data"][0][2 * 1024 + 32]
    assert dataset.train.images[0, 0, 0, 1] == red_of_pixel_0_1
    assert dataset.train.images[0, 2, 1, 0] == blue_of_pixel_1_0
    assert dataset.train.labels.tolist()[:8] == first["labels"]


def test_cifar100_uses_the_fine_labels(tmp_path):
    dataset = data.load("cifar100", write_cifar(tmp_path, hundred=True) / "cifar-100-python")
    assert len(dataset.classes) == 100 and len(dataset.train) == 8 and len(dataset.test) == 4


def test_a_cifar100_run_has_a_hundred_outputs_and_tests_them(tmp_path):
    """Test accuracy counts a (true, predicted) cell for each of the 100 x 100 pairs."""
    root = write_cifar(tmp_path, n_train=40, n_test=30, hundred=True)
    result = cli(
        "train", "lenet", "--dataset", "cifar100", "--data-dir", root, "--device", "cpu",
        "--epochs", "1", "--out", tmp_path / "run", "-f", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    config = json.loads(result.stdout)["config"]
    assert len(config["classes"]) == 100 and config["channels"] == 3
    assert config["image_size"] == 32 and config["size"] == 28  # resized as Fashion-MNIST is
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["model"]["0.weight"].shape[1] == 3 and state["model"]["11.weight"].shape[0] == 100


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    root = write_cifar(tmp_path)
    evil = root / "cifar-10-batches-py" / "test_batch"
    evil.write_bytes(pickle.dumps({"data": os.system}, protocol=2))
    with pytest.raises(CnnshapeError, match=r"test_batch is not a valid CIFAR-10 file.*posix"):
        data.load("cifar10", root)


def test_cifar_missing_names_the_folder(tmp_path):
    assert_clean_error(
        cli(
            "train",
            "lenet",
            "--dataset",
            "cifar10",
            "--data-dir",
            tmp_path,
            "--out",
            tmp_path / "run",
        ),
        f"CIFAR-10 was not found in {tmp_path}",
        "cifar-10-batches-py/",
    )
    assert not (tmp_path / "run").exists()


# ---- image folders -----------------------------------------------------------------------------


def test_a_folder_of_mixed_files_sizes_and_modes_is_one_colour_dataset(tmp_path):
    root = write_folder(tmp_path / "imgs")
    class_image("red", 99, gray=True).save(root / "train" / "red" / "gray.png")
    dataset = image_folder.load(root, 16)
    assert dataset.classes == ("blue", "green", "red")  # sorted, as ImageFolder orders them
    assert dataset.train.images.shape == (19, 3, 16, 16) and dataset.test.images.shape == (
        9,
        3,
        16,
        16,
    )
    assert dataset.train.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 7
    blue = dataset.train.images[0].float().mean(dim=(1, 2))
    assert blue[2] > 150 and blue[0] < 40  # channels in RGB order
    # the grayscale file became three equal channels
    gray = dataset.train.images[dataset.train.labels == 2][-1]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_a_grayscale_folder_keeps_one_channel_and_val_is_a_test_split(tmp_path):
    root = write_folder(tmp_path / "imgs", gray=True, test_name="val")
    dataset = image_folder.load(root, 20)
    assert dataset.channels == 1 and dataset.train.images.shape == (18, 20, 20)
    # PIL's own gray conversion, of the image PIL resized in RGB
    resized = (
        Image.open(root / "val" / "green" / "1.jpg")
        .convert("RGB")
        .resize((20, 20), Image.Resampling.BILINEAR)
    )
    expected = torch.from_numpy(np.asarray(resized.convert("L")).copy())
    assert torch.equal(dataset.test.images[4], expected)


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "imgs")
    first = image_folder.load(root, 16)
    entries = list(image_folder.cache_dir().iterdir())
    assert len(entries) == 1 and entries[0].parent == tmp_path / "data-cache" / "image-folders"

    decoded = []
    real = image_folder._decode_all
    monkeypatch.setattr(image_folder, "_decode_all", lambda *a: decoded.append(1) or real(*a))
    again = image_folder.load(root, 16)
    assert decoded == [] and torch.equal(again.train.images, first.train.images)

    image_folder.load(root, 20)  # another size: another entry
    assert decoded == [1] and len(list(image_folder.cache_dir().iterdir())) == 2

    changed = root / "train" / "blue" / "0.png"
    class_image("red", 0).save(changed)
    os.utime(changed, ns=(1, 1))  # a new mtime even on a coarse file system clock
    rebuilt = image_folder.load(root, 16)
    assert decoded == [1, 1] and len(list(image_folder.cache_dir().iterdir())) == 2
    assert rebuilt.train.images[0].float().mean(dim=(1, 2))[0] > 150  # now red


def test_a_folder_that_changes_while_decoded_is_an_error_and_is_not_cached(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "imgs")
    real = image_folder._decode_all
    victim = root / "test" / "red" / "2.webp"

    def decode_and_meanwhile_edit(*args):
        result = real(*args)
        os.utime(victim, ns=(5, 5))
        return result

    monkeypatch.setattr(image_folder, "_decode_all", decode_and_meanwhile_edit)
    with pytest.raises(CnnshapeError, match=f"{victim} changed while"):
        image_folder.load(root, 16)
    assert not image_folder.cache_dir().exists() or not list(image_folder.cache_dir().iterdir())


def test_a_cache_folder_that_is_a_file_is_one_error(tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("mine")
    monkeypatch.setenv("CNNSHAPE_DATA", str(tmp_path / "not-a-folder"))
    with pytest.raises(CnnshapeError, match="cannot be cached in .*not-a-folder/image-folders"):
        image_folder.load(write_folder(tmp_path / "imgs"), 16)
    assert (tmp_path / "not-a-folder").read_text() == "mine"


def test_a_corrupt_image_stops_the_run_before_its_folder_is_made(tmp_path):
    root = write_folder(tmp_path / "imgs")
    bad = root / "train" / "green" / "3.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    args = ["train", "lenet", "--dataset", "folder", "--data-dir", root, "--device", "cpu"]
    assert_clean_error(
        cli(*args, "--out", tmp_path / "run"), f"{bad} cannot be decoded", "--skip-bad"
    )
    assert not (tmp_path / "run").exists()

    skipped = cli(*args, "--out", tmp_path / "run", "--epochs", "1", "--skip-bad", "-f", "json")
    assert skipped.exit_code == 0, skipped.stderr
    assert "left out 1 images that cannot be decoded" in skipped.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["train_images"] == 17 and config["config"]["skip_bad"] is True
    assert config["config"]["classes"] == ["blue", "green", "red"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: shutil.rmtree(r / "train"), "has no train/ folder"),
        (lambda r: (r / "test").rename(r / "elsewhere"), "has no test/ (or val/) folder"),
        (lambda r: (r / "train" / "empty").mkdir(), "train/empty holds no images"),
        (lambda r: (r / "test" / "purple").mkdir(), "test/purple is a class that"),
    ],
    ids=["missing train", "missing test", "empty class", "unknown test class"],
)
def test_bad_trees_are_one_error_naming_the_folder(tmp_path, damage, message):
    root = write_folder(tmp_path / "imgs")
    damage(root)
    result = cli(
        "train", "lenet", "--dataset", "folder", "--data-dir", root, "--out", tmp_path / "run"
    )
    assert_clean_error(result, message)
    assert not (tmp_path / "run").exists()


def test_a_single_class_and_no_data_dir_are_errors(tmp_path):
    root = write_folder(tmp_path / "imgs", classes=("red",))
    assert_clean_error(
        cli("train", "lenet", "--dataset", "folder", "--data-dir", root),
        f"{root / 'train'} has one class folder",
    )
    assert_clean_error(
        cli("train", "lenet", "--dataset", "folder"), "--dataset folder needs --data-dir"
    )


def test_a_folder_run_trains_resumes_and_evaluates_with_its_class_names(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=(12, 4))
    run = tmp_path / "run"
    first = cli(
        "train", "lenet-bn", "--dataset", "folder", "--data-dir", root, "--device", "cpu",
        "--epochs", "1", "--batch-size", "9", "--out", run,
    )  # fmt: skip
    assert first.exit_code == 0, first.stderr
    assert "61,4" not in first.stderr  # not Fashion-MNIST's 1-channel, 10-class network
    # The header's count is the network built for the data: 3 channels and 3 classes.
    built = api.show("lenet-bn", in_channels=3, num_classes=3)
    assert f"{human(built.total_flops)}FLOPs per image" in first.stderr
    assert "data " + str(root) + ": 36 train / 12 test images" in first.stderr
    resumed = cli("train", "--resume", run, "--epochs", "2", "-f", "json")
    assert resumed.exit_code == 0, resumed.stderr
    assert [e["epoch"] for e in json.loads(resumed.stdout)["history"]] == [1, 2]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["model"]["0.weight"].shape[1] == 3  # built for the folder's colour images
    assert state["model"]["15.weight"].shape[0] == 3  # and its three classes
    evaluated = cli("eval", run, "-f", "csv")
    assert evaluated.exit_code == 0, evaluated.stderr
    rows = evaluated.stdout.strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["blue", "green", "red"]
    assert sum(int(row.split(",")[2]) for row in rows[1:]) == 12


def test_to_input_keeps_colour_channels_and_resizes_only_when_needed():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    same = data.to_input(images, 8)
    assert same.shape == (2, 3, 8, 8) and torch.equal(same, images.float() / 255)
    assert data.to_input(images, 16).shape == (2, 3, 16, 16)


# ---- --augment ---------------------------------------------------------------------------------


def test_augment_crops_from_the_padded_image_and_flips():
    """Every augmented image is one of the 9 x 9 crops of its 4-padded self, maybe mirrored;
    the draws come from the epoch's generator, so a seed repeats them."""
    images = torch.rand(64, 2, 6, 6)
    out = data.augmented(images, torch.Generator().manual_seed(3))
    assert torch.equal(out, data.augmented(images, torch.Generator().manual_seed(3)))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    seen = set()
    for i in range(len(images)):
        found = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(
                out[i],
                (lambda c: c.flip(-1) if flip else c)(padded[i, :, dy : dy + 6, dx : dx + 6]),
            )
        ]
        assert found, f"image {i} is no crop of its padded self"
        seen.add(found[0])
    assert len(seen) > 30 and {flip for _, _, flip in seen} == {False, True}


def test_train_with_augment_records_it(tmp_path):
    root = write_folder(tmp_path / "imgs")
    args = ["train", "lenet", "--dataset", "folder", "--data-dir", root, "--device", "cpu"]
    result = cli(*args, "--epochs", "1", "--augment", "--out", tmp_path / "run", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["config"]["augment"] is True
    resumed = cli("train", "--resume", tmp_path / "run", "--epochs", "2", "-f", "json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["config"]["augment"] is True  # a resumed run keeps it

"""Fashion-MNIST reading, finding, and batching on the device (CPU here)."""

from __future__ import annotations

import gzip

import pytest
import torch
from fmnist_files import idx_bytes, learnable_split, write_fashion_dir, write_idx
from PIL import Image
from torchvision import transforms

from cnnshape.errors import CnnshapeError
from cnnshape.train import data


@pytest.mark.parametrize("gz", [True, False])
def test_reads_the_four_files_gzipped_or_not(tmp_path, gz):
    write_fashion_dir(tmp_path, n_train=50, n_test=20, gz=gz)
    dataset = data.fashion_mnist(tmp_path)
    images, labels = learnable_split(50, seed=1)
    assert torch.equal(dataset.train.images, images)
    assert torch.equal(dataset.train.labels, labels.long())
    assert dataset.train.labels.dtype == torch.int64
    assert dataset.test.images.shape == (20, 28, 28)
    assert dataset.source == str(tmp_path)


def test_finds_files_in_torchvisions_layout(tmp_path):
    write_fashion_dir(tmp_path / "FashionMNIST" / "raw", n_train=10, n_test=10, gz=False)
    assert len(data.fashion_mnist(tmp_path).train) == 10


def test_gzip_detected_by_content_not_name(tmp_path):
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    path = tmp_path / "train-images-idx3-ubyte"  # gzipped although the name says otherwise
    path.write_bytes(gzip.compress(idx_bytes(images)))
    assert torch.equal(data.read_idx(path, ndim=3), images)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw + b"\0", "longer than its header says"),
        (lambda raw: b"\x00\x00\x09\x03" + raw[4:], "magic number"),
        (lambda raw: raw[:3] + b"\x02" + raw[4:], "dimensions"),
        (lambda raw: raw[:10], "ends inside its header"),
        (lambda raw: b"", "magic number"),
    ],
)
def test_damaged_idx_file_names_the_file(tmp_path, damage, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(idx_bytes(torch.zeros(4, 28, 28, dtype=torch.uint8))))
    with pytest.raises(CnnshapeError, match=message) as err:
        data.read_idx(path, ndim=3)
    assert str(path) in str(err.value)


def test_truncated_gzip_names_the_file(tmp_path):
    write_fashion_dir(tmp_path, n_train=30, n_test=10)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CnnshapeError, match="cannot be read") as err:
        data.fashion_mnist(tmp_path)
    assert str(path) in str(err.value)


def test_labels_must_match_images(tmp_path):
    write_fashion_dir(tmp_path, n_train=30, n_test=10, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", torch.zeros(29, dtype=torch.uint8), gz=False)
    with pytest.raises(CnnshapeError, match="29 labels for 30 images"):
        data.fashion_mnist(tmp_path)


def test_images_must_be_28x28(tmp_path):
    write_fashion_dir(tmp_path, n_train=4, n_test=4, gz=False)
    write_idx(
        tmp_path / "t10k-images-idx3-ubyte", torch.zeros(4, 32, 32, dtype=torch.uint8), gz=False
    )
    with pytest.raises(CnnshapeError, match="not 28x28"):
        data.fashion_mnist(tmp_path)


def test_missing_files_in_data_dir_name_all_four(tmp_path):
    with pytest.raises(CnnshapeError) as err:
        data.fashion_mnist(tmp_path)
    text = f"{err.value} {err.value.hint}"
    assert str(tmp_path) in text
    for name in data.FILES.values():
        assert name in text


def test_default_dir_without_network_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSHAPE_DATA", str(tmp_path / "cache"))

    def offline(directory):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(CnnshapeError, match="downloading them failed") as err:
        data.fashion_mnist()
    assert str(tmp_path / "cache") in str(err.value)
    assert all(name in err.value.hint for name in data.FILES.values())
    assert "--data-dir" in err.value.hint


@pytest.mark.parametrize("existing", ["", "cache", "cache/FashionMNIST"])
def test_a_failed_download_removes_the_folders_it_created_and_only_those(
    tmp_path, monkeypatch, existing
):
    kept = tmp_path / existing
    kept.mkdir(parents=True, exist_ok=True)
    (kept / "mine.txt").write_text("keep me")
    monkeypatch.setenv("CNNSHAPE_DATA", str(tmp_path / "cache"))

    def cut_off(directory):  # as torchvision fails: its folders made, a file half-written
        raw = directory / "FashionMNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b half")
        raise OSError("Connection reset by peer")

    monkeypatch.setattr(data, "_download", cut_off)
    with pytest.raises(CnnshapeError, match="downloading them failed"):
        data.fashion_mnist()
    assert (kept / "mine.txt").read_text() == "keep me"
    assert [p.name for p in kept.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("where", ["file", "file/data"])
def test_a_data_folder_that_is_a_file_says_so(tmp_path, monkeypatch, where):
    (tmp_path / "file").write_text("not a folder")
    path = tmp_path / where
    is_a_file = "is a file, not a folder" if where == "file" else "lies under"
    with pytest.raises(CnnshapeError, match=f"--data-dir {path} {is_a_file}"):
        data.fashion_mnist(path)
    monkeypatch.setenv("CNNSHAPE_DATA", str(path))
    monkeypatch.setattr(data, "_download", lambda directory: pytest.fail("downloaded"))
    with pytest.raises(CnnshapeError, match=f"CNNSHAPE_DATA {path} {is_a_file}") as err:
        data.fashion_mnist()
    assert "network" not in str(err.value) and "CNNSHAPE_DATA" in err.value.hint


def test_default_dir_downloads_once_then_reads_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNSHAPE_DATA", str(cache))
    calls = []

    def fake_download(directory):  # what torchvision leaves behind: <root>/FashionMNIST/raw/
        calls.append(directory)
        write_fashion_dir(directory / "FashionMNIST" / "raw", n_train=8, n_test=4)

    monkeypatch.setattr(data, "_download", fake_download)
    assert len(data.fashion_mnist().train) == 8
    assert len(data.fashion_mnist().test) == 4
    # Once, into a folder of its own in the cache, moved into place and gone.
    assert [folder.parent for folder in calls] == [cache] and not calls[0].exists()


def test_a_failed_download_leaves_what_another_process_put_there_meanwhile(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNSHAPE_DATA", str(cache))
    theirs = cache / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"

    def racing(directory):  # another run writes its download while this one fails
        theirs.parent.mkdir(parents=True)
        theirs.write_bytes(b"another run's")
        (directory / "FashionMNIST").mkdir()
        raise OSError("Connection reset by peer")

    monkeypatch.setattr(data, "_download", racing)
    with pytest.raises(CnnshapeError, match="downloading them failed"):
        data.fashion_mnist()
    assert theirs.read_bytes() == b"another run's"
    assert sorted(p.name for p in cache.iterdir()) == ["FashionMNIST"]


def test_a_download_never_replaces_a_file_already_there(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNSHAPE_DATA", str(cache))
    write_fashion_dir(cache / "FashionMNIST" / "raw", n_train=8, n_test=4)
    kept = cache / "FashionMNIST" / "raw" / "notes.txt"
    kept.write_text("mine")
    (cache / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()  # incomplete

    def complete(directory):
        write_fashion_dir(directory / "FashionMNIST" / "raw", n_train=8, n_test=4)
        (directory / "FashionMNIST" / "raw" / "notes.txt").write_text("downloaded")

    monkeypatch.setattr(data, "_download", complete)
    assert len(data.fashion_mnist().test) == 4  # the missing file moved in
    assert kept.read_text() == "mine"
    assert not [p for p in cache.iterdir() if p.name.startswith(".cnnshape-download-")]


def test_synthetic_is_seeded_and_shaped_like_fashion_mnist():
    a, b = data.synthetic(50, 10, seed=3), data.synthetic(50, 10, seed=3)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, data.synthetic(50, 10, seed=4).train.images)
    assert a.train.images.shape == (50, 28, 28) and a.train.images.dtype == torch.uint8
    assert a.test.labels.dtype == torch.int64 and int(a.test.labels.max()) <= 9


def test_unknown_dataset_is_refused():
    with pytest.raises(CnnshapeError, match="Unknown dataset"):
        data.load("imagenet")


# ---- batches ----------------------------------------------------------------------------------


def _split(n: int) -> data.Split:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1).expand(n, 28, 28).contiguous()
    return data.Split(images, torch.arange(n) % 10)


def test_shuffled_batches_cover_every_image_once_and_keep_the_last_partial():
    split = _split(23)
    got = list(data.batches(split, 5, 28, shuffle_seed=7))
    assert [len(y) for _, y in got] == [5, 5, 5, 5, 3]
    seen = torch.cat([x[:, 0, 0, 0] for x, _ in got]) * 255
    assert sorted(seen.round().long().tolist()) == list(range(23))
    for x, y in got:  # each image still travels with its own label
        assert torch.equal((x[:, 0, 0, 0] * 255).round().long() % 10, y)


def test_shuffle_depends_only_on_its_seed():
    split = _split(40)

    def order(seed):
        return torch.cat([y for _, y in data.batches(split, 8, 28, shuffle_seed=seed)])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    unshuffled = torch.cat([y for _, y in data.batches(split, 8, 28)])
    assert torch.equal(unshuffled, split.labels)


def test_inputs_at_28_are_exactly_totensor():
    images, _ = learnable_split(4, seed=5)
    x = data.to_input(images, 28)
    expected = torch.stack([transforms.ToTensor()(Image.fromarray(im.numpy())) for im in images])
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x, expected)


@pytest.mark.parametrize("size", [224, 96, 14])
def test_resize_matches_the_books_pil_resize_within_one_level(size):
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    book = transforms.Compose([transforms.Resize(size), transforms.ToTensor()])
    expected = torch.stack([book(Image.fromarray(im.numpy())) for im in images])
    x = data.to_input(images, size)
    assert x.shape == expected.shape
    diff = (x - expected).abs()
    assert diff.max().item() <= 1 / 255 + 1e-6  # PIL's fixed-point weights round differently
    assert (diff > 1e-6).float().mean().item() < 0.25
    levels = x * 255  # still whole uint8 levels, as the book's resized PIL image is
    assert torch.allclose(levels, levels.round(), atol=1e-4)


def test_channels_last_inputs():
    x = data.to_input(torch.zeros(2, 28, 28, dtype=torch.uint8), 32, channels_last=True)
    assert x.shape == (2, 1, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)


def test_a_download_never_replaces_a_file_that_appears_while_it_moves_in(tmp_path, monkeypatch):
    """The race: the name is free when checked and taken just before the file moves in
    (simulated by a check that always says free). The file there stays as it was."""
    target = tmp_path / "data"
    (target / "raw").mkdir(parents=True)
    (target / "raw" / "train.gz").write_text("the user's")
    monkeypatch.setattr(data.os.path, "lexists", lambda path: False)

    def download(folder):
        (folder / "raw").mkdir()
        (folder / "raw" / "train.gz").write_text("downloaded")
        (folder / "raw" / "test.gz").write_text("downloaded")

    data.download_into(target, download, CnnshapeError("unused"))
    assert (target / "raw" / "train.gz").read_text() == "the user's"
    assert (target / "raw" / "test.gz").read_text() == "downloaded"
    assert sorted(p.name for p in target.iterdir()) == ["raw"]  # the staging folder is gone

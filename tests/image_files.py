"""Tiny datasets in the formats the data tests read: image folders (PNG/JPEG/WebP of mixed
sizes and modes), CIFAR pickles and MNIST IDX files as torchvision writes them."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from fmnist_files import idx_bytes
from PIL import Image

from cnnshape.train.data import FILES

COLOURS = {"blue": (0, 0, 220), "green": (0, 200, 0), "red": (230, 0, 0)}
EXTENSIONS = ("png", "jpg", "webp")


def class_image(name: str, index: int, gray: bool = False) -> Image.Image:
    """An image that looks like its class (its colour, or its brightness when gray), of a
    size and file type that vary with ``index``."""
    rng = np.random.default_rng(index)
    height, width = 20 + 3 * (index % 4), 24 + 5 * (index % 3)
    colour = np.array(COLOURS[name], np.int16)
    pixels = colour + rng.integers(-20, 20, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.convert("L") if gray else image


def write_folder(
    root: Path,
    classes=tuple(COLOURS),
    per_class: tuple[int, int] = (6, 3),
    gray: bool = False,
    test_name: str = "test",
) -> Path:
    """root/train/<class>/*.png|jpg|webp and root/<test_name>/<class>/...; returns root."""
    for split, n in zip(("train", test_name), per_class, strict=True):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                class_image(name, i, gray).save(folder / f"{i}.{EXTENSIONS[i % 3]}")
    return root


def write_cifar(root: Path, n_train: int = 8, n_test: int = 4, hundred: bool = False) -> Path:
    """A cifar-10-batches-py/ (or cifar-100-python/) folder in ``root`` with random images:
    the pickles' dicts hold what torchvision's reader takes (protocol 2, as the originals)."""
    rng = np.random.default_rng(0)
    if hundred:
        folder, meta, names_key, labels_key = (
            root / "cifar-100-python",
            "meta",
            "fine_label_names",
            "fine_labels",
        )
        splits, n_classes = {"train": n_train, "test": n_test}, 100
    else:
        folder, meta, names_key, labels_key = (
            root / "cifar-10-batches-py",
            "batches.meta",
            "label_names",
            "labels",
        )
        splits = {**{f"data_batch_{i}": n_train for i in range(1, 6)}, "test_batch": n_test}
        n_classes = 10
    folder.mkdir(parents=True)
    _pickle(folder / meta, {names_key: [f"class{i}" for i in range(n_classes)]})
    for name, n in splits.items():
        pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, n_classes, n).tolist()
        _pickle(folder / name, {"data": pixels, labels_key: labels, "batch_label": name})
    return root


def _pickle(path: Path, value) -> None:
    with path.open("wb") as f:
        pickle.dump(value, f, protocol=2)


def write_mnist(root: Path, n_train: int = 12, n_test: int = 6) -> Path:
    """MNIST's four IDX files where torchvision keeps them: root/MNIST/raw/."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
        labels = torch.arange(n, dtype=torch.uint8) % 10
        (raw / FILES[split, "images"]).write_bytes(idx_bytes(images))
        (raw / FILES[split, "labels"]).write_bytes(idx_bytes(labels))
    return root

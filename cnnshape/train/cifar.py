"""CIFAR-10 and CIFAR-100 for training: the pickled batches torchvision reads and downloads
(``cifar-10-batches-py/``, ``cifar-100-python/``), as uint8 (N, 3, 32, 32) splits."""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CnnshapeError
from . import data

IMAGE_SIZE = 32


@dataclass(frozen=True)
class CifarSource:
    name: str  # as --dataset spells it
    title: str
    folder: str  # what the archive unpacks to
    archive: str  # what torchvision downloads next to it
    torchvision_class: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    labels_key: str
    names_key: str


CIFAR10 = CifarSource(
    "cifar10",
    "CIFAR-10",
    "cifar-10-batches-py",
    "cifar-10-python.tar.gz",
    "CIFAR10",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
    "labels",
    "label_names",
)
CIFAR100 = CifarSource(
    "cifar100",
    "CIFAR-100",
    "cifar-100-python",
    "cifar-100-python.tar.gz",
    "CIFAR100",
    ("train",),
    "test",
    "meta",
    "fine_labels",
    "fine_label_names",
)
SOURCES = {source.name: source for source in (CIFAR10, CIFAR100)}
SITE = "https://www.cs.toronto.edu/~kriz/cifar.html"


def load(source: CifarSource, data_dir: str | os.PathLike | None) -> data.Dataset:
    folder = _locate(source, data_dir)
    classes = tuple(_read(folder / source.meta_file, source)[source.names_key])
    train = _read_split([folder / name for name in source.train_files], source, len(classes))
    test = _read_split([folder / source.test_file], source, len(classes))
    return data.Dataset(source.name, str(folder), train, test, classes)


def _locate(source: CifarSource, data_dir: str | os.PathLike | None) -> Path:
    """The unpacked folder: in ``data_dir`` (or it is ``data_dir``), else in the cache,
    downloaded when absent."""
    if data_dir is not None:
        directory = data.given_folder(data_dir, f"{source.folder}/")
        for folder in (directory / source.folder, directory):
            if (folder / source.meta_file).is_file():
                return folder
        raise _missing(source, directory, tried_download=False)
    directory = data.cache_folder(source.name, source.title)
    folder = directory / source.folder
    if not (folder / source.meta_file).is_file():
        data.download_into(
            directory,
            lambda staging: data.torchvision_download(source.torchvision_class, staging),
            _missing(source, directory, tried_download=True),
        )
    if not (folder / source.meta_file).is_file():
        raise _missing(source, directory, tried_download=True)
    return folder


def _missing(source: CifarSource, directory: Path, tried_download: bool) -> CnnshapeError:
    hint = (
        f"Unpack {source.archive} (from {SITE}) and pass the folder that holds "
        f"{source.folder}/ with --data-dir."
    )
    return data.not_found(source.title, directory, tried_download, hint)


def _read_split(paths: list[Path], source: CifarSource, n_classes: int) -> data.Split:
    images, labels = [], []
    for path in paths:
        batch = _read(path, source)
        pixels = np.asarray(batch.get("data"))
        if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
            raise _corrupt(path, source, f"its data is {pixels.dtype} {list(pixels.shape)}")
        batch_labels = torch.tensor(batch.get(source.labels_key, []), dtype=torch.long)
        if len(batch_labels) != len(pixels):
            raise _corrupt(
                path, source, f"it has {len(batch_labels):,} labels for {len(pixels):,} images"
            )
        if len(batch_labels) and not 0 <= int(batch_labels.min()) <= int(batch_labels.max()) < (
            n_classes
        ):
            raise _corrupt(path, source, f"its labels are not 0-{n_classes - 1}")
        images.append(torch.from_numpy(pixels.copy()).view(-1, 3, IMAGE_SIZE, IMAGE_SIZE))
        labels.append(batch_labels)
    return data.Split(torch.cat(images), torch.cat(labels))


def _read(path: Path, source: CifarSource) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _corrupt(path, source, f"it cannot be read ({exc})") from exc
    try:
        loaded = _NumpyOnly(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # a pickle can fail in any way; each means a bad file
        raise _corrupt(path, source, f"it is not a CIFAR pickle ({exc})") from exc
    if not isinstance(loaded, dict):
        raise _corrupt(path, source, "it holds no dictionary")
    return loaded


class _NumpyOnly(pickle.Unpickler):
    """An unpickler for CIFAR's batches: numpy arrays and plain data, no other code (a pickle
    may name any function to call; these files need only numpy's array rebuilders, and
    ``_codecs.encode`` for the bytes a Python 3 pickle of an array holds)."""

    _ALLOWED = {
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not data")
        return super().find_class(module, name)


def _corrupt(path: Path, source: CifarSource, why: str) -> CnnshapeError:
    return CnnshapeError(
        f"{path} is not a valid {source.title} file: {why}.",
        f"Download and unpack {source.archive} again (see {SITE}).",
    )

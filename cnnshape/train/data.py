"""The datasets a run trains on: find or download them, read them, batch them on the device.

Fashion-MNIST and MNIST (IDX files) are read here; CIFAR (``cifar.py``) and image folders
(``image_folder.py``) in their own modules, and `load` names them all. A whole split lives
on the training device as uint8 (47 MB for Fashion-MNIST's 60,000 training images),
so a batch is one index into device memory: no DataLoader, no workers, no per-image decoding.
Each batch is converted to float and resized on the device, as the book's
``Resize(size)`` + ``ToTensor()`` would on the CPU.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import CnnshapeError
from .config import DATASETS, SPLIT_SIZES

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
IMAGE_SIZE = 28

# (split, kind) -> the file name as Fashion-MNIST's own site and torchvision spell it.
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class IdxSource:
    """A dataset of four IDX files with FILES' names: Fashion-MNIST, or MNIST."""

    name: str  # as --dataset spells it
    title: str  # as people write it
    torchvision_folder: str  # torchvision keeps the files in <root>/<this>/raw/
    classes: tuple[str, ...]
    site: str  # where to get the files by hand


FASHION = IdxSource(
    "fashion-mnist",
    "Fashion-MNIST",
    "FashionMNIST",
    CLASSES,
    "https://github.com/zalandoresearch/fashion-mnist",
)
MNIST = IdxSource("mnist", "MNIST", "MNIST", MNIST_CLASSES, "https://yann.lecun.com/exdb/mnist/")
_IDX_UBYTE = 0x08  # the IDX type code for unsigned bytes, the only type these files use
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8: (N, H, W) for one channel, (N, C, H, W) for more
    labels: torch.Tensor  # (N,) int64, as CrossEntropyLoss wants them

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return 1 if self.images.dim() == 3 else self.images.shape[1]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def head(self, n: int | None) -> Split:
        return self if n is None else Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str  # where the images came from, for the run header and config.json
    train: Split
    test: Split
    classes: tuple[str, ...] = CLASSES
    notes: tuple[str, ...] = ()  # what a reader should know (images left out)

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_size(self) -> int:
        """The side the images are stored at, before a run resizes them to its size."""
        return self.train.images.shape[-1]

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, train=self.train.to(device), test=self.test.to(device))

    def head(self, n_train: int | None, n_test: int | None) -> Dataset:
        """The first images of each split (for quick runs); None keeps a split whole."""
        return replace(self, train=self.train.head(n_train), test=self.test.head(n_test))


# ---- reading IDX files ------------------------------------------------------------------------


def read_idx(path: Path, ndim: int, source: IdxSource = FASHION) -> torch.Tensor:
    """An IDX file (gzipped or not) as a uint8 tensor, checking magic number, dims and length."""
    raw = _read_bytes(path, source)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _IDX_UBYTE:
        raise _corrupt(
            path, "it does not start with the IDX magic number for unsigned bytes", source
        )
    if raw[3] != ndim:
        raise _corrupt(path, f"it has {raw[3]} dimensions where {ndim} were expected", source)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, "it ends inside its header", source)
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + _product(dims)
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise _corrupt(
            path, f"it is {what}: {len(raw):,} bytes where dims {dims} need {expected:,}", source
        )
    # bytearray: a writable buffer torch can own (bytes are read-only); one copy, no slicing.
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path, source: IdxSource) -> bytes:
    try:
        raw = path.read_bytes()
        # Decide by content, not by name: people gunzip files and keep the .gz name, or not.
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, f"it cannot be read ({exc})", source) from exc


def _product(dims: list[int]) -> int:
    total = 1
    for d in dims:
        total *= d
    return total


def _corrupt(path: Path, why: str, source: IdxSource) -> CnnshapeError:
    return CnnshapeError(
        f"{path} is not a valid {source.title} IDX file: {why}.",
        f"Download the file again (see {source.site}).",
    )


def read_split(images_path: Path, labels_path: Path, source: IdxSource = FASHION) -> Split:
    images = read_idx(images_path, 3, source)
    labels = read_idx(labels_path, 1, source)
    if tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise _corrupt(images_path, f"its images are {list(images.shape[1:])}, not 28x28", source)
    if len(labels) != len(images):
        raise _corrupt(
            labels_path,
            f"it has {len(labels):,} labels for {len(images):,} images in {images_path.name}",
            source,
        )
    if len(labels) and int(labels.max()) >= len(source.classes):
        raise _corrupt(labels_path, f"it has label {int(labels.max())}; classes are 0-9", source)
    return Split(images, labels.long())


# ---- finding and downloading the files ---------------------------------------------------------


def data_root() -> Path:
    """Where the data cache lives: $CNNSHAPE_DATA, else the user's cache
    (``$XDG_CACHE_HOME`` or ~/.cache)/cnnshape."""
    if os.environ.get("CNNSHAPE_DATA"):
        return Path(os.environ["CNNSHAPE_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "cnnshape"


def default_data_dir(name: str = FASHION.name) -> Path:
    """A dataset's download folder: $CNNSHAPE_DATA itself (torchvision's layouts keep the
    datasets apart below it), else <the cache>/cnnshape/<name>."""
    return data_root() if os.environ.get("CNNSHAPE_DATA") else data_root() / name


def find_files(
    directory: Path, source: IdxSource = FASHION, flat: bool = True
) -> dict[tuple[str, str], Path] | None:
    """The four files in ``directory`` (``flat``) or in torchvision's layout below it, else None.

    Fashion-MNIST and MNIST name their files alike, so a shared cache folder is searched in
    torchvision's layout only (``flat`` false), where the two live apart."""
    for folder in _layouts(directory, source, flat):
        found = {key: _first_existing(folder, name) for key, name in FILES.items()}
        if all(found.values()):
            return found
    return None


def _layouts(directory: Path, source: IdxSource, flat: bool) -> list[Path]:
    torchvision = directory / source.torchvision_folder / "raw"
    return [directory, torchvision] if flat else [torchvision]


def _first_existing(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing(
    directory: Path, tried_download: bool, source: IdxSource = FASHION, flat: bool = True
) -> CnnshapeError:
    names = ", ".join(f"{name}.gz" for name in FILES.values())
    hint = (
        f"Put the four IDX files ({names}; gzipped or not) in one folder and pass it with "
        f"--data-dir, or copy them into {directory / source.torchvision_folder / 'raw'}."
    )
    # Some of the files there: name the ones that are not (in the layout with the most).
    found = max(
        (
            {key: _first_existing(folder, name) for key, name in FILES.items()}
            for folder in _layouts(directory, source, flat)
        ),
        key=lambda files: sum(path is not None for path in files.values()),
    )
    absent = [FILES[key] for key, path in found.items() if path is None]
    if len(absent) < len(FILES):
        return CnnshapeError(
            f"{source.title} is incomplete in {directory}: {', '.join(absent)} (or .gz) "
            f"{'is' if len(absent) == 1 else 'are'} missing.",
            hint,
        )
    return not_found(source.title, directory, tried_download, hint)


def not_found(title: str, directory: Path, tried_download: bool, hint: str) -> CnnshapeError:
    why = " and downloading them failed (no network?)" if tried_download else ""
    return CnnshapeError(f"{title} was not found in {directory}{why}.", hint)


def torchvision_download(dataset_class: str, directory: Path) -> None:
    """torchvision's own download of ``dataset_class`` (both splits) into ``directory``."""
    import torchvision.datasets

    # torchvision reports download progress on stdout, which belongs to a command's data.
    with contextlib.redirect_stdout(sys.stderr):
        for train in (True, False):
            getattr(torchvision.datasets, dataset_class)(str(directory), train=train, download=True)


def _download(directory: Path) -> None:
    torchvision_download(FASHION.torchvision_folder, directory)


def _download_idx(source: IdxSource, directory: Path) -> None:
    # Fashion-MNIST's through `_download`, the one download the tests replace.
    if source is FASHION:
        _download(directory)
    else:
        torchvision_download(source.torchvision_folder, directory)


def download_into(
    directory: Path, download: Callable[[Path], None], missing: CnnshapeError
) -> None:
    """``download(folder)`` into a fresh folder of cnnshape's own inside ``directory``; what
    it made then moves into ``directory``, never over anything already there (another run's
    download, the user's files). When the download fails, ``missing`` is raised and nothing
    is left: the fresh folder is removed (only this call made it), and so are the folders on
    the way to ``directory`` that this call created, if they are still empty."""
    created = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cnnshape-download-", dir=directory))
    try:
        try:
            download(staging)
        except Exception as exc:  # any failure (DNS, HTTP, disk) means the same thing to a user
            shutil.rmtree(staging, ignore_errors=True)
            for folder in created:  # innermost first; rmdir refuses a folder with anything in
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise missing from exc
        _move_new(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # what was not moved: already there


def _move_new(source: Path, target: Path) -> None:
    """Every entry of ``source`` into ``target`` where ``target`` has none of that name;
    folders on both sides are merged the same way. Nothing is replaced."""
    for entry in source.iterdir():
        there = target / entry.name
        if not os.path.lexists(there):
            os.rename(entry, there)
        elif _real_folder(entry) and _real_folder(there):
            _move_new(entry, there)


def _real_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def check_folder(directory: Path, named: str, hint: str) -> None:
    """A data folder that is a file, or lies under one, is that: not missing data, and no
    network's fault."""
    for path in (directory, *directory.parents):
        if path.exists() and not path.is_dir():
            where = "is a file" if path == directory else f"lies under {path}, which is a file"
            raise CnnshapeError(f"{named} {directory} {where}, not a folder.", hint)


def given_folder(data_dir: str | os.PathLike, what: str) -> Path:
    """``--data-dir`` as a path, refused when it is a file (`check_folder`)."""
    directory = Path(data_dir).expanduser()
    check_folder(directory, "--data-dir", f"Pass --data-dir the folder that holds {what}.")
    return directory


def cache_folder(name: str, title: str) -> Path:
    """The download folder of dataset ``name``, refused when it is a file (`check_folder`)."""
    directory = default_data_dir(name)
    check_folder(
        directory,
        "CNNSHAPE_DATA" if os.environ.get("CNNSHAPE_DATA") else "The cache folder",
        f"Set CNNSHAPE_DATA to a folder to download {title} into (or one that holds its "
        "files), or pass --data-dir.",
    )
    return directory


def locate(
    data_dir: str | os.PathLike | None, source: IdxSource = FASHION
) -> dict[tuple[str, str], Path]:
    """The four files: from ``data_dir`` as given, or from the cache, downloading when absent."""
    if data_dir is not None:
        directory = given_folder(data_dir, "the four files")
        found = find_files(directory, source)
        if found is None:
            raise _missing(directory, tried_download=False, source=source)
        return found
    directory = cache_folder(source.name, source.title)
    # Fashion-MNIST's cache folder is its own (the flat layout is safe there); MNIST may
    # share $CNNSHAPE_DATA with it.
    flat = source is FASHION
    if find_files(directory, source, flat) is None:
        download_into(
            directory,
            lambda folder: _download_idx(source, folder),
            _missing(directory, True, source, flat),
        )
    found = find_files(directory, source, flat)
    if found is None:
        raise _missing(directory, True, source, flat)
    return found


def idx_dataset(source: IdxSource, data_dir: str | os.PathLike | None = None) -> Dataset:
    files = locate(data_dir, source)
    train = read_split(files["train", "images"], files["train", "labels"], source)
    test = read_split(files["test", "images"], files["test", "labels"], source)
    where = str(files["train", "images"].parent)
    return Dataset(source.name, where, train, test, source.classes)


def fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    return idx_dataset(FASHION, data_dir)


def resident_bytes(n_train: int = SPLIT_SIZES[0], n_test: int = SPLIT_SIZES[1]) -> int:
    """What a dataset occupies on the training device: uint8 images and int64 labels."""
    return (n_train + n_test) * (IMAGE_SIZE * IMAGE_SIZE + 8)


def synthetic(
    n_train: int = SPLIT_SIZES[0], n_test: int = SPLIT_SIZES[1], seed: int = 0
) -> Dataset:
    """Random images and labels with Fashion-MNIST's shapes: for smoke runs and benchmarks."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        images = torch.randint(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=g)
        return Split(images, torch.randint(0, len(CLASSES), (n,), generator=g))

    return Dataset("synthetic", f"synthetic (random, seed {seed})", split(n_train), split(n_test))


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    size: int = IMAGE_SIZE,
    skip_bad: bool = False,
) -> Dataset:
    """Dataset ``name``; an image folder is decoded at ``size`` (``skip_bad``: leaving out the
    images that cannot be decoded), every other dataset comes at its own size."""
    from . import cifar, image_folder

    if name in (FASHION.name, MNIST.name):
        return idx_dataset(FASHION if name == FASHION.name else MNIST, data_dir)
    if name in cifar.SOURCES:
        return cifar.load(cifar.SOURCES[name], data_dir)
    if name == "folder":
        return image_folder.load(data_dir, size, skip_bad=skip_bad)
    if name == "synthetic":
        return synthetic(seed=seed)
    raise CnnshapeError(f"Unknown dataset {name!r}.", f"Choose one of: {', '.join(DATASETS)}.")


# ---- batches on the device --------------------------------------------------------------------


def to_input(images: torch.Tensor, size: int, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, H, W) or (B, C, H, W) -> float (B, C, size, size) in [0, 1], like
    Resize(size) + ToTensor().

    The book resizes the uint8 PIL image (bilinear) and then divides by 255. Here: bilinear
    ``F.interpolate`` with ``antialias=True`` on pixel values 0-255, rounded back to whole
    levels, then divided by 255 (as ToTensor does). ``antialias=True`` is the filter PIL and
    torchvision's tensor ``Resize`` use: identical to plain bilinear when enlarging (every
    seed size is >= 28) and, unlike ``antialias=False``, also right when shrinking. Rounding
    mimics the uint8 image PIL produces; PIL's fixed-point weights still differ by one level
    (1/255) on some pixels (~18% at 28->224, measured), which is float-rounding noise.
    """
    x = (images.unsqueeze(1) if images.dim() == 3 else images).float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        ).round_()
    x = x.div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)  # the last batch is partial, not dropped


def batch_length(n: int, batch_size: int, index: int) -> int:
    """How many of ``n`` items batch ``index`` holds: ``batch_size``, or fewer for the last."""
    return min(batch_size, n - index * batch_size)


def share(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` items (one global batch) among ``world`` ranks:
    sizes differ by at most one, so together the ranks take every item exactly once."""
    return slice(rank * n // world, (rank + 1) * n // world)


def without_single_shares(n: int, batch_size: int, world: int = 1) -> int:
    """How many of ``n`` items an epoch uses when no rank may get a batch of exactly one: all
    of them, or all but the last batch when it would give some rank one item.

    BatchNorm cannot normalize a single image in training ("Expected more than 1 value per
    channel"): the book's loop stops with that error on such a batch. Leaving that one last
    batch out, as a DataLoader's ``drop_last`` would, keeps the run going (see loop.py).
    """
    if n == 0:
        return 0
    last = batch_length(n, batch_size, num_batches(n, batch_size) - 1)
    shares = {len(range(last)[share(last, rank, world)]) for rank in range(world)}
    return n - last if 1 in shares else n


def batches(
    split: Split,
    batch_size: int,
    size: int,
    *,
    shuffle_seed: int | None = None,
    channels_last: bool = False,
    part: tuple[int, int] = (0, 1),
    length: int | None = None,
    augment: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) batches in a shuffled (seeded) or the stored order, on the split's device.

    The permutation is drawn on the device from its own seeded generator, so the order of an
    epoch depends only on its seed: a resumed run sees the same batches as an uninterrupted one.
    ``part`` = (rank, world): every rank draws the same permutation and batches, and yields only
    its share of each (possibly an empty one, when a last batch has fewer items than ranks).
    ``length``: use only the first ``length`` items of the order (default: all).
    ``augment``: each image randomly cropped and flipped (`augmented`), drawn from the same
    seeded generator as the order (so a shuffled order is needed).
    """
    n = len(split) if length is None else length
    order = None
    device = split.images.device
    generator = None if shuffle_seed is None else torch.Generator(device=device)
    if generator is not None:
        generator.manual_seed(shuffle_seed)
        order = torch.randperm(len(split), generator=generator, device=device)
    for start in range(0, n, batch_size):
        mine = share(batch_length(n, batch_size, start // batch_size), *part)
        lo, hi = start + mine.start, start + mine.stop
        idx = slice(lo, hi) if order is None else order[lo:hi]
        if augment:
            inputs = augmented(to_input(split.images[idx], size), generator)
            inputs = (
                inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs
            )
        else:
            inputs = to_input(split.images[idx], size, channels_last)
        yield inputs, split.labels[idx]


AUGMENT_PADDING = 4


def augmented(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of (B, C, H, W) cropped at a random place from itself padded by 4 zero
    pixels, and flipped left-right with probability 1/2: the CIFAR recipe, as one gather on
    the device."""
    n, channels, height, width = x.shape
    pad = AUGMENT_PADDING
    padded = F.pad(x, (pad, pad, pad, pad))
    device = x.device
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator, device=device)
    flip = torch.rand(n, 1, generator=generator, device=device) < 0.5
    rows = dy + torch.arange(height, device=device)
    cols = dx + torch.arange(width, device=device)
    cols = torch.where(flip, cols.flip(1), cols)
    images = torch.arange(n, device=device)[:, None, None, None]
    planes = torch.arange(channels, device=device)[None, :, None, None]
    return padded[images, planes, rows[:, None, :, None], cols[:, None, None, :]]

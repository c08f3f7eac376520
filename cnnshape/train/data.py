"""The datasets a run trains on: find or download them, read them, batch them on the device.

Fashion-MNIST and MNIST (IDX files) are read here; CIFAR (``cifar.py``) and image folders
(``image_folder.py``) in their own modules, and `load` names them all. A whole split lives
on the training device as uint8 (47 MB for Fashion-MNIST's 60,000 training images),
so a batch is one index into device memory: no DataLoader, no workers, no per-image decoding.
Each batch is converted to float and resized on the device, as the book's
``Resize(size)`` + ``ToTensor()`` would on the CPU, and normalized there on request
(`Normalization`). A dataset too large for the device stays in host memory and streams to it
batch by batch (`stream_reason`), the batches the same.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .._common import byte_size
from ..errors import CnnshapeError
from .config import DATASETS, SPLIT_SIZES

if TYPE_CHECKING:
    from .config import TrainConfig

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
class Normalization:
    """Per-channel mean and std of the training images in [0, 1]: inputs become
    (x - mean) / std, as torchvision's ``Normalize(mean, std)`` makes them."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    # (device, dtype) -> (mean, std) as (C, 1, 1) tensors there: made once, because copying
    # them to a GPU for every batch would make the host wait for the device each time.
    _tensors: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def recorded(cls, cfg: TrainConfig) -> Normalization | None:
        """The normalization a run's config records (None: the run has none)."""
        return cls(cfg.mean, cfg.std) if cfg.normalize and cfg.mean is not None else None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, H, W) normalized in place, as ``Normalize`` does: sub_, then div_."""
        key = (x.device, x.dtype)
        if key not in self._tensors:
            self._tensors[key] = tuple(
                torch.tensor(values, dtype=x.dtype).view(-1, 1, 1).to(x.device)
                for values in (self.mean, self.std)
            )
        mean, std = self._tensors[key]
        return x.sub_(mean).div_(std)


def channel_stats(images: torch.Tensor, channels: int | None = None) -> Normalization:
    """The per-channel mean and (population) std of uint8 images (N, H, W) or (N, C, H, W),
    scaled to [0, 1]: the same as ``x.mean()`` and ``x.std(unbiased=False)`` over the float
    images ``x``, but from exact integer histograms, chunk by chunk, so that no float copy of
    the split is made and the result does not depend on the order of summation (every
    torchrun rank computes the same). A channel that never varies keeps std 1 (it is only
    shifted), where ``Normalize`` would divide by zero. ``channels``: of the images converted
    to that many channels (`in_channels`), as the batches bring them."""
    per_chunk = max(1, _STATS_CHUNK // max(1, images[0].numel()))
    counts = None
    for lo in range(0, len(images), per_chunk):
        chunk = in_channels(images[lo : lo + per_chunk], channels)
        chunk = chunk.unsqueeze(1) if chunk.dim() == 3 else chunk
        if counts is None:
            counts = torch.zeros(chunk.shape[1], 256, dtype=torch.int64)
        for channel in range(chunk.shape[1]):
            counts[channel] += torch.bincount(chunk[:, channel].reshape(-1), minlength=256)
    levels = list(range(256))
    mean, std = [], []
    for histogram in counts.tolist():
        n = sum(histogram)
        total = sum(v * h for v, h in zip(levels, histogram, strict=True))
        squares = sum(v * v * h for v, h in zip(levels, histogram, strict=True))
        variance = (squares * n - total * total) / (n * n * 255**2)  # exact up to here
        mean.append(total / (n * 255))
        std.append(math.sqrt(variance) if variance > 0 else 1.0)
    return Normalization(tuple(mean), tuple(std))


_STATS_CHUNK = 1 << 24  # pixels per chunk of `channel_stats` (16 MB of uint8)


@dataclass(frozen=True)
class Split:
    # uint8: (N, H, W) for one channel, (N, C, H, W) for more; on the training device, or in
    # host memory (maybe a memory-mapped file) when ``streamed``
    images: torch.Tensor
    labels: torch.Tensor  # (N,) int64, as CrossEntropyLoss wants them, on the training device
    normalization: Normalization | None = None  # applied to every batch (`batches`)
    # The images stay in host memory; each batch is gathered there and copied to the device.
    streamed: bool = False
    # The channels batches come in when they are not the stored ones: gray repeated into RGB,
    # or RGB made gray (`in_channels`), batch by batch, so no converted copy is ever stored.
    as_channels: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        """The channels of the batches (`batches`)."""
        return self.as_channels or self.stored_channels

    @property
    def stored_channels(self) -> int:
        return 1 if self.images.dim() == 3 else self.images.shape[1]

    @property
    def device(self) -> torch.device:
        """Where the batches are made: the labels' device (the images' too, unless streamed)."""
        return self.labels.device

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + self.labels.nbytes

    def to(self, device: torch.device | str, stream: bool | None = None) -> Split:
        """The split on ``device``. ``stream``: keep the images where they are and copy each
        batch to ``device`` instead; None decides (`stream_reason`)."""
        if stream is None:
            stream = stream_reason(self.nbytes, device) is not None
        images = self.images if stream else self.images.to(device)
        return replace(self, images=images, labels=self.labels.to(device), streamed=stream)

    def head(self, n: int | None) -> Split:
        return self if n is None else replace(self, images=self.images[:n], labels=self.labels[:n])

    def normalized(self, normalization: Normalization | None) -> Split:
        return replace(self, normalization=normalization)

    def converted(self, channels: int) -> Split:
        """The split whose batches come in ``channels`` (1 or 3, from 3 or 1)."""
        return replace(self, as_channels=None if channels == self.stored_channels else channels)


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

    def to(self, device: torch.device | str, stream: bool | None = None) -> Dataset:
        """Both splits on ``device``: resident, or streamed there batch by batch when they do
        not fit (`stream_reason`; ``stream`` True or False decides instead), which a note
        then says."""
        nbytes = self.train.nbytes + self.test.nbytes
        if stream is None:
            why = stream_reason(nbytes, device)
        else:
            why = "asked for" if stream else None
        streamed = why is not None
        moved = replace(
            self, train=self.train.to(device, streamed), test=self.test.to(device, streamed)
        )
        if not streamed:
            return moved
        note = (
            f"data streams to {device} batch by batch from host memory ({byte_size(nbytes)}; {why})"
        )
        return replace(moved, notes=(*self.notes, note))

    def head(self, n_train: int | None, n_test: int | None) -> Dataset:
        """The first images of each split (for quick runs); None keeps a split whole."""
        return replace(self, train=self.train.head(n_train), test=self.test.head(n_test))

    def normalized(self, normalization: Normalization | None) -> Dataset:
        """Both splits normalized alike (by the training split's statistics)."""
        return replace(
            self,
            train=self.train.normalized(normalization),
            test=self.test.normalized(normalization),
        )


# ---- streaming ---------------------------------------------------------------------------------

STREAM_VARIABLE = "CNNSHAPE_STREAM"
# A dataset stays on a GPU when it takes at most this share of the device's free memory: the
# rest is the training step's (weights, gradients, activations, the allocator's cache).
RESIDENT_SHARE = 0.5


def stream_reason(nbytes: int, device: torch.device | str) -> str | None:
    """Why data of ``nbytes`` should stream to ``device`` instead of living there, or None.

    On CUDA: when it does not fit in RESIDENT_SHARE of the free memory. On the CPU never (the
    data is in host memory already). ``CNNSHAPE_STREAM=1`` streams and ``=0`` never does,
    whatever the device."""
    forced = os.environ.get(STREAM_VARIABLE, "auto") or "auto"
    if forced not in ("0", "1", "auto"):
        raise CnnshapeError(
            f"{STREAM_VARIABLE} must be 0, 1 or auto, not {forced!r}.",
            f"Unset {STREAM_VARIABLE} to let cnnshape decide: streaming is for data that "
            "does not fit in the GPU's memory.",
        )
    if forced != "auto":
        return f"{STREAM_VARIABLE}={forced}" if forced == "1" else None
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if nbytes <= free * RESIDENT_SHARE:
        return None
    return f"more than {RESIDENT_SHARE:.0%} of the {byte_size(free)} free on the device"


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
    folders on both sides are merged the same way. Nothing is replaced, even by a race: a
    folder is made with mkdir and a file placed with link, both of which fail on a name that
    is taken (a rename would replace a file made there meanwhile)."""
    for entry in source.iterdir():
        there = target / entry.name
        if _real_folder(entry):
            with contextlib.suppress(FileExistsError):
                os.mkdir(there)
            if _real_folder(there):
                _move_new(entry, there)
        else:
            _place_new(entry, there)


def _place_new(entry: Path, there: Path) -> None:
    try:
        os.link(entry, there, follow_symlinks=False)
    except FileExistsError:
        pass  # already there: left as it is
    except OSError:  # a file system without hard links: the same check, not atomic
        if not os.path.lexists(there):
            os.rename(entry, there)


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


def to_input(
    images: torch.Tensor,
    size: int,
    channels_last: bool = False,
    normalization: Normalization | None = None,
) -> torch.Tensor:
    """uint8 (B, H, W) or (B, C, H, W) -> float (B, C, size, size) in [0, 1], like
    Resize(size) + ToTensor() (+ Normalize(mean, std) with a ``normalization``).

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
    x = normalized(x.div_(255), normalization)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def normalized(x: torch.Tensor, normalization: Normalization | None) -> torch.Tensor:
    return x if normalization is None else normalization.apply(x)


def gray(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> (..., H, W) by PIL's own RGB -> L formula (ITU-R 601-2 luma,
    in its fixed point), so a gray image keeps its values exactly."""
    r, g, b = rgb.int().unbind(dim=-3)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)


def in_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 (B, H, W) or (B, 3, H, W) in ``channels`` (None: as they are): gray repeated
    into RGB (a view), or RGB made gray (`gray`)."""
    if channels == 3 and images.dim() == 3:
        return images.unsqueeze(1).expand(-1, 3, -1, -1)
    if channels == 1 and images.dim() == 4:
        return gray(images)
    return images


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
    The images come in the split's channels (`Split.converted`); its normalization, if any,
    comes last, after augmentation's zero padding (as
    torchvision's RandomCrop, ToTensor, Normalize). A streamed split yields the very same
    batches: only the way its images reach the device differs (`_pixels`).
    """
    n = len(split) if length is None else length
    order = None
    device = split.device
    generator = None if shuffle_seed is None else torch.Generator(device=device)
    if generator is not None:
        generator.manual_seed(shuffle_seed)
        order = torch.randperm(len(split), generator=generator, device=device)
    pixels = _pixels(split, order)
    for start in range(0, n, batch_size):
        mine = share(batch_length(n, batch_size, start // batch_size), *part)
        lo, hi = start + mine.start, start + mine.stop
        images = in_channels(pixels(lo, hi), split.as_channels)
        if augment:
            inputs = augmented(to_input(images, size), generator)
            inputs = normalized(inputs, split.normalization)
            inputs = (
                inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs
            )
        else:
            inputs = to_input(images, size, channels_last, split.normalization)
        yield inputs, split.labels[slice(lo, hi) if order is None else order[lo:hi]]


def _pixels(split: Split, order: torch.Tensor | None) -> Callable[[int, int], torch.Tensor]:
    """How the uint8 images of items ``lo:hi`` of the order get to the split's device: one
    index into device memory, or for a streamed split a gather in host memory and a copy."""
    if not split.streamed:
        if order is None:
            return lambda lo, hi: split.images[lo:hi]
        return lambda lo, hi: split.images[order[lo:hi]]
    # The permutation drawn on the device, read back once per pass: the same order as the
    # resident split's (a host generator would draw another).
    host_order = torch.arange(len(split)) if order is None else order.cpu()
    return lambda lo, hi: _copied(split.images, host_order[lo:hi], split.device)


def _copied(images: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``images[index]`` gathered in host memory and copied to ``device``.

    To a GPU the gather goes into pinned memory and the copy does not wait: the host gathers
    the next batch while the device still computes on this one (the loop never waits for the
    device between batches), and PyTorch's pinned-memory cache does not hand the buffer out
    again before its copy is done. The CPU (only when streaming is forced) takes the same
    path without the pinning, which needs CUDA."""
    pinned = device.type == "cuda"
    batch = torch.empty((len(index), *images.shape[1:]), dtype=images.dtype, pin_memory=pinned)
    torch.index_select(images, 0, index, out=batch)
    return batch.to(device, non_blocking=pinned)


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

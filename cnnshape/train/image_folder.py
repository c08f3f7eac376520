"""Your own images for training: an ImageFolder tree (``train/`` and ``test/`` or ``val/``,
each of class folders), decoded once into uint8 tensors at the training size and cached.

Every image is decoded with PIL, converted to RGB and resized (bilinear, squashed to a
square, as torchvision's ``Resize((size, size))``); a folder whose images are all gray
(judged by their pixels: WebP, for one, stores gray images as RGB) keeps one channel, its
luma by PIL's formula.

The decoded splits are cached under the data cache (``data.data_root()``/image-folders/),
one file per folder and size, valid while every file keeps its name, size
and modification time: the second run of a folder reads one file instead of decoding
thousands. The cache is written whole or not at all (``atomic_write``), only ever into that
folder, and a cache entry is only ever replaced by a newer one for the same folder and size.
An entry is read memory-mapped: its images are read from the file as batches use them, so a
run that streams them (``data.stream_reason``) never holds them all in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .._common import atomic_write
from ..errors import CnnshapeError
from . import data

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TEST_SPLITS = ("test", "val")  # the first that exists is the test split
# Most a pixel's channels may differ for its image to count as gray: lossy files (JPEG, WebP)
# of gray images come back with a level or two of colour noise.
_GRAY_SPREAD = 8
_CACHE_FORMAT = 1  # bump when what a cache file holds changes: older entries are rebuilt
_LAYOUT_HINT = (
    "An image folder holds train/ and test/ (or val/), each with one folder per class "
    "(train/cat/1.png, train/dog/2.jpg, test/cat/3.webp, ...)."
)


@dataclass(frozen=True)
class ImageFile:
    path: Path
    label: int
    bytes: int
    mtime_ns: int

    def stamp(self) -> list:
        """What says the file is unchanged: its name, size and modification time."""
        return [str(self.path), self.label, self.bytes, self.mtime_ns]


class BadImage(CnnshapeError):
    def __init__(self, path: Path, why: str):
        super().__init__(
            f"{path} cannot be decoded as an image ({why}).",
            "Replace or remove the file, or pass --skip-bad to train without the images "
            "that cannot be decoded.",
        )
        self.path = path
        self.why = why


def load(data_dir: str | os.PathLike | None, size: int, *, skip_bad: bool = False) -> data.Dataset:
    """The folder's two splits at ``size``, from the cache or decoded (and then cached)."""
    if data_dir is None:
        raise CnnshapeError(
            "--dataset folder needs --data-dir: the folder of your images.", _LAYOUT_HINT
        )
    root = data.given_folder(data_dir, "train/ and test/ (or val/)")
    train_dir, test_dir = _splits(root)
    classes = _class_folders(train_dir)
    if len(classes) < 2:
        raise CnnshapeError(
            f"{train_dir} has {'one class folder' if classes else 'no class folders'}: "
            "a classifier needs at least two classes.",
            _LAYOUT_HINT,
        )
    for name in _class_folders(test_dir):
        if name not in classes:
            raise CnnshapeError(
                f"{test_dir / name} is a class that {train_dir} does not have.",
                f"The training classes are: {', '.join(classes)}.",
            )
    files = _scan(train_dir, classes), _scan(test_dir, classes)
    decoded = _cached(root, files, size)
    bad = decoded["bad"]
    if bad and not skip_bad:
        raise BadImage(Path(bad[0][0]), bad[0][1])
    notes = (f"left out {len(bad):,} images that cannot be decoded (--skip-bad)",) if bad else ()
    train, test = (
        data.Split(decoded[f"{split}_images"], decoded[f"{split}_labels"])
        for split in ("train", "test")
    )
    if not len(train):
        raise CnnshapeError(f"{train_dir} holds no image that can be decoded.", _LAYOUT_HINT)
    return data.Dataset("folder", str(root), train, test, tuple(classes), notes)


def read_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """One image file as uint8 (channels, size, size): the preprocessing a folder's
    images get for training, for one image (`cnnshape predict`)."""
    pixels = torch.from_numpy(_decode(path, size).copy()).permute(2, 0, 1)
    return data.gray(pixels).unsqueeze(0) if channels == 1 else pixels


# ---- the tree ----------------------------------------------------------------------------------


def _splits(root: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise CnnshapeError(f"The image folder {root} does not exist.", _LAYOUT_HINT)
    train = root / "train"
    if not train.is_dir():
        raise CnnshapeError(f"{root} has no train/ folder.", _LAYOUT_HINT)
    for name in TEST_SPLITS:
        if (root / name).is_dir():
            return train, root / name
    raise CnnshapeError(f"{root} has no test/ (or val/) folder.", _LAYOUT_HINT)


def _class_folders(split: Path) -> list[str]:
    return sorted(p.name for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(split: Path, classes: list[str]) -> list[ImageFile]:
    """Every image of ``split``'s class folders (any depth), in a stable order."""
    found = []
    for label, name in enumerate(classes):
        folder = split / name
        if not folder.is_dir():  # a test split may lack a class
            continue
        images = sorted(
            path
            for path in folder.rglob("*")
            if path.suffix.lower() in EXTENSIONS
            and path.is_file()
            and not path.name.startswith(".")
        )
        if not images:
            raise CnnshapeError(
                f"{folder} holds no images ({', '.join(EXTENSIONS)}).",
                "Put the class's images there, or remove the empty folder.",
            )
        for path in images:
            stat = path.stat()
            found.append(ImageFile(path, label, stat.st_size, stat.st_mtime_ns))
    return found


# ---- the cache ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    return data.data_root() / "image-folders"


def _cached(root: Path, files: tuple[list[ImageFile], ...], size: int) -> dict:
    """The decoded splits: the cache entry when it matches the files, else decoded now and
    cached (and then read back memory-mapped, like a reused entry, freeing the decoded
    copy). Files that change while being decoded are an error and nothing is cached."""
    fingerprint = _fingerprint(files, size)
    entry = cache_dir() / f"{_entry_name(root, size)}.pt"
    stored = _read_entry(entry)
    if stored is not None and stored.get("fingerprint") == fingerprint:
        return stored
    decoded = _decode_all(files, size)
    _check_unchanged(files)
    decoded["fingerprint"] = fingerprint
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(entry, lambda tmp: torch.save(decoded, tmp), follow_symlinks=False)
    except OSError as exc:
        raise CnnshapeError(
            f"The decoded image folder cannot be cached in {entry.parent} ({exc}).",
            "Set CNNSHAPE_DATA to a folder cnnshape may write.",
        ) from exc
    mapped = _read_entry(entry)
    return decoded if mapped is None else mapped


def _entry_name(root: Path, size: int) -> str:
    """One cache file per folder and size: a rebuild replaces it instead of adding one."""
    return hashlib.sha256(f"{root.resolve()}\0{size}".encode()).hexdigest()[:24]


def _fingerprint(files: tuple[list[ImageFile], ...], size: int) -> str:
    stamps = [[each.stamp() for each in split] for split in files]
    text = json.dumps([_CACHE_FORMAT, size, stamps])
    return hashlib.sha256(text.encode()).hexdigest()


def _read_entry(entry: Path) -> dict | None:
    """A cache entry, its tensors memory-mapped from the file, or None when there is none or
    it cannot be read (it is then rebuilt). Replacing the file later leaves the map whole:
    the map keeps the old file."""
    if not entry.is_file() or entry.is_symlink():
        return None
    try:
        return torch.load(entry, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a torn or foreign file is a cache miss, never an error
        return None


def _check_unchanged(files: tuple[list[ImageFile], ...]) -> None:
    for each in (f for split in files for f in split):
        try:
            stat = each.path.stat()
        except OSError:
            stat = None
        if stat is None or (stat.st_size, stat.st_mtime_ns) != (each.bytes, each.mtime_ns):
            raise CnnshapeError(
                f"{each.path} changed while the image folder was being decoded.",
                "Train again once the folder stops changing; nothing was cached.",
            )


# ---- decoding ----------------------------------------------------------------------------------


def _decode_all(files: tuple[list[ImageFile], ...], size: int) -> dict:
    """Both splits decoded (`_decode_each`), the images that cannot be decoded left out and
    named in ``bad``."""
    every = [each for split in files for each in split]
    results = _decode_each([each.path for each in every], size)
    bad = [[str(each.path), why] for each, (_, _, why) in zip(every, results, strict=True) if why]
    gray = all(is_gray for _, is_gray, why in results if not why)
    decoded: dict = {"format": _CACHE_FORMAT, "bad": bad}
    start = 0
    for name, split in zip(("train", "test"), files, strict=True):
        mine = results[start : start + len(split)]
        kept = [i for i, (_, _, why) in enumerate(mine) if not why]
        images = [mine[i][0] for i in kept]
        stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
        channels_first = torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()
        decoded[f"{name}_images"] = data.gray(channels_first) if gray else channels_first
        decoded[f"{name}_labels"] = torch.tensor([split[i].label for i in kept], dtype=torch.long)
        start += len(split)
    return decoded


# Decoding on all cores pays only for images slow enough to decode, where PIL's decoder (which
# releases the GIL) dominates; small ones are faster one by one, their Python steps passing
# the GIL back and forth between threads otherwise (measured on 2 cores: 28-pixel PNGs take
# 0.16 ms an image alone and 0.28 ms in threads; 128-pixel JPEGs 1.1 ms and 0.7 ms).
_PROBE = 32  # images decoded one by one first, to time them
_THREADS_ABOVE = 4e-4  # seconds an image of the probe above which threads decode the rest


def _decode_each(paths: list[Path], size: int) -> list[tuple[np.ndarray | None, bool, str | None]]:
    """`_try_decode` of every path, in order: one by one, or on all cores when the first
    images show that decoding them is slow enough for threads to pay."""
    started = time.perf_counter()
    probed = [_try_decode(path, size) for path in paths[:_PROBE]]
    per_image = (time.perf_counter() - started) / max(1, len(probed))
    rest = paths[_PROBE:]
    cores = os.cpu_count() or 1
    if cores == 1 or per_image <= _THREADS_ABOVE:
        return probed + [_try_decode(path, size) for path in rest]
    with ThreadPoolExecutor(max_workers=cores) as pool:
        return probed + list(pool.map(lambda path: _try_decode(path, size), rest))


def _try_decode(path: Path, size: int) -> tuple[np.ndarray | None, bool, str | None]:
    """(RGB pixels, whether they are gray, None) or (None, False, why not). numpy, not torch:
    torch's small operations in several threads at once contend for its own thread pool
    (3,600 28-pixel PNGs measured: 1.2-1.7 s with torch, 0.7 s with numpy, in 2 threads)."""
    try:
        pixels = _decode(path, size)
    except BadImage as bad:
        return None, False, bad.why
    spread = pixels.max(axis=2).astype(np.int16) - pixels.min(axis=2)
    return pixels, bool(spread.max() <= _GRAY_SPREAD), None


def _decode(path: Path, size: int) -> np.ndarray:
    """``path`` as uint8 RGB (size, size, 3)."""
    try:
        with Image.open(path) as image:
            image.load()
            converted = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImage(path, str(exc) or type(exc).__name__) from None
    return np.asarray(converted)

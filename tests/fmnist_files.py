"""Tiny Fashion-MNIST-shaped IDX files for the data and training tests (no network, no /work)."""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

from cnnshape.train.data import FILES


def idx_bytes(array: torch.Tensor) -> bytes:
    """The IDX encoding of a uint8 tensor: magic 0 0 0x08 ndim, big-endian dims, the bytes."""
    header = bytes([0, 0, 0x08, array.dim()])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.contiguous().numpy().tobytes()


def write_idx(path: Path, array: torch.Tensor, gz: bool) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def learnable_split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images that look like their class: a fixed random template per class plus noise."""
    templates = torch.rand(10, 28, 28, generator=torch.Generator().manual_seed(1234)) > 0.6
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    noise = torch.randint(0, 90, (n, 28, 28), generator=g)
    images = (templates[labels].int() * 160 + noise).clamp(0, 255).to(torch.uint8)
    return images, labels.to(torch.uint8)


def write_fashion_dir(
    directory: Path, n_train: int = 600, n_test: int = 200, gz: bool = True
) -> Path:
    """The four files, with the names Fashion-MNIST uses, holding a learnable toy task."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = learnable_split(n, seed)
        for kind, array in (("images", images), ("labels", labels)):
            name = FILES[split, kind] + (".gz" if gz else "")
            write_idx(directory / name, array, gz)
    return directory

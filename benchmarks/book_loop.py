"""The book-style baseline both benchmarks measure cnnshape against, and the cnnshape side.

``book_run`` is d2l's ``load_data_fashion_mnist`` + ``train_ch6`` without the plot:
torchvision's FashionMNIST dataset, ``Resize`` (when the size is not 28, as the book passes
``resize``) + ``ToTensor``, ``DataLoader(shuffle=True, num_workers=N)``, xavier init, plain SGD,
CrossEntropyLoss, ``float()`` of every metric after every batch, and the book's timer around
the training steps only. ``cnnshape_run`` is ``cnnshape.api.train``. Both time end to end:
data set-up, training, evaluation (and, for cnnshape, writing its run files).
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils import data as tdata
from torchvision import datasets, transforms

from cnnshape import api
from cnnshape.registry import get_spec
from cnnshape.train import data as cdata
from cnnshape.train.config import TrainSettings


@dataclass
class Result:
    name: str
    wall_seconds: float  # end to end: data, training, evaluation
    train_seconds: float  # inside training steps only (the book's timer)
    images: int  # training images processed (epochs x split size)
    train_loss: float
    train_acc: float
    test_acc: float

    @property
    def end_to_end_images_per_sec(self) -> float:
        return self.images / self.wall_seconds

    @property
    def train_images_per_sec(self) -> float:
        return self.images / self.train_seconds


def torchvision_root(data_dir: Path, root: Path) -> Path:
    """Lay the offline IDX files out where torchvision looks: <root>/FashionMNIST/raw/<name>,
    uncompressed (torchvision checks for the extracted names). Set-up, not timed: it stands
    for the download the book's first run does."""
    files = cdata.locate(data_dir)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for (_, _), path in files.items():
        target = raw / path.name.removesuffix(".gz")
        with (
            gzip.open(path) if path.name.endswith(".gz") else path.open("rb") as src,
            target.open("wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
    return root


def write_synthetic_idx(directory: Path, n_train: int = 60_000, n_test: int = 10_000) -> Path:
    """cnnshape's synthetic dataset as IDX files, so both loops can read it (GPU machines
    without the offline Fashion-MNIST copy still measure speed)."""
    dataset = cdata.synthetic(n_train, n_test)
    directory.mkdir(parents=True, exist_ok=True)
    for (split, kind), name in cdata.FILES.items():
        array = getattr(getattr(dataset, split), kind).to(torch.uint8)
        header = bytes([0, 0, 0x08, array.dim()])
        header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        (directory / name).write_bytes(header + array.numpy().tobytes())
    return directory


def _xavier(m: nn.Module) -> None:
    if type(m) == nn.Linear or type(m) == nn.Conv2d:  # noqa: E721 (the book's exact-type test)
        nn.init.xavier_uniform_(m.weight)


def book_run(
    model: str,
    root: Path,
    *,
    epochs: int,
    device: str,
    num_workers: int,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Result:
    """d2l.load_data_fashion_mnist + d2l.train_ch6 (no plotting), timed end to end."""
    spec = get_spec(model)
    lr, batch_size, size = spec.recipe.lr, spec.recipe.batch_size, spec.size
    started = time.perf_counter()
    trans = [transforms.ToTensor()]
    if size != cdata.IMAGE_SIZE:
        trans.insert(0, transforms.Resize(size))
    trans = transforms.Compose(trans)
    train = datasets.FashionMNIST(str(root), train=True, transform=trans, download=False)
    test = datasets.FashionMNIST(str(root), train=False, transform=trans, download=False)
    if train_limit or test_limit:  # quick smoke runs of the benchmark itself
        train = tdata.Subset(train, range(min(train_limit or len(train), len(train))))
        test = tdata.Subset(test, range(min(test_limit or len(test), len(test))))
    train_iter = tdata.DataLoader(train, batch_size, shuffle=True, num_workers=num_workers)
    test_iter = tdata.DataLoader(test, batch_size, shuffle=False, num_workers=num_workers)
    torch.manual_seed(seed)
    net = spec.build()
    net.apply(_xavier)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss()
    timer = 0.0
    for _ in range(epochs):
        metric = [0.0, 0.0, 0]
        net.train()
        for X, y in train_iter:
            t = time.perf_counter()
            optimizer.zero_grad()
            X, y = X.to(device), y.to(device)
            y_hat = net(X)
            l = loss(y_hat, y)  # noqa: E741 (the book's name)
            l.backward()
            optimizer.step()
            with torch.no_grad():  # d2l's Accumulator.add: float() of each metric, every batch
                metric[0] += float(l * X.shape[0])
                metric[1] += float((y_hat.argmax(axis=1) == y).type(y.dtype).sum())
                metric[2] += X.shape[0]
            timer += time.perf_counter() - t
        test_acc = _book_accuracy(net, test_iter, device)
    wall = time.perf_counter() - started
    return Result(
        "book-style",
        wall,
        timer,
        metric[2] * epochs,
        metric[0] / metric[2],
        metric[1] / metric[2],
        test_acc,
    )


def _book_accuracy(net: nn.Module, test_iter, device: str) -> float:
    """d2l.evaluate_accuracy_gpu."""
    net.eval()
    correct = total = 0.0
    with torch.no_grad():
        for X, y in test_iter:
            X, y = X.to(device), y.to(device)
            correct += float((net(X).argmax(axis=1) == y).type(y.dtype).sum())
            total += y.numel()
    return correct / total


def cnnshape_run(
    model: str,
    data_dir: Path,
    *,
    epochs: int,
    device: str,
    seed: int = 0,
    name: str = "cnnshape",
    **settings,
) -> Result:
    """cnnshape's training end to end (reading the gzipped files included), in a temp dir."""
    with tempfile.TemporaryDirectory() as out:
        settings = TrainSettings(
            model, epochs=epochs, device=device, seed=seed, data_dir=str(data_dir), **settings
        )
        started = time.perf_counter()
        result = api.train(settings, out=out)
        wall = time.perf_counter() - started
    last = result.history[-1]
    train_seconds = sum(s.train_seconds for s in result.history)
    images = round(sum(s.images_per_sec * s.train_seconds for s in result.history))
    return Result(name, wall, train_seconds, images, last.train_loss, last.train_acc, last.test_acc)


def table(results: list[Result], baseline: Result) -> str:
    lines = [
        "| loop | wall s | end-to-end img/s | train-step img/s | train loss | train acc "
        "| test acc | end-to-end speed-up |",
        "|---" * 8 + "|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.wall_seconds:.1f} | {r.end_to_end_images_per_sec:,.0f} | "
            f"{r.train_images_per_sec:,.0f} | {r.train_loss:.3f} | {r.train_acc:.3f} | "
            f"{r.test_acc:.3f} | {baseline.wall_seconds / r.wall_seconds:.2f}x |"
        )
    return "\n".join(lines)

"""Image-folder training: cnnshape's decoded-once cache against torchvision's ImageFolder +
DataLoader, whole processes, the same model, recipe and epochs.

    python benchmarks/folder_pipeline.py --data-dir ../shared/data/fashion-mnist

The images: the first --train and --test Fashion-MNIST images written as --suffix files
(PNG by default), enlarged to --source-size pixels (default 28: as they are), into an
ImageFolder tree (train/<class>/, test/<class>/) in a temporary folder. Three processes
train on it, one after the other:

  * torchvision: ImageFolder (PIL), Grayscale + Resize + ToTensor, a DataLoader with
    --workers workers, the book's loop (train, then test accuracy, every epoch);
  * cnnshape, cold: `cnnshape train MODEL --dataset folder` with an empty data cache (it
    decodes every file once, then trains from uint8 tensors);
  * cnnshape, cached: the same command again (the cache is reused).

Then the bare step loop, for the cached epochs to be measured against: the same model's
forward, loss, backward and step on the same images, already float input tensors (converted
once, outside the timing, from the images cnnshape cached), in batches of the same size, then
the test forward: the step with no data pipeline at all. And the floor both processes
share: Python, `import torch` and a first optimizer step (which imports torch._dynamo), in a
fresh process.

Each of the three runs, the bare loop and the floor are repeated --repeat times, alternating;
the fastest of each is kept (a shared machine's slower runs measure its neighbours). The load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from cnnshape.registry import get_spec
from cnnshape.train import data, image_folder
from cnnshape.train.loop import init_weights

TORCHVISION_RUN = """
import sys, time, torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from cnnshape.registry import get_spec
from cnnshape.train.loop import init_weights

root, model_name, epochs, workers, batch, lr, size = sys.argv[1:8]
epochs, workers, batch, lr, size = int(epochs), int(workers), int(batch), float(lr), int(size)
prepare = transforms.Compose(
    [transforms.Grayscale(1), transforms.Resize((size, size)), transforms.ToTensor()]
)
train = DataLoader(datasets.ImageFolder(f"{root}/train", prepare), batch, shuffle=True,
                   num_workers=workers, persistent_workers=workers > 0)
test = DataLoader(datasets.ImageFolder(f"{root}/test", prepare), batch,
                  num_workers=workers, persistent_workers=workers > 0)
torch.manual_seed(0)
model = get_spec(model_name).build()
init_weights(model)
optimizer = torch.optim.SGD(model.parameters(), lr=lr)
loss_fn = nn.CrossEntropyLoss()
for epoch in range(epochs):
    model.train()
    for X, y in train:
        optimizer.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for X, y in test:
            correct += (model(X).argmax(1) == y).sum().item()
            total += len(y)
    print(f"epoch {epoch + 1}: test acc {correct / total:.3f}", file=sys.stderr)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="Fashion-MNIST IDX files")
    parser.add_argument("--model", default="lenet-bn")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train", type=int, default=3000, help="training images")
    parser.add_argument("--test", type=int, default=600, help="test images")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--source-size", type=int, default=28, help="side of the image files")
    parser.add_argument("--suffix", default="png", choices=("png", "jpg", "webp"))
    parser.add_argument(
        "--repeat", type=int, default=3, help="alternate the runs N times; keep the fastest"
    )
    args = parser.parse_args()

    spec = get_spec(args.model)
    recipe = (spec.recipe.batch_size, spec.recipe.lr, spec.size)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        images = write_folder(
            args.data_dir, scratch / "images", args.train, args.test, args.source_size, args.suffix
        )
        command = [
            sys.executable, "-m", "cnnshape", "train", args.model, "--dataset", "folder",
            "--data-dir", images, "--epochs", args.epochs, "--device", "cpu", "-f", "json",
        ]  # fmt: skip
        torchvision_runs, cold_runs, warm_runs, bare_runs, floor_runs = [], [], [], [], []
        load_before = os.getloadavg()
        for attempt in range(args.repeat):
            # A fresh, empty data cache for each cold run; the warm run reuses it.
            env = {**os.environ, "CNNSHAPE_DATA": str(scratch / f"cache{attempt}")}
            torchvision_runs.append(
                timed(
                    [
                        sys.executable,
                        "-c",
                        TORCHVISION_RUN,
                        images,
                        args.model,
                        args.epochs,
                        args.workers,
                        *recipe,
                    ],
                    env,
                )  # fmt: skip
            )
            cold_runs.append(timed_json([*command, "--out", scratch / f"cold{attempt}"], env))
            warm_runs.append(timed_json([*command, "--out", scratch / f"warm{attempt}"], env))
            bare_runs.append(bare_epoch_seconds(args.model, images, env, *recipe))
            floor_runs.append(timed([sys.executable, "-c", FLOOR], env))
        load_after = os.getloadavg()
    torchvision_s = min(torchvision_runs)
    cold_s, _ = min(cold_runs, key=lambda run: run[0])
    warm_s, warm = min(warm_runs, key=lambda run: run[0])
    bare = min(bare_runs)
    floor = min(floor_runs)
    # The fastest cached epoch of every warm run, against the fastest of every bare loop's
    # (5 epochs after a warm-up each): on a shared machine the slower ones measure the
    # neighbours.
    cached = min(e["seconds"] for _, run in warm_runs for e in run["history"][1:])

    print(f"{args.model}, {args.epochs} epochs, {args.train:,} + {args.test:,} "
          f"{args.source_size}px {args.suffix.upper()} images, {cpu_name()} "
          f"({os.cpu_count()} cores, torch {torch.__version__}), DataLoader workers "
          f"{args.workers}, fastest of {args.repeat}")  # fmt: skip
    print(f"load average before {load(load_before)}, after {load(load_after)}")
    print(f"torchvision ImageFolder + DataLoader: {torchvision_s:7.1f} s")
    print(f"cnnshape, cold cache (decodes once):  {cold_s:7.1f} s  "
          f"({torchvision_s / cold_s:.1f}x faster)")  # fmt: skip
    print(f"cnnshape, cache reused:               {warm_s:7.1f} s  "
          f"({torchvision_s / warm_s:.1f}x faster)")  # fmt: skip
    beyond = (torchvision_s - floor) / (warm_s - floor)
    print(f"floor of both (python, torch, SGD):   {floor:7.1f} s  "
          f"(beyond it: torchvision {torchvision_s - floor:.1f} s, cnnshape cached "
          f"{warm_s - floor:.1f} s, x{beyond:.1f})")  # fmt: skip
    print(f"cnnshape, fastest of epochs 2-{args.epochs}:      {cached:7.3f} s  (train and test)")
    print(f"bare step loop, fastest epoch:        {bare:7.3f} s  "
          f"(cnnshape's cached epochs: {cached / bare:.2f}x)")  # fmt: skip
    print(f"final test accuracy: cnnshape {warm['history'][-1]['test_acc']:.3f}")


# What every PyTorch training process pays before its first step: the interpreter, torch, and
# the first optimizer step, which imports torch._dynamo (torch.optim's step does).
FLOOR = "import torch; torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1).step()"


def cpu_name() -> str:
    """The CPU's model name, as lscpu shows it."""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "CPU"


def load(averages: tuple[float, float, float]) -> str:
    return "/".join(f"{value:.2f}" for value in averages)


def write_folder(
    fashion: Path, root: Path, n_train: int, n_test: int, side: int, suffix: str
) -> str:
    dataset = data.fashion_mnist(fashion)
    for split, n, name in ((dataset.train, n_train, "train"), (dataset.test, n_test, "test")):
        for i in range(n):
            folder = root / name / f"{int(split.labels[i]):02d}"
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(split.images[i].numpy())
            image.resize((side, side), Image.Resampling.BILINEAR).save(folder / f"{i}.{suffix}")
    return str(root)


def timed(command: list, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([str(part) for part in command], env=env, check=True, stdout=subprocess.PIPE)
    return time.perf_counter() - start


def timed_json(command: list, env: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run(
        [str(part) for part in command], env=env, check=True, stdout=subprocess.PIPE, text=True
    )
    return time.perf_counter() - start, json.loads(done.stdout)


def bare_epoch_seconds(
    model_name: str, images: str, env: dict, batch: int, lr: float, size: int
) -> float:
    """One epoch of the step alone on the run's own images (as cnnshape cached them, converted
    to float inputs once, outside the timing): forward, loss, backward, SGD step over the
    training images in batches, then the test forward; the fastest of five epochs after one
    warm-up."""
    os.environ["CNNSHAPE_DATA"] = env["CNNSHAPE_DATA"]  # the cache the warm run reused
    folder = image_folder.load(images, size)
    train_x, test_x = (data.to_input(split.images, size) for split in (folder.train, folder.test))
    train_y = folder.train.labels
    torch.manual_seed(0)
    model = get_spec(model_name).build(in_channels=folder.channels)
    init_weights(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    seconds = []
    for _ in range(6):
        start = time.perf_counter()
        model.train()
        for lo in range(0, len(train_x), batch):
            optimizer.zero_grad()
            loss_fn(model(train_x[lo : lo + batch]), train_y[lo : lo + batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for lo in range(0, len(test_x), batch):
                model(test_x[lo : lo + batch]).argmax(1)
        seconds.append(time.perf_counter() - start)
    return min(seconds[1:])


if __name__ == "__main__":
    main()

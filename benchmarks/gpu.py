"""GPU benchmark: book-style loop vs cnnshape on one card, plus achieved FLOP/s. Run by gpu.sh.

For each model (default alexnet@224, resnet18@96, googlenet@96, the seed recipes):
  1. the book-style loop and cnnshape side by side for --epochs epochs (end-to-end speed-up);
  2. cnnshape alone for --full-epochs (the seed's 10): accuracy against the book's range and
     the headline time;
  3. achieved FLOP/s = 3 x forward FLOPs per image (FlopCounterMode, one image) x training
     images / training seconds, as a fraction of the card's measured bf16 matmul rate.
Results are appended to <out>/gpu-results.md and gpu-results.jsonl after every model, so a run
cut short still leaves what it measured. Everything also runs on CPU with tiny settings
(--device cpu --train-limit 512 ...), which is how it was checked without a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from book_loop import Result, book_run, cnnshape_run, table, torchvision_root, write_synthetic_idx
from torch.utils.flop_counter import FlopCounterMode

from cnnshape.registry import get_spec

# d2l's own builds (REFERENCE.md): median [min, max] test accuracy after 10 epochs.
BOOK_TEST_ACC = {
    "alexnet": (0.881, 0.866, 0.885),
    "resnet18": (0.909, 0.838, 0.922),
    "googlenet": (0.889, 0.100, 0.899),
}


def matmul_rate(device: str, n: int, repeats: int = 20) -> float:
    """Measured bf16 matmul FLOP/s (2 n^3 per product): the card's practical peak."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def forward_flops(model: str) -> int:
    spec = get_spec(model)
    net = spec.build().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 1, spec.size, spec.size))
    return counter.get_total_flops()


def flops_fraction(result: Result, flops: int, peak: float) -> tuple[float, float]:
    achieved = 3 * flops * result.images / result.train_seconds
    return achieved, achieved / peak


def measure(model: str, args, root: Path, data_dir: Path, peak: float) -> dict:
    limits = {"train_limit": args.train_limit, "test_limit": args.test_limit}
    flops = forward_flops(model)
    book = book_run(
        model, root, epochs=args.epochs, device=args.device, num_workers=args.workers, **limits
    )
    ours = cnnshape_run(model, data_dir, epochs=args.epochs, device=args.device, **limits)
    runs = [book, ours]
    if args.compile:
        runs.append(
            cnnshape_run(
                model,
                data_dir,
                epochs=args.epochs,
                device=args.device,
                compile=True,
                name="cnnshape --compile",
                **limits,
            )
        )
    if args.full_epochs:
        runs.append(
            cnnshape_run(
                model,
                data_dir,
                epochs=args.full_epochs,
                device=args.device,
                name=f"cnnshape, {args.full_epochs} epochs",
                **limits,
            )
        )
    return {
        "model": model,
        "size": get_spec(model).size,
        "forward_flops": flops,
        "runs": [
            dict(
                asdict(r),
                flops_per_sec=flops_fraction(r, flops, peak)[0],
                fraction_of_matmul_peak=flops_fraction(r, flops, peak)[1],
            )
            for r in runs
        ],
        "markdown": _markdown(model, runs, flops, peak),
    }


def _markdown(model: str, runs: list[Result], flops: int, peak: float) -> str:
    spec = get_spec(model)
    lines = [
        f"### {model} at {spec.size} (lr {spec.recipe.lr}, batch {spec.recipe.batch_size}), "
        f"forward {flops / 1e9:.3f} GFLOPs/image",
        "",
        table(runs, baseline=runs[0]),
        "",
    ]
    for r in runs:
        achieved, fraction = flops_fraction(r, flops, peak)
        lines.append(
            f"- {r.name}: {achieved / 1e12:.1f} TFLOP/s in training steps = "
            f"{fraction:.1%} of the measured bf16 matmul rate"
        )
    if model in BOOK_TEST_ACC:
        median, low, high = BOOK_TEST_ACC[model]
        lines.append(f"- book's 10-epoch test accuracy: {median} [{low}, {high}]")
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="Fashion-MNIST IDX files; without it, "
        "synthetic IDX files (speed only: accuracies mean nothing)",
    )
    parser.add_argument("--models", nargs="+", default=["alexnet", "resnet18", "googlenet"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the side-by-side runs")
    parser.add_argument("--full-epochs", type=int, default=10, help="cnnshape-only run; 0: skip")
    parser.add_argument("--workers", type=int, default=4, help="book-style DataLoader workers")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="also time cnnshape --compile")
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--test-limit", type=int)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    peak = matmul_rate(args.device, args.matmul_size)
    name = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else platform.processor() or platform.machine()
    )
    header = (
        f"## GPU benchmark on {name} ({args.device}), torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n\nMeasured bf16 matmul rate "
        f"({args.matmul_size}^3): {peak / 1e12:.1f} TFLOP/s. Book-style DataLoader "
        f"workers: {args.workers}.\n"
    )
    _append(args.out / "gpu-results.md", header)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir is None or not data_dir.exists():
            data_dir = write_synthetic_idx(Path(tmp) / "synthetic")
            _append(
                args.out / "gpu-results.md",
                "Data: SYNTHETIC (no Fashion-MNIST found); "
                "accuracies are meaningless, speeds are valid.\n",
            )
        root = torchvision_root(data_dir, Path(tmp) / "torchvision")
        for model in args.models:
            result = measure(model, args, root, data_dir, peak)
            print(result["markdown"], flush=True)
            _append(args.out / "gpu-results.md", result.pop("markdown"))
            _append(args.out / "gpu-results.jsonl", json.dumps(result) + "\n")


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text + ("\n" if not text.endswith("\n") else ""))


if __name__ == "__main__":
    main()

"""CPU benchmark: the book-style loop vs cnnshape's engine, side by side in one run.

    .venv/bin/python benchmarks/train_cpu.py --data-dir ../shared/data/fashion-mnist

Same model, hyperparameters (the seed recipe), epochs and seed; real Fashion-MNIST from the
offline IDX files. Prints a Markdown table (and writes it with --results FILE).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import torch
from book_loop import book_run, cnnshape_run, table, torchvision_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="folder with the four Fashion-MNIST IDX files"
    )
    parser.add_argument("--model", default="lenet-bn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="book-style DataLoader workers (d2l uses 4; this box has 2 cores)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="alternate the two loops N times")
    parser.add_argument("--results", type=Path, help="also write the Markdown here")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as root:
        root = torchvision_root(args.data_dir, Path(root))
        for _ in range(args.repeat):
            book = book_run(
                args.model, root, epochs=args.epochs, device="cpu", num_workers=args.workers
            )
            ours = cnnshape_run(args.model, args.data_dir, epochs=args.epochs, device="cpu")
            rows += [book, ours]
    text = "\n".join(
        [
            f"{args.model} at its seed recipe, {args.epochs} epoch(s), CPU "
            f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads), book-style DataLoader "
            f"workers: {args.workers}",
            "",
            table(rows, baseline=rows[0]),
            "",
        ]
    )
    print(text)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(text)


if __name__ == "__main__":
    main()

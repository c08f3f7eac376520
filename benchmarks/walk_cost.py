"""What the dataflow capture costs inside one process, side by side: a walk without and with
``--ops`` (functional ops as rows), and the same walk at growing input sizes (a walk on meta
tensors should cost the same at any size).

Each figure is the median of ``--repeats`` walks after one warm-up walk (imports and first
calls paid there), on models built on the meta device as the CLI builds them.

    python benchmarks/walk_cost.py
    python benchmarks/walk_cost.py --repeats 3 --models torchvision:densenet121
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from cnnshape.api import build_for_inspection
from cnnshape.inspect.walk import walk

OPS_MODELS = ["torchvision:densenet121", "torchvision:resnet50", "googlenet", "densenet"]
# (model, [input shapes]): the same walk at growing sizes.
SIZE_CASES = [
    ("torchvision:resnet18", [(1, 3, 224, 224), (1, 3, 896, 896), (1, 3, 3584, 3584)]),
    ("nin", [(1, 1, 224, 224), (1, 1, 1024, 1024), (1, 1, 4096, 4096)]),
    ("torchvision:r3d_18", [(1, 3, 16, 112, 112), (1, 3, 64, 448, 448)]),
]


def timed(model, shape, repeats: int, **options) -> float:
    walk(model, shape, depth=10, **options)  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        walk(model, shape, depth=10, **options)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=OPS_MODELS)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; medians of {args.repeats} walks, depth 10"
    )
    print("\n| model | walk s | walk --ops s | --ops adds s | ops / walk |")
    print("|---|---:|---:|---:|---:|")
    for ref in args.models:
        target, model, channels = build_for_inspection(ref)
        shape = (1, channels, target.size, target.size)
        plain = timed(model, shape, args.repeats)
        with_ops = timed(model, shape, args.repeats, ops=True)
        print(
            f"| {ref} @ {target.size} | {plain:.3f} | {with_ops:.3f} | {with_ops - plain:.3f} "
            f"| x{with_ops / plain:.2f} |",
            flush=True,
        )
    print("\n| model | input | walk s | / smallest |")
    print("|---|---|---:|---:|")
    for ref, shapes in SIZE_CASES:
        _, model, _ = build_for_inspection(ref)
        first = None
        for shape in shapes:
            seconds = timed(model, shape, args.repeats)
            first = first or seconds
            text = "x".join(map(str, shape))
            print(f"| {ref} | {text} | {seconds:.3f} | x{seconds / first:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""`cnnshape sizes` (memoized scan) against the plain way: one meta-tensor forward per size.

Both check every square size 1..N on the same meta-built model, in this one process, and
must agree on which sizes pass; the script prints both times and the ratio.

    .venv/bin/python benchmarks/sizes_scan.py            # every registered model, N = 1024
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from cnnshape.api import build_for_inspection
from cnnshape.inspect.sizes import scan_sizes
from cnnshape.registry import list_specs


def naive_valid(model, channels: int, up_to: int) -> list[int]:
    """The baseline: every size through the whole model, no memo, no shortcuts."""
    valid = []
    with torch.no_grad():
        model.eval()
        for size in range(1, up_to + 1):
            try:
                model(torch.empty(1, channels, size, size, device="meta"))
            except Exception:
                continue
            valid.append(size)
    return valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--up-to", type=int, default=1024)
    parser.add_argument("--models", nargs="+", default=[s.name for s in list_specs()])
    args = parser.parse_args()
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"sizes 1..{args.up_to}"
    )
    print("| model | naive s | cnnshape s | speed-up | accepted |")
    print("|---|---:|---:|---:|---|")
    _, warm, _ = build_for_inspection("lenet")
    scan_sizes(warm, 1, 32)  # pay PyTorch's one-time meta start-up outside the timings
    for name in args.models:
        _, model, channels = build_for_inspection(name)
        start = time.perf_counter()
        baseline = naive_valid(model, channels, args.up_to)
        naive_s = time.perf_counter() - start
        start = time.perf_counter()
        scan = scan_sizes(model, channels, args.up_to, name=name)
        ours_s = time.perf_counter() - start
        ours = [s for lo, hi in scan.valid for s in range(lo, hi + 1)]
        assert ours == baseline, f"{name}: the scan and the naive check disagree"
        print(
            f"| {name} | {naive_s:.2f} | {ours_s:.2f} | x{naive_s / ours_s:.1f} "
            f"| {scan.describe_valid()} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

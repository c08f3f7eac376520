"""`cnnshape show` against a plain `torchinfo.summary` of the same model, side by side.

Each measurement is a fresh process (imports included, as a user pays them), timed from
process start to exit, with its peak resident memory. Repeats take the median.

    python benchmarks/show_vs_torchinfo.py            # default cases, 3 repeats
    python benchmarks/show_vs_torchinfo.py --repeats 1 --cases nin:224 nin:4096
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

DEFAULT_CASES = [
    "lenet:28",
    "alexnet:224",
    "vgg:224",
    "nin:224",
    "googlenet:96",
    "resnet18:96",
    "densenet:96",
    "nin:1024",
    "nin:2048",
    "nin:4096",
    "resnet18:1024",
    "resnet18:2048",
]

# Runs inside the child: do the work, then report wall time since interpreter start and peak RSS.
CHILD = r"""
import os, resource, sys, time, json
start = float(os.environ["BENCH_T0"])
tool, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
if tool == "cnnshape":
    from cnnshape.cli import app
    try:
        app(["show", name, "--size", str(size), "--format", "json"], standalone_mode=False)
    except SystemExit:
        pass
else:
    import torchinfo
    import cnnshape
    model = cnnshape.get_model(name)
    torchinfo.summary(model, input_size=(1, 1, size, size), verbose=0, device="cpu")
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.time() - start, "peak_mb": peak_mb}), file=sys.stderr)
"""


def measure(tool: str, name: str, size: int) -> dict:

    env = dict(os.environ, BENCH_T0=repr(time.time()))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, tool, name, str(size)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {
            "seconds": float("nan"),
            "peak_mb": float("nan"),
            "error": proc.stderr.strip().splitlines()[-1],
        }
    return json.loads(proc.stderr.strip().splitlines()[-1])


def median_of(tool, name, size, repeats):
    runs = [measure(tool, name, size) for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in ("seconds", "peak_mb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, metavar="MODEL:SIZE")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(
        "| case | torchinfo s | cnnshape s | time ratio | torchinfo MB | cnnshape MB "
        "| memory ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in args.cases:
        name, size = case.split(":")
        base = median_of("torchinfo", name, int(size), args.repeats)
        ours = median_of("cnnshape", name, int(size), args.repeats)
        print(
            f"| {name} @ {size} | {base['seconds']:.2f} | {ours['seconds']:.2f} "
            f"| x{base['seconds'] / ours['seconds']:.2f} | {base['peak_mb']:.0f} "
            f"| {ours['peak_mb']:.0f} | x{base['peak_mb'] / ours['peak_mb']:.2f} |",
            flush=True,
        )
    print("\nRatios are torchinfo / cnnshape: above 1 means cnnshape is faster or smaller.")


if __name__ == "__main__":
    main()

"""`cnnshape show` against a plain `torchinfo.summary` of the same model, side by side.

Each measurement is a fresh process (imports included, as a user waits for them), timed from
process start to exit, with its peak resident memory. Four columns per case:

- torchinfo: build the model (real weights, as torchinfo needs them) and summarize it;
- cnnshape cold: ``cnnshape show`` with the result cache off (CNNSHAPE_NO_CACHE=1): the walk;
- cnnshape warm: the same command asked again (the answer comes from the result cache);
- import torch: a process that only imports torch, the floor any answer that builds the
  model pays (torchinfo's and a cold cnnshape's alike).

The four runs of a case are interleaved (torchinfo, cold, warm, floor, torchinfo, ...), so a load
change on a shared machine hits all columns alike. Medians of the repeats.

    python benchmarks/show_vs_torchinfo.py            # the ten registry models + big inputs
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
import tempfile
import time

DEFAULT_CASES = [
    "lenet:28",
    "alexnet:224",
    "vgg:224",
    "vgg-small:224",
    "nin:224",
    "googlenet:96",
    "lenet-bn-scratch:28",
    "lenet-bn:28",
    "resnet18:96",
    "densenet:96",
    "nin:1024",
    "nin:4096",
    "resnet18:2048",
]

# Runs inside the child: do the work, then report wall time since process start and peak RSS.
CHILD = r"""
import os, resource, sys, time, json
start = float(os.environ["BENCH_T0"])
tool, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
if tool == "floor":
    import torch
elif tool == "cnnshape":
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


def measure(tool: str, name: str, size: int, env: dict) -> dict:
    env = dict(env, BENCH_T0=repr(time.time()))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, tool, name, str(size)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {name}@{size} failed:\n{proc.stderr}")
    return json.loads(proc.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, metavar="MODEL:SIZE")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cache = tempfile.mkdtemp(prefix="cnnshape-bench-cache-")
    columns = {
        "torchinfo": ("torchinfo", dict(os.environ)),
        "cold": ("cnnshape", dict(os.environ, CNNSHAPE_NO_CACHE="1")),
        "warm": ("cnnshape", dict(os.environ, CNNSHAPE_CACHE_DIR=cache)),
        "floor": ("floor", dict(os.environ)),
    }
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; medians of {args.repeats} fresh processes"
    )
    print(
        "| case | torchinfo s | cnnshape cold s | cold / torchinfo | cnnshape warm s "
        "| warm / torchinfo | import torch s | import torch / torchinfo | torchinfo MB "
        "| cnnshape cold MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cold_ratios, warm_ratios, floor_ratios = [], [], []
    for case in args.cases:
        name, size = case.split(":")
        measure("cnnshape", name, int(size), columns["warm"][1])  # fill the cache first
        runs = {column: [] for column in columns}
        for _ in range(args.repeats):
            for column, (tool, env) in columns.items():
                runs[column].append(measure(tool, name, int(size), env))
        median = {
            c: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "peak_mb")}
            for c, rs in runs.items()
        }
        base = median["torchinfo"]["seconds"]
        cold, warm = median["cold"]["seconds"], median["warm"]["seconds"]
        floor = median["floor"]["seconds"]
        if size == str(_default_size(name)):
            cold_ratios.append(cold / base)
            warm_ratios.append(warm / base)
            floor_ratios.append(floor / base)
        print(
            f"| {name} @ {size} | {base:.2f} | {cold:.2f} | x{cold / base:.2f} | {warm:.2f} "
            f"| x{warm / base:.2f} | {floor:.2f} | x{floor / base:.2f} "
            f"| {median['torchinfo']['peak_mb']:.0f} | {median['cold']['peak_mb']:.0f} |",
            flush=True,
        )
    if cold_ratios:
        print(
            f"\nAt the default sizes ({len(cold_ratios)} models): cold / torchinfo median "
            f"x{statistics.median(cold_ratios):.2f}, max x{max(cold_ratios):.2f}; warm / "
            f"torchinfo median x{statistics.median(warm_ratios):.2f}, "
            f"max x{max(warm_ratios):.2f}; import torch alone / torchinfo median "
            f"x{statistics.median(floor_ratios):.2f}, max x{max(floor_ratios):.2f}."
        )
    print("Ratios are cnnshape / torchinfo: below 1 means cnnshape answers sooner.")


def _default_size(name: str) -> int:
    from cnnshape.registry import get_spec

    return get_spec(name).size


if __name__ == "__main__":
    main()

"""What `cnnshape graph` costs, whole processes side by side with `cnnshape show`.

Rows, each a fresh process, interleaved, medians of the repeats:

- `show resnet18` and `graph resnet18 -o r.svg`, both walked (no result cache) and both
  answered from the cache (the graph still lays out and writes its SVG): the target is
  graph within 1.5x of show;
- torchvision's densenet121 at full depth with every op (431 nodes, 967 edges) to SVG, with
  the quick layout settings cnnshape gives a large graph (cnnshape/graph/dot.py QUICK), and
  once (``--slow``) the same DOT file laid out with dot's default settings.

    python benchmarks/graph_cost.py            # 5 repeats
    python benchmarks/graph_cost.py --slow     # also dot's defaults on densenet121 (minutes)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

CNNSHAPE = [sys.executable, "-m", "cnnshape"]
DENSENET = ["torchvision:densenet121", "--depth", "6", "--ops"]


def cases(out: str) -> dict[str, tuple[list[str], bool]]:
    """name -> (command, walked: without the result cache)."""
    return {
        "show resnet18 (walked)": ([*CNNSHAPE, "show", "resnet18"], True),
        "graph resnet18 -o r.svg (walked)": (
            [*CNNSHAPE, "graph", "resnet18", "-o", f"{out}/r.svg"],
            True,
        ),
        "show resnet18 (cached)": ([*CNNSHAPE, "show", "resnet18"], False),
        "graph resnet18 -o r.svg (cached)": (
            [*CNNSHAPE, "graph", "resnet18", "-o", f"{out}/r.svg"],
            False,
        ),
        "show densenet121 --depth 6 --ops (walked)": ([*CNNSHAPE, "show", *DENSENET], True),
        "graph densenet121 --depth 6 --ops -o d.svg (walked)": (
            [*CNNSHAPE, "graph", *DENSENET, "-o", f"{out}/d.svg"],
            True,
        ),
    }


def seconds(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - started


def slow_layout(out: str, env: dict) -> float:
    """The densenet121 DOT file without the quick settings, laid out by graphviz-pure."""
    from cnnshape.graph import engine

    subprocess.run(
        [*CNNSHAPE, "graph", *DENSENET, "-o", f"{out}/d.dot"],
        env=env,
        check=True,
        capture_output=True,
    )
    with open(f"{out}/d.dot") as file:
        text = re.sub(r"nslimit=2, nslimit1=2, mclimit=0.3, searchsize=10, ", "", file.read())
    started = time.perf_counter()
    subprocess.run([*engine.find(), "-Tsvg", "-o", os.devnull], input=text.encode(), check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slow", action="store_true", help="also dot's default settings")
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="cnnshape-graph-cost-")
    cache = tempfile.mkdtemp(prefix="cnnshape-graph-cache-")
    table = cases(out)
    envs = {}
    for name, (command, walked) in table.items():
        envs[name] = dict(os.environ, CNNSHAPE_CACHE_DIR=cache)
        if walked:
            envs[name]["CNNSHAPE_NO_CACHE"] = "1"
        else:
            seconds(command, envs[name])  # fill the cache
    times: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(args.repeats):
        for name, (command, _) in table.items():
            times[name].append(seconds(command, envs[name]))
    median = {name: statistics.median(values) for name, values in times.items()}
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} CPUs, {args.repeats} repeats (medians)")
    for name, value in median.items():
        print(f"  {name:55} {value:6.2f} s")
    for kind in ("walked", "cached"):
        ratio = median[f"graph resnet18 -o r.svg ({kind})"] / median[f"show resnet18 ({kind})"]
        print(f"graph / show, resnet18 {kind}: {ratio:.2f}x (target: within 1.5x)")
    dense = median["graph densenet121 --depth 6 --ops -o d.svg (walked)"]
    ratio = dense / median["show densenet121 --depth 6 --ops (walked)"]
    print(f"graph / show, densenet121 with every op: {ratio:.2f}x")
    if args.slow:
        print(
            f"densenet121's DOT with dot's default settings: {slow_layout(out, envs[name]):.1f} s"
        )


if __name__ == "__main__":
    main()

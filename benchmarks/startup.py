"""How long a command takes to answer, in fresh processes, beside `python -c "import torch"`.

The commands that only print facts (`--help`, `list`) and a question the result cache
already holds must not pay for torch; the baseline row is what every command that walks a
model pays at least. The last two rows import PyTorch's FLOP formulas as PyTorch does (with
triton) and as the command line does (inspect/flop_formulas.py). Runs are interleaved;
medians of the repeats.

    python benchmarks/startup.py            # 5 repeats
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    'python -c "import torch" (the floor of a walk)': [sys.executable, "-c", "import torch"],
    "cnnshape --help": [sys.executable, "-m", "cnnshape", "--help"],
    "cnnshape show --help": [sys.executable, "-m", "cnnshape", "show", "--help"],
    "cnnshape list": [sys.executable, "-m", "cnnshape", "list"],
    "cnnshape show resnet18 (cached)": [sys.executable, "-m", "cnnshape", "show", "resnet18"],
    "cnnshape show resnet18 (walked)": [sys.executable, "-m", "cnnshape", "show", "resnet18"],
    # What inspect/flop_formulas.py spares a walk: the same formulas, with triton and without.
    "import torch.utils.flop_counter (triton too)": [
        sys.executable,
        "-c",
        "import torch.utils.flop_counter",
    ],
    "the same, as the CLI imports it (triton hidden)": [
        sys.executable,
        "-c",
        "from cnnshape.inspect import flop_formulas; "
        "flop_formulas.skip_triton(); flop_formulas.flop_registry()",
    ],
}


def seconds(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="cnnshape-startup-cache-")
    envs = {name: dict(os.environ, CNNSHAPE_CACHE_DIR=cache) for name in CASES}
    envs["cnnshape show resnet18 (walked)"]["CNNSHAPE_NO_CACHE"] = "1"
    seconds(CASES["cnnshape show resnet18 (cached)"], envs["cnnshape show resnet18 (cached)"])
    runs = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, command in CASES.items():
            runs[name].append(seconds(command, envs[name]))
    floor = statistics.median(next(iter(runs.values())))
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; medians of {args.repeats} fresh processes"
    )
    print("| command | seconds | / import torch |")
    print("|---|---:|---:|")
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | x{median / floor:.2f} |")


if __name__ == "__main__":
    main()

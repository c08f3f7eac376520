"""DDP's cost on one GPU: plain `cnnshape train` vs the same run under torchrun, one process.

Both are fresh processes on the same model, data, seed and settings; the figure compared is the
book's examples/sec (time inside the training loop, so process start-up and the process group's
set-up do not count). The target is less than 5% slower under DDP. Run by gpu.sh; also runs on
CPU with tiny settings (gloo instead of NCCL), which is how it was checked without a GPU:

    python benchmarks/ddp_overhead.py --data-dir DIR --device cpu --models lenet --epochs 1 \\
        --train-limit 2048 --test-limit 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def train(launcher: list[str], model: str, args, out: Path) -> float:
    command = [
        *launcher,
        "-m",
        "cnnshape",
        "train",
        model,
        "--epochs",
        str(args.epochs),
        "--device",
        args.device,
        "--out",
        str(out),
        "-f",
        "json",
    ]
    for flag, value in (
        ("--data-dir", args.data_dir),
        ("--train-limit", args.train_limit),
        ("--test-limit", args.test_limit),
    ):
        if value is not None:
            command += [flag, str(value)]
    # torchrun sets OMP_NUM_THREADS=1 unless it is set: give both runs the same CPU threads.
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
    }
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout)["examples_per_sec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--models", nargs="+", default=["resnet18", "alexnet"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--test-limit", type=int)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()

    plain = [sys.executable]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    lines = [
        "### DDP overhead on one device (plain `cnnshape train` vs `torchrun --nproc_per_node=1`)",
        "",
        "| model | plain img/s | DDP img/s | DDP cost |",
        "|---|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            a = train(plain, model, args, Path(tmp) / f"{model}-plain")
            b = train(ddp, model, args, Path(tmp) / f"{model}-ddp")
            lines.append(f"| {model} | {a:,.0f} | {b:,.0f} | {1 - b / a:+.1%} |")
            print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "gpu-results.md").open("a") as f:
        f.write("\n".join(lines) + "\n\nTarget: DDP cost below 5%.\n\n")


if __name__ == "__main__":
    main()

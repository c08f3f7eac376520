"""Predicted training-step peak against a real CUDA GPU, and the largest batch under a budget.

For each model x batch x precision (fp32, bf16 autocast), the step ``cnnshape train`` runs on
CUDA (channels_last, cudnn.benchmark, TF32 off for fp32), three times:
  * predicted: ``cnnshape.inspect.memory.predict_step(..., device="cuda")``, made on the CPU;
  * measured: ``torch.cuda.max_memory_allocated()`` over the step after
    ``torch.cuda.reset_peak_memory_stats()``, minus ``memory_allocated()`` at the step's start,
    plus what the step starts with (the distinct storages of parameters, buffers, gradients,
    optimizer state and batch, in 512-byte blocks): the baseline is taken the same way as
    the prediction's. What the allocator held at the start beyond those tensors (cuBLAS's
    workspace, ...) is reported apart as "untracked".
Then the largest batch: for a few models, ``largest_batch(budget - untracked)``, and in a fresh
process per run, under ``torch.cuda.set_per_process_memory_fraction(budget / total)``, the
predicted batch should train and a batch 10% larger should fail with OOM.

Results go to --out DIR as memory-gpu.md and memory-gpu.jsonl (appended after every case, so
a run cut short keeps what it measured). With --device cpu everything runs on the CPU
instead, measured by the profiler's allocator events (memory_vs_allocator.py), and the OOM
test compares the measured peak with the budget: that is how this script was checked.

    python benchmarks/memory_gpu.py --out runs/memory-gpu                       # CUDA, ~3 min
    python benchmarks/memory_gpu.py --device cpu --models lenet lenet-bn resnet18 \\
        --batches 2 4 --fit-models resnet18 --budget-gb 0.15 --out /tmp/memory-gpu
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from memory_vs_allocator import machine

from cnnshape.inspect.allocator import (
    make_optimizer,
    make_scaler,
    measure_cpu,
    persistent_tensors,
    train_steps,
)
from cnnshape.inspect.memory import largest_batch, predict_step
from cnnshape.registry import get_spec, list_specs

MiB = 2**20
STEPS = 3  # the first creates gradients and optimizer state; the third is the steady state


# ---- one case: predicted and measured -----------------------------------------------------------


def blocks(tensors) -> int:
    """Bytes of the distinct CUDA storages behind ``tensors``, in the allocator's 512-byte
    blocks."""
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t.is_cuda
    }
    return sum(-(-n // 512) * 512 for n in storages.values() if n)


def build_on(name: str, device: str, channels_last: bool):
    model = get_spec(name).build().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def configure_backends(precision: str) -> None:
    """train.py's settings for CUDA: cuDNN picks its fastest algorithms, fp32 means fp32."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = precision != "fp32"


def measure_cuda(name: str, shape, optimizer: str, precision: str) -> list[dict]:
    """Each of STEPS real steps: measured peak (baseline from the tensors) and untracked."""
    configure_backends(precision)
    torch.manual_seed(0)
    model = build_on(name, "cuda", channels_last=True)
    opt = make_optimizer(optimizer, model.parameters())
    scaler = make_scaler("cuda", precision)
    batch = (
        torch.rand(shape, device="cuda").contiguous(memory_format=torch.channels_last),
        torch.randint(0, 10, shape[:1], device="cuda"),
    )
    results = []

    @contextlib.contextmanager
    def window(step):
        torch.cuda.synchronize()
        baseline = blocks(persistent_tensors(model, opt, scaler, batch))
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        yield
        torch.cuda.synchronize()
        rise = torch.cuda.max_memory_allocated() - start
        results.append(
            {
                "peak": baseline + rise,
                "untracked": start - baseline,
                "reserved": torch.cuda.max_memory_reserved(),
            }
        )

    train_steps(model, batch, opt, scaler, precision, "cuda", STEPS, window)
    return results


def run_case(name: str, batch: int, optimizer: str, precision: str, device: str) -> dict:
    spec = get_spec(name)
    shape = (batch, 1, spec.size, spec.size)
    with torch.device("meta"):
        meta = spec.build()
    started = time.perf_counter()
    predicted = predict_step(meta, shape, optimizer=optimizer, precision=precision, device=device)
    row = {
        "model": name,
        "shape": list(shape),
        "optimizer": optimizer,
        "precision": precision,
        "device": device,
        "predicted": predicted.peak,
        "predicted_first": predicted.first_step_peak,
        "predict_seconds": round(time.perf_counter() - started, 2),
    }
    if device == "cuda":
        steps = measure_cuda(name, shape, optimizer, precision)
        torch.cuda.empty_cache()  # the next case starts from an empty cache
        row.update(
            measured=steps[-1]["peak"],
            measured_first=steps[0]["peak"],
            untracked=steps[-1]["untracked"],
            max_reserved=steps[-1]["reserved"],
        )
    else:
        steps = measure_cpu(spec.build, shape, optimizer, precision, steps=STEPS)
        row.update(
            measured=steps[-1].peak,
            measured_first=steps[0].peak,
            untracked=0,
            tensor_level=steps[-1].tensor_peak,
        )
    row["ratio"] = row["predicted"] / row["measured"]
    row["first_ratio"] = row["predicted_first"] / row["measured_first"]
    return row


# ---- the largest batch under a budget -----------------------------------------------------------


def child_run(name: str, batch: int, optimizer: str, precision: str, budget: int) -> dict:
    """In this (fresh) process: STEPS steps at ``batch`` under a memory fraction of
    ``budget``; whether they ran or hit OOM."""
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(budget / total)
    configure_backends(precision)
    spec = get_spec(name)
    shape = (batch, 1, spec.size, spec.size)
    try:
        model = build_on(name, "cuda", channels_last=True)
        opt = make_optimizer(optimizer, model.parameters())
        scaler = make_scaler("cuda", precision)
        data = (
            torch.rand(shape, device="cuda").contiguous(memory_format=torch.channels_last),
            torch.randint(0, 10, shape[:1], device="cuda"),
        )
        train_steps(model, data, opt, scaler, precision, "cuda", STEPS)
        torch.cuda.synchronize()
        outcome = "ran"
    except torch.OutOfMemoryError:
        outcome = "OOM"
    return {
        "outcome": outcome,
        "max_allocated": torch.cuda.max_memory_allocated(),
        "max_reserved": torch.cuda.max_memory_reserved(),
    }


def try_batch(name, batch, optimizer, precision, budget, device) -> dict:
    if device == "cpu":  # the allocator's peak against the budget stands in for OOM
        spec = get_spec(name)
        shape = (batch, 1, spec.size, spec.size)
        peak = measure_cpu(spec.build, shape, optimizer, precision, steps=STEPS)[-1].peak
        return {"outcome": "ran" if peak <= budget else "OOM", "max_allocated": peak}
    # A fresh process: an allocator holding nothing, and its own cuBLAS/cuDNN state.
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        str(batch),
        optimizer,
        precision,
        str(budget),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"outcome": "error", "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit_check(
    name: str, optimizer: str, precision: str, budget: int, untracked: int, device: str
) -> dict:
    spec = get_spec(name)
    with torch.device("meta"):
        meta = spec.build()
    started = time.perf_counter()
    best = largest_batch(
        meta,
        (1, spec.size, spec.size),
        budget - untracked,
        optimizer=optimizer,
        precision=precision,
        device=device,
    )
    seconds = time.perf_counter() - started
    bigger = max(best + 1, math.ceil(best * 1.1))
    return {
        "model": name,
        "optimizer": optimizer,
        "precision": precision,
        "device": device,
        "budget": budget,
        "untracked": untracked,
        "largest_batch": best,
        "largest_batch_seconds": round(seconds, 2),
        "at_largest": try_batch(name, best, optimizer, precision, budget, device),
        "bigger": bigger,
        "at_bigger": try_batch(name, bigger, optimizer, precision, budget, device),
    }


# ---- reporting ----------------------------------------------------------------------------------


def case_table(rows: list[dict]) -> str:
    lines = [
        "| model | input | precision | predicted MiB | measured MiB | predicted / measured "
        "| first step: predicted / measured | untracked at start MiB | predict s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        lines.append(
            f"| {r['model']} | {shape} | {r['precision']} | {r['predicted'] / MiB:,.1f} "
            f"| {r['measured'] / MiB:,.1f} | {r['ratio']:.3f} | {r['first_ratio']:.3f} "
            f"| {r['untracked'] / MiB:,.1f} | {r['predict_seconds']:.2f} |"
        )
    return "\n".join(lines)


def fit_table(rows: list[dict]) -> str:
    lines = [
        "| model | precision | budget MiB | predicted largest batch | its run | "
        "10% larger | its run |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['budget'] / MiB:,.0f} | "
            f"{r['largest_batch']} | {_outcome(r['at_largest'])} | {r['bigger']} | "
            f"{_outcome(r['at_bigger'])} |"
        )
    return "\n".join(lines)


def _outcome(run: dict) -> str:
    if "max_allocated" not in run:
        return run["outcome"]
    return f"{run['outcome']} (peak {run['max_allocated'] / MiB:,.1f} MiB)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--models", nargs="*", default=[s.name for s in list_specs()])
    parser.add_argument("--batches", nargs="*", type=int, default=[32, 128])
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--fit-models", nargs="*", default=["resnet18", "vgg-small", "densenet"])
    parser.add_argument(
        "--fit-precision",
        default="bf16",
        help="precision of the largest-batch runs (bf16: train's CUDA default)",
    )
    parser.add_argument("--budget-gb", type=float, default=3.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, batch, optimizer, precision, budget = args.child
        print(json.dumps(child_run(name, int(batch), optimizer, precision, int(budget))))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: use --device cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "memory-gpu.jsonl"
    if args.device == "cuda":
        where = f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}"
    else:
        where = machine()
    started = time.perf_counter()

    cases = []
    for name in args.models:
        for batch in args.batches:
            for precision in args.precisions:
                row = run_case(name, batch, args.optimizer, precision, args.device)
                cases.append(row)
                _append(jsonl, row)
                print(
                    f"{name} {batch} {precision}: predicted/measured {row['ratio']:.3f}",
                    file=sys.stderr,
                )

    # What the allocator keeps beyond tensors once everything is freed (cuBLAS workspace):
    # a fresh process gets the same, so the budget for tensors is that much smaller.
    gc.collect()
    untracked = torch.cuda.memory_allocated() if args.device == "cuda" else 0
    budget = int(args.budget_gb * 2**30)
    fits = []
    for name in args.fit_models:
        row = fit_check(name, args.optimizer, args.fit_precision, budget, untracked, args.device)
        fits.append(row)
        _append(jsonl, row)
        print(f"{name}: largest batch {row['largest_batch']}", file=sys.stderr)

    text = "\n".join(
        [
            f"Device: {where}; optimizer {args.optimizer}; "
            f"{time.perf_counter() - started:.0f} s in all",
            "",
            "Predicted vs measured peak of the steady-state step (the third):",
            "",
            case_table(cases),
            "",
            f"Largest batch under a budget of {args.budget_gb:g} GiB "
            f"(predicted for the budget minus {untracked / MiB:.1f} MiB untracked):",
            "",
            fit_table(fits),
        ]
    )
    (out / "memory-gpu.md").write_text(text + "\n")
    print(text)
    return 0


def _append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())

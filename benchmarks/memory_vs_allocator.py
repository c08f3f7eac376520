"""cnnshape's predicted training-step peak against torchinfo's estimate and the CPU allocator.

For each registry model at its seed recipe (size and batch), fp32 (or --precision), the book's
plain SGD:
  * torchinfo's "Estimated Total Size": input + 2 x every layer's output + parameters
    (``torchinfo.summary(...).total_input + total_output_bytes + total_param_bytes``, run on
    the meta device so that the full batch costs nothing);
  * cnnshape's predicted steady-state peak (``cnnshape.inspect.memory.predict_step``, CPU);
  * the peak the CPU allocator reports for the real step (two steps; the second one, as
    predicted), from torch.profiler's memory events, and the same without kernel scratch
    (blocks allocated and freed inside one op, such as oneDNN's reorder buffers). It runs
    only where the prediction fits in --max-gb and a timed batch-1 step says the two steps
    take under --max-seconds; otherwise "not run";
  * whether that peak is inside the bound ``cnnshape memory`` states (memory.ERROR_BOUNDS, at
    this process's threads), and the bound's top.
A second table runs every model at --small-batch, where all of them can be measured.
The bound's numbers come from runs of this script at several --threads and with oneDNN held
to lower instruction sets (ONEDNN_MAX_CPU_ISA=AVX2, AVX512_CORE): benchmarks/RESULTS.md.

    python benchmarks/memory_vs_allocator.py                    # Markdown on stdout
    python benchmarks/memory_vs_allocator.py --small-batch 2 --max-seconds 5 --out out.md
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/memory_vs_allocator.py --precision bf16 --threads 16

The measurement is cnnshape/inspect/allocator.py (also what the tests check against).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time

import torch
from torch import nn

from cnnshape.inspect.allocator import make_optimizer, measure_cpu, train_steps
from cnnshape.inspect.memory import ERROR_BOUNDS, predict_step
from cnnshape.registry import get_spec, list_specs

MB = 1e6


# ---- the comparison -----------------------------------------------------------------------------


def torchinfo_estimate(meta_model: nn.Module, input_shape) -> int:
    """torchinfo's "Estimated Total Size" in bytes (what its summary prints, unrounded)."""
    import torchinfo

    stats = torchinfo.summary(meta_model, input_size=input_shape, device="meta", verbose=0)
    return stats.total_input + stats.total_output_bytes + stats.total_param_bytes


def estimated_seconds(build, size: int, batch: int) -> float:
    """Two plain training steps at ``batch``, extrapolated from timed steps at batch 2 and 4
    (BatchNorm1d refuses batch 1 in training)."""

    def timed(n: int) -> float:
        torch.manual_seed(0)
        model = build()
        opt = make_optimizer("sgd", model.parameters())
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        data = torch.rand(n, 1, size, size), torch.zeros(n, dtype=torch.int64)
        started = time.perf_counter()
        train_steps(model, data, opt, scaler, "fp32", "cpu", 2)
        return time.perf_counter() - started

    two, four = timed(2), timed(4)
    per_image = max((four - two) / 2, 0.0)
    return two + per_image * (batch - 2)


def compare(name: str, batch: int, max_gb: float, max_seconds: float, precision: str) -> dict:
    spec = get_spec(name)
    shape = (batch, 1, spec.size, spec.size)
    with torch.device("meta"):
        meta = spec.build()
    started = time.perf_counter()
    predicted = predict_step(meta, shape, precision=precision)
    predict_seconds = time.perf_counter() - started
    row = {
        "model": name,
        "shape": shape,
        "torchinfo": torchinfo_estimate(meta, shape),
        "predicted": predicted.peak,
        "predict_s": predict_seconds,
        "bound": ERROR_BOUNDS["cpu"].allocator_range(
            predicted.peak, precision, torch.get_num_threads()
        ),
        "measured": None,
    }
    if predicted.peak > max_gb * 1e9:
        row["skipped"] = f"prediction over {max_gb:g} GB"
    elif estimated_seconds(spec.build, spec.size, batch) > max_seconds:
        row["skipped"] = f"est. over {max_seconds:g} s"
    else:
        steady = measure_cpu(spec.build, shape, precision=precision)[-1]
        row.update(measured=steady.peak, tensor_level=steady.tensor_peak, measure_s=steady.seconds)
    return row


def _mb(value) -> str:
    return "not run" if value is None else f"{value / MB:,.1f}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | input | torchinfo MB | predicted MB | measured MB | predicted / measured "
        "| torchinfo / measured | torchinfo / predicted | tensor-level MB | kernel scratch "
        "| inside the bound (top MB) | predict s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        shape = "x".join(map(str, row["shape"]))
        measured = row["measured"]
        if measured is None:
            measured_text = f"not run ({row['skipped']})"
            ratio = torchinfo_ratio = tensor_level = scratch = inside = "-"
        else:
            measured_text = _mb(measured)
            ratio = f"{row['predicted'] / measured:.3f}"
            torchinfo_ratio = f"{row['torchinfo'] / measured:.3f}"
            exact = abs(row["tensor_level"] - row["predicted"]) <= 64
            tensor_level = _mb(row["tensor_level"]) + (" (= predicted)" if exact else "")
            scratch = f"{(measured - row['tensor_level']) / measured:.1%}"
            low, high = row["bound"]
            inside = f"{'yes' if low <= measured <= high else 'NO'} ({_mb(high)})"
        lines.append(
            f"| {row['model']} | {shape} | {_mb(row['torchinfo'])} | "
            f"{_mb(row['predicted'])} | {measured_text} | {ratio} | {torchinfo_ratio} | "
            f"{row['torchinfo'] / row['predicted']:.3f} | {tensor_level} | {scratch} | "
            f"{inside} | {row['predict_s']:.2f} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    ram = ""
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    import torchinfo

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "all the CPU has")
    return (
        f"{cpu}, {os.cpu_count()} cores{ram}; {torch.get_num_threads()} torch threads, oneDNN "
        f"ISA: {isa}; torch {torch.__version__}, torchinfo {torchinfo.__version__}, "
        f"Python {platform.python_version()}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[s.name for s in list_specs()])
    parser.add_argument("--small-batch", type=int, default=4)
    parser.add_argument("--max-gb", type=float, default=4.0)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = [
        f"Machine: {machine()}",
        "",
        f"Seed recipes (batch and size of the book), {args.precision}, plain SGD, second step:",
        "",
    ]
    seed_rows = []
    for name in args.models:
        spec = get_spec(name)
        seed_rows.append(
            compare(name, spec.recipe.batch_size, args.max_gb, args.max_seconds, args.precision)
        )
        print(f"seed recipe: {name} done", file=sys.stderr)
    report += [markdown(seed_rows), "", f"Every model at batch {args.small_batch}, same step:", ""]
    small_rows = []
    for name in args.models:
        small_rows.append(
            compare(name, args.small_batch, args.max_gb, float("inf"), args.precision)
        )
        print(f"batch {args.small_batch}: {name} done", file=sys.stderr)
    report.append(markdown(small_rows))
    text = "\n".join(report)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""cnnshape's predicted training-step peak against torchinfo's estimate and the CPU allocator.

For each registry model at its seed recipe (size and batch), fp32, the book's plain SGD:
  * torchinfo's "Estimated Total Size": input + 2 x every layer's output + parameters
    (``torchinfo.summary(...).total_input + total_output_bytes + total_param_bytes``, run on
    the meta device so that the full batch costs nothing);
  * cnnshape's predicted steady-state peak (``cnnshape.inspect.memory.predict_step``, CPU);
  * the peak the CPU allocator reports for the real step (two steps; the second one, as
    predicted), from torch.profiler's memory events, and the same without kernel scratch
    (blocks allocated and freed inside one op, such as oneDNN's reorder buffers). It runs
    only where the prediction fits in --max-gb and a timed batch-1 step says the two steps
    take under --max-seconds; otherwise "not run".
A second table runs every model at --small-batch, where all of them can be measured.

    python benchmarks/memory_vs_allocator.py                    # Markdown on stdout
    python benchmarks/memory_vs_allocator.py --small-batch 2 --max-seconds 5 --out out.md

memory_gpu.py imports the measurement from here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from cnnshape.inspect.memory import predict_step
from cnnshape.registry import get_spec, list_specs

MB = 1e6
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ---- the real step on CPU, measured by the allocator --------------------------------------------


@dataclass(frozen=True)
class Measured:
    peak: int  # the allocator's peak of the step, what was live at its start included
    tensor_peak: int  # the same with kernel scratch (allocated and freed in one op) left out
    seconds: float  # wall time of the step (profiler overhead included)


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    """The optimizers cnnshape predicts, with PyTorch's defaults."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9)
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](params)


def make_scaler(device: str, precision: str) -> torch.amp.GradScaler:
    """train.py's GradScaler (on for fp16 only), with a small initial scale: no step then
    overflows and gets skipped (a skipped step creates no optimizer state), and the scale's
    value changes no allocation."""
    return torch.amp.GradScaler(
        torch.device(device).type, init_scale=1.0, enabled=precision == "fp16"
    )


def train_steps(model, batch, optimizer, scaler, precision, device, steps, on_step=None):
    """cnnshape train's step, ``steps`` times; ``on_step(i)`` gives a context for step i."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for step in range(steps):
        autocast = (
            torch.autocast(torch.device(device).type, _AUTOCAST[precision])
            if precision in _AUTOCAST
            else contextlib.nullcontext()
        )
        with on_step(step) if on_step else contextlib.nullcontext():
            optimizer.zero_grad()
            with autocast:
                logits = model(batch[0])
                loss = loss_fn(logits, batch[1])
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            del logits, loss


def persistent_tensors(model, optimizer, scaler, batch) -> list:
    """What lives between steps: parameters, buffers, gradients, optimizer state, batch."""
    tensors = [*model.parameters(), *model.buffers(), *batch]
    tensors += [p.grad for p in model.parameters()]
    tensors += [v for state in optimizer.state.values() for v in state.values()]
    if scaler.is_enabled() and scaler._scale is not None:
        tensors += [scaler._scale, scaler._growth_tracker]
    return [t for t in tensors if isinstance(t, torch.Tensor)]


def storage_bytes(tensors, device: str = "cpu") -> int:
    """Bytes of the distinct storages behind ``tensors`` that live on ``device``."""
    kind = torch.device(device).type
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for t in tensors
        if t.device.type == kind
    }
    return sum(storages.values())


def measure_cpu(
    build, input_shape, optimizer: str = "sgd", precision: str = "fp32", steps: int = 2
) -> list[Measured]:
    """Run ``steps`` real steps on CPU under the profiler; each one's measured peaks."""
    torch.manual_seed(0)
    baselines, seconds = [], []

    @contextlib.contextmanager
    def window(step):
        baselines.append(storage_bytes(persistent_tensors(model, opt, scaler, batch)))
        started = time.perf_counter()
        with record_function(f"step{step}"):
            yield
        seconds.append(time.perf_counter() - started)

    # Everything is created inside the profile: a block freed during a step must have been
    # allocated while the allocator was reporting, or its size is unknown to it.
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model = build()
        opt = make_optimizer(optimizer, model.parameters())
        scaler = make_scaler("cpu", precision)
        batch = torch.rand(input_shape), torch.randint(0, 10, input_shape[:1])
        train_steps(model, batch, opt, scaler, precision, "cpu", steps, window)
    events, windows = _allocator_events(prof)
    scratch = _kernel_scratch(events)
    return [
        Measured(*_peaks(events, windows[f"step{i}"], baselines[i], scratch), seconds[i])
        for i in range(steps)
    ]


@dataclass(frozen=True)
class _Event:
    time: int
    size: int  # positive: allocated, negative: freed
    total: int  # the allocator's running total after this event
    ptr: int
    op: tuple | None  # the outermost aten op call it happened in: (name, start time)


def _allocator_events(prof) -> tuple[list[_Event], dict[str, tuple[int, int]]]:
    """Every CPU allocation/free in time order, and the time window of each step."""
    events, windows = [], {}

    def walk(node, op):
        fields = node.extra_fields
        if node.name.startswith("step") and node.name[4:].isdigit():
            windows[node.name] = (node.start_time_ns, node.end_time_ns)
        if op is None and node.name.startswith("aten::"):
            op = (node.name, node.start_time_ns)
        if type(fields).__name__ == "_ExtraFields_Allocation":
            events.append(
                _Event(
                    node.start_time_ns, fields.alloc_size, fields.total_allocated, fields.ptr, op
                )
            )
        for child in node.children:
            walk(child, op)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root, None)
    events.sort(key=lambda e: e.time)
    return events, windows


def _kernel_scratch(events: list[_Event]) -> set[int]:
    """Ids of the events of blocks allocated and freed inside the same op call."""
    open_blocks: dict[int, _Event] = {}
    scratch = set()
    for event in events:
        if event.size > 0:
            open_blocks[event.ptr] = event
            continue
        allocation = open_blocks.pop(event.ptr, None)
        if allocation is not None and event.op is not None and allocation.op == event.op:
            scratch.update((id(allocation), id(event)))
    return scratch


def _peaks(events, window, baseline: int, scratch: set[int]) -> tuple[int, int]:
    start, end = window
    total_at_start = [e for e in events if e.time < start][-1].total
    inside = [e for e in events if start <= e.time <= end]
    peak = baseline + max([0] + [e.total - total_at_start for e in inside])
    live = tensor_peak = baseline
    for event in inside:
        if id(event) not in scratch:
            live += event.size
            tensor_peak = max(tensor_peak, live)
    return peak, tensor_peak


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


def compare(name: str, batch: int, max_gb: float, max_seconds: float) -> dict:
    spec = get_spec(name)
    shape = (batch, 1, spec.size, spec.size)
    with torch.device("meta"):
        meta = spec.build()
    started = time.perf_counter()
    predicted = predict_step(meta, shape)
    predict_seconds = time.perf_counter() - started
    row = {
        "model": name,
        "shape": shape,
        "torchinfo": torchinfo_estimate(meta, shape),
        "predicted": predicted.peak,
        "predict_s": predict_seconds,
        "measured": None,
    }
    if predicted.peak > max_gb * 1e9:
        row["skipped"] = f"prediction over {max_gb:g} GB"
    elif estimated_seconds(spec.build, spec.size, batch) > max_seconds:
        row["skipped"] = f"est. over {max_seconds:g} s"
    else:
        steady = measure_cpu(spec.build, shape)[-1]
        row.update(measured=steady.peak, tensor_level=steady.tensor_peak, measure_s=steady.seconds)
    return row


def _mb(value) -> str:
    return "not run" if value is None else f"{value / MB:,.1f}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | input | torchinfo MB | predicted MB | measured MB | predicted / measured "
        "| torchinfo / measured | torchinfo / predicted | tensor-level MB | kernel scratch "
        "| predict s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        shape = "x".join(map(str, row["shape"]))
        measured = row["measured"]
        if measured is None:
            measured_text = f"not run ({row['skipped']})"
            ratio = torchinfo_ratio = tensor_level = scratch = "-"
        else:
            measured_text = _mb(measured)
            ratio = f"{row['predicted'] / measured:.3f}"
            torchinfo_ratio = f"{row['torchinfo'] / measured:.3f}"
            exact = abs(row["tensor_level"] - row["predicted"]) <= 64
            tensor_level = _mb(row["tensor_level"]) + (" (= predicted)" if exact else "")
            scratch = f"{(measured - row['tensor_level']) / measured:.1%}"
        lines.append(
            f"| {row['model']} | {shape} | {_mb(row['torchinfo'])} | "
            f"{_mb(row['predicted'])} | {measured_text} | {ratio} | {torchinfo_ratio} | "
            f"{row['torchinfo'] / row['predicted']:.3f} | {tensor_level} | {scratch} | "
            f"{row['predict_s']:.2f} |"
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

    return (
        f"{cpu}, {os.cpu_count()} cores{ram}; torch {torch.__version__}, "
        f"torchinfo {torchinfo.__version__}, Python {platform.python_version()}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[s.name for s in list_specs()])
    parser.add_argument("--small-batch", type=int, default=4)
    parser.add_argument("--max-gb", type=float, default=4.0)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args(argv)
    report = [
        f"Machine: {machine()}",
        "",
        "Seed recipes (batch and size of the book), fp32, plain SGD, second step:",
        "",
    ]
    seed_rows = []
    for name in args.models:
        spec = get_spec(name)
        seed_rows.append(compare(name, spec.recipe.batch_size, args.max_gb, args.max_seconds))
        print(f"seed recipe: {name} done", file=sys.stderr)
    report += [markdown(seed_rows), "", f"Every model at batch {args.small_batch}, same step:", ""]
    small_rows = []
    for name in args.models:
        small_rows.append(compare(name, args.small_batch, args.max_gb, float("inf")))
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

"""The reference a memory prediction is checked against: a real training step's peak, as the
CPU allocator itself reports it.

The step runs for real on the CPU under ``torch.profiler`` with ``profile_memory=True``:
every allocation and free the allocator makes is an event with its size and the allocator's
running total. A step's measured peak is what was live when it started (the distinct
storages of parameters, buffers, gradients, optimizer state and the batch) plus the highest
the running total rose above its value at the step's start. Blocks allocated and freed
inside one op call (kernel scratch, such as oneDNN's reorder buffers, which no tensor ever
holds) are also left out, for the tensor-level peak a prediction on fake tensors can match
exactly.

Used by ``cnnshape memory --measure``, the tests and the benchmarks; nothing here predicts.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from .. import step


@dataclass(frozen=True)
class Measured:
    peak: int  # the allocator's peak of the step, what was live at its start included
    tensor_peak: int  # the same with kernel scratch (allocated and freed in one op) left out
    seconds: float  # wall time of the step (profiler overhead included)


def train_steps(model, batch, optimizer, scaler, precision, device, steps, on_step=None):
    """cnnshape train's step (`step.train_step`), ``steps`` times; ``on_step(i)`` gives a
    context for step i."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for i in range(steps):
        with on_step(i) if on_step else contextlib.nullcontext():
            logits, loss = step.train_step(
                model, *batch, optimizer, scaler, loss_fn, precision, torch.device(device).type
            )
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
    with (
        _native_stderr_silenced(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        model = build()
        opt = step.make_optimizer(optimizer, model.parameters())
        # A small initial scale: no fp16 step then overflows and gets skipped (a skipped step
        # creates no optimizer state), and the scale's value changes no allocation.
        scaler = step.make_scaler(precision, "cpu", init_scale=1.0)
        batch = torch.rand(input_shape), torch.randint(0, 10, input_shape[:1])
        train_steps(model, batch, opt, scaler, precision, "cpu", steps, window)
    events, windows = _allocator_events(prof)
    scratch = _kernel_scratch(events)
    return [
        Measured(*_peaks(events, windows[f"step{i}"], baselines[i], scratch), seconds[i])
        for i in range(steps)
    ]


@contextlib.contextmanager
def _native_stderr_silenced():
    """The profiler's C++ side prints its stages (and, without a GPU, a failed device query)
    straight to file descriptor 2, under any log level: hide them for the duration. Errors
    that matter come back as Python exceptions."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 to borrow (embedded interpreters): print as is
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


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

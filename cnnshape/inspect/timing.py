"""Measured latency: real forward passes of a real model, timed layer by layer and whole.

Everything else cnnshape reports is derived from shapes; these numbers are measured on
this machine, so they vary from run to run and machine to machine. Each figure is the
median of ``repeats`` runs after ``warmup`` runs (which pay one-time costs: allocator,
cuDNN autotuning, caches), with the interquartile range as the spread. On CUDA every
timestamp is taken after ``torch.cuda.synchronize()``: kernels run asynchronously, and
without it a layer's time would be the launch's, not the work's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .._common import input_device_and_dtype, left_as_it_was
from .inputs import InputSpec, as_specs


@dataclass
class Measured:
    """The median and interquartile range of one timed thing, in milliseconds."""

    median_ms: float
    q1_ms: float
    q3_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Measured:
        ms = sorted(s * 1e3 for s in seconds)
        if len(ms) < 2:
            return cls(ms[0], ms[0], ms[0])
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
        return cls(statistics.median(ms), q1, q3)

    @property
    def spread_ms(self) -> float:
        return self.q3_ms - self.q1_ms


@dataclass
class Timing:
    """How a model was timed, and its whole forward pass (timed without hooks)."""

    device: str
    warmup: int
    repeats: int
    threads: int  # torch.get_num_threads(): CPU timings depend on it
    forward: Measured
    batch: int

    @property
    def images_per_sec(self) -> float:
        return self.batch / (self.forward.median_ms / 1e3)

    def to_dict(self) -> dict:
        return {
            "measured": True,
            "device": self.device,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "threads": self.threads,
            "batch": self.batch,
            "forward_ms": vars(self.forward),
            "images_per_sec": self.images_per_sec,
        }


def time_model(
    model: nn.Module,
    inputs,
    *,
    warmup: int = 3,
    repeats: int = 20,
    layers: list[str] | None = None,
) -> tuple[Timing, list[tuple[str, Measured]]]:
    """Time ``model``'s forward on random inputs (a shape, or specs as the walk takes them),
    and the calls of the named ``layers``.

    Returns the whole forward's timing (runs without hooks, so nothing is added to it) and
    one (name, Measured) per layer call, in execution order. Eval mode, no_grad; the model
    is left as it was: same flags and buffers, no hooks.
    """
    specs = as_specs(inputs)
    device, dtype = input_device_and_dtype(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    args, kwargs = [], {}
    for spec in specs:
        x = _random(spec, dtype, device)
        if spec.name:
            kwargs[spec.name] = x
        else:
            args.append(x)
    with left_as_it_was(model), torch.no_grad():
        model.eval()

        def forward():
            model(*args, **kwargs)

        for _ in range(warmup):
            forward()
        whole = _repeat(forward, repeats, sync)
        calls = _time_layers(model, forward, set(layers), repeats, sync) if layers else []
    batch = specs[0].shape[0]
    timing = Timing(str(device), warmup, repeats, torch.get_num_threads(), whole, batch)
    return timing, calls


def _random(spec: InputSpec, model_dtype: torch.dtype, device) -> torch.Tensor:
    """Normal noise for a floating input; zeros for an integer one (a valid index)."""
    dtype = getattr(torch, spec.dtype) if spec.dtype else model_dtype
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(spec.shape, dtype=dtype, device=device)
    return torch.zeros(spec.shape, dtype=dtype, device=device)


def _repeat(run: Callable[[], None], repeats: int, sync) -> Measured:
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        run()
        sync()
        seconds.append(time.perf_counter() - start)
    return Measured.of(seconds)


def _time_layers(model, forward, names: set[str], repeats: int, sync):
    """Per layer call: pre- and post-hooks take timestamps (after a sync on CUDA).

    Calls are kept in the order they start, the walk's order, so rows match call by call.
    """
    per_run: list[list[list]] = []  # per run: [name, start, then seconds] per call
    open_calls: list[int] = []  # indices of calls still running, innermost last
    qualified = {m: n for n, m in model.named_modules() if n in names}

    def before(module, args):
        sync()
        open_calls.append(len(per_run[-1]))
        per_run[-1].append([qualified[module], time.perf_counter()])

    def after(module, args, output):
        sync()
        call = per_run[-1][open_calls.pop()]
        call[1] = time.perf_counter() - call[1]

    handles = []
    try:
        for module in qualified:
            handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(after))
        for _ in range(repeats):
            per_run.append([])
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return [
        (name, Measured.of([run[i][1] for run in per_run]))
        for i, (name, _) in enumerate(per_run[0])
    ]

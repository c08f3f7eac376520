"""Will it fit? One training step's predicted memory at a batch, the batch-size law, and
the largest batch under a budget, as plain data (``memory.py`` does the predicting).

The step's peak is everything the step holds at its worst moment. What ``cnnshape train``
keeps on the device besides (the whole dataset, as uint8) is its own line, ``resident``,
added where the question is whether a ``cnnshape train`` run fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import allocator, memory


@dataclass
class MemoryReport:
    model: str
    step: memory.StepMemory  # the steady-state step at input_shape, and its breakdown
    fixed_bytes: int  # the batch-size law: peak = fixed + per_image x batch
    per_image_bytes: int
    resident_bytes: int | None = None  # what `cnnshape train` keeps besides (registry only)
    budget_bytes: int | None = None  # --fit, or a CUDA device's total memory
    budget_source: str | None = None
    largest_batch: int | None = None  # the largest batch whose exact peak fits the budget
    # Set when the budget was over what int64 counts and searched as this: more may fit.
    budget_cap: int | None = None
    curve: list[tuple[int, int]] = field(default_factory=list)  # (batch, exact peak), --plot
    measured: allocator.Measured | None = None  # the real step's, on the CPU (--measure)
    # torch's CPU threads in this process, which cnnshape train uses: the bound counts them.
    threads: int = field(default_factory=torch.get_num_threads)

    @property
    def bound(self) -> memory.Bound | None:
        """How far the allocator's peak may be from the prediction on this kind of device."""
        return memory.ERROR_BOUNDS.get(torch.device(self.step.device).type)

    @property
    def allocator_range(self) -> tuple[int, int] | None:
        """The allocator peaks the bound allows for this step; None where it is unmeasured."""
        if self.bound is None:
            return None
        return self.bound.allocator_range(self.step.peak, self.step.precision, self.threads)

    @property
    def input_shape(self) -> list[int]:
        return list(self.step.input_shape)

    @property
    def train_total(self) -> int | None:
        """What a `cnnshape train` run needs at this batch: the step and the dataset."""
        return None if self.resident_bytes is None else self.step.peak + self.resident_bytes

    def to_dict(self) -> dict[str, Any]:
        step = self.step.to_dict()
        return {
            "model": self.model,
            "input_shape": self.input_shape,
            "optimizer": step.pop("optimizer"),
            "precision": step.pop("precision"),
            "device": step.pop("device"),
            "step": {k: v for k, v in step.items() if k != "input_shape"},
            "law": {"fixed_bytes": self.fixed_bytes, "per_image_bytes": self.per_image_bytes},
            "train_resident_bytes": self.resident_bytes,
            "train_total_bytes": self.train_total,
            "fit": None
            if self.budget_bytes is None
            else {
                "budget_bytes": self.budget_bytes,
                "budget_source": self.budget_source,
                "largest_batch": self.largest_batch,
                "budget_capped_at": self.budget_cap,
            },
            "bound": self._bound_dict(),
            "curve": [{"batch": b, "peak_bytes": peak} for b, peak in self.curve] or None,
            "measured": self._measured_dict(),
        }

    def _bound_dict(self) -> dict[str, Any] | None:
        """The rule, the same on every machine; what it allows here is in ``measured``."""
        if self.bound is None:
            return None
        above = self.bound.above
        return {
            "above_fraction": None if above is None else above[self.step.precision],
            "per_thread_bytes": self.bound.per_thread_bytes,
            "below_bytes": self.bound.below_bytes,
            "basis": self.bound.basis,
        }

    def _measured_dict(self) -> dict[str, Any] | None:
        if self.measured is None:
            return None
        low, high = self.allocator_range
        return {
            "peak_bytes": self.measured.peak,
            "tensor_peak_bytes": self.measured.tensor_peak,
            "threads": self.threads,
            "bound_low_bytes": low,
            "bound_high_bytes": high,
        }


def memory_report(
    model: nn.Module,
    name: str,
    input_shape: tuple[int, ...],
    *,
    optimizer: str,
    precision: str,
    device: str,
    resident: int | None = None,
    budget: int | None = None,
    budget_source: str | None = None,
    curve: bool = False,
) -> MemoryReport:
    """Predict the step at ``input_shape``, its law, and with a ``budget`` the largest batch
    whose step (plus ``resident``, what a training run keeps besides) fits in it."""
    options = {"optimizer": optimizer, "precision": precision, "device": device}
    step = memory.predict_step(model, input_shape, **options)
    image = tuple(input_shape[1:])
    fixed, per_image = memory.batch_law(model, image, **options)
    report = MemoryReport(name, step, fixed, per_image, resident, budget, budget_source)
    if budget is not None:
        found = memory.fit_batch(
            model, image, budget - (resident or 0), law=(fixed, per_image), **options
        )
        report.largest_batch = found.batch
        report.budget_cap = memory.BUDGET_CAP if found.capped else None
    if curve:
        report.curve = _curve(model, image, input_shape[0], report.largest_batch, options)
    return report


def _curve(model, image, batch, largest, options) -> list[tuple[int, int]]:
    """Exact peaks at nine batches evenly spread from 2 (BatchNorm cannot train on one image)
    to past the interesting ones, and at those (for the picture)."""
    top = max(batch, largest or 0, 8) * 3 // 2
    batches = sorted(
        {2, batch, *([largest] if largest else []), *(2 + (top - 2) * k // 8 for k in range(1, 9))}
    )
    peaks = [(b, memory.representable_peak(model, (b, *image), **options)) for b in batches]
    return [(b, peak) for b, peak in peaks if peak is not None]  # past int64: not drawn

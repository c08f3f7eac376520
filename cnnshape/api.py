"""The library API the CLI is a thin layer over: build, walk, compare, scan sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import CnnshapeError
from .registry import ModelSpec, get_spec, list_specs, match_specs
from .report import Report
from .sizes import DEFAULT_UP_TO, SizeScan, scan_sizes
from .walk import WalkError, walk


def list_models() -> list[str]:
    """Names of every registered architecture, in the book's order."""
    return [spec.name for spec in list_specs()]


def list_entries() -> list[tuple[ModelSpec, Report]]:
    """Every registered model with its walk at the default input size."""
    return [(spec, show(spec.name)) for spec in list_specs()]


def get_model(name: str, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """Build a registered network with real (PyTorch default) weights."""
    return get_spec(name).build(in_channels=in_channels, num_classes=num_classes)


def summary(model: nn.Module, input_size: tuple[int, ...], depth: int = 1, *,
            name: str | None = None) -> Report:
    """Walk ``model`` on a dummy input of ``input_size`` (e.g. ``(1, 1, 224, 224)``).

    Returns a Report that prints as a table (terminal, Jupyter) and has ``.to_dict()``.
    If a layer refuses the input, raises WalkError naming it, and, for image inputs, the
    square sizes the network does accept.
    """
    try:
        return walk(model, input_size, depth, name=name)
    except WalkError as err:
        if len(input_size) == 4 and err.hint is None:
            scan = scan_sizes(model, input_size[1], name=name)
            err.hint = f"{scan.model} accepts square inputs of size {scan.describe_valid()}."
        raise


def build_for_inspection(spec: ModelSpec, in_channels: int, num_classes: int) -> nn.Module:
    """Build on the meta device: no weights are allocated or initialized (VGG: 0.5 GB, 2 s)."""
    _check_positive(in_channels=in_channels, classes=num_classes)
    with torch.device("meta"):
        return spec.build(in_channels=in_channels, num_classes=num_classes)


def show(name: str, size: tuple[int, int] | None = None, *, batch: int = 1, in_channels: int = 1,
         num_classes: int = 10, depth: int = 1) -> Report:
    """Walk a registered network at ``size`` (default: the size the book uses)."""
    spec = get_spec(name)
    _check_positive(batch=batch)
    height, width = size or (spec.size, spec.size)
    model = build_for_inspection(spec, in_channels, num_classes)
    return summary(model, (batch, in_channels, height, width), depth, name=spec.name)


def valid_sizes(name: str, *, in_channels: int = 1, num_classes: int = 10,
                up_to: int = DEFAULT_UP_TO) -> SizeScan:
    """Every square size 1..up_to a registered network accepts, and why it refuses the rest."""
    spec = get_spec(name)
    return scan_sizes(build_for_inspection(spec, in_channels, num_classes), in_channels, up_to,
                      name=spec.name)


@dataclass
class ModelSummary:
    """One model in a comparison: the walk's totals plus its valid input sizes."""

    model: str
    input_shape: list[int]
    valid_sizes: list[tuple[int, int]]
    report: Report | None  # None when the model does not accept the input
    error: str | None = None
    relative: dict[str, float] | None = None  # each figure / the first model's

    def figures(self) -> dict[str, int]:
        r = self.report
        assert r is not None
        return {"params": r.total_params, "macs": r.total_macs, "flops": r.total_flops,
                "activation_bytes": r.activation_bytes}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "input_shape": self.input_shape}
        if self.report is None:
            data["error"] = self.error
        else:
            data["output_shape"] = self.report.output_shape
            data.update(self.figures())
            data["weight_layers"] = self.report.num_weight_layers
            data["relative"] = self.relative
        data["valid_sizes"] = [[lo, hi] for lo, hi in self.valid_sizes]
        return data


def compare(patterns: list[str], size: tuple[int, int] | None = None, *, batch: int = 1,
            in_channels: int = 1, num_classes: int = 10) -> list[ModelSummary]:
    """Summaries of several models (names, 'lenet*' patterns, 'all'), each relative to the first.

    A model that refuses ``size`` gets a row with the reason instead of failing the comparison.
    """
    _check_positive(batch=batch)
    summaries = [_summarize(spec, size, batch, in_channels, num_classes)
                 for spec in match_specs(patterns)]
    base = next((s for s in summaries if s.report is not None), None)
    if base is not None:
        for s in summaries:
            if s.report is not None:
                s.relative = {k: _ratio(v, base.figures()[k]) for k, v in s.figures().items()}
    return summaries


def _summarize(spec, size, batch, in_channels, num_classes) -> ModelSummary:
    model = build_for_inspection(spec, in_channels, num_classes)
    height, width = size or (spec.size, spec.size)
    shape = [batch, in_channels, height, width]
    scan = scan_sizes(model, in_channels, name=spec.name)
    try:
        report = walk(model, shape, name=spec.name)
    except WalkError as err:
        return ModelSummary(spec.name, shape, scan.valid, None, error=err.message)
    return ModelSummary(spec.name, shape, scan.valid, report)


def _ratio(value: int, base: int) -> float:
    return value / base if base else float("nan")


def _check_positive(**values: int) -> None:
    for option, value in values.items():
        if value < 1:
            raise CnnshapeError(f"--{option.replace('_', '-')} must be at least 1, not {value}.")


__all__ = ["CnnshapeError", "ModelSummary", "Report", "SizeScan", "compare",
           "get_model", "list_models", "scan_sizes", "show", "summary", "valid_sizes"]

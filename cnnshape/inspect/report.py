"""Plain data that comes out of inspection: a walk's Report (one Row per layer call, and
the model's totals) and a size scan's SizeScan. No torch: the CLI renders these for free.

The counting conventions are defined here once and quoted by every renderer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .memory import StepMemory
    from .timing import Timing

# inspect.conventions.CONVENTIONS's names (a test keeps them equal): that module imports torch.
CONVENTION_NAMES = ("torch", "fvcore", "ptflops")
COUNTING_CONVENTION = (
    "MACs = multiply-accumulates of convolutions and matrix products (Linear layers); "
    "FLOPs = 2 x MACs, as torch.utils.flop_counter.FlopCounterMode counts them. "
    "Not counted: biases, BatchNorm, activations, pooling, additions and concatenation."
)
MEMORY_CONVENTION = (
    "Parameter memory: bytes of all parameters. Activation memory: the sum of every leaf "
    "layer's output tensor bytes at this batch size, not what training keeps (show --memory "
    "and cnnshape memory predict that)."
)

FIELD_NOTE = (
    "Fields are theoretical (padding included, largest over all paths) and may exceed the input."
)
FIELD_CONVENTION = (
    "RF: receptive field, the input positions (per spatial axis: HxW for an image) one "
    "output position can depend on; Jump: input positions between neighbouring outputs. "
    + FIELD_NOTE
    + " Global pooling spans "
    "the whole input; the model's field is its last layer's before global pooling."
)


def flops_to_macs(flops: int) -> int:
    """Every counted op is a multiply-accumulate counted as 2 FLOPs (FlopCounterMode's rule)."""
    return flops // 2


Shape = list[int]


@dataclass
class Edge:
    """A tensor a node takes: the node (or input) that gives it, and its shape."""

    source: str  # a node's id ("n3") or an input's ("input:0", "input:ids")
    shape: Shape


@dataclass
class Row:
    """One call of one module, or one functional op (--ops), during the forward pass."""

    name: str  # qualified name in the model, e.g. "3.1.p2_2"; an op: "3.1.cat"
    type: str  # class name, e.g. "Conv2d"; an op's name, e.g. "cat"
    depth: int  # 1 for the model's direct children
    output_shape: Shape | None  # None when the output is not a single tensor
    params: int  # parameters of this module and everything inside it
    flops: int  # FLOPs of everything executed inside this call
    kernel_size: list[int] | None = None
    stride: list[int] | None = None
    padding: list[int] | str | None = None
    receptive_field: list[int] | None = None  # per spatial axis, height first (cnnshape.fields)
    jump: list[int] | None = None  # input positions between neighbouring outputs, per axis
    time_ms: float | None = None  # measured (--time): median of the repeats
    time_iqr_ms: float | None = None  # measured: interquartile range
    saved_bytes: int | None = None  # predicted (--memory): kept by this call for backward
    kind: str = "module"  # or "op": a functional op (cat, add, relu) on the path
    id: str = ""  # the node's id in the graph, stable between runs: "n0", "n1", ...
    inputs: list[Edge] = field(default_factory=list)  # the flow tensors it takes
    output_shapes: list[Shape] | None = None  # every output tensor's, when it gives several

    @property
    def macs(self) -> int:
        return flops_to_macs(self.flops)

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Row:
        """The inverse of ``dataclasses.asdict`` (the cache's)."""
        return cls(**{**fields, "inputs": [Edge(**e) for e in fields["inputs"]]})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        flops = data.pop("flops")
        data.update(macs=self.macs, flops=flops)  # keep MACs next to FLOPs, as in the table
        for key in (
            "kernel_size",
            "stride",
            "padding",
            "receptive_field",
            "jump",
            "time_ms",
            "time_iqr_ms",
            "saved_bytes",
            "kind",
            "id",
            "inputs",
            "output_shapes",
        ):
            data[key] = data.pop(key)
        return data


@dataclass(repr=False)
class Report:
    """What ``walk`` returns: the rows shown at the chosen depth and the model's totals."""

    model: str
    input_shape: Shape
    depth: int
    rows: list[Row]
    total_params: int
    trainable_params: int
    total_flops: int
    param_bytes: int
    activation_bytes: int
    num_weight_layers: int  # Conv and Linear modules executed (VGG-11 has 11)
    output_shape: Shape | None
    # The model's receptive field: the largest field before global pooling (cnnshape.fields).
    receptive_field: list[int] | None = None
    jump: list[int] | None = None
    timing: Timing | None = None  # measured, with --time
    step_memory: StepMemory | None = None  # a training step's predicted memory, with --memory
    # Every input ({"name", "shape", "dtype", "id"}) and output tensor ({"path": 'out[0]',
    # "shape", "dtype", "source": the node that gives it}).
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    ops_shown: bool = False  # the rows include functional ops (--ops)
    # Why the walk ran on real tensors instead of meta ones (None: it did not).
    fallback: str | None = None
    convention: str = "torch"  # how MACs are counted (inspect.conventions)
    # Ops that computed but that the convention has no formula for: name -> calls. Any at
    # all make the totals partial.
    uncounted: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.uncounted

    @property
    def total_macs(self) -> int:
        return flops_to_macs(self.total_flops)

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Report:
        """The inverse of ``dataclasses.asdict`` for a report without timing (the cache's)."""
        if fields.get("timing") is not None or fields.get("step_memory") is not None:
            raise ValueError("a measured or --memory report is not rebuilt from plain fields")
        return cls(**{**fields, "rows": [Row.from_fields(row) for row in fields["rows"]]})

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": self.input_shape,
            "output_shape": self.output_shape,
            "depth": self.depth,
            "layers": [row.to_dict() for row in self.rows],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
            "param_bytes": self.param_bytes,
            "activation_bytes": self.activation_bytes,
            "receptive_field": self.receptive_field,
            "jump": self.jump,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "ops_shown": self.ops_shown,
            "fallback": self.fallback,
            "convention": self.convention,
            "complete": self.complete,
            "uncounted": self.uncounted,
            "timing": self.timing.to_dict() if self.timing else None,
            "train_step": self.step_memory.to_dict() if self.step_memory else None,
        }

    def __repr__(self) -> str:
        # Short, as a value's repr should be: print(report) or a notebook shows the table.
        return (
            f"Report(model={self.model!r}, input_shape={self.input_shape}, "
            f"output_shape={self.output_shape}, rows={len(self.rows)}, "
            f"total_params={self.total_params}, total_flops={self.total_flops})"
        )

    # Display: the same rich table in a terminal (rich), in Jupyter and from print().
    def __rich__(self):
        from .render import report_renderable

        return report_renderable(self)

    def __str__(self) -> str:
        from .render import to_text

        return to_text(self)

    def _repr_html_(self) -> str:
        from .render import to_html

        return to_html(self)


# ---- the size scan ----------------------------------------------------------------------------

DEFAULT_UP_TO = 1024  # the largest square size `cnnshape sizes` checks unless told


@dataclass
class SizeRange:
    """Consecutive sizes lo..hi: accepted (no layer), or refused first by ``layer``."""

    lo: int
    hi: int
    layer: str | None = None
    reason: str = ""


@dataclass
class SizeScan:
    model: str
    in_channels: int
    checked_up_to: int
    valid: list[tuple[int, int]]
    invalid: list[SizeRange] = field(default_factory=list)
    pattern: str = "1x1xSxS"  # the scanned input: 1x3xSxS (an image), 1x1xS (a waveform)

    @property
    def what(self) -> str:
        """What one size is: a square input's side, a waveform's length, ..."""
        axes = self.pattern.count("xS")
        return {1: "inputs of length", 2: "square inputs of size"}.get(
            axes, f"inputs {self.pattern} of size S ="
        )

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> SizeScan:
        """The inverse of ``dataclasses.asdict`` (the cache's)."""
        return cls(
            **{
                **fields,
                "valid": [tuple(r) for r in fields["valid"]],
                "invalid": [SizeRange(**r) for r in fields["invalid"]],
            }
        )

    def ranges(self) -> list[SizeRange]:
        """Accepted and refused ranges together, in size order."""
        accepted = [SizeRange(lo, hi) for lo, hi in self.valid]
        return sorted(accepted + self.invalid, key=lambda r: r.lo)

    def accepts(self, size: int) -> bool:
        return any(lo <= size <= hi for lo, hi in self.valid)

    def describe_valid(self) -> str:
        """'193-224 (checked up to 1024)', or 'none up to 1024'."""
        if not self.valid:
            return f"none up to {self.checked_up_to}"
        ranges = ", ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in self.valid)
        return f"{ranges} (checked up to {self.checked_up_to})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "in_channels": self.in_channels,
            "input": self.pattern,
            "valid": [[lo, hi] for lo, hi in self.valid],
            "checked_up_to": self.checked_up_to,
            "invalid": [vars(r) for r in self.invalid],
        }

"""Plain data that comes out of a walk: one Row per layer call, totals, and the column list.

The counting convention is defined here once and quoted by every renderer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .timing import Timing

COUNTING_CONVENTION = (
    "MACs = multiply-accumulates of convolutions and matrix products (Linear layers); "
    "FLOPs = 2 x MACs, as torch.utils.flop_counter.FlopCounterMode counts them. "
    "Not counted: biases, BatchNorm, activations, pooling, additions and concatenation."
)
MEMORY_CONVENTION = (
    "Parameter memory: bytes of all parameters. Activation memory: bytes of every leaf "
    "layer's output for one forward pass at this batch size (roughly what training keeps "
    "for the backward pass)."
)

FIELD_NOTE = ("Fields are theoretical (padding included, largest over all paths) and may exceed "
              "the input.")
FIELD_CONVENTION = (
    "RF: receptive field, the input positions (HxW) one output position can depend on; Jump: "
    "input positions between neighbouring outputs. " + FIELD_NOTE + " Global pooling spans "
    "the whole input; the model's field is its last layer's before global pooling."
)


def flops_to_macs(flops: int) -> int:
    """Every counted op is a multiply-accumulate counted as 2 FLOPs (FlopCounterMode's rule)."""
    return flops // 2


Shape = list[int]


@dataclass
class Row:
    """One call of one module during the forward pass."""

    name: str  # qualified name in the model, e.g. "3.1.p2_2"
    type: str  # class name, e.g. "Conv2d"
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

    @property
    def macs(self) -> int:
        return flops_to_macs(self.flops)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        flops = data.pop("flops")
        data.update(macs=self.macs, flops=flops)  # keep MACs next to FLOPs, as in the table
        for key in ("kernel_size", "stride", "padding", "receptive_field", "jump", "time_ms",
                    "time_iqr_ms"):
            data[key] = data.pop(key)
        return data


@dataclass(frozen=True)
class Column:
    key: str  # key in Row.to_dict()
    header: str
    numeric: bool = False
    option: str | None = None  # shown only with that option: "rf" or "time"


# The order every format shows. Adding a column: a field on Row and an entry here.
COLUMNS: tuple[Column, ...] = (
    Column("name", "Layer"),
    Column("type", "Type"),
    Column("output_shape", "Output shape"),
    Column("kernel_size", "Kernel"),
    Column("stride", "Stride"),
    Column("padding", "Padding"),
    Column("params", "Params", numeric=True),
    Column("macs", "MACs", numeric=True),
    Column("flops", "FLOPs", numeric=True),
    Column("receptive_field", "RF", option="rf"),
    Column("jump", "Jump", option="rf"),
    Column("time_ms", "Time (ms)", numeric=True, option="time"),
    Column("time_iqr_ms", "IQR (ms)", numeric=True, option="time"),
)


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

    @property
    def total_macs(self) -> int:
        return flops_to_macs(self.total_flops)

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
            "timing": self.timing.to_dict() if self.timing else None,
        }

    # Display: the same rich table in a terminal, in Jupyter and from print().
    def __rich__(self):
        from .render import report_renderable

        return report_renderable(self)

    def __str__(self) -> str:
        from .render import to_text

        return to_text(self)

    __repr__ = __str__  # a REPL shows the table, not a dataclass dump

    def _repr_html_(self) -> str:
        from .render import to_html

        return to_html(self)

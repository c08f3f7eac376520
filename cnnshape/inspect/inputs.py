"""What a model is walked with: one `InputSpec` per argument of its forward, plain data.

``--input [NAME=]DIMS[:DTYPE]`` (repeatable) says it on the command line: ``1x1x16000``
(a waveform), ``2x3x16x112x112:float32`` (a video clip), ``ids=1x128:int64`` (a keyword
argument of token ids). Positional inputs come in order; ``NAME=`` passes a keyword. The
``--size``/``--batch``/``--in-channels`` options stay the shorthand for one image.

No torch here: a cached answer is found without importing it, so a dtype is checked against
the names below (a test keeps them equal to torch's).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CnnshapeError

# torch.<name> for every dtype an input may have (aliases included: float is float32).
DTYPES = {
    "float32": "float32",
    "float": "float32",
    "float64": "float64",
    "double": "float64",
    "float16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "complex64": "complex64",
    "cfloat": "complex64",
    "complex128": "complex128",
    "cdouble": "complex128",
    "uint8": "uint8",
    "int8": "int8",
    "int16": "int16",
    "short": "int16",
    "int32": "int32",
    "int": "int32",
    "int64": "int64",
    "long": "int64",
    "bool": "bool",
}
_LARGEST_TENSOR = 2**63 - 1  # sizes and element counts are int64 in PyTorch
_SPEC = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_]\w*)\s*=)?\s*(?P<dims>[^:=]*?)\s*(?::\s*(?P<dtype>\w*))?\s*"
)
_DIMS = re.compile(r"\d{1,19}(?:\s*[xX*,]\s*\d{1,19})*")


@dataclass(frozen=True)
class InputSpec:
    """One input: its shape, its dtype (a torch dtype's name; None: the model's floating
    dtype, float32 for most), and the keyword it is passed by (None: positional)."""

    shape: tuple[int, ...]
    dtype: str | None = None
    name: str | None = None
    count: int | None = None  # a list of this many such tensors (a detector's images)

    def describe(self) -> str:
        """``ids=1x128:int64``, as --input spells it; a list of two images: ``2 x 3x800x800``."""
        text = "x".join(map(str, self.shape)) + (f":{self.dtype}" if self.dtype else "")
        text = f"{self.count} x {text}" if self.count is not None else text
        return f"{self.name}={text}" if self.name else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "count": self.count,
        }


def parse_input(text: str) -> InputSpec:
    """'ids=1x128:int64' -> InputSpec((1, 128), 'int64', 'ids'); errors say what to write."""
    shown = text if len(text) <= 60 else f"{text[:40]}...{text[-10:]}"
    match = _SPEC.fullmatch(text)
    if not match or not match["dims"]:
        raise CnnshapeError(
            f"{shown!r} is not an input.",
            "Give [NAME=]DIMS[:DTYPE]: 1x3x224x224, 1x1x16000, ids=1x128:int64.",
        )
    if not _DIMS.fullmatch(match["dims"]):
        raise CnnshapeError(
            f"{shown!r}: {match['dims']!r} is not a shape.",
            "Give its sizes separated by x: 1x3x224x224.",
        )
    shape = tuple(int(d) for d in re.split(r"\s*[xX*,]\s*", match["dims"]))
    dtype = match["dtype"]
    if dtype is not None and dtype not in DTYPES:
        raise CnnshapeError(
            f"{shown!r}: {dtype!r} is not a dtype.",
            f"Give a torch dtype's name: {', '.join(sorted(set(DTYPES.values())))}.",
        )
    return check(InputSpec(shape, DTYPES[dtype] if dtype else None, match["name"]))


def check(spec: InputSpec) -> InputSpec:
    """A shape of sizes >= 1 that a PyTorch tensor can hold."""
    if not spec.shape or any(d < 1 for d in spec.shape):
        raise CnnshapeError(
            f"Input {spec.describe()}: every size must be at least 1.",
            "Give a shape such as 1x3x224x224.",
        )
    if math.prod(spec.shape) > _LARGEST_TENSOR:
        raise CnnshapeError(
            f"An input of shape {'x'.join(map(str, spec.shape))} has "
            f"{math.prod(spec.shape):.3g} elements, more than a PyTorch tensor can hold "
            "(2^63 - 1).",
            "Give a smaller input.",
        )
    return spec


def check_names(specs: Sequence[InputSpec]) -> list[InputSpec]:
    """Positional inputs first, then keywords, each keyword once."""
    names = [s.name for s in specs if s.name]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CnnshapeError(f"--input {repeated[0]}= is given more than once.")
    seen_keyword = False
    for spec in specs:
        if spec.name:
            seen_keyword = True
        elif seen_keyword:
            raise CnnshapeError(
                f"The positional input {spec.describe()} comes after a keyword input.",
                "Give positional inputs first, in the order forward takes them.",
            )
    return list(specs)


def image(batch: int, channels: int, height: int, width: int) -> list[InputSpec]:
    """The shorthand: one float image batch (--size, --batch, --in-channels)."""
    return [check(InputSpec((batch, channels, height, width)))]


def as_specs(inputs: Any) -> list[InputSpec]:
    """What the Python API accepts, as specs: a shape ``(1, 3, 224, 224)``, a list of shapes
    (one per positional input), InputSpecs, tensors (their shape and dtype; their values are
    not used), or a mix of shapes, specs and tensors."""
    if isinstance(inputs, InputSpec) or _is_shape(inputs) or _is_tensor(inputs):
        inputs = [inputs]
    return check_names([_as_spec(item) for item in inputs])


def _as_spec(item: Any) -> InputSpec:
    if isinstance(item, InputSpec):
        return check(item)
    if _is_tensor(item):
        return check(InputSpec(tuple(item.shape), str(item.dtype).removeprefix("torch.")))
    if _is_shape(item):
        return check(InputSpec(tuple(int(d) for d in item)))
    raise CnnshapeError(
        f"{item!r} is not an input.",
        "Give a shape (1, 3, 224, 224), a list of shapes, InputSpecs or tensors.",
    )


def _is_shape(item: Any) -> bool:
    return isinstance(item, (tuple, list)) and all(
        isinstance(d, int) and not isinstance(d, bool) for d in item
    )


def _is_tensor(item: Any) -> bool:
    return type(item).__module__.startswith("torch") and hasattr(item, "dtype")

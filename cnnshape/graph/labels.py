"""Words for people on the nodes and edges: "3x3 conv, 128, /2", "256 x 12 x 12",
"163.7 K params, 23.5 M MACs". Shapes drop the batch axis (every tensor has it)."""

from __future__ import annotations

from .model import Group, Node

_SCALES = (("G", 1e9), ("M", 1e6), ("K", 1e3))


def short(n: float) -> str:
    """163696 -> '163.7 K'; a figure to read on a node, not to copy (the JSON has it exact)."""
    for prefix, scale in _SCALES:
        if abs(n) >= scale:
            return f"{n / scale:.1f} {prefix}"
    return f"{n:g}"


def shape_text(shape: list[int] | None) -> str:
    """[1, 256, 12, 12] -> '256 x 12 x 12' (no batch axis); a 1-D [1, 10] -> '10'."""
    if not shape:
        return ""
    return " x ".join(str(d) for d in (shape[1:] or shape))


def _window(values) -> str:
    return "x".join(str(v) for v in values) if isinstance(values, list) else str(values)


def title(node: Node) -> str:
    """What the block is, as a figure in the book says it."""
    row = node.row
    kind = node.type
    if row is not None and row.kernel_size is not None and kind.startswith("Conv"):
        channels = (node.output_shape or [0, 0])[1]
        text = f"{_window(row.kernel_size)} conv, {channels}"
    elif row is not None and row.kernel_size is not None and "Pool" in kind:
        flavour = "max" if "Max" in kind else "avg"
        text = f"{_window(row.kernel_size)} {flavour} pool"
    elif kind == "Linear" and node.output_shape:
        text = f"fc, {node.output_shape[-1]}"
    else:
        text = kind
    stride = row.stride if row is not None else None
    if isinstance(stride, list) and any(s > 1 for s in stride):
        text += f", /{_window(sorted(set(stride)))}"
    return text + (f" x {node.count}" if node.count > 1 else "")


def figures(params: int, macs: int, count: int = 1) -> str:
    """'163.7 K params, 23.5 M MACs', without the zero ones; a folded run says 'each'."""
    parts = [f"{short(v // count)} {unit}" for v, unit in ((params, "params"), (macs, "MACs")) if v]
    return ", ".join(parts) + (" each" if parts and count > 1 else "")


def node_label(node: Node, rf: bool = False) -> str:
    if node.kind == "failed":
        return f"{node.type} ({node.name}) refuses its input:\n{wrap(node.reason or '')}"
    if node.kind in ("input", "output"):
        return f"{node.name}\n{shape_text(node.output_shape)}"
    lines = [
        title(node),
        shape_text(node.output_shape),
        figures(node.params, node.macs, node.count),
    ]
    field = node.row.receptive_field if node.row is not None and rf else None
    if field:
        lines.append(f"RF {_window(field)}")
    return "\n".join(line for line in lines if line)


def group_label(group: Group) -> str:
    text = f"{group.type} {group.name}"
    numbers = figures(group.params, group.macs)
    return f"{text}: {numbers}" if numbers else text


def tooltip(node: Node) -> str:
    """Every figure of a node, one per line (the HTML page's and the SVG's tooltip)."""
    row = node.row
    lines = [f"{node.name} ({node.type})"]
    if node.count > 1:
        lines.append(f"{node.count} identical blocks folded")
    if node.output_shape:
        lines.append(f"output: {node.output_shape}")
    lines += [f"params: {node.params:,}", f"MACs: {node.macs:,}"]
    if row is not None:
        for key in ("kernel_size", "stride", "padding", "receptive_field", "jump"):
            value = getattr(row, key)
            if value is not None:
                lines.append(f"{key.replace('_', ' ')}: {value}")
    if node.reason:
        lines.append(f"refused: {node.reason}")
    return "\n".join(lines)


def wrap(text: str, width: int = 36) -> str:
    """A long reason on several lines, so the failed node stays narrow."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])

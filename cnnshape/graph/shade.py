"""--shade macs|params|memory: a node's fill from white to dark orange by its figure, on a
log scale (a Linear with 5 K MACs and a conv with 60 M both stay readable), with a legend."""

from __future__ import annotations

import math

from .model import Graph, Node, memory_bytes

SHADES = ("macs", "params", "memory")
# ColorBrewer's "Oranges", light to dark: text stays black on the first five.
PALETTE = ("#fff5eb", "#fee6ce", "#fdd0a2", "#fdae6b", "#fd8d3c", "#f16913", "#d94801", "#8c2d04")
UNITS = {"macs": "MACs", "params": "params", "memory": "output bytes"}


def value(node: Node, by: str) -> int:
    if by == "memory":
        return memory_bytes(node)
    return node.params if by == "params" else node.macs


def colours(graph: Graph, by: str) -> dict[str, str]:
    """Node id -> fill colour for the nodes that compute (modules, ops, the folded runs)."""
    values = {n.id: value(n, by) for n in graph.nodes if n.kind in ("module", "op")}
    top = max(values.values(), default=0)
    return {node_id: PALETTE[_step(v, top)] for node_id, v in values.items()}


def _step(v: int, top: int) -> int:
    if v <= 0 or top <= 0:
        return 0
    last = len(PALETTE) - 1
    return max(1, min(last, round(last * math.log1p(v) / math.log1p(top))))


def legend(graph: Graph, by: str) -> list[tuple[str, str]]:
    """(colour, the figure where that colour starts) for each step, 0 first."""
    values = [value(n, by) for n in graph.nodes if n.kind in ("module", "op")]
    top = max(values, default=0)
    last = len(PALETTE) - 1
    steps = [(PALETTE[0], "0")]
    for step in range(1, last + 1):
        start = math.expm1(math.log1p(top) * (step - 0.5) / last) if top else 0
        steps.append((PALETTE[step], _short(start)))
    return steps


def _short(n: float) -> str:
    from .labels import short

    return short(round(n))

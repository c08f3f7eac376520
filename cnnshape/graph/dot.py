"""The graph as Graphviz DOT text: what `-o FILE.dot` writes and what the layout engine
reads for SVG, PNG and HTML. Nodes are written in execution order with ``ordering=out``, so
dot keeps parallel branches left to right in the order ``forward`` runs them (Inception's
four paths as in the book)."""

from __future__ import annotations

from . import labels, shade
from .model import Graph, Group, Node, members

# Above this many edges the shapes go in each edge's tooltip instead of a label: edge labels
# are virtual nodes to dot, and doubling a thousand-edge graph costs minutes, not seconds.
LABELLED_EDGES_UP_TO = 400

# A graph this large gets dot's quick settings: fewer network-simplex and crossing-reduction
# passes. They cost a little tidiness and save most of the time (benchmarks/graph_cost.py:
# DenseNet-121 with every op, 431 nodes and 967 edges, in seconds instead of over a minute).
LARGE = 300
QUICK = "nslimit=2, nslimit1=2, mclimit=0.3, searchsize=10, "

STYLE = {
    "module": 'fillcolor="#eef3fb"',
    "op": 'shape=ellipse, fillcolor="#f4f4f4", fontsize=9',
    "input": 'shape=box, style="filled", fillcolor="#dfeedd"',
    "output": 'shape=box, style="filled", fillcolor="#dfeedd"',
    "failed": 'fillcolor="#ffd6d6", color="#c00000", penwidth=2, fontcolor="#800000"',
}


def quote(text: str) -> str:
    """A DOT string: quotes and backslashes escaped, each line centred (\\n)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n") + '"'


def to_dot(graph: Graph, by: str | None = None, prefix: str = "") -> str:
    """``by``: shade by macs, params or memory (with a legend); ``prefix``: put before every
    SVG id, so several drawings can live in one HTML page."""
    fills = shade.colours(graph, by) if by else {}
    lines = [f"digraph {quote(graph.model)} {{", *_defaults(graph, by)]
    children = members(graph)
    lines += _members(None, children, fills, prefix, "  ", graph.show_rf)
    labelled = len(graph.edges) <= LABELLED_EDGES_UP_TO
    for edge in graph.edges:
        text = labels.shape_text(edge.shape)
        attr = f"label={quote(text)}" if labelled else f"tooltip={quote(text)}"
        lines.append(f"  {quote(edge.source)} -> {quote(edge.target)} [{attr}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _defaults(graph: Graph, by: str | None) -> list[str]:
    title = f"{graph.model}: {labels.figures(graph.total_params, graph.total_macs)}"
    if graph.failure:
        title += "\n(stopped where a layer refused the input)"
    legend = f", label=<{_legend(graph, by)}>, labelloc=b" if by else ""
    return [
        f"  graph [{QUICK if len(graph.nodes) > LARGE else ''}"
        "rankdir=TB, ordering=out, newrank=true, nodesep=0.3, ranksep=0.35, "
        f'fontname="Helvetica", fontsize=11, tooltip={quote(title)}{legend}];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
        'margin="0.12,0.05", color="#5a6b86"];',
        '  edge [fontname="Helvetica", fontsize=8, color="#555555", fontcolor="#444444", '
        "arrowsize=0.6];",
    ]


def _members(parent, children, fills, prefix, indent, rf) -> list[str]:
    lines = []
    for member in children.get(parent, []):
        if isinstance(member, Group):
            lines += _group(member, children, fills, prefix, indent, rf)
        else:
            lines.append(indent + _node(member, fills, prefix, rf))
    return lines


def _group(group: Group, children, fills, prefix, indent, rf) -> list[str]:
    tone = "#fbfbfd" if group.depth % 2 else "#f3f5fa"
    figures = f"{group.name} ({group.type}): {group.params:,} params, {group.macs:,} MACs"
    head = [
        f"{indent}subgraph {quote('cluster_' + group.id)} {{",
        f'{indent}  id={quote(prefix + group.id)}; class="block";',
        f"{indent}  label={quote(labels.group_label(group))}; tooltip={quote(figures)};",
        f'{indent}  style="rounded,filled"; fillcolor="{tone}"; color="#9aa6bd";',
        f"{indent}  labelloc=t; labeljust=l; fontsize=10;",
    ]
    return head + _members(group.id, children, fills, prefix, indent + "  ", rf) + [f"{indent}}}"]


def _node(node: Node, fills: dict[str, str], prefix: str, rf: bool) -> str:
    attrs = [
        f"id={quote(prefix + node.id)}",
        f"class={quote(node.kind)}",
        f"label={quote(labels.node_label(node, rf))}",
        f"tooltip={quote(labels.tooltip(node))}",
        STYLE[node.kind],
    ]
    if node.id in fills:
        dark = shade.PALETTE.index(fills[node.id]) > 5  # white text on the two darkest
        attrs.append(f'fillcolor="{fills[node.id]}"' + (', fontcolor="white"' if dark else ""))
    return f"{quote(node.id)} [{', '.join(attrs)}];"


def _legend(graph: Graph, by: str) -> str:
    """An HTML-like table under the drawing: one cell per colour step, its lower bound."""
    cells = "".join(
        f'<TD BGCOLOR="{colour}"><FONT COLOR="{"white" if i > 5 else "black"}">{start}</FONT></TD>'
        for i, (colour, start) in enumerate(shade.legend(graph, by))
    )
    return (
        f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3"><TR>'
        f"<TD>{shade.UNITS[by]} (log scale), from</TD>{cells}</TR></TABLE>"
    )

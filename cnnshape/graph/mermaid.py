"""The graph as a Mermaid flowchart (`-o FILE.mmd`): GitHub and many editors draw it.
Blocks opened become subgraphs; edges carry the tensor shapes."""

from __future__ import annotations

import re

from . import labels
from .model import Graph, Group, members


def ident(node_id: str) -> str:
    """Mermaid ids are plain words: 'input:0' -> 'input_0'."""
    return re.sub(r"\W", "_", node_id)


def text(value: str) -> str:
    """A quoted Mermaid label: quotes as entities, lines as <br/>."""
    return '"' + value.replace('"', "#quot;").replace("\n", "<br/>") + '"'


def to_mermaid(graph: Graph) -> str:
    children = members(graph)
    lines = ["flowchart TB", *_members(None, children, "  ")]
    for edge in graph.edges:
        shape = labels.shape_text(edge.shape)
        arrow = f"-->|{text(shape)}|" if shape else "-->"
        lines.append(f"  {ident(edge.source)} {arrow} {ident(edge.target)}")
    if any(n.kind == "failed" for n in graph.nodes):
        lines.append("  classDef failed fill:#ffd6d6,stroke:#c00000,stroke-width:2px")
        lines.append("  class failed failed")
    return "\n".join(lines) + "\n"


def _members(parent, children, indent) -> list[str]:
    lines = []
    for member in children.get(parent, []):
        if isinstance(member, Group):
            lines.append(
                f"{indent}subgraph {ident(member.id)} [{text(labels.group_label(member))}]"
            )
            lines += _members(member.id, children, indent + "  ")
            lines.append(f"{indent}end")
        else:
            lines.append(f"{indent}{ident(member.id)}[{text(labels.node_label(member))}]")
    return lines

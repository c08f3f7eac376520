"""The graph as JSON (`-o FILE.json`): nodes with exact figures, edges with shapes, the
opened blocks. Ids are the walk's ("n12"), the same in every run."""

from __future__ import annotations

import json

from . import labels
from .model import Graph


def to_document(graph: Graph) -> dict:
    return {
        "model": graph.model,
        "depth": graph.depth,
        "total_params": graph.total_params,
        "total_macs": graph.total_macs,
        "failure": graph.failure,
        "nodes": [
            {
                "id": n.id,
                "name": n.name,
                "type": n.type,
                "kind": n.kind,
                "params": n.params,
                "macs": n.macs,
                "output_shape": n.output_shape,
                "group": n.group,
                "count": n.count,
                "label": labels.node_label(n, graph.show_rf),
                **({"reason": n.reason} if n.reason else {}),
            }
            for n in graph.nodes
        ],
        "edges": [{"source": e.source, "target": e.target, "shape": e.shape} for e in graph.edges],
        "groups": [
            {
                "id": g.id,
                "name": g.name,
                "type": g.type,
                "params": g.params,
                "macs": g.macs,
                "output_shape": g.output_shape,
                "parent": g.parent,
            }
            for g in graph.groups
        ],
    }


def to_json(graph: Graph) -> str:
    return json.dumps(to_document(graph), indent=1) + "\n"

"""The graph of a Report: its leaf rows are the nodes, the blocks around them nested groups,
and every row's ``inputs`` the edges (they name the deepest row shown, so a leaf's edges are
the whole dataflow at that depth)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..inspect.report import Edge as RowEdge
from ..inspect.report import Report, Row

Shape = list[int]


@dataclass
class Node:
    id: str  # the Row's id ("n12"), "input:0", "output:out", or "failed"
    name: str
    type: str
    kind: str  # module, op, input, output, failed
    params: int = 0
    macs: int = 0
    output_shape: Shape | None = None
    group: str | None = None  # the id of the block around it, None at the top
    row: Row | None = None
    count: int = 1  # > 1: that many identical consecutive blocks folded into this one
    reason: str | None = None  # kind "failed": why the layer refused its input


@dataclass
class Edge:
    source: str
    target: str
    shape: Shape | None


@dataclass
class Group:
    """A block shown opened (a container row with rows under it): a box around its nodes."""

    id: str
    name: str
    type: str
    params: int
    macs: int
    output_shape: Shape | None
    parent: str | None
    depth: int


@dataclass
class Graph:
    model: str
    depth: int
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    total_params: int = 0
    total_macs: int = 0
    failure: str | None = None  # the walk's error message, when a layer refused the input
    show_rf: bool = False  # labels add receptive fields (--rf)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def _parent_of(row: Row, containers: dict[str, Row]) -> str | None:
    """The id of the innermost shown block whose qualified name is a prefix of ``row``'s."""
    parts = row.name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        found = containers.get(".".join(parts[:cut]))
        if found is not None:
            return found.id
    return None


def _containers(rows: list[Row]) -> dict[str, Row]:
    """Rows with a deeper row inside them, by name (a block opened at this depth)."""
    names = {r.name for r in rows if r.kind == "module"}
    opened = set()
    for row in rows:
        parts = row.name.split(".")
        opened |= {".".join(parts[:cut]) for cut in range(1, len(parts))} & names
    return {r.name: r for r in rows if r.kind == "module" and r.name in opened}


def at_depth(report: Report, depth: int, ops: bool = True) -> list[Row]:
    """The rows ``show --depth depth [--ops]`` would give, from a report walked at least that
    deep with its ops: a deeper row stands for the block around it, and an op not shown for
    where its own inputs come from, as the walk itself words it (the HTML page's views)."""
    sources, hidden = _resolver(report, depth, ops)
    shown = []
    for row in report.rows:
        if row.depth <= depth and row.id not in hidden:
            found = [(s, t) for e in row.inputs for s, t in sources(e.source, e.shape)]
            # one edge per giver and shape, as the walk gives them (DenseNet's cat of four
            # tensors of one closed block is one edge from that block)
            unique = [f for i, f in enumerate(found) if f not in found[:i]]
            edges = [RowEdge(source, shape) for source, shape in unique]
            shown.append(Row(**{**vars(row), "inputs": edges}))
    return shown


def _resolver(report: Report, depth: int, ops: bool):
    """edge -> the edges it stands for at ``depth``, and the ops hidden there by id."""
    by_name = {r.name: r.id for r in report.rows if r.kind == "module" and r.depth <= depth}
    hidden = {r.id: r for r in report.rows if r.kind == "op" and r.depth <= depth and not ops}
    stand_in = {r.id: _ancestor(r.name, by_name) for r in report.rows if r.depth > depth}
    stand_in = {row: block for row, block in stand_in.items() if block is not None}

    def sources(source: str, shape) -> list[tuple[str, Shape]]:
        if source in stand_in:
            return [(stand_in[source], shape)]
        if source in hidden:
            # the tensor the consumer takes is the op's output, whoever fed the op
            inner = hidden[source].inputs
            return [(giver, shape) for e in inner for giver, _ in sources(e.source, e.shape)]
        return [(source, shape)]

    return sources, hidden


def _ancestor(name: str, shown: dict[str, str]) -> str | None:
    """The id of the innermost shown module around ``name``. By name, not by depth: a
    ModuleList that is never called (DenseNet's ``1.net``) adds a name part but no depth."""
    parts = name.split(".")
    prefixes = (".".join(parts[:cut]) for cut in range(len(parts) - 1, 0, -1))
    return next((shown[prefix] for prefix in prefixes if prefix in shown), None)


def build(report: Report, depth: int | None = None, failure=None, ops: bool | None = None) -> Graph:
    """The graph at ``depth`` (default: the report's), with or without the ops (default: as
    walked). ``failure``: the WalkError whose ``partial`` is ``report``; its layer becomes a
    marked node after the last row it got."""
    depth = depth or report.depth
    ops = report.ops_shown if ops is None else ops
    graph = Graph(report.model, depth, total_params=report.total_params)
    graph.total_macs = report.total_macs
    for spec in report.inputs:
        label = spec.get("name") or f"input {spec['id'].split(':')[1]}"
        graph.nodes.append(Node(spec["id"], label, "input", "input", output_shape=spec["shape"]))
    _add_rows(graph, at_depth(report, depth, ops))
    sources, _ = _resolver(report, depth, ops)
    for out in report.outputs:
        target = f"output:{out['path']}"
        graph.nodes.append(Node(target, out["path"], "output", "output", output_shape=out["shape"]))
        givers = sources(out["source"], out["shape"]) if out["source"] else []
        graph.edges += [Edge(source, target, out["shape"]) for source, _ in givers]
    if failure is not None:
        _mark_failure(graph, failure)
    return graph


def _add_rows(graph: Graph, rows: list[Row]) -> None:
    """Opened blocks become groups; every other row a node, with the edges into it."""
    containers = _containers(rows)
    for row in rows:
        parent = _parent_of(row, containers)
        figures = {"params": row.params, "macs": row.macs, "output_shape": row.output_shape}
        if row.name in containers and row.kind == "module":
            graph.groups.append(
                Group(row.id, row.name, row.type, **figures, parent=parent, depth=row.depth)
            )
            continue
        graph.nodes.append(
            Node(row.id, row.name, row.type, row.kind, **figures, group=parent, row=row)
        )
        graph.edges += [Edge(e.source, row.id, e.shape) for e in row.inputs]
    _redirect_to_leaves(graph, {r.id for r in containers.values()})


def _redirect_to_leaves(graph: Graph, group_ids: set[str]) -> None:
    """An edge from an opened block (rare: the walk names the deepest row) leaves from the
    block's last node instead: a group is a box, not a point an arrow can start from."""
    if not any(e.source in group_ids for e in graph.edges):
        return
    last = {}
    for node in graph.nodes:
        group = node.group
        while group is not None:
            last[group] = node.id
            group = next((g.parent for g in graph.groups if g.id == group), None)
    for edge in graph.edges:
        edge.source = last.get(edge.source, edge.source)


def _mark_failure(graph: Graph, error) -> None:
    """The layer that refused: a node with the walk's reason, fed by the last node that
    gave the shape it received."""
    received = error.input_shape
    givers = [n for n in graph.nodes if n.kind in ("module", "op", "input")]
    source = next((n for n in reversed(givers) if n.output_shape == received), None)
    source = source or (givers[-1] if givers else None)
    graph.nodes.append(
        Node(
            "failed",
            error.layer or "?",
            error.layer_type or "layer",
            "failed",
            output_shape=None,
            group=source.group if source is not None else None,
            reason=error.reason,
        )
    )
    if source is not None:
        graph.edges.append(Edge(source.id, "failed", received))
    graph.failure = error.message


def fold(graph: Graph) -> Graph:
    """Runs of identical consecutive blocks (same type, figures and shapes, one chain, in the
    same group) become one node "x N" whose figures are the run's sums: totals stay."""
    into, out = _degrees(graph)
    merged: dict[str, str] = {}
    kept: list[Node] = []
    for node in graph.nodes:
        prev = kept[-1] if kept else None
        if prev is not None and _same_block(prev, node, into, out, merged):
            merged[node.id] = prev.id
            prev.count += 1
            prev.params += node.params
            prev.macs += node.macs
            continue
        kept.append(Node(**vars(node)))
    edges = []
    for edge in graph.edges:
        source, target = merged.get(edge.source, edge.source), merged.get(edge.target, edge.target)
        if source != target:
            edges.append(Edge(source, target, edge.shape))
    return Graph(**{**vars(graph), "nodes": kept, "edges": edges})


def _degrees(graph: Graph):
    into: dict[str, list[Edge]] = {}
    out: dict[str, list[Edge]] = {}
    for edge in graph.edges:
        into.setdefault(edge.target, []).append(edge)
        out.setdefault(edge.source, []).append(edge)
    return into, out


def _same_block(prev: Node, node: Node, into, out, merged) -> bool:
    if node.kind != "module" or prev.kind != "module" or node.group != prev.group:
        return False
    # prev may stand for a run already: compare with one of its members.
    each = prev.params // prev.count, prev.macs // prev.count
    if (node.type, node.params, node.macs, node.output_shape) != (
        prev.type,
        *each,
        prev.output_shape,
    ):
        return False
    feeds = into.get(node.id, [])
    last = _last_member(prev, merged)
    return (
        len(feeds) == 1
        and feeds[0].source == last
        and len(out.get(last, [])) == 1
        and feeds[0].shape == node.output_shape
    )


def _last_member(prev: Node, merged: dict[str, str]) -> str:
    members = [k for k, v in merged.items() if v == prev.id]
    return members[-1] if members else prev.id


def _order(member) -> tuple[int, int]:
    """Execution order: the inputs, then the walk's ids ("n12": 12th call), then the rest."""
    if member.id.startswith("n") and member.id[1:].isdigit():
        return 1, int(member.id[1:])
    return (0, 0) if getattr(member, "kind", None) == "input" else (2, 0)


def members(graph: Graph) -> dict[str | None, list[Node | Group]]:
    """Each group's id (None: the top) -> its nodes and groups, in execution order: the
    order writers emit them in, which dot keeps left to right (``ordering=out``)."""
    found: dict[str | None, list[Node | Group]] = {}
    for member in sorted([*graph.groups, *graph.nodes], key=_order):
        parent = member.parent if isinstance(member, Group) else member.group
        found.setdefault(parent, []).append(member)
    return found


def memory_bytes(node: Node, itemsize: int = 4) -> int:
    """The bytes of a node's output tensor (float32 unless the input says otherwise)."""
    size = itemsize * node.count
    for dim in node.output_shape or []:
        size *= dim
    return size if node.output_shape else 0


__all__ = ["Edge", "Graph", "Group", "Node", "at_depth", "build", "fold", "members"]

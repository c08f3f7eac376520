"""Which writer a file's extension picks, checked before any walk, and the one call that
draws a Report into a file (through ``_common.atomic_write``: never half a file)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .._common import atomic_write, writable_target
from ..errors import CnnshapeError
from . import dot, engine, model

FORMATS = ("svg", "png", "html", "dot", "mmd", "json")
HTML_DEPTH = 3  # the page can open blocks down to at least this depth


def extension(path: str | os.PathLike) -> str:
    return Path(path).suffix.lower().lstrip(".")


def check_output(path: str) -> str:
    """-o FILE: a path cnnshape may write (a new or regular file) with a known extension."""
    writable_target(path)  # first: "/tmp is a folder" says more than "no extension"
    if extension(path) not in FORMATS:
        shown = f"'.{extension(path)}'" if extension(path) else "no extension"
        raise CnnshapeError(
            f"{path!r} has {shown}: the format follows the extension.",
            "Give a file ending in " + ", ".join(f".{f}" for f in FORMATS) + ".",
        )
    return path


def walk(path: str, depth: int, ops: bool) -> dict:
    """How to walk: the page holds the deeper views its clicks open, each made from one
    walk with every op (``model.at_depth`` hides them again, as the walk would)."""
    if extension(path) == "html":
        return {"depth": max(depth, HTML_DEPTH), "ops": True}
    return {"depth": depth, "ops": ops}


@dataclass
class Drawing:
    """How to draw: the depth shown, runs folded, nodes shaded by what."""

    depth: int = 1
    ops: bool = False
    fold: bool = False
    shade: str | None = None
    rf: bool = False  # receptive fields on the labels


def graph_of(report, how: Drawing, depth: int | None = None, failure=None) -> model.Graph:
    graph = model.build(report, depth or how.depth, failure, how.ops)
    graph.show_rf = how.rf
    return model.fold(graph) if how.fold else graph


def draw(report, path: str, how: Drawing, failure=None) -> model.Graph:
    """Write ``report`` (a WalkError's partial one, with ``failure``) to ``path`` in the
    format of its extension; return the graph drawn."""
    fmt = extension(path)
    graph = graph_of(report, how, failure=failure)
    if fmt == "html":
        data = _page(report, how, failure, graph).encode()
    elif fmt in ("svg", "png"):
        data = engine.render(dot.to_dot(graph, how.shade), fmt)
    else:
        data = _text(graph, fmt, how).encode()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return graph


def _text(graph, fmt: str, how: Drawing) -> str:
    if fmt == "dot":
        return dot.to_dot(graph, how.shade)
    if fmt == "mmd":
        from .mermaid import to_mermaid

        return to_mermaid(graph)
    from .document import to_json

    return to_json(graph)


def _page(report, how: Drawing, failure, shown) -> str:
    from .labels import figures
    from .page import to_html

    deepest = max((r.depth for r in report.rows), default=1)
    views, previous = {}, None
    for depth in range(1, max(deepest, how.depth) + 1):
        graph = shown if depth == how.depth else graph_of(report, how, depth, failure)
        key = [n.id for n in graph.nodes]
        if key == previous:
            continue  # nothing deeper opened: the same drawing again
        previous = key
        views[depth] = engine.render(dot.to_dot(graph, how.shade, f"d{depth}-"), "svg").decode()
    summary = figures(report.total_params, report.total_macs)
    opened = max(d for d in views if d <= how.depth)  # how.depth's, or the same one shallower
    return to_html(report.model, views, opened, summary)

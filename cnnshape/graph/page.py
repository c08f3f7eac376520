"""The graph as one self-contained HTML page (`-o FILE.html`): the SVG of every depth
inline, the chosen one shown. Without JavaScript the page is that static drawing with the
browser's own tooltips; with it, pan (drag), zoom (wheel), a tooltip with every figure, and
a click on a block opens it (the next depth, centred on it) or, on an opened block's frame,
closes it. Nothing is fetched: no CDN, no font, no request."""

from __future__ import annotations

import html
import re

from .page_script import SCRIPT, STYLE


def strip_prolog(svg: str) -> str:
    """An SVG file's text as an inline element: no XML declaration, doctype or comments."""
    start = svg.index("<svg")
    body = re.sub(r"<!--.*?-->", "", svg[start:], flags=re.S)
    # Fit the page's width; the viewBox keeps the drawing's proportions.
    return re.sub(
        r'<svg width="[^"]*" height="[^"]*"', '<svg width="100%" height="100%"', body, count=1
    )


def to_html(model: str, views: dict[int, str], shown: int, summary: str) -> str:
    """``views``: depth -> SVG text of the graph at that depth; ``shown``: the one drawn when
    the page opens (and the only one visible without JavaScript)."""
    buttons = "".join(
        f'<button type="button" data-depth="{d}"{" class=on" if d == shown else ""}>{d}</button>'
        for d in views
    )
    panes = "".join(
        f'<div class="view" id="depth-{d}" data-depth="{d}"'
        f"{'' if d == shown else ' hidden'}>{strip_prolog(svg)}</div>"
        for d, svg in views.items()
    )
    title = html.escape(model)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title} - cnnshape graph</title>"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<style>{STYLE}</style></head><body>"
        f'<header><b>{title}</b> <span class="sum">{html.escape(summary)}</span>'
        f'<span class="depths">depth {buttons}</span>'
        '<span class="help">drag to pan, wheel to zoom, click a block to open it, '
        "click an opened block's frame to close it</span></header>"
        f'<main id="views">{panes}</main><div id="tip" hidden></div>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )

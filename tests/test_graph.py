"""`cnnshape graph`: the drawing's structure, numbers, files and page, checked from outside
(the files the command writes), against `show`'s figures and an independent torch.fx graph.

Golden files: tests/golden/graph/; `python -m pytest tests/test_graph.py --update-golden`
rewrites them (review the diff)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from conftest import assert_clean_error, cli

from cnnshape import api
from cnnshape.graph import engine, formats

GOLDEN = Path(__file__).with_name("golden") / "graph"  # test_golden.py owns the folder above
SVG = "{http://www.w3.org/2000/svg}"


def graph_json(tmp_path, *args) -> dict:
    out = tmp_path / "g.json"
    result = cli("graph", *args, "-o", out)
    assert result.exit_code == 0, result.stderr
    return json.loads(out.read_text())


def into(doc: dict) -> dict[str, list[str]]:
    """Node id -> the sources of its in-edges, in the order the node takes them."""
    found: dict[str, list[str]] = {}
    for edge in doc["edges"]:
        found.setdefault(edge["target"], []).append(edge["source"])
    return found


# ---- structure: the book's figures ------------------------------------------------------------


def test_googlenet_has_nine_concatenations_of_four_branches_in_forward_order(tmp_path):
    doc = graph_json(tmp_path, "googlenet", "--depth", "3", "--ops")
    names = {n["id"]: n["name"] for n in doc["nodes"]}
    cats = [n for n in doc["nodes"] if n["type"] == "cat"]
    assert len(cats) == 9
    for cat in cats:
        sources = into(doc)[cat["id"]]
        assert len(sources) == 4
        # p1 ... p4, as forward runs them (and so, left to right in the drawing).
        branches = [names[s].split(".")[-1] for s in sources]
        assert branches == ["relu", "relu_2", "relu_4", "relu_5"], branches
    inceptions = [g for g in doc["groups"] if g["type"] == "Inception"]
    assert len(inceptions) == 9


def test_resnet18_has_eight_residual_additions_of_two_inputs(tmp_path):
    doc = graph_json(tmp_path, "resnet18", "--depth", "3", "--ops")
    adds = [n for n in doc["nodes"] if n["type"].startswith("add")]
    assert len(adds) == 8
    assert all(len(into(doc)[a["id"]]) == 2 for a in adds)


def test_densenet_has_sixteen_concatenations(tmp_path):
    doc = graph_json(tmp_path, "densenet", "--depth", "4", "--ops")
    assert sum(n["type"] == "cat" for n in doc["nodes"]) == 16


def _module_flow(edges, is_module) -> Counter:
    """(module, module) pairs joined by a path through non-modules (ops, inputs excluded)."""
    succ: dict[str, list[str]] = {}
    for source, target in edges:
        succ.setdefault(source, []).append(target)
    pairs = Counter()
    for start in [n for n in succ if is_module(n)]:
        stack = list(succ[start])
        while stack:
            node = stack.pop()
            if is_module(node):
                pairs[(start, node)] += 1
            else:
                stack += succ.get(node, [])
    return pairs


def test_torchvision_resnet18_matches_an_independent_fx_graph(tmp_path):
    import torch.fx
    import torchvision

    traced = torch.fx.symbolic_trace(torchvision.models.resnet18()).graph
    fx_name = {n: (n.target if n.op == "call_module" else f"{n.op}:{n.name}") for n in traced.nodes}
    fx_edges = [(fx_name[a], fx_name[n]) for n in traced.nodes for a in n.all_input_nodes]
    fx_modules = {
        t for t in fx_name.values() if not t.startswith(("call_", "placeholder", "output"))
    }

    doc = graph_json(tmp_path, "torchvision:resnet18", "--depth", "4", "--ops")
    kind = {n["id"]: n["kind"] for n in doc["nodes"]}
    name = {n["id"]: (n["name"] if n["kind"] == "module" else n["id"]) for n in doc["nodes"]}
    ours = [(name[e["source"]], name[e["target"]]) for e in doc["edges"]]
    modules = {n["name"] for n in doc["nodes"] if kind[n["id"]] == "module"}

    assert modules == fx_modules
    assert Counter(n["name"] for n in doc["nodes"] if n["kind"] == "module") == Counter(
        n.target for n in traced.nodes if n.op == "call_module"
    )
    # A module called twice (torchvision's BasicBlock reuses self.relu) is one name in both.
    assert set(_module_flow(ours, modules.__contains__)) == set(
        _module_flow(fx_edges, fx_modules.__contains__)
    )
    adds = [n for n in doc["nodes"] if n["type"].startswith("add")]
    assert len(adds) == sum(1 for n in traced.nodes if n.op == "call_function" and "add" in n.name)


# ---- numbers: show's totals at every depth ----------------------------------------------------


@pytest.mark.parametrize("model", ["googlenet", "resnet18"])
@pytest.mark.parametrize("fold", [False, True])
def test_node_figures_sum_to_shows_totals_at_every_depth(model, fold):
    report = api.show(model, depth=3, ops=True)
    for depth in (1, 2, 3):
        shown = api.show(model, depth=depth)
        graph = formats.graph_of(report, formats.Drawing(depth, fold=fold))
        assert sum(n.params for n in graph.nodes) == shown.total_params
        assert sum(n.macs for n in graph.nodes) == shown.total_macs
        # and each node is show's row at that depth (folded ones: the run's sum)
        rows = {r.id: r for r in shown.rows}
        for node in graph.nodes:
            if node.kind == "module" and node.count == 1:
                assert (node.params, node.macs) == (rows[node.id].params, rows[node.id].macs)


@pytest.mark.parametrize("model", ["googlenet", "resnet18", "densenet", "torchvision:resnet18"])
def test_the_pages_views_from_one_deep_walk_are_the_walks_at_each_depth(model):
    """The HTML page draws every depth from one walk with its ops: each view must be the
    graph a walk at that depth, with or without ops, gives."""
    deep = api.show(model, depth=3, ops=True)
    for depth in (1, 2, 3):
        for ops in (False, True):
            walked = api.show(model, depth=depth, ops=ops)
            direct = formats.graph_of(walked, formats.Drawing(depth, ops=ops))
            derived = formats.graph_of(deep, formats.Drawing(depth, ops=ops))
            assert [n.id for n in derived.nodes] == [n.id for n in direct.nodes], (depth, ops)
            assert [g.id for g in derived.groups] == [g.id for g in direct.groups]
            edges = Counter((e.source, e.target, str(e.shape)) for e in direct.edges)
            assert Counter((e.source, e.target, str(e.shape)) for e in derived.edges) == edges


def test_fold_draws_identical_consecutive_blocks_once():
    report = api.show("resnet18", depth=2)
    graph = formats.graph_of(report, formats.Drawing(2, fold=True))
    folded = [n for n in graph.nodes if n.count > 1]
    assert [(n.type, n.count) for n in folded] == [("Residual", 2)]
    assert "Residual x 2" in formats.dot.to_dot(graph)


# ---- files: golden, formats, no dot -----------------------------------------------------------

GOLDEN_CASES = {
    "graph-lenet": ["lenet"],
    "graph-resnet18-depth2-ops-fold": ["resnet18", "--depth", "2", "--ops", "--fold"],
    "graph-googlenet-depth3-ops-shade": ["googlenet", "--depth", "3", "--ops", "--shade", "macs"],
}


@pytest.mark.parametrize("fmt", ["dot", "json"])
@pytest.mark.parametrize("case", list(GOLDEN_CASES))
def test_text_formats_are_the_golden_files(case, fmt, tmp_path, update_golden):
    out = tmp_path / f"{case}.{fmt}"
    result = cli("graph", *GOLDEN_CASES[case], "-o", out)
    assert result.exit_code == 0, result.stderr
    golden = GOLDEN / f"{case}.{fmt}"
    if update_golden:
        golden.write_text(out.read_text())
    assert out.read_text() == golden.read_text(), f"{golden} differs; see this file's docstring"


def test_every_format_is_made_with_no_dot_on_path(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n, *a, **k: None if n == "dot" else real_which(n))
    assert Path(engine.find()[0]).name == "graphviz-pure"
    for fmt in formats.FORMATS:
        out = tmp_path / f"r.{fmt}"
        result = cli("graph", "resnet18", "--depth", "2", "-o", out)
        assert result.exit_code == 0, (fmt, result.stderr)
        assert out.stat().st_size > 100, fmt
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "graph TB" not in (tmp_path / "r.mmd").read_text()
    assert (tmp_path / "r.mmd").read_text().startswith("flowchart TB")
    assert (tmp_path / "r.dot").read_text().startswith('digraph "resnet18"')


def test_the_html_page_is_one_offline_file(tmp_path):
    out = tmp_path / "g.html"
    assert cli("graph", "googlenet", "--ops", "-o", out).exit_code == 0
    page = out.read_text()
    namespaces = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    namespaces |= {"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd"}
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) <= namespaces
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    # Depths 1-3 inside, the first shown: the static drawing that JavaScript-off readers get.
    views = re.findall(r'<div class="view" id="depth-(\d)" data-depth="\d"( hidden)?>', page)
    assert views == [("1", ""), ("2", " hidden"), ("3", " hidden")]


# ---- SVG geometry -----------------------------------------------------------------------------


def _points(element) -> list[tuple[float, float]]:
    if element.tag == SVG + "ellipse":
        cx, cy, rx, ry = (float(element.get(k)) for k in ("cx", "cy", "rx", "ry"))
        return [(cx - rx, cy - ry), (cx + rx, cy + ry)]
    text = element.get("points") or element.get("d")
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]
    return list(zip(numbers[::2], numbers[1::2], strict=False))


def _boxes(svg: Path) -> list[tuple[str, tuple, list]]:
    """(id, (x0, y0, x1, y1), [(x, y, text, font size), ...]) for every node."""
    found = []
    for group in ET.parse(svg).getroot().iter(SVG + "g"):
        if "node" not in (group.get("class") or "").split():
            continue
        shape = next(
            e for e in group.iter() if e.tag in {SVG + t for t in ("path", "polygon", "ellipse")}
        )
        xs, ys = zip(*_points(shape), strict=True)
        texts = [
            (float(t.get("x")), float(t.get("y")), t.text or "", float(t.get("font-size")))
            for t in group.iter(SVG + "text")
        ]
        found.append((group.get("id"), (min(xs), min(ys), max(xs), max(ys)), texts))
    return found


# Metric-compatible with Helvetica, whose widths Graphviz sizes the boxes by (Debian's
# fonts-liberation, which chromium brings); without it, half an em per glyph.
LIBERATION = Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")


def _text_width(text: str, size: float) -> float:
    if not LIBERATION.exists():
        return 0.5 * size * len(text)
    from PIL import ImageFont

    return ImageFont.truetype(str(LIBERATION), 100).getlength(text) * size / 100


def test_svg_node_boxes_do_not_overlap_and_hold_their_text(tmp_path):
    out = tmp_path / "g.svg"
    assert cli("graph", "googlenet", "--depth", "3", "--ops", "--rf", "-o", out).exit_code == 0
    boxes = _boxes(out)
    assert len(boxes) == 139 + 2  # the layers and ops, the input and the output
    for i, (a, (ax0, ay0, ax1, ay1), texts) in enumerate(boxes):
        for x, y, text, size in texts:
            half = _text_width(text, size) / 2
            assert ax0 - 1 <= x - half and x + half <= ax1 + 1, (a, text)
            assert ay0 <= y - size * 0.7 and y <= ay1, (a, text)
        for b, (bx0, by0, bx1, by1), _ in boxes[i + 1 :]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (a, b)


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("g.txt", "'.txt': the format follows the extension"),
        ("g", "no extension"),
        ("folder.svg", "a folder"),
        ("/dev/null", "a character device"),
        ("missing/g.svg", "there is no folder"),
    ],
)
def test_a_bad_output_is_an_error_before_any_walk(target, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.svg").mkdir()
    monkeypatch.setattr(api, "show", lambda *a, **k: pytest.fail("walked"))
    result = assert_clean_error(cli("graph", "resnet18", "-o", target), says)
    assert result.exit_code == 2
    assert sorted(os.listdir(tmp_path)) == ["folder.svg"]
    assert not os.listdir(tmp_path / "folder.svg")


def test_a_refused_size_draws_up_to_the_failing_layer_and_exits_nonzero(tmp_path):
    out = tmp_path / "a.json"
    result = assert_clean_error(cli("graph", "alexnet", "--size", "32", "-o", out))
    shown = cli("show", "alexnet", "--size", "32")
    error = [line for line in shown.stderr.splitlines() if line.startswith(("Error:", "Hint:"))]
    assert error and all(line in result.stderr for line in error)
    doc = json.loads(out.read_text())
    failed = [n for n in doc["nodes"] if n["kind"] == "failed"]
    assert [(n["name"], n["type"]) for n in failed] == [("5", "MaxPool2d")]
    assert failed[0]["reason"] == "its 3x3 window is larger than the 2x2 input"
    assert into(doc)["failed"] == ["n4"]  # the ReLU whose 256 x 2 x 2 it received
    assert doc["failure"].startswith("alexnet cannot take a 1x1x32x32 input")
    svg = tmp_path / "a.svg"
    assert_clean_error(cli("graph", "alexnet", "--size", "32", "-o", svg))
    assert "refuses its input" in svg.read_text()


def test_a_failed_layout_leaves_no_file_behind(tmp_path, monkeypatch):
    out = tmp_path / "r.svg"
    out.write_text("the old drawing")

    def broken(*args, **kwargs):
        raise formats.CnnshapeError("The layout engine (dot) failed: boom")

    monkeypatch.setattr(engine, "render", broken)
    assert_clean_error(cli("graph", "resnet18", "-o", out), "boom")
    assert out.read_text() == "the old drawing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.svg"]


# ---- the page in a real browser ---------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


def _chromium(*args: str) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *OFFLINE, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
def test_the_page_draws_in_a_browser_offline_and_opens_blocks(tmp_path):
    out = tmp_path / "g.html"
    assert cli("graph", "googlenet", "--ops", "-o", out).exit_code == 0
    url = out.as_uri()
    dom = _chromium("--dump-dom", url)
    assert '<html lang="en" class="js">' in dom  # the script ran
    visible = re.findall(r'<div class="view" id="depth-(\d)" data-depth="\d">', dom)
    assert visible == ["1"]
    report = api.show("googlenet", depth=3, ops=True)
    for depth in (1, 2, 3):
        graph = formats.graph_of(report, formats.Drawing(depth, ops=True))
        for node in graph.nodes:
            assert f'id="d{depth}-{node.id}"' in dom, (depth, node.id)
    # A click on block 2 (n10, a Sequential) opens it: depth 2 shown; its frame closes it.
    opened = _chromium("--dump-dom", url + "#click=n10")
    assert re.findall(r'<div class="view" id="depth-(\d)" data-depth="\d">', opened) == ["2"]
    closed = _chromium("--dump-dom", url + "#click=n10,n10")  # then its frame at depth 2
    assert re.findall(r'<div class="view" id="depth-(\d)" data-depth="\d">', closed) == ["1"]
    shot = tmp_path / "page.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,900", url)
    assert shot.read_bytes()[:4] == b"\x89PNG"
    keep = os.environ.get("CNNSHAPE_TEST_ARTIFACTS")
    if keep:
        shutil.copy(shot, Path(keep) / "graph-page.png")

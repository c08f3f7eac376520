"""Tables as a person reads them, in any terminal, and one JSON writer for every command."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from rich.console import Console

from cnnshape import api
from cnnshape.inspect.render import compare_view, list_view, ratio, report_view, sizes_view
from cnnshape.registry import list_specs
from cnnshape.views import json_text, table


def rendered(view, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(table(view, width))
    return console.export_text()


def views():
    report = api.show("googlenet", (96, 96), depth=2)
    timed = api.show("lenet", timed=api.TimeSettings("cpu", warmup=0, repeats=1))
    yield "show --rf", report_view(report, fields=True)
    yield "show --time", report_view(timed)
    yield "compare", compare_view(api.compare(["lenet", "alexnet", "vgg", "densenet"]))
    yield "sizes", sizes_view(api.valid_sizes("lenet-bn", up_to=64))
    yield "list", list_view(list_specs())


VIEWS = dict(views())


@pytest.mark.parametrize("width", [80, 60, 40])
@pytest.mark.parametrize("name", list(VIEWS))
def test_no_figure_is_ever_cut_in_a_narrow_terminal(name, width):
    view = VIEWS[name]
    grid, *footer = table(view, width).renderables
    console = Console(width=width, record=True, color_system=None)
    console.print(grid)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    notes = " ".join(" ".join(str(line).split()) for line in footer)
    left_out = re.search(r"Left out to fit \d+ columns: (.*?) \(a wider terminal", notes)
    dropped = left_out[1].split(", ") if left_out else []
    shown = [i for i, c in enumerate(view.columns) if c.header not in dropped]
    assert len(shown) >= 3, "a table keeps its essential columns"
    # Folded or wrapped, every character of every cell shown is there: none was cut off.
    expected = view.title + "".join(view.headers[i] for i in shown)
    expected += "".join(row[i] for row in view.cells() for i in shown)
    printed = Counter(re.sub(r"\s", "", text))
    del printed["─"]  # the rule under the headers
    assert printed == Counter(re.sub(r"\s", "", expected))


def test_a_wide_enough_terminal_shows_every_column_unwrapped():
    view = VIEWS["show --rf"]
    text = rendered(view, 250)
    assert "Left out" not in text
    for row in view.cells():
        assert all(cell in text for cell in row if cell)


def test_figures_stay_whole_while_names_and_shapes_can_wrap():
    text = rendered(VIEWS["show --rf"], 80)
    for row in VIEWS["show --rf"].cells():
        assert row[VIEWS["show --rf"].headers.index("Params")] in text


def test_columns_left_out_are_named_and_the_first_to_go_is_flops():
    text = " ".join(rendered(VIEWS["show --rf"], 80).split())
    assert "Left out to fit 80 columns: FLOPs" in text and "--format csv" in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.28, "x0.28"), (1.0, "x1"), (12.345, "x12.3"), (2250.0, "x2,250"), (5.2e-5, "x0.000052")],
)
def test_ratios_have_three_digits_and_never_an_exponent(value, shown):
    assert ratio(value) == shown


def test_a_ratio_without_a_base_is_a_dash():
    assert ratio(None) == "–"


def test_json_keeps_long_strings_and_nested_values_whole():
    data = {"error": "x" * 200, "rows": [[1, 2]], "edges": [{"source": "n0", "shape": [1, 2]}]}
    assert json.loads(json_text(data)) == data


def test_json_is_valid_whatever_the_numbers():
    data = {"loss": float("nan"), "peak": float("inf"), "rows": [[1, 2], [3, 4]], "ok": 0.5}
    text = json_text(data)
    assert json.loads(text) == {"loss": None, "peak": None, "rows": [[1, 2], [3, 4]], "ok": 0.5}
    assert "[1, 2]" in text  # a matrix keeps one row per line

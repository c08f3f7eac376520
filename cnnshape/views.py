"""How any table reaches a person or a script: a `View` of `Column`s, in four formats.

A view is a list of columns applied to a list of items, plus a title, a footer and the JSON
document. A column says once how to read its value from an item (what CSV writes), how a
person reads it (the table and Markdown), and whether it is a number; every format then
renders every view the same way. Both paths build their tables this way.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Any], Any]  # the exact value of an item: what CSV writes
    text: Callable[[Any], str] | None = None  # what a person reads; default: str(value)
    numeric: bool = False  # right-aligned
    option: str | None = None  # shown only with that option ("rf", "time")
    # To fit a narrow terminal, columns are left out from the highest value down (with a
    # note saying which); 0: always shown.
    dispensable: int = 0
    # Whether a narrow terminal may wrap it: names, shapes and sentences; not figures (3x3,
    # 148,230). Default: all but numeric columns.
    breakable: bool | None = None

    @property
    def breaks(self) -> bool:
        return not self.numeric if self.breakable is None else self.breakable

    def cell(self, item) -> str:
        if self.text is not None:
            return self.text(item)
        value = self.value(item)
        return "" if value is None else str(value)

    def raw(self, item):
        value = self.value(item)
        if isinstance(value, (list, tuple)):
            return "x".join(map(str, value))  # shapes as 1x64x24x24
        return "" if value is None else value


class Note(str):
    """A footer line that states a convention rather than a fact: shown dimmed."""


@dataclass
class View:
    title: str
    columns: list[Column]
    items: Sequence[Any]
    data: dict[str, Any]  # the JSON document
    footer: list[str] = field(default_factory=list)  # below the table; Notes are dimmed

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    def cells(self) -> list[list[str]]:
        return [[c.cell(item) for c in self.columns] for item in self.items]

    def raw(self) -> list[list[Any]]:
        return [[c.raw(item) for c in self.columns] for item in self.items]


def choose(columns: Sequence[Column], **options: bool) -> list[Column]:
    """The columns always shown, plus those whose option is on."""
    return [c for c in columns if c.option is None or options.get(c.option, False)]


# ---- formats ----------------------------------------------------------------------------------


def table(view: View, width: int | None = None):
    """The view as a rich table, at most ``width`` characters wide (None: its natural width).

    A figure is never cut. Too wide a table first leaves out its dispensable columns (the
    footer says which), then wraps its breakable columns (names, shapes, sentences), and only
    when even that cannot fit folds figures onto more lines."""
    columns, cells = list(view.columns), view.cells()
    left_out: list[str] = []
    while width is not None and _width(columns, cells) > width:
        dispensable = [c for c in columns if c.dispensable]
        if not dispensable:
            break
        dropped = max(dispensable, key=lambda c: c.dispensable)
        index = columns.index(dropped)
        columns.pop(index)
        cells = [row[:index] + row[index + 1 :] for row in cells]
        left_out.append(dropped.header)
    fits = width is None or _width(columns, cells) <= width
    breakable = [c for c in columns if c.breaks]
    figures = [c for c in columns if not c.breaks]
    fold_figures = not fits and (
        _width(figures, [[row[columns.index(c)] for c in figures] for row in cells])
        + len(breakable) * (_NARROWEST_TEXT + 3)
        > width
    )
    footer = list(view.footer)
    if left_out:
        footer.append(
            Note(
                f"Left out to fit {width} columns: {', '.join(left_out)} (a wider terminal, or "
                "--format csv, json or markdown, shows every column)."
            )
        )
    lines = [Text(line, style="dim" if isinstance(line, Note) else "") for line in footer]
    wraps = {c.header: (c.breaks and not fits) or fold_figures for c in columns}
    return Group(_rich_table(view.title, columns, cells, wraps), *lines)


_NARROWEST_TEXT = 5  # a wrapped name or shape column keeps at least this many characters


def _rich_table(title: str | None, columns: list[Column], cells, wraps: dict[str, bool]) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for column in columns:
        t.add_column(
            column.header,
            justify="right" if column.numeric else "left",
            no_wrap=not wraps.get(column.header, False),
            overflow="fold",  # never an ellipsis: a cell too long for its column goes on
        )
    for row in cells:
        t.add_row(*row)
    return t


@functools.cache
def _measuring_console() -> Console:
    return Console(width=10**6)


def _width(columns: list[Column], cells: list[list[str]]) -> int:
    """The natural width of a table of these columns, as rich lays it out."""
    console = _measuring_console()
    return Measurement.get(console, console.options, _rich_table(None, columns, cells, {})).maximum


def to_string(view: View, fmt: Format) -> str:
    """JSON, CSV or Markdown as text (the table format goes through rich, see `table`)."""
    if fmt is Format.json:
        return json_text(view.data)
    if fmt is Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(view.headers)
        writer.writerows(view.raw())
        return buffer.getvalue().rstrip("\n")
    if fmt is Format.markdown:
        lines = [
            f"**{view.title}**",
            "",
            "| " + " | ".join(view.headers) + " |",
            "|" + "|".join("---:" if c.numeric else "---" for c in view.columns) + "|",
        ]
        lines += [
            "| " + " | ".join(c.strip().replace("|", "\\|") for c in row) + " |"
            for row in view.cells()
        ]
        return "\n".join(lines + [""] + view.footer)
    raise ValueError(f"{fmt} is rendered by rich, not as a string")


def json_text(data: Any) -> str:
    """The one JSON writer of every command: indented, with every small flat value (a shape,
    an edge such as {"source": "n3", "shape": [1, 64, 24, 24]}, a row of numbers) on one line;
    and valid JSON always: a number that is not finite (a diverged loss) is null."""
    return _dumped(_finite(json.loads(json.dumps(data, default=str))), 0)


_ONE_LINE = 96  # a flat value up to this long stays on one line


def _dumped(value: Any, level: int) -> str:
    flat = json.dumps(value, allow_nan=False)
    if _is_scalar(value) or _is_flat(value) and len(flat) <= _ONE_LINE:
        return flat
    inner, outer = "  " * (level + 1), "  " * level
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_dumped(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{outer}}}"
    items = [f"{inner}{_dumped(v, level + 1)}" for v in value]
    return "[\n" + ",\n".join(items) + f"\n{outer}]"


def _is_flat(value: Any) -> bool:
    """A scalar; a list of scalars (a shape); a dict of scalars and such lists (an edge)."""
    if isinstance(value, list):
        return all(_is_scalar(v) for v in value)
    if isinstance(value, dict):
        return all(_is_scalar(v) or _is_flat(v) and isinstance(v, list) for v in value.values())
    return True


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data

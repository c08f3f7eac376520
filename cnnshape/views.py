"""How any table reaches a person or a script: a `View` of `Column`s, in four formats.

A view is a list of columns applied to a list of items, plus a title, a footer and the JSON
document. A column says once how to read its value from an item (what CSV writes), how a
person reads it (the table and Markdown), and whether it is a number; every format then
renders every view the same way. Both paths build their tables this way.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from rich import box
from rich.console import Group
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


def table(view: View):
    t = Table(title=view.title, box=box.SIMPLE_HEAD, title_justify="left")
    for column in view.columns:
        t.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=True)
    for row in view.cells():
        t.add_row(*row)
    lines = [Text(line, style="dim" if isinstance(line, Note) else "") for line in view.footer]
    return Group(t, *lines)


def to_string(view: View, fmt: Format) -> str:
    """JSON, CSV or Markdown as text (the table format goes through rich, see `table`)."""
    if fmt is Format.json:
        return _compact_number_lists(json.dumps(view.data, indent=2))
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


def _compact_number_lists(text: str) -> str:
    """Put shapes like [1, 64, 24, 24] on one line instead of one number per line."""
    return re.sub(
        r"\[([-\d\s,.e]+)\]",
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )

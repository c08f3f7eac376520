"""Where results go: data to stdout (tables fitted to the terminal, JSON, CSV, Markdown),
messages to stderr, and a model's own prints out of the data's way."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console

from ..views import Format, View, json_text, table, to_string


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (data) or stderr (messages), made when needed: piped output
    has no terminal width to fit, so tables there take their natural width, not 80."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH)


PIPED_WIDTH = 10_000  # wider than any table: piped, a table is never fitted to a width


def fitted(view: View, out: Console):
    """``view`` as a table that fits ``out``'s terminal (piped: at its natural width)."""
    return table(view, out.width if out.is_terminal else None)


@contextlib.contextmanager
def model_prints_to_stderr() -> Iterator[None]:
    """A model's own print() (at import, in __init__, in forward) goes to stderr: stdout
    carries only the data, so `show net.py:Net -f json | jq` parses whatever the model says."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def emit(view: View, fmt: Format) -> None:
    if fmt is Format.table:
        out = console()
        # In a terminal long footer lines wrap to its width; piped, each stays one line.
        out.print(fitted(view, out), soft_wrap=not out.is_terminal)
    else:
        print(to_string(view, fmt))


def print_json(data) -> None:
    print(json_text(data))

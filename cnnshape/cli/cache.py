"""`cnnshape cache info|clear`: the result cache, shown and emptied."""

from __future__ import annotations

import typer

from ..views import Format
from .app import app
from .errors import friendly_errors
from .options import FormatOption
from .output import emit

cache_app = typer.Typer(
    help="The result cache: answers of show, compare and sizes kept on disk, so a repeated "
    "question needs no torch. Where: $CNNSHAPE_CACHE_DIR, else ~/.cache/cnnshape/results; "
    "bounded by $CNNSHAPE_CACHE_MAX (default 100MB, least recently used first out); "
    "CNNSHAPE_NO_CACHE=1 or --no-cache turns it off.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
@friendly_errors
def cache_info(format: FormatOption = Format.table) -> None:
    """Where the cache is, how many entries it holds (and how many this version can use), and
    its size against its bound."""
    from .. import api
    from ..inspect.render import cache_view

    emit(cache_view(api.cache_info()), format)


@cache_app.command("clear")
@friendly_errors
def cache_clear(format: FormatOption = Format.table) -> None:
    """Remove cnnshape's entries from the cache folder; nothing else in it is touched."""
    from .. import api
    from ..inspect.render import cache_view

    emit(cache_view(api.clear_cache(), removed=True), format)

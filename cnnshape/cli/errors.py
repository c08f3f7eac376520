"""The error policy: a user's mistake is one `Error:` line and a hint on stderr, never a
traceback (--debug shows it); Ctrl-C and SIGTERM exit 130 and 143 with a reason."""

from __future__ import annotations

import functools
import os
import sys

import typer

from .._common import launch_rank, launched
from ..errors import CnnshapeError, WalkError
from .output import console, fitted

_debug = False


def show_tracebacks(on: bool) -> None:
    """--debug (or CNNSHAPE_DEBUG=1): errors raise with their traceback."""
    global _debug
    _debug = on


def friendly_errors(command):
    """Turn CnnshapeError into `Error: ...` + `Hint: ...` on stderr, exit 1; no traceback.

    With --debug (or CNNSHAPE_DEBUG=1) the traceback is shown instead.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:  # a command's own chosen exit code (130 after Ctrl-C)
            raise
        except CnnshapeError as err:
            if _debug:
                raise
            if launch_rank() != 0:
                # Under torchrun every rank has the same settings and code: rank 0 says it.
                raise typer.Exit(1) from None
            if isinstance(err, WalkError) and err.partial.rows:
                from ..inspect.render import report_view

                partial = report_view(err.partial)
                partial.title, partial.footer = "Layers computed before the failure", []
                err_console = console(stderr=True)
                err_console.print(fitted(partial, err_console))
            _print_error(err.message, err.hint)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM while training (train/signals.py)
            # Also where a SIGTERM lands while an error unwinds: under torchrun, rank 0 is
            # stopped as soon as another rank fails, often before its own error is printed.
            from ..train.signals import signal_of, stop_reason

            signum = signal_of(stop)
            if launch_rank() == 0:
                where = "[rank 0] " if launched() else ""
                print(f"{where}Interrupted ({stop_reason(signum)}).", file=sys.stderr)
            raise typer.Exit(128 + signum) from None
        except SystemExit as exit:  # not ours (typer.Exit is not a SystemExit): a model's code
            if _debug:
                raise
            _print_error(
                f"the model's code called sys.exit({exit.code!r}).",
                "cnnshape runs the model's code; it must return, not exit the process.",
            )
            raise typer.Exit(1) from None
        except BrokenPipeError:  # `cnnshape show ... | head`: the reader left, nothing to say
            # Python's documented recipe: point stdout at devnull so the flush at exit is quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except Exception as err:  # a bug in cnnshape, not a user mistake
            if _debug:
                raise
            hint = _RANK_FAILED_HINT if launched() else _INTERNAL_HINT
            _print_error(f"internal error: {type(err).__name__}: {err}", hint)
            raise typer.Exit(1) from None

    return wrapper


_INTERNAL_HINT = "Run again with --debug for the traceback, and please report it."
# When one rank dies, the others fail in their next collective with a connection error.
_RANK_FAILED_HINT = (
    "Under torchrun one rank's failure stops all the others: the rank that "
    "failed first names the cause. --debug shows the tracebacks."
)


def _print_error(message: str, hint: str | None) -> None:
    # Plain print, not rich: rich would wrap long lines and read [brackets] as markup.
    # Under torchrun a failure can be one rank's own: say which.
    where = f"[rank {launch_rank()}] " if launched() else ""
    print(f"{where}Error: {message}", file=sys.stderr)
    if hint:
        print(f"Hint: {hint}", file=sys.stderr)

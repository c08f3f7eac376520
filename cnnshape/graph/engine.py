"""The layout: Graphviz's ``dot`` algorithm, run as a program on the DOT text.

graphviz-pure (a dependency: a Rust port of Graphviz 16.1.0, EPL-2.0, shipped as a binary in
its wheel) is tried first, since ``pip install`` brings it and it gives the same bytes on
every platform; a system ``dot`` is the fallback. Neither is imported: each call is one
subprocess reading DOT on stdin and writing SVG or PNG on stdout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

from ..errors import CnnshapeError

TIMEOUT_S = 600


def _installed() -> str | None:
    """Where pip put graphviz-pure's program, from its own record of its files: found
    whether or not PATH has it (a venv not activated, a venv that sees the system's)."""
    from importlib import metadata

    try:
        files = metadata.distribution("graphviz-pure").files or []
    except metadata.PackageNotFoundError:
        return None
    program = next((f for f in files if f.name in ("graphviz-pure", "graphviz-pure.exe")), None)
    return str(program.locate()) if program is not None else None


def find() -> list[str]:
    """The command that lays out: the graphviz-pure pip installed, one in this Python's
    scripts folder or on PATH, or a system dot. An error with the fix when there is none."""
    program = "graphviz-pure.exe" if os.name == "nt" else "graphviz-pure"
    scripts = str(Path(sysconfig.get_path("scripts")) / program)
    for candidate in (_installed(), scripts, shutil.which(program), shutil.which("dot")):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    raise CnnshapeError(
        "No layout engine: graphviz-pure (a cnnshape dependency) is not installed.",
        "pip install graphviz-pure, or install Graphviz's dot; .dot, .mmd and .json need neither.",
    )


def name(command: list[str]) -> str:
    return Path(command[0]).name


def render(dot_text: str, fmt: str) -> bytes:
    """``dot_text`` laid out and drawn as ``fmt`` (svg or png). A large graph's quick
    settings are in the text itself (``dot.QUICK``), so a .dot file lays out as fast."""
    command = [*find(), f"-T{fmt}"]
    try:
        done = subprocess.run(
            command, input=dot_text.encode(), capture_output=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise CnnshapeError(
            f"The layout took more than {TIMEOUT_S} s.", "Try a smaller --depth or --fold."
        ) from None
    if done.returncode != 0 or not done.stdout:
        reason = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        raise CnnshapeError(f"The layout engine ({name(command)}) failed: {reason}")
    return done.stdout

"""The README's examples are the tool's real output: every ```text block that starts with
`$ cnnshape ...` is run and compared line by line, so the examples cannot drift.

In a checked block, a line `...` stands for any number of lines (the README shortens long
tables). Output that is measured and so differs from run to run (training, --time) goes
in ```console blocks, which are not checked. `python -m pytest tests/test_readme.py
--update-golden` rewrites the checked blocks that have no `...` from the current output.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest
from conftest import cli

README = Path(__file__).parent.parent / "README.md"
BLOCK = re.compile(r"```text\n(\$ cnnshape .*?)```", re.S)

# What the README's examples assume is at hand: their own model file.
MYNET = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)
"""


def examples(text: str) -> list[tuple[str, str]]:
    """(command line, the output shown under it) for every command of every checked block."""
    found = []
    for block in BLOCK.findall(text):
        for chunk in re.split(r"^(?=\$ cnnshape )", block, flags=re.M):
            if chunk.strip():
                command, _, shown = chunk.partition("\n")
                found.append((command.removeprefix("$ "), shown))
    return found


def matches(shown: str, actual: str) -> bool:
    """Line by line, trailing spaces ignored; a `...` line matches any number of lines."""
    pattern = ""
    for line in (line.rstrip() for line in shown.rstrip("\n").split("\n")):
        skipped = line == "..."
        pattern += r"(?:\n.*)*?" if skipped else ("\n" if pattern else "") + re.escape(line)
    actual = "\n".join(line.rstrip() for line in actual.rstrip("\n").split("\n"))
    return re.fullmatch(pattern, actual) is not None


def run(command: str) -> str:
    result = cli(*shlex.split(command)[1:])
    lines = (result.stdout + result.stderr).rstrip("\n").split("\n")
    return "\n".join(line.rstrip() for line in lines) + "\n"


@pytest.fixture
def at_hand(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet.py").write_text(textwrap.dedent(MYNET))


def test_the_readme_has_checked_examples():
    commands = [command for command, _ in examples(README.read_text())]
    assert len(commands) >= 8 and any(c.startswith("cnnshape compare") for c in commands)


@pytest.mark.parametrize("command", [c for c, _ in examples(README.read_text())])
def test_every_readme_example_is_the_real_output(command, at_hand, update_golden):
    text = README.read_text()
    shown = next(s for c, s in examples(text) if c == command)
    actual = run(command)
    if update_golden and "\n...\n" not in f"\n{shown}":
        README.write_text(text.replace(f"$ {command}\n{shown}", f"$ {command}\n{actual}", 1))
        return
    assert matches(shown, actual), f"README example `{command}` differs:\n{actual}"


def test_the_matcher():
    assert matches("a\n...\nd\n", "a\nb\nc\nd\n") and matches("a\n...\n", "a\n")
    assert not matches("a\nd\n", "a\nb\nd\n") and not matches("a\n...\nd\n", "a\nb\n")

"""The README's and the manual's (docs/*.md) examples are the tool's real output: every
```text block that starts with `$ cnnshape ...` is run and compared line by line, so the
examples cannot drift.

In a checked block, a line `...` stands for any number of lines (a page may shorten a long
table). Output that is measured and so differs from run to run (training, --time) goes in
```console blocks, which are not checked. `python -m pytest tests/test_docs.py
--update-golden` rewrites the checked blocks that have no `...` from the current output.

The pages' relative links must lead to existing files (and #anchors to existing headings),
and the README stays short: the manual holds the rest.
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnshape.cli import app

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 15_000  # bytes

BLOCK = re.compile(r"```text\n(\$ cnnshape .*?)```", re.S)
CONSOLE = re.compile(r"```console\n(.*?)```", re.S)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
# A command a reader is shown: in an indented or fenced block, at the start of a line.
COMMAND_LINE = re.compile(r"^(?: {4}|\$ )cnnshape \w", re.M)

# What the examples assume is at hand: their own model file ...
MYNET = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)


class Audio(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(1, 16, 9, stride=4)
        self.pool = nn.MaxPool1d(4)
        self.conv2 = nn.Conv1d(16, 32, 9, stride=4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.conv2(self.pool(self.conv1(x).relu())))
"""
# ... and, for `cnnshape eval`, a run folder made by this command (random images: no data).
SMOKE_RUN = (
    "cnnshape train lenet --dataset synthetic --epochs 1 --train-limit 1000 "
    "--test-limit 500 --device cpu --out runs/smoke"
)


def examples(text: str) -> list[tuple[str, str, int]]:
    """(command line, the output shown under it, where that output starts in the text) for
    every command of every checked block."""
    found = []
    for block in BLOCK.finditer(text):
        offset = block.start(1)
        for chunk in re.split(r"^(?=\$ cnnshape )", block.group(1), flags=re.M):
            if chunk.strip():
                command, _, shown = chunk.partition("\n")
                found.append((command.removeprefix("$ "), shown, offset + len(command) + 1))
            offset += len(chunk)
    return found


def matches(shown: str, actual: str) -> bool:
    """Line by line, trailing spaces ignored; a `...` line matches any number of lines."""
    pattern = ""
    for line in (line.rstrip() for line in shown.rstrip("\n").split("\n")):
        skipped = line == "..."
        pattern += r"(?:\n.*)*?" if skipped else ("\n" if pattern else "") + re.escape(line)
    actual = "\n".join(line.rstrip() for line in actual.rstrip("\n").split("\n"))
    return re.fullmatch(pattern, actual) is not None


_runner = CliRunner()


def cli(*args: str):
    """`cnnshape ARGS...` in this process, named as a user's shell names it (usage lines)."""
    return _runner.invoke(app, list(args), prog_name="cnnshape")


def run(command: str) -> str:
    """What a terminal shows: stdout, then stderr; trailing spaces and blank lines dropped."""
    result = cli(*shlex.split(command)[1:])
    lines = (line.rstrip() for line in (result.stdout + result.stderr).split("\n"))
    return "\n".join(lines).rstrip("\n") + "\n"


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


CASES = [
    pytest.param(page, index, command, id=f"{name(page)}:{index}:{command}")
    for page in PAGES
    for index, (command, _, _) in enumerate(examples(page.read_text()))
]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The run folder SMOKE_RUN makes, trained once for the whole session."""
    where = tmp_path_factory.mktemp("smoke")
    saved = {each: signal.getsignal(each) for each in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = shlex.split(SMOKE_RUN)[1:]
        result = cli(*args[:-1], str(where / "smoke"))
    finally:
        for each, handler in saved.items():
            signal.signal(each, handler)
    assert result.exit_code == 0, result.stdout + result.stderr
    return where / "smoke"


@pytest.fixture
def at_hand(tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet.py").write_text(textwrap.dedent(MYNET))

    def with_run():
        shutil.copytree(request.getfixturevalue("smoke_run"), tmp_path / "runs" / "smoke")

    return with_run


@pytest.mark.parametrize(("page", "index", "command"), CASES)
def test_every_example_is_the_real_output(page, index, command, at_hand, update_golden):
    text = page.read_text()
    shown_command, shown, start = examples(text)[index]
    assert shown_command == command, f"{name(page)} changed while the tests ran"
    if command.startswith("cnnshape eval"):
        at_hand()
    actual = run(command)
    if update_golden and "\n...\n" not in f"\n{shown}":
        page.write_text(text[:start] + actual + text[start + len(shown) :])
        return
    assert matches(shown, actual), f"{name(page)} example `{command}` differs:\n{actual}"


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_page_with_commands_has_checked_examples(page):
    text = page.read_text()
    if COMMAND_LINE.search(text):
        assert examples(text), f"{name(page)} shows commands but no checked ```text example"


def test_the_readme_has_a_checked_example_of_every_command():
    checked = {command.split()[1] for command, _, _ in examples(README.read_text())}
    assert {"list", "show", "compare", "sizes", "memory", "eval"} <= checked, checked
    # Training is measured: its example is a ```console block, unchecked.
    assert any(b.startswith("$ cnnshape train ") for b in CONSOLE.findall(README.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_unchecked_output_is_measured_output(page):
    """A ```console block is not checked, so it holds only what differs from run to run."""
    for block in CONSOLE.findall(page.read_text()):
        for command in re.findall(r"^\$ (.*)", block, flags=re.M):
            assert re.search(r"\btrain\b|--time\b|--measure\b", command), (
                f"{name(page)}: `{command}` is not measured output: make it a ```text block"
            )


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_the_run_folder_of_eval_examples_is_explained(page):
    text = page.read_text()
    if any(c.startswith("cnnshape eval runs/smoke") for c, _, _ in examples(text)):
        assert SMOKE_RUN in text, f"{name(page)} uses runs/smoke without saying how it is made"


def test_the_readme_is_short():
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size:,} bytes; move detail to docs/"


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to `-`."""
    heading = re.sub(r"`|\*\*|\*|~~", "", heading)
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for _, heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base, n = slug(heading), 0
        while (anchor := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(anchor)
    return found


def links(page: Path) -> list[str]:
    prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
    return [t for t in LINK.findall(prose) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_relative_link_leads_somewhere(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.name})")
    assert not broken, f"{name(page)}: " + ", ".join(broken)


def test_the_matcher():
    assert matches("a\n...\nd\n", "a\nb\nc\nd\n") and matches("a\n...\n", "a\n")
    assert not matches("a\nd\n", "a\nb\nd\n") and not matches("a\n...\nd\n", "a\nb\n")


def test_the_link_checker():
    assert slug("What a run folder guarantees") == "what-a-run-folder-guarantees"
    assert slug("Memory: will it fit?") == "memory-will-it-fit"
    assert slug("Several GPUs (torchrun + DDP)") == "several-gpus-torchrun--ddp"
    assert LINK.findall("see [a](b.md#c) and ![x](p.png)") == ["b.md#c", "p.png"]

"""What users see, compared exactly: every format of a few commands against tests/golden/.

A change in any table, JSON document, CSV or Markdown shows up here as a diff. When the
change is intended, regenerate the files and review the diff before committing:

    python -m pytest tests/test_golden.py --update-golden
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli

GOLDEN = Path(__file__).with_name("golden")
FORMATS = ("table", "json", "csv", "markdown")
CASES = {
    "show-lenet": ["show", "lenet"],
    "show-googlenet-96-depth2": ["show", "googlenet", "--size", "96", "--depth", "2"],
    "show-resnet18-rf": ["show", "resnet18", "--rf", "--batch", "2"],
    "compare-lenet-alexnet-nin": ["compare", "lenet", "alexnet", "nin"],
    "compare-at-96": ["compare", "resnet18", "alexnet", "--size", "96"],
    "sizes-alexnet": ["sizes", "alexnet"],
    "list": ["list"],
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(CASES))
def test_output_is_the_golden_file(case, fmt, update_golden, monkeypatch):
    path = GOLDEN / f"{case}.{fmt}"
    monkeypatch.setenv("CNNSHAPE_NO_CACHE", "1")
    walked = cli(*CASES[case], "--format", fmt)
    assert walked.exit_code == 0, walked.stderr
    if update_golden:
        path.write_text(walked.stdout)
    assert walked.stdout == path.read_text(), f"{path} differs; see this file's docstring"
    # The result cache gives the same text, when it stores an answer and when it reads it.
    monkeypatch.delenv("CNNSHAPE_NO_CACHE")
    for _ in ("stored", "read"):
        assert cli(*CASES[case], "--format", fmt).stdout == walked.stdout


def test_every_golden_file_has_a_case():
    expected = {f"{case}.{fmt}" for case in CASES for fmt in FORMATS}
    # graph/ is test_graph.py's.
    assert {p.name for p in GOLDEN.iterdir() if p.is_file()} == expected

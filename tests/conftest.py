"""Shared by every test: a seeded RNG, the CLI as a user meets it, and the golden-file switch."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from typer.testing import CliRunner

from cnnshape.cli import app


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite tests/golden/ and the examples of README.md and docs/ from the tool's "
        "current output (then review the diff) instead of comparing against them.",
    )


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """Each test starts with the handlers of a process started in a terminal (Ctrl-C raises
    KeyboardInterrupt, SIGTERM ends it), whatever this test process inherited: a shell starts
    a background job with Ctrl-C ignored. Afterwards the inherited ones come back; a stopped
    training run leaves both ignored for the rest of its process (the CLI's is on its way
    out), so without this one test's stop would leak into the next."""
    saved = {each: signal.getsignal(each) for each in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for each, handler in saved.items():
        signal.signal(each, handler)


@pytest.fixture(autouse=True, scope="session")
def _private_result_cache(tmp_path_factory):
    """The tests' own result cache (also for their subprocesses), never the user's."""
    os.environ["CNNSHAPE_CACHE_DIR"] = str(tmp_path_factory.mktemp("result-cache"))
    os.environ.pop("CNNSHAPE_NO_CACHE", None)


_runner = CliRunner()


def cli(*args: str):
    """Run `cnnshape ARGS...` in this process; the result has exit_code, stdout, stderr."""
    return _runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result, *fragments: str):
    """A failure as a user should see it: non-zero exit, `Error:` on stderr, no traceback."""
    assert result.exit_code != 0, result.stdout
    assert "Error:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result

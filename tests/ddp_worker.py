"""`cnnshape train` as torchrun starts it, with test-only instrumentation (never part of cnnshape).

tests/test_distributed.py launches ``python -m torch.distributed.run ... tests/ddp_worker.py
train ...``; each rank runs the real CLI. Two switches, from the environment:

- CNNSHAPE_TEST_DUMP=DIR: each rank saves its final model state to DIR/rank<N>.pt and lists
  every file it created, wrote or renamed below its working directory in DIR/rank<N>-writes.json.
- CNNSHAPE_TEST_FAIL=raise|kill: rank 1 raises an exception, or kills itself with SIGKILL, as
  its first epoch starts.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from pathlib import Path

import torch

import cnnshape.train.loop
import cnnshape.train.run
from cnnshape.cli import app

RANK = int(os.environ["RANK"])


def dump_final_state(directory: Path) -> None:
    real_fit = cnnshape.train.run.fit

    def fit_then_dump(model, *args, **kwargs):
        history = real_fit(model, *args, **kwargs)
        torch.save(model.state_dict(), directory / f"rank{RANK}.pt")
        return history

    cnnshape.train.run.fit = fit_then_dump


def record_writes(directory: Path) -> None:
    """An audit hook sees every open-for-writing, mkdir and rename Python does (the checkpoint's
    rename included, although torch.save writes its temporary file from C++)."""
    cwd, written, recording = Path.cwd().resolve(), [], [True]

    def hook(event, args):
        if not recording[0]:
            return
        if event == "open" and args[0] is not None and _writes(args[1], args[2]):
            paths = [args[0]]
        elif event in ("os.mkdir", "os.rename"):
            paths = args[:1] if event == "os.mkdir" else args[:2]
        else:
            return
        for path in paths:
            if isinstance(path, (str, os.PathLike)) and (cwd / path).resolve().is_relative_to(cwd):
                written.append(str(path))

    def save():
        recording[0] = False
        (directory / f"rank{RANK}-writes.json").write_text(json.dumps(written))

    sys.addaudithook(hook)
    atexit.register(save)


def _writes(mode, flags) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


def fail_on_rank_1(how: str) -> None:
    real_epoch = cnnshape.train.loop._train_epoch

    def failing_epoch(*args, **kwargs):
        if RANK == 1:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("test: rank 1 fails on purpose")
        return real_epoch(*args, **kwargs)

    cnnshape.train.loop._train_epoch = failing_epoch


if __name__ == "__main__":
    if os.environ.get("CNNSHAPE_TEST_DUMP"):
        dump_final_state(Path(os.environ["CNNSHAPE_TEST_DUMP"]))
        record_writes(Path(os.environ["CNNSHAPE_TEST_DUMP"]))
    if os.environ.get("CNNSHAPE_TEST_FAIL"):
        fail_on_rank_1(os.environ["CNNSHAPE_TEST_FAIL"])
    app(prog_name="cnnshape")

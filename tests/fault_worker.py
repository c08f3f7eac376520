"""`cnnshape` as a user's process runs it, slowed down on request so that a test can send a
signal or a `kill -9` while a batch runs or a file is being saved (never part of cnnshape).

    python tests/fault_worker.py train lenet-bn ...        # the real CLI, in this process

From the environment:

- CNNSHAPE_TEST_BATCH_SECONDS=s: every training batch takes at least s seconds longer;
- CNNSHAPE_TEST_SAVE_SECONDS=s: every file of the run folder stays s seconds in its
  temporary form before its rename, so a kill often lands inside a save.
"""

from __future__ import annotations

import os
import time

import cnnshape._common
import cnnshape.train.data
from cnnshape.cli import app

BATCH_SECONDS = float(os.environ.get("CNNSHAPE_TEST_BATCH_SECONDS", 0))
SAVE_SECONDS = float(os.environ.get("CNNSHAPE_TEST_SAVE_SECONDS", 0))


def slow_batches() -> None:
    to_input = cnnshape.train.data.to_input

    def slow(*args, **kwargs):
        time.sleep(BATCH_SECONDS)
        return to_input(*args, **kwargs)

    cnnshape.train.data.to_input = slow


def slow_saves() -> None:
    fsync = cnnshape._common._fsync

    def slow(path):
        fsync(path)
        if path.name.endswith(".tmp"):  # written, not yet renamed
            time.sleep(SAVE_SECONDS)

    cnnshape._common._fsync = slow


if __name__ == "__main__":
    if BATCH_SECONDS:
        slow_batches()
    if SAVE_SECONDS:
        slow_saves()
    app(prog_name="cnnshape")

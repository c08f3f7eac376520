"""`cnnshape` as a user's process runs it, slowed down on request so that a test can send a
signal or a `kill -9` while a batch runs or a file is being saved (never part of cnnshape).

    python tests/fault_worker.py train lenet-bn ...        # the real CLI, in this process

From the environment:

- CNNSHAPE_TEST_BATCH_SECONDS=s: every training batch takes at least s seconds longer;
- CNNSHAPE_TEST_SAVE_SECONDS=s: every file of the run folder stays s seconds in its
  temporary form before its rename, so a kill often lands inside a save;
- CNNSHAPE_TEST_HOLD_AFTER=k: once k epochs are saved, every batch waits until the file
  CNNSHAPE_TEST_RELEASE names exists (forever, when it names none), so a test can signal or
  kill a run that is surely still training, however slowly this machine starts processes;
- CNNSHAPE_TEST_FILE_LIMIT_AFTER=k: once k epochs are saved, no file may grow past 64 KiB,
  as under `ulimit -f 64` (POSIX only): the next save's writes fail with EFBIG.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cnnshape._common
import cnnshape.train.data
import cnnshape.train.folder
from cnnshape.cli import app

BATCH_SECONDS = float(os.environ.get("CNNSHAPE_TEST_BATCH_SECONDS", 0))
SAVE_SECONDS = float(os.environ.get("CNNSHAPE_TEST_SAVE_SECONDS", 0))


def slow_batches() -> None:
    to_input = cnnshape.train.data.to_input

    def slow(*args, **kwargs):
        time.sleep(BATCH_SECONDS)
        return to_input(*args, **kwargs)

    cnnshape.train.data.to_input = slow


def hold_after(epochs: int, release: Path | None) -> None:
    saved = [0]
    save_epoch = cnnshape.train.folder.RunFolder.save_epoch
    to_input = cnnshape.train.data.to_input

    def count(self, *args, **kwargs):
        save_epoch(self, *args, **kwargs)
        saved[0] += 1

    def held(*args, **kwargs):
        while saved[0] >= epochs and not (release and release.exists()):
            time.sleep(0.02)  # a signal's handler runs here
        return to_input(*args, **kwargs)

    cnnshape.train.folder.RunFolder.save_epoch = count
    cnnshape.train.data.to_input = held


def limit_file_size_after(epochs: int) -> None:
    import resource

    saved = [0]
    save_epoch = cnnshape.train.folder.RunFolder.save_epoch

    def count(self, *args, **kwargs):
        save_epoch(self, *args, **kwargs)
        saved[0] += 1
        if saved[0] == epochs:
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (65536, hard))

    cnnshape.train.folder.RunFolder.save_epoch = count


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
    if "CNNSHAPE_TEST_HOLD_AFTER" in os.environ:
        release = os.environ.get("CNNSHAPE_TEST_RELEASE")
        hold_after(int(os.environ["CNNSHAPE_TEST_HOLD_AFTER"]), release and Path(release))
    if "CNNSHAPE_TEST_FILE_LIMIT_AFTER" in os.environ:
        limit_file_size_after(int(os.environ["CNNSHAPE_TEST_FILE_LIMIT_AFTER"]))
    app(prog_name="cnnshape")

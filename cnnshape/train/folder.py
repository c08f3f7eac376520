"""A run folder that never loses, mixes or half-writes a person's files.

What it holds: ``checkpoint.pt`` (model, optimizer, epoch, config and history: the commit
point, the one file ``--resume`` and ``eval`` trust), ``metrics.csv`` and ``curves.png`` (views
of the checkpoint's history, written after it), ``config.json`` (every setting, versions,
device) and ``.cnnshape-lock``.

What it guarantees:

- **One process at a time.** A run holds an exclusive lock (``flock``) on ``.cnnshape-lock``
  from before it writes anything until it ends; a second run or ``--resume`` of the same
  folder is refused at once, naming the process that holds it. The kernel drops the lock
  when its process dies, ``kill -9`` included, so a crash never blocks a folder.
- **Whole files, one run.** Every file is replaced atomically (written aside, flushed to
  the disk, renamed). After a kill at any instant, ``checkpoint.pt`` is the last saved epoch,
  whole, and ``metrics.csv``/``curves.png`` show the same epochs or one fewer (a kill
  between the checkpoint and them). ``--resume`` rewrites them from the checkpoint, removes
  unfinished temporary files, and says so in one line.
- **Nobody else's files.** A fresh run takes an empty or new folder, or a run folder of its
  own that never saved an epoch (removing the temporary files a kill left, and saying so);
  a folder that holds a run is left to ``--resume``, and one with other files is refused
  (``--force`` takes it anyway). Only cnnshape's own names count as its own.
- **The disk's failures are named.** A full or read-only disk, or a path that is a file,
  is an Error naming the file and the cause; every earlier file is left as it was.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path

from .._common import atomic_write, temporary_target
from ..errors import CnnshapeError
from . import checkpoint
from .curves import curves_figure
from .events import EpochStats

try:
    import fcntl
except ImportError:  # Windows: no flock; a run folder is then not locked
    fcntl = None

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
LOCK_FILE = ".cnnshape-lock"
RUN_FILES = (checkpoint.FILENAME, METRICS_FILE, CURVES_FILE, CONFIG_FILE)


class RunFolder:
    """A folder this process owns for a run: locked on creation, unlocked by `release`."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = None  # the open lock file while this process holds the folder

    # ---- claiming --------------------------------------------------------------------------

    @classmethod
    def new(cls, out: Path | None, model: str, force: bool = False) -> RunFolder:
        """The folder of a fresh run: ``out`` checked and locked, or a new runs/<model>-<time>."""
        if out is None:
            return cls._fresh_default(model)
        cls._check_new(out, force)  # before creating anything in someone's folder
        folder = cls(out)
        with _writing(out):
            out.mkdir(parents=True, exist_ok=True)
        folder._acquire()
        try:
            cls._check_new(out, force)  # again, now that no one else can write
        except BaseException:
            folder.release()
            raise
        return folder

    @classmethod
    def existing(cls, path: Path) -> RunFolder:
        """A run folder to continue, locked."""
        folder = cls(path)
        folder._acquire()
        return folder

    @classmethod
    def _fresh_default(cls, model: str) -> RunFolder:
        stem = Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
        with _writing(stem.parent):
            stem.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = stem if n == 1 else stem.with_name(f"{stem.name}-{n}")
            try:
                path.mkdir()  # exclusive: two runs started in the same second get two folders
            except FileExistsError:
                continue
            except OSError as err:
                raise _disk_error(path, err) from None
            folder = cls(path)
            folder._acquire()
            return folder
        raise CnnshapeError(f"Too many runs named {stem}-N already.", "Pass --out.")

    @staticmethod
    def _check_new(out: Path, force: bool) -> None:
        if out.exists() and not out.is_dir():
            raise CnnshapeError(
                f"--out {out} is a file, not a folder.", "Give a folder for the run's files."
            )
        for parent in out.parents:
            if parent.exists() and not parent.is_dir():
                raise CnnshapeError(
                    f"--out {out} lies under {parent}, which is a file.",
                    "Give a folder for the run's files.",
                )
        if not out.is_dir():
            return
        if (out / checkpoint.FILENAME).exists():
            raise CnnshapeError(
                f"{out} already holds a run.",
                f"Continue it with --resume {out}, or choose another --out.",
            )
        others = sorted(p.name for p in out.iterdir() if not _ours(p))
        if others and not force:
            shown = ", ".join(others[:5]) + (
                f", ... ({len(others)} in all)" if len(others) > 5 else ""
            )
            raise CnnshapeError(
                f"{out} is not empty and is not a cnnshape run: it holds {shown}.",
                "Choose a new or empty --out, or pass --force to use this folder anyway "
                f"(cnnshape would replace any {', '.join(RUN_FILES)} there).",
            )

    def _acquire(self) -> None:
        if fcntl is None:
            return
        path = self.path / LOCK_FILE
        try:
            handle = open(path, "a+")  # noqa: SIM115 (held open: the lock lives as long as it)
        except OSError as err:
            raise _disk_error(path, err) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise CnnshapeError(
                f"{self.path} is in use by another cnnshape run ({holder}).",
                "Wait for it to finish (or stop it), or choose another --out.",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        """Unlock (the lock file stays: removing it would let two processes lock two files)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __del__(self):
        self.release()

    # ---- writing -----------------------------------------------------------------------

    def write_config(self, info: dict) -> None:
        text = json.dumps(info, indent=2) + "\n"
        self._write(CONFIG_FILE, lambda tmp: tmp.write_text(text))

    def save_epoch(self, history: list[EpochStats], title: str, epochs: int, **state) -> None:
        """The checkpoint first (the commit point), then the views of its history.

        ``state``: checkpoint.write's model, optimizer, scaler and config; the epoch and
        history come from ``history``."""
        recorded = [asdict(s) for s in history]
        self._write(
            checkpoint.FILENAME,
            lambda tmp: checkpoint.write(tmp, epoch=len(history), history=recorded, **state),
        )
        self._write_views(history, title, epochs)

    def _write_views(self, history: list[EpochStats], title: str, epochs: int) -> None:
        self._write(METRICS_FILE, lambda tmp: _write_metrics(tmp, history))
        figure = curves_figure(history, title=title, epochs=epochs)
        self._write(CURVES_FILE, lambda tmp: figure.savefig(tmp, format="png"))

    def _write(self, name: str, write) -> None:
        path = self.path / name
        with _writing(path):
            atomic_write(path, write)

    # ---- repairing ---------------------------------------------------------------------

    def clean(self) -> str | None:
        """Remove what a run killed before its first save left in a fresh run's folder; a
        line saying so, or None when there was nothing."""
        removed = self._remove_temporaries()
        return f"Cleaned {self.path}: {removed}." if removed else None

    def repair(self, history: list[EpochStats], title: str, epochs: int) -> str | None:
        """Make the folder what the checkpoint says, after a kill; a line saying what was
        done, or None when there was nothing to do."""
        done = []
        removed = self._remove_temporaries()
        if removed:
            done.append(removed)
        recorded = _read_metrics_or_none(self.path / METRICS_FILE)
        if recorded != history:
            if recorded is None:
                done.append(f"rewrote {METRICS_FILE} (missing or unreadable)")
            else:
                done.append(
                    f"rewrote {METRICS_FILE} ({len(recorded)} epochs) from checkpoint.pt "
                    f"({len(history)} epochs)"
                )
            self._write_views(history, title, epochs)
        return f"Repaired {self.path}: {'; '.join(done)}." if done else None

    def _remove_temporaries(self) -> str | None:
        stale = sorted(p for p in self.path.iterdir() if _temporary(p))
        for path in stale:
            path.unlink(missing_ok=True)
        n = len(stale)
        return f"removed {n} unfinished temporary file{'s' * (n > 1)}" if n else None


def _ours(path: Path) -> bool:
    """What a fresh run may replace: the lock, temporary files and the config.json of a run
    that never saved an epoch (the checkpoint comes before every other view of a run)."""
    if path.name == LOCK_FILE or _temporary(path):
        return True
    if path.name == CONFIG_FILE and _regular_file(path):  # a FIFO would block the read
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(path.read_text())
            return isinstance(info, dict) and {"config", "versions", "written"} <= set(info)
    return False


def _regular_file(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISREG(path.lstat().st_mode)
    return False


def _temporary(path: Path) -> bool:
    """One of atomic_write's temporary files of a run's own files (a kill -9 mid-save left
    it), e.g. .checkpoint.pt.0123456789ab.tmp; never another hidden .tmp file."""
    return temporary_target(path) in RUN_FILES


def _write_metrics(path: Path, history: list[EpochStats]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(EpochStats)])
        writer.writeheader()
        writer.writerows(asdict(s) for s in history)


def read_metrics(path: str | Path) -> list[EpochStats]:
    with Path(path).open(newline="") as f:
        return [
            EpochStats(epoch=int(row.pop("epoch")), **{k: float(v) for k, v in row.items()})
            for row in csv.DictReader(f)
        ]


def _read_metrics_or_none(path: Path) -> list[EpochStats] | None:
    try:
        return read_metrics(path)
    except (OSError, ValueError, TypeError, KeyError):
        return None


# ---- the disk's failures ---------------------------------------------------------------

_CAUSES = {
    errno.ENOSPC: ("the disk is full", "Free some space"),
    errno.EDQUOT: ("the disk quota is used up", "Free some space"),
    # Python ignores SIGXFSZ, so a write past `ulimit -f` fails with EFBIG.
    errno.EFBIG: (
        "the file is larger than the size limit (ulimit -f) or the file system allows",
        "Raise the limit (ulimit -f), or choose an --out on another disk",
    ),
    errno.EROFS: ("the file system is read-only", "Choose an --out on a writable disk"),
    errno.EACCES: ("permission denied", "Choose an --out you can write to"),
    errno.EPERM: ("permission denied", "Choose an --out you can write to"),
    errno.ENOTDIR: ("a part of the path is a file", "Give a folder for the run's files"),
    errno.EEXIST: ("a file is in the way", "Give a folder for the run's files"),
}


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """OSError while writing ``path`` -> an Error that names it, its cause and what to do."""
    try:
        yield
    except OSError as err:
        raise _disk_error(path, err) from err


def _disk_error(path: Path, err: OSError) -> CnnshapeError:
    cause, todo = _CAUSES.get(err.errno, (err.strerror or str(err), "Check the disk and path"))
    return CnnshapeError(
        f"Cannot write {path}: {cause}.",
        f"{todo}; the run's earlier files are as they were (continue with --resume once it "
        "can write, if an epoch was saved).",
    )

"""Checkpoints that are checked before they are trusted and can never run code when loaded.

``torch.save`` writes a zip archive whose every member carries a CRC-32, which
``torch.load`` does not verify: a checkpoint with flipped bytes inside a tensor would load
silently. `load` verifies every member's checksum first, so a damaged file is an Error that
names it. Then ``torch.load(weights_only=True)``, which accepts tensors and plain data only:
a checkpoint carrying a pickled Python object is refused, not executed. Writing atomically
is the run folder's job (``folder.py``).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import CnnshapeError

FORMAT = "cnnshape-checkpoint/1"
FILENAME = "checkpoint.pt"
_REQUIRED = ("format", "model", "optimizer", "epoch", "config", "history")
_MSDOS_FOLDER = 0x10  # FILE_ATTRIBUTE_DIRECTORY, in the low byte of a zip member's attributes


def write(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    config: dict,
    history: list[dict],
) -> None:
    """Model, optimizer (and fp16 loss scaler), last finished epoch, config and history.

    A full disk or a file size limit (``ulimit -f``) is the OSError it is: torch.save's C++
    writer turns the OSError of a Python file's write into an opaque RuntimeError ("[enforce
    fail at inline_container.cc] unexpected pos"), so the file remembers it and it is raised
    instead. ``folder.RunFolder`` makes the write atomic.
    """
    state = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": epoch,
        "config": config,
        "history": history,
        "versions": {"torch": str(torch.__version__)},  # str: TorchVersion would be a pickled class
    }
    with open(path, "wb") as f:
        file = _WriteErrorKept(f)
        try:
            torch.save(state, file)
        except RuntimeError:
            if file.error is None:
                raise
            raise file.error from None


class _WriteErrorKept:
    """A file for torch.save that keeps the first OSError of its writes."""

    def __init__(self, file):
        self._file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self._file.flush()


def resolve_path(path: str | os.PathLike) -> Path:
    """A run directory means the checkpoint.pt inside it."""
    path = Path(path).expanduser()
    return path / FILENAME if path.is_dir() else path


def load(path: str | os.PathLike) -> dict:
    """The checkpoint's dict (tensors on the CPU), or a CnnshapeError saying what is wrong."""
    path = resolve_path(path)
    if not path.is_file():
        raise CnnshapeError(
            f"No checkpoint at {path}.",
            "Pass a run directory (it holds checkpoint.pt) or a checkpoint file.",
        )
    _verify(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):
            raise _damaged(path, exc) from exc
        raise CnnshapeError(
            f"Refusing to load {path}: it contains pickled Python objects, and loading those "
            f"could run code ({_unsupported_global(exc)}).",
            "cnnshape loads checkpoints with torch.load(weights_only=True): tensors and plain "
            "data only. Use checkpoints written by `cnnshape train`.",
        ) from exc
    except Exception as exc:  # zip, EOF, I/O errors: to a user they all mean a damaged file
        raise _damaged(path, exc) from exc
    if (
        not isinstance(state, dict)
        or state.get("format") != FORMAT
        or any(key not in state for key in _REQUIRED)
    ):
        raise CnnshapeError(
            f"{path} is not a cnnshape checkpoint.",
            "Use a checkpoint.pt written by `cnnshape train`.",
        )
    return state


def _verify(path: Path) -> None:
    """Every member of the archive against its CRC-32 (reading the whole file once)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            folders = [i.filename for i in archive.infolist() if _marked_folder(i)]
    except Exception as exc:  # zipfile and zlib raise a dozen kinds for a damaged archive
        raise _damaged(path, exc) from exc
    if bad is not None:
        raise _damaged(path, ValueError(f"{bad} fails its checksum"))
    if folders:
        raise _damaged(path, ValueError(f"{folders[0]} is marked as a folder"))


def _marked_folder(member: zipfile.ZipInfo) -> bool:
    """torch.load's reader skips a member marked as a folder (by its MS-DOS attribute too,
    which zipfile ignores), leaving that tensor's memory as it found it: torch.save marks
    none, so one flipped attribute bit would otherwise load garbage weights silently."""
    return member.is_dir() or bool(member.external_attr & _MSDOS_FOLDER)


def _unsupported_global(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
    return lines[0] if lines else "unsupported object"


def _damaged(path: Path, exc: Exception) -> CnnshapeError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CnnshapeError(
        f"{path} is damaged (or not a checkpoint): {first}.",
        "Its run's metrics.csv and curves.png still show the history. Train again (a new "
        "--out), or use a copy of the checkpoint from before the damage.",
    )

"""Checkpoints that are always whole on disk and can never run code when loaded.

Saving writes a temporary file next to the target and renames it over the target
(``os.replace`` is atomic on one file system), so a crash or Ctrl-C leaves either the old file
or the new one. Loading uses ``torch.load(weights_only=True)``, which accepts tensors and plain
data only: a checkpoint carrying a pickled Python object is refused, not executed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import nn

from .._common import atomic_write
from ..errors import CnnshapeError

FORMAT = "cnnshape-checkpoint/1"
FILENAME = "checkpoint.pt"
_REQUIRED = ("format", "model", "optimizer", "epoch", "config", "history")


def save(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    config: dict,
    history: list[dict],
) -> None:
    """Model, optimizer (and fp16 loss scaler), last finished epoch, config and history."""
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
    atomic_write(path, lambda tmp: torch.save(state, tmp))


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


def _unsupported_global(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
    return lines[0] if lines else "unsupported object"


def _damaged(path: Path, exc: Exception) -> CnnshapeError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CnnshapeError(
        f"{path} is damaged or not a checkpoint: {first}",
        "Use the checkpoint of another run, or train again.",
    )

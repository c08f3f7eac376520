"""curves.png: train loss, train accuracy and test accuracy against epoch, as d2l's Animator
draws them while ``train_ch6`` runs."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .._common import new_figure, save_png
from .events import EpochStats


def plot_history(
    history: Sequence[EpochStats],
    path: str | os.PathLike,
    title: str | None = None,
    epochs: int | None = None,
) -> None:
    """Write the curves to ``path`` (atomically). ``epochs`` fixes the x range, as the book's
    plot spans all planned epochs from the start."""
    fig, (ax,) = new_figure((5, 3.5))
    x = [s.epoch for s in history]
    ax.plot(x, [s.train_loss for s in history], "-", label="train loss")
    ax.plot(x, [s.train_acc for s in history], "m--", label="train acc")
    ax.plot(x, [s.test_acc for s in history], "g-.", label="test acc")
    ax.set_xlabel("epoch")
    ax.set_xlim(1, max(epochs or 0, x[-1] if x else 1, 2))
    ax.grid(True)
    ax.legend()
    if title:
        ax.set_title(title)
    save_png(fig, path)

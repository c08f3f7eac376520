"""History -> curves.png: train loss, train acc and test acc against epoch, as d2l's Animator."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .checkpoint import atomic_write
from .train import EpochStats


def plot_history(history: Sequence[EpochStats], path: str | os.PathLike,
                 title: str | None = None, epochs: int | None = None) -> None:
    """Write the curves to ``path`` (atomically). ``epochs`` fixes the x range, as the book's
    plot spans all planned epochs from the start."""
    # Imported here: matplotlib costs a third of a second, which `cnnshape show` should not pay.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas directly, not pyplot: no global figure state, no GUI backend.
    fig = Figure(figsize=(5, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
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
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))

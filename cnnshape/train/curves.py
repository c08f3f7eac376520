"""curves.png: train loss, train accuracy and test accuracy against epoch, as d2l's Animator
draws them while ``train_ch6`` runs."""

from __future__ import annotations

from collections.abc import Sequence

from .._common import new_figure
from .events import EpochStats


def curves_figure(
    history: Sequence[EpochStats], title: str | None = None, epochs: int | None = None
):
    """The curves as a matplotlib figure (``folder.py`` writes it). ``epochs`` fixes the x
    range, as the book's plot spans all planned epochs from the start."""
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
    fig.tight_layout()
    return fig

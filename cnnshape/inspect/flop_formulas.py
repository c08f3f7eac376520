"""PyTorch's FLOP formulas: ``torch.utils.flop_counter.flop_registry``, the ones
``FlopCounterMode`` uses, imported the way this process wants them.

``torch.utils.flop_counter`` imports triton at its top only so that ``register_flop_formula``
accepts triton kernels; a walk never meets one. Triton's libraries are about 900 MB: their
import takes 0.1 s with the page cache warm and 1-3 s when it is cold, more than a whole walk.
The command line, whose process registers no formula for a triton kernel, calls
`skip_triton` first, and the module is then imported with triton hidden for that moment
(triton stays importable afterwards, for ``torch.compile``). A library user's process gets
the module as PyTorch makes it. Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

_skip_triton = False


def skip_triton() -> None:
    """Import the formulas without triton, when they are first needed (the command line)."""
    global _skip_triton
    _skip_triton = True


def flop_registry() -> dict:
    # torch whole first, before triton is hidden: torch's own triton checks must see it.
    import torch  # noqa: F401

    with _triton_hidden() if _skip_triton else contextlib.nullcontext():
        from torch.utils.flop_counter import flop_registry
    return flop_registry


@contextlib.contextmanager
def _triton_hidden() -> Iterator[None]:
    if "triton" in sys.modules or "torch.utils.flop_counter" in sys.modules:
        yield  # nothing left to spare
        return
    # None in sys.modules makes `import triton` raise ImportError, which flop_counter expects
    # (on CUDA builds it then logs that triton kernels will not be counted: not our case).
    logger = logging.getLogger("torch.utils.flop_counter")
    was_disabled, logger.disabled = logger.disabled, True
    sys.modules["triton"] = None
    try:
        yield
    finally:
        if sys.modules.get("triton", 0) is None:
            del sys.modules["triton"]
        logger.disabled = was_disabled

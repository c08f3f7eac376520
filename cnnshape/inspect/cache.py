"""Results of inspection kept on disk, so asking again answers without importing torch.

A walk is a pure function of the model's code, the request and the library versions: the
same question always has the same answer. Most of a command's time is ``import torch``
(about 1.5-2 s), so a repeated ``cnnshape show resnet18`` can answer in a tenth of that
from a file, provided the answer can never be stale. The key therefore holds:

- the request (kind, model reference, input shape, depth, ...);
- a hash of every source file of the cnnshape package (the registry's models, the walk, the
  shape rules: any change to any of them is a new key);
- the versions of Python, torch and torchvision (and timm for ``timm:`` models).

Only models whose code is pinned by those are cached: the registry, ``torchvision:`` and
``timm:``. A user's own file (``net.py:Net``) can import anything, so it is always walked
afresh, as are measured results (``--time``) and failures. A missing, unreadable or
corrupt entry is a miss; a cache that cannot be written is skipped: the cache can make a
command faster, never wrong or failing.

Where: ``$CNNSHAPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnshape/results`` (default
``~/.cache``). ``CNNSHAPE_NO_CACHE=1`` turns it off. Entries of other fingerprints (an older
cnnshape or torch) are removed when a new one is written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from .._common import atomic_write
from ..registry import is_reference

T = TypeVar("T")
_PACKAGE = Path(__file__).resolve().parent.parent  # cnnshape/


def enabled() -> bool:
    return os.environ.get("CNNSHAPE_NO_CACHE", "") in ("", "0")


def cacheable(ref: str) -> bool:
    """Whether a model reference's code is pinned by the fingerprint (not the user's own)."""
    return not is_reference(ref) or ref.partition(":")[0] in ("torchvision", "timm")


def directory() -> Path:
    if os.environ.get("CNNSHAPE_CACHE_DIR"):
        return Path(os.environ["CNNSHAPE_CACHE_DIR"]).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cnnshape" / "results"


def remembered(
    kind: str,
    request: dict[str, Any],
    compute: Callable[[], T],
    save: Callable[[T], dict],
    load: Callable[[dict], T],
) -> T:
    """``compute()``'s result for ``request``, from the cache when it holds it."""
    if not enabled() or not cacheable(str(request.get("model", ""))):
        return compute()
    path = _entry(kind, request)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return load(json.loads(path.read_text()))
    result = compute()
    with contextlib.suppress(OSError):
        _store(path, save(result))
    return result


def _entry(kind: str, request: dict[str, Any]) -> Path:
    key = json.dumps({"kind": kind, **request}, sort_keys=True, default=str)
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return directory() / fingerprint() / f"{kind}-{name}.json"


def _store(path: Path, data: dict) -> None:
    if not path.parent.exists():
        for stale in path.parent.parent.glob("*"):  # another cnnshape or torch wrote those
            shutil.rmtree(stale, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data)
    atomic_write(path, lambda tmp: tmp.write_text(text))


@functools.cache
def fingerprint() -> str:
    """The cnnshape source and the library versions every cached answer depends on."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(_PACKAGE)).encode())
        digest.update(path.read_bytes())
    digest.update(platform.python_version().encode())
    for package in ("torch", "torchvision", "timm"):
        try:
            digest.update(f"{package}=={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package} absent".encode())
    return digest.hexdigest()[:24]

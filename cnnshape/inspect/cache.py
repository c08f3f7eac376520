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
afresh, as are measured results (``--time``) and failures.

The cache can make a command faster, never wrong, failing or harmful:

- **Its own files only.** Each entry is one regular file named
  ``cnnshape-<fingerprint>-<kind>-<key>.json``; that name is its mark. The cache reads,
  replaces and removes only regular files so named (and their temporary files), never a
  folder, a link or anything else, wherever ``$CNNSHAPE_CACHE_DIR`` points (``$HOME``
  included). It creates the folder when missing and never removes it.
- **Checked before trusted.** An entry is read only if it is a regular file of at most
  `MAX_ENTRY_BYTES`, and used only if it rebuilds into a result whose every field has its
  declared type; anything else (truncated JSON, ``null``, a field of the wrong type, a FIFO,
  a link to ``/dev/zero``) is a miss and is recomputed.
- **Bounded.** After each write, entries are removed until the cache holds at most
  ``$CNNSHAPE_CACHE_MAX`` (default `DEFAULT_MAX_BYTES`): first those of other fingerprints
  (an older cnnshape or torch), then the least recently used.
- **Optional.** A cache that cannot be written is skipped. ``--no-cache`` or
  ``CNNSHAPE_NO_CACHE=1`` turns it off; ``cnnshape cache info`` and ``cnnshape cache clear``
  show and empty it.

Where: ``$CNNSHAPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnshape/results`` (default
``~/.cache``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import os
import platform
import re
import stat
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from .._common import atomic_write, parse_bytes, temporary_target
from ..errors import CnnshapeError
from ..registry import is_reference

T = TypeVar("T")
_PACKAGE = Path(__file__).resolve().parent.parent  # cnnshape/

MAX_ENTRY_BYTES = 16 * 2**20  # far above any walk's answer (GoogLeNet at depth 3: 30 KB)
DEFAULT_MAX_BYTES = 100 * 10**6
_ENTRY_NAME = re.compile(r"cnnshape-(?P<fingerprint>[0-9a-f]{24})-[a-z]+-[0-9a-f]{32}\.json")


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


def max_bytes() -> int:
    """The size bound: ``$CNNSHAPE_CACHE_MAX`` (e.g. 50MB), else `DEFAULT_MAX_BYTES`."""
    text = os.environ.get("CNNSHAPE_CACHE_MAX", "")
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return parse_bytes(text)
    except ValueError as err:
        raise CnnshapeError(
            f"CNNSHAPE_CACHE_MAX={text!r} is not a size: {err}",
            "Give a size with a unit (50MB, 1GiB), or unset it for the default.",
        ) from None


def cached(kind: str, cls: type, *, measured: Callable[[dict[str, Any]], bool]):
    """Make a function's ``cache=True`` calls answer from the cache.

    The key is the call's bound arguments (defaults filled in, ``cache`` left out); the first
    argument is the model reference, which decides whether the answer can be cached at all
    (`cacheable`), and ``measured(arguments)`` says when it is a measurement, never cached.
    ``cls`` is the result's dataclass: stored as ``dataclasses.asdict`` gives it, rebuilt by
    ``cls.from_fields``."""

    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            if not arguments.pop("cache") or measured(arguments):
                return function(**arguments, cache=False)
            reference = str(next(iter(arguments.values())))
            return remembered(
                kind, reference, arguments, lambda: function(**arguments, cache=False), cls
            )

        return wrapper

    return decorate


def remembered(
    kind: str, reference: str, request: dict[str, Any], compute: Callable[[], T], cls: type[T]
) -> T:
    """``compute()``'s result for ``request`` (about the model ``reference``), from the cache
    when it holds it."""
    if not enabled() or not cacheable(reference):
        return compute()
    path = _entry(kind, request)
    found = _load(path, cls)
    if found is not None:
        with contextlib.suppress(OSError):
            os.utime(path)  # its last use, which decides what the size bound evicts first
        return found
    result = compute()
    with contextlib.suppress(OSError, CnnshapeError):
        _store(path, asdict(result))
    return result


def _entry(kind: str, request: dict[str, Any]) -> Path:
    key = json.dumps({"kind": kind, **request}, sort_keys=True, default=str)
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return directory() / f"cnnshape-{fingerprint()}-{kind}-{name}.json"


def _load(path: Path, cls: type[T]) -> T | None:
    """The entry's result, or None when it is missing or does not validate."""
    text = _read_regular_file(path)
    if text is None:
        return None
    try:
        fields = json.loads(text)
        result = cls.from_fields(fields)  # type: ignore[attr-defined]
    except Exception:  # whatever a damaged entry makes from_fields raise, it is a miss
        return None
    # Every field of the declared type, and nothing added or lost on the way back.
    if not _conforms(result, cls) or json.loads(json.dumps(asdict(result))) != fields:
        return None
    return result


def _read_regular_file(path: Path) -> str | None:
    """The text of ``path`` if it is a regular file of bounded size; never follows a link,
    never blocks on a FIFO, never reads a device."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        try:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENTRY_BYTES:
                return None
            return file.read(MAX_ENTRY_BYTES + 1).decode()
        except (OSError, UnicodeDecodeError):
            return None


def _store(path: Path, data: dict) -> None:
    text = json.dumps(data)
    if len(text) > MAX_ENTRY_BYTES:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text), follow_symlinks=False)
    _evict(max_bytes())


# ---- what the user sees: cnnshape cache ---------------------------------------------------


@dataclass
class CacheInfo:
    directory: str
    entries: int  # all of cnnshape's entries in the folder
    current: int  # those this cnnshape and these library versions can answer from
    bytes: int
    max_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def info() -> CacheInfo:
    entries = list(_entries())
    mine = fingerprint()
    return CacheInfo(
        directory=str(directory()),
        entries=len(entries),
        current=sum(_ENTRY_NAME.fullmatch(p.name)["fingerprint"] == mine for p, _ in entries),
        bytes=sum(size for _, size in entries),
        max_bytes=max_bytes(),
    )


def clear() -> CacheInfo:
    """Remove every entry of cnnshape's (and their temporary files); what was removed."""
    removed = info()
    for path, _ in _entries():
        _remove(path)
    for path in _temporary_files():
        _remove(path)
    return removed


def _entries() -> Iterator[tuple[Path, int]]:
    """(path, bytes) of every entry: regular files with an entry's name, nothing else."""
    for path, info_ in _regular_files():
        if _ENTRY_NAME.fullmatch(path.name):
            yield path, info_.st_size


def _temporary_files() -> Iterator[Path]:
    for path, _ in _regular_files():
        target = temporary_target(path)
        if target is not None and _ENTRY_NAME.fullmatch(target):
            yield path


def _regular_files() -> Iterator[tuple[Path, os.stat_result]]:
    try:
        listing = list(os.scandir(directory()))
    except OSError:
        return
    for item in listing:
        with contextlib.suppress(OSError):
            found = item.stat(follow_symlinks=False)
            if stat.S_ISREG(found.st_mode):
                yield Path(item.path), found


def _evict(bound: int) -> None:
    """Remove entries until the rest fit in ``bound`` bytes: first those of other
    fingerprints, then the least recently used."""
    mine = fingerprint()
    entries = []
    for path, _ in _entries():
        with contextlib.suppress(OSError):
            found = path.stat(follow_symlinks=False)
            current = _ENTRY_NAME.fullmatch(path.name)["fingerprint"] == mine
            entries.append((current, found.st_mtime, found.st_size, path))
    total = sum(size for _, _, size, _ in entries)
    for _, _, size, path in sorted(entries):
        if total <= bound:
            break
        _remove(path)
        total -= size


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


# ---- validation -----------------------------------------------------------------------------


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` has type ``hint``: a dataclass (every field, recursively), a union,
    list[...], tuple[...], dict[...] or a plain class. JSON numbers: an int is a float too."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, option) for option in args)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint) and all(
            _conforms(getattr(value, name), field_type)
            for name, field_type in _field_types(hint).items()
        )
    if origin in (list, tuple, dict):
        if not isinstance(value, origin):
            return False
        if origin is dict:
            return all(_conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items())
        if origin is tuple and args[-1:] != (...,):
            return len(value) == len(args) and all(map(_conforms, value, args))
        return all(_conforms(item, args[0]) for item in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Each field's type, its annotation evaluated in the class's module. A name imported
    only for type checking is a measured result's class (Timing, StepMemory): the cache never
    holds those, so that field must be None."""
    module = vars(sys.modules[cls.__module__])
    found = {}
    for f in dataclasses.fields(cls):
        try:
            found[f.name] = eval(f.type, module) if isinstance(f.type, str) else f.type
        except NameError:
            found[f.name] = None
    return found


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

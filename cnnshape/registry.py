"""Every architecture cnnshape knows, with the seed's defaults for inspection and training.

Adding a model is one builder in ``cnnshape/models/`` and one ``@register(...)`` line above it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from .errors import CnnshapeError


@dataclass(frozen=True)
class Recipe:
    """The seed's training hyperparameters for one model (d2l ``train_ch6`` arguments)."""

    lr: float
    batch_size: int
    epochs: int = 10


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    size: int  # the input height/width the book uses for this network
    recipe: Recipe
    section: str  # where in d2l the network comes from
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def description(self) -> str:
        doc = (self.builder.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def build(self, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
        return self.builder(in_channels=in_channels, num_classes=num_classes)


_REGISTRY: dict[str, ModelSpec] = {}
_LOOKUP: dict[str, str] = {}  # normalized name or alias -> registered name


def _normalize(name: str) -> str:
    """Case-insensitive, with ``_`` and ``-`` interchangeable."""
    return name.strip().lower().replace("_", "-")


def register(
    name: str,
    *,
    size: int,
    lr: float,
    batch_size: int,
    section: str,
    epochs: int = 10,
    aliases: tuple[str, ...] = (),
):
    """Decorator that registers a builder ``f(in_channels=1, num_classes=10) -> nn.Module``."""

    def decorator(builder):
        spec = ModelSpec(name, builder, size, Recipe(lr, batch_size, epochs), section, aliases)
        for key in (name, *aliases):
            if _normalize(key) in _LOOKUP:
                raise ValueError(f"model name {key!r} is registered twice")
            _LOOKUP[_normalize(key)] = name
        _REGISTRY[name] = spec
        return builder

    return decorator


def _load_models() -> None:
    from . import models  # noqa: F401  (importing the package runs every @register)


def list_specs() -> list[ModelSpec]:
    _load_models()
    return list(_REGISTRY.values())


def get_spec(name: str) -> ModelSpec:
    _load_models()
    key = _normalize(name)
    if key in _LOOKUP:
        return _REGISTRY[_LOOKUP[key]]
    close = difflib.get_close_matches(key, list(_LOOKUP), n=3, cutoff=0.5)
    suggestions = list(dict.fromkeys(_LOOKUP[c] for c in close))  # dedupe, best match first
    did_you_mean = f"Did you mean {' or '.join(suggestions)}? " if suggestions else ""
    hint = did_you_mean + "Run `cnnshape list` to see every model."
    raise CnnshapeError(f"Unknown model {name!r}.", hint)


def match_specs(patterns: list[str]) -> list[ModelSpec]:
    """Resolve names, aliases, shell-style patterns ('lenet*') and 'all', keeping order."""
    specs = list_specs()
    chosen: list[ModelSpec] = []
    for pattern in patterns:
        if _normalize(pattern) == "all":
            found = specs
        elif any(ch in pattern for ch in "*?["):
            found = [s for s in specs if fnmatch.fnmatch(s.name, _normalize(pattern))]
            if not found:
                raise CnnshapeError(
                    f"No model matches {pattern!r}.", "Run `cnnshape list` to see every model."
                )
        else:
            found = [get_spec(pattern)]
        chosen += [s for s in found if s not in chosen]
    return chosen

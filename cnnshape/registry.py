"""Every architecture cnnshape knows: the seed's defaults and checked facts, as plain data.

The table below is data, not code: reading it imports neither torch nor the models, so
`cnnshape list` and `--help` answer at once. Each entry names its builder in
``cnnshape/models/`` and carries its parameter count and MACs at the default input size, the
way torchvision's ``Weights.meta`` carries ``num_params`` and ``_ops``; a test builds every
model and fails the day a builder and its metadata disagree.

Adding a model: one builder in ``cnnshape/models/``, one ``ModelSpec`` entry here (the test
then tells you its params and MACs).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import CnnshapeError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Recipe:
    """The seed's training hyperparameters for one model (d2l ``train_ch6`` arguments)."""

    lr: float
    batch_size: int
    epochs: int = 10


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: str  # "module:function" in cnnshape.models, imported only when a model is built
    size: int  # the input height and width the book uses for this network
    recipe: Recipe
    section: str  # where in d2l the network comes from
    description: str  # one line; the builder's docstring says the same (tested)
    params: int  # at 1 input channel and 10 classes (tested against the builder)
    macs: int  # one image at size x size (tested against the walk and FlopCounterMode)
    aliases: tuple[str, ...] = ()

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def build(self, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
        module, _, function = self.builder.partition(":")
        build = getattr(importlib.import_module(f"cnnshape.models.{module}"), function)
        return build(in_channels=in_channels, num_classes=num_classes)


# The book's order. Params and MACs: 1 channel, 10 classes, batch 1 at the default size.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "lenet",
        "lenet:lenet",
        size=28,
        recipe=Recipe(lr=0.9, batch_size=256),
        section="d2l 6.6 LeNet",
        aliases=("lenet5",),
        params=61_706,
        macs=416_520,
        description="LeNet-5 with sigmoid and average pooling (the previous chapter's "
        "train_ch6 model).",
    ),
    ModelSpec(
        "alexnet",
        "alexnet:alexnet",
        size=224,
        recipe=Recipe(lr=0.01, batch_size=128),
        section="d2l 7.1 AlexNet",
        params=46_764_746,
        macs=938_146_176,
        description="AlexNet: 5 convolutions, 3 max-pools, Linear(6400, 4096) x2 with dropout.",
    ),
    ModelSpec(
        "vgg",
        "vgg:vgg11",
        size=224,
        recipe=Recipe(lr=0.05, batch_size=128),
        section="d2l 7.2 VGG",
        aliases=("vgg11",),
        params=128_806_154,
        macs=7_547_232_256,
        description="VGG-11: five vgg_blocks (8 convolutions) and three Linear layers.",
    ),
    ModelSpec(
        "vgg-small",
        "vgg:vgg11_small",
        size=224,
        recipe=Recipe(lr=0.05, batch_size=128),
        section="d2l 7.2 VGG",
        aliases=("vgg11-small",),
        params=43_093_322,
        macs=512_155_648,
        description="VGG-11 with every channel count divided by 4 (the one the book trains).",
    ),
    ModelSpec(
        "nin",
        "nin:nin",
        size=224,
        recipe=Recipe(lr=0.1, batch_size=128),
        section="d2l 7.3 NiN",
        params=1_992_166,
        macs=762_297_352,
        description="NiN: four nin_blocks and global average pooling, no Linear layer at all.",
    ),
    ModelSpec(
        "googlenet",
        "googlenet:googlenet",
        size=96,
        recipe=Recipe(lr=0.1, batch_size=128),
        section="d2l 7.4 GoogLeNet",
        aliases=("inception",),
        params=5_977_530,
        macs=276_066_304,
        description="GoogLeNet: five stages b1-b5 with nine Inception blocks, then Linear(1024).",
    ),
    ModelSpec(
        "lenet-bn-scratch",
        "batchnorm:lenet_bn_scratch",
        size=28,
        recipe=Recipe(lr=1.0, batch_size=256),
        section="d2l 7.5 Batch Normalization (from scratch)",
        params=44_878,
        macs=281_640,
        description="LeNet with the book's from-scratch BatchNorm after every conv and hidden "
        "Linear.",
    ),
    ModelSpec(
        "lenet-bn",
        "batchnorm:lenet_bn",
        size=28,
        recipe=Recipe(lr=1.0, batch_size=256),
        section="d2l 7.5 Batch Normalization (concise)",
        aliases=("lenet-bn-concise",),
        params=44_878,
        macs=281_640,
        description="LeNet with nn.BatchNorm2d/1d (the book's concise version).",
    ),
    ModelSpec(
        "resnet18",
        "resnet:resnet18",
        size=96,
        recipe=Recipe(lr=0.05, batch_size=256),
        section="d2l 7.6 ResNet",
        aliases=("resnet", "resnet-18"),
        params=11_178_378,
        macs=318_657_536,
        description="ResNet-18: a 7x7 stem, then four stages of two Residual blocks each.",
    ),
    ModelSpec(
        "densenet",
        "densenet:densenet",
        size=96,
        recipe=Recipe(lr=0.1, batch_size=256),
        section="d2l 7.7 DenseNet",
        params=758_226,
        macs=129_077_168,
        description="DenseNet: four DenseBlocks of 4 convs (growth rate 32) joined by "
        "transition layers.",
    ),
)


def is_reference(ref: str) -> bool:
    """Whether a model reference names something outside the registry: those all have a
    colon (torchvision:NAME, timm:NAME, path/to/file.py:Net, package.module:factory)."""
    return ":" in ref


def _normalize(name: str) -> str:
    """Case-insensitive, with ``_`` and ``-`` interchangeable."""
    return name.strip().lower().replace("_", "-")


def _lookup_table() -> dict[str, ModelSpec]:
    table: dict[str, ModelSpec] = {}
    for spec in MODELS:
        for key in (spec.name, *spec.aliases):
            if _normalize(key) in table:
                raise ValueError(f"model name {key!r} is registered twice")
            table[_normalize(key)] = spec
    return table


_LOOKUP = _lookup_table()  # normalized name or alias -> spec


def list_specs() -> list[ModelSpec]:
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    key = _normalize(name)
    if key in _LOOKUP:
        return _LOOKUP[key]
    close = difflib.get_close_matches(key, list(_LOOKUP), n=3, cutoff=0.5)
    suggestions = list(dict.fromkeys(_LOOKUP[c].name for c in close))  # best match first
    hint = did_you_mean(suggestions) + "Run `cnnshape list` to see every model."
    raise CnnshapeError(f"Unknown model {name!r}.", hint)


def did_you_mean(candidates: list[str]) -> str:
    """'Did you mean a or b? ' for the closest names, best first; '' when there are none."""
    return f"Did you mean {' or '.join(candidates)}? " if candidates else ""


def match_specs(patterns: list[str]) -> list[ModelSpec]:
    """Resolve names, aliases, shell-style patterns ('lenet*') and 'all', keeping order."""
    chosen: list[ModelSpec] = []
    for pattern in patterns:
        if _normalize(pattern) == "all":
            found = list(MODELS)
        elif any(ch in pattern for ch in "*?["):
            found = [s for s in MODELS if fnmatch.fnmatch(s.name, _normalize(pattern))]
            if not found:
                raise CnnshapeError(
                    f"No model matches {pattern!r}.", "Run `cnnshape list` to see every model."
                )
        else:
            found = [get_spec(pattern)]
        chosen += [s for s in found if s not in chosen]
    return chosen

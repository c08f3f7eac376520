"""The network a run trains: any model source, built for the data's channels and classes.

A chapter network (a registry name) is built as the book builds it, trained with its recipe
and initialized as ``train_ch6`` does (`loop.init_weights`). Any other source keeps the
initialization its own code gives it and, unless told otherwise, the chapter's ResNet-18
recipe:

- ``torchvision:NAME``, a classification architecture without weights, ``num_classes`` set;
  its input is 3 channels (the data is converted) at its weights' crop size (224 mostly).
- ``timm:NAME``, built with ``in_chans`` and ``num_classes`` at its pretrained config's size.
- ``path/to/file.py:Net`` or ``package.module:factory``: called with ``in_channels`` and
  ``num_classes`` where it takes them, else as written (its first convolution's channels;
  an output of other classes is refused before the run starts, `preflight.py`); 224.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CnnshapeError
from ..inspect import sources, torchvision_models
from ..registry import Recipe, get_spec, is_reference
from .config import TrainConfig

# For models outside the chapter: the book's ResNet-18 recipe (plain SGD, as every run).
OTHER_RECIPE = Recipe(lr=0.05, batch_size=256)


@dataclass(frozen=True)
class ModelSource:
    """What a run needs to know of its model before the data is loaded."""

    name: str  # what config.json records and a resumed run rebuilds from
    size: int  # the default input height and width
    recipe: Recipe  # the book's for a chapter network


def model_source(ref: str) -> ModelSource:
    """A model reference checked (an unknown one is an Error with suggestions)."""
    if not is_reference(ref):
        spec = get_spec(ref)
        return ModelSource(spec.name, spec.size, spec.recipe)
    ref = _absolute_file(ref)
    if ref.startswith("torchvision:"):
        _check_classifier(ref)
    return ModelSource(ref, sources.resolve(ref).size, OTHER_RECIPE)


def input_channels(model: str, data_channels: int) -> int:
    """The channels ``model`` takes when trained on images of ``data_channels``: the data's
    where its builder follows them or it has no convolution, else its first convolution's
    (the data is converted)."""
    if not is_reference(model):
        return data_channels
    target = sources.resolve(model)
    if target.follows_in_channels:
        return data_channels
    network, _ = target.build()  # on meta: nothing allocated
    # Without a convolution to ask (an MLP on flattened pixels), the data's channels.
    return sources.first_conv_channels(network) or data_channels


def build_model(cfg: TrainConfig, device: str = "cpu") -> nn.Module:
    """The run's network, built for its data's channels and classes, on ``device``."""
    if not is_reference(cfg.model):
        spec = get_spec(cfg.model)
        return sources.built_on(
            device, lambda: spec.build(in_channels=cfg.channels, num_classes=cfg.num_classes)
        )
    if cfg.model.startswith("torchvision:"):
        name = cfg.model.removeprefix("torchvision:")
        return sources.built_on(
            device, lambda: torchvision_models.build_to_train(name, cfg.num_classes)
        )
    target = sources.resolve(cfg.model)
    channels = cfg.channels if target.follows_in_channels else None
    classes = cfg.num_classes if target.num_classes is not None else None
    model, _ = target.build(channels, classes, device=device)
    return model


def run_name(model: str) -> str:
    """A run folder's name stem for ``model``: ``resnet18`` for torchvision:resnet18 and
    timm:resnet18, ``Net`` for path/to/file.py:Net."""
    return re.sub(r"[^\w.-]+", "-", model.rpartition(":")[2]).strip("-") or "model"


def load_weights(model: nn.Module, weights: dict, source: Path | None) -> None:
    """The checkpoint's weights into a freshly built model, or an Error saying they do not
    belong to it (instead of PyTorch's list of every key)."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        ours, theirs = model.state_dict(), weights
        missing = sorted(set(ours) - set(theirs))
        unexpected = sorted(set(theirs) - set(ours))
        resized = sorted(k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape)
        counts = [
            f"{len(v)} {what}"
            for v, what in (
                (missing, "missing"),
                (unexpected, "unexpected"),
                (resized, "of another shape"),
            )
            if v
        ]
        example = (missing or unexpected or resized or ["?"])[0]
        raise CnnshapeError(
            f"The checkpoint in {source} holds weights that do not fit the model it names "
            f"({', '.join(counts) or str(err).splitlines()[0]}; e.g. {example}).",
            "It was written for another version of this network: train it again.",
        ) from None


def prepare_model(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """Move the model to the run's device and memory format (in place, parameters kept)."""
    model.to(cfg.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _absolute_file(ref: str) -> str:
    """A file reference with its path made absolute, so a resumed run finds it from anywhere."""
    location, _, attr = ref.rpartition(":")
    if location.endswith(".py") or "/" in location or "\\" in location:
        return f"{Path(location).resolve()}:{attr}"
    return ref


def _check_classifier(ref: str) -> None:
    name, at, _ = ref.removeprefix("torchvision:").partition("@")
    family = torchvision_models.families().get(name)
    if family not in (None, "classification"):
        raise CnnshapeError(
            f"train trains image classifiers, and {ref} is a {family} model.",
            "Pick one of `cnnshape list --source torchvision`'s classification models.",
        )
    if at:
        raise CnnshapeError(
            f"train builds {ref.partition('@')[0]} without weights: it trains from scratch.",
            f"Drop @{ref.partition('@')[2]}.",
        )

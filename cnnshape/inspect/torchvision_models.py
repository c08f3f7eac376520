"""torchvision's models, every family, built as their published weights build them.

A family says what its models' forward takes (one image batch, a video clip, a detector's
list of images, an optical-flow pair) and at what size torchvision measured the figures it
publishes (``num_params``, ``_ops``) for each weights entry. A model is built by its own
builder with the weights entry, minus the download: the builder's settings for those
weights (a detector's FrozenBatchNorm, GoogLeNet's dropped auxiliary classifiers, a ViT's
image size, a segmenter's auxiliary head, the entry's classes) are then exactly
torchvision's, and the counts equal its published metadata (a parametrized test checks
every entry of every family).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from torch import nn

from ..errors import CnnshapeError

# Family -> its torchvision.models submodule (classification: the package itself, whose
# list holds only the models defined at its top level).
FAMILY_MODULES = {
    "classification": None,
    "segmentation": "segmentation",
    "detection": "detection",
    "video": "video",
    "optical flow": "optical_flow",
    "quantized": "quantization",
}


@dataclass(frozen=True)
class Family:
    """What a family's forward takes, and its default size when the weights do not say."""

    name: str
    layout: str  # "image" (N,C,H,W), "clip" (N,C,T,H,W), "images" (a list of C,H,W), "pair"
    size: int  # height and width of the default input (weights with transforms override)
    frames: int | None = None  # a clip's length (video)
    note: str | None = None  # what the output should say about every model of the family


FAMILIES = {
    "classification": Family("classification", "image", 224),
    # torchvision measures a segmenter at its transform's resize size (520).
    "segmentation": Family("segmentation", "image", 520),
    # A detector resizes every image to its transform's min_size (800, 320 or 300): its
    # default image has that size, read from the built model (`detector_size`).
    "detection": Family(
        "detection",
        "images",
        800,
        note="a two-stage detector's heads after non-maximum suppression run once per box "
        "kept, and random weights keep other numbers of boxes than trained ones: its total "
        "differs from torchvision's published GFLOPS (a one-stage detector's does not)",
    ),
    # torchvision's published _ops of every video model are those of a 16-frame clip at
    # the weights' crop size (checked for all nine, at 16 and 32 frames).
    "video": Family("video", "clip", 112, frames=16),
    # Both RAFTs' published _ops are those of two 512x512 images, exactly (found by walking
    # them at several sizes: the correlation volume grows with the square of the pixels).
    "optical flow": Family("optical flow", "pair", 512),
    "quantized": Family(
        "quantized",
        "image",
        224,
        note="walked as the float model it is quantized from (quantize=False): int8 kernels do "
        "not run on meta tensors; the int8 model has the same shapes, parameters and "
        "multiply-accumulates",
    ),
}


@cache
def families() -> dict[str, str]:
    """Every torchvision model name -> its family's name."""
    import torchvision

    found = {}
    for family, submodule in FAMILY_MODULES.items():
        module = getattr(torchvision.models, submodule) if submodule else torchvision.models
        for name in torchvision.models.list_models(module=module):
            found[name] = family
    return found


def weights_entries(name: str) -> list[Any]:
    """The model's published weights entries, DEFAULT first; [] if it has none."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, AttributeError):
        return []
    default = enum.DEFAULT
    return [default, *(entry for entry in enum if entry is not default)]


def weights_entry(name: str, entry: str | None) -> Any | None:
    """``name@ENTRY``'s weights entry (None: DEFAULT); an unknown entry is an error."""
    entries = weights_entries(name)
    if entry is None:
        return entries[0] if entries else None
    found = {e.name: e for e in entries}
    if entry not in found:
        raise CnnshapeError(
            f"torchvision's {name} has no weights {entry!r}.",
            f"Give one of {', '.join(found) or 'none'}, or leave out @{entry}.",
        )
    return found[entry]


def default_size(family: Family, weights: Any | None) -> int:
    """The input size torchvision's figures for these weights are measured at."""
    if weights is None or family.layout in ("images", "pair"):
        return family.size
    transforms = weights.transforms()
    size = getattr(transforms, "crop_size", None) or getattr(transforms, "resize_size", None)
    return size[0] if size else family.size


def detector_size(model: nn.Module, fallback: int) -> int:
    """The size a detector's transform resizes every image to in eval mode (its smaller
    side: the last of its training sizes)."""
    sizes = getattr(getattr(model, "transform", None), "min_size", None)
    return int(sizes[-1]) if sizes else fallback


def build(name: str, family: str, weights: Any | None, num_classes: int | None) -> nn.Module:
    """The model as ``weights`` build it, without downloading them; with other classes (or
    no weights), the plain architecture for ``num_classes``."""
    import torchvision

    categories = weights.meta.get("categories") if weights is not None else None
    if weights is None or num_classes not in (None, len(categories or ())):
        # weights_backbone=None: a segmenter's or detector's builder would fetch ImageNet
        # weights for its backbone.
        options = {"weights_backbone": None} if family in ("segmentation", "detection") else {}
        if num_classes is not None:
            options["num_classes"] = num_classes
        return torchvision.models.get_model(name, weights=None, **options)
    options: dict[str, Any] = {}  # what the builder takes besides the weights
    if family == "quantized":
        # int8 kernels have no meta implementation: the float model quantization starts
        # from (same shapes, parameters and multiply-accumulates), built as its float
        # weights build it. Inception's published count keeps the auxiliary classifier.
        options["quantize"] = False
        weights = weights.meta["unquantized"]
        if name == "quantized_inception_v3":
            options.update(aux_logits=True, init_weights=False)
    with _without_download():
        return torchvision.models.get_model(name, weights=weights, **options)


# Training from scratch has one loss, the main head's: the auxiliary classifiers are left out
# (and their default initialization named, which silences torchvision's FutureWarning).
_TRAINING_OPTIONS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def build_to_train(name: str, num_classes: int) -> nn.Module:
    """A classification architecture as torchvision initializes it (no weights), with a head
    for ``num_classes``, whose forward returns the logits in training mode too."""
    import torchvision

    return torchvision.models.get_model(
        name, weights=None, num_classes=num_classes, **_TRAINING_OPTIONS.get(name, {})
    )


@contextlib.contextmanager
def _without_download() -> Iterator[None]:
    """Run a torchvision builder with a weights entry but load nothing: the builder's
    settings for those weights apply, the state dict is never fetched."""
    from unittest import mock

    from torchvision.models._api import WeightsEnum

    with (
        mock.patch.object(WeightsEnum, "get_state_dict", lambda self, *args, **kwargs: {}),
        mock.patch.object(nn.Module, "load_state_dict", lambda self, *args, **kwargs: None),
    ):
        yield

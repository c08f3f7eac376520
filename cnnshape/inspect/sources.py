"""Where a model comes from: the chapter's registry, torchvision, timm, or the user's own code.

A model reference is a registry name (``resnet18``), ``torchvision:NAME``, ``timm:NAME``,
``path/to/file.py:Attr`` or ``package.module:attr``. Every source resolves to a `Target`
that builds the model on the meta device (no weights allocated or initialized, nothing
downloaded), so inspecting ResNet-50 or VGG-16 costs the same as LeNet.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from ..errors import CnnshapeError
from ..registry import ModelSpec, did_you_mean, get_spec
from . import torchvision_models
from .inputs import InputSpec, image
from .walk import check_no_cycle

# Size and classes of ImageNet models, the default of timm's and the user's.
IMAGENET_SIZE = 224
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class Target:
    """A resolved model reference: its display name, defaults, and how to build it."""

    name: str
    size: int  # default input height and width
    in_channels: int  # default input channels
    num_classes: int | None  # default classes; None when the model's own code decides
    make: Callable[[int, int | None], nn.Module]  # (in_channels, num_classes) -> model
    # True for the registry, whose builders follow --in-channels. Other sources build the
    # model as published; --in-channels only describes the input and must match it.
    follows_in_channels: bool = False
    # What forward takes by default (torchvision_models.Family.layout): one image batch, a
    # clip of ``frames`` frames, a detector's list of images, or an optical-flow pair.
    layout: str = "image"
    frames: int | None = None
    note: str | None = None  # how the walked model differs from the named one, if it does

    def default_inputs(
        self, model: nn.Module, batch: int, channels: int, size: tuple[int, int] | None
    ) -> list[InputSpec]:
        """What the model is walked with when no --input is given: ``batch`` images (or
        clips, or pairs) of ``size``, by default the model's own."""
        if self.layout == "images":
            fallback = torchvision_models.detector_size(model, self.size)
            height, width = size or (fallback, fallback)
            return [InputSpec((channels, height, width), count=batch)]
        height, width = size or (self.size, self.size)
        if self.layout == "clip":
            return [InputSpec((batch, channels, self.frames, height, width))]
        if self.layout == "pair":
            return image(batch, channels, height, width) * 2
        return image(batch, channels, height, width)

    def build(
        self, in_channels: int | None = None, num_classes: int | None = None, device: str = "meta"
    ) -> tuple[nn.Module, int]:
        """The model (on the meta device unless told), and the input channels to feed it.

        Outside the registry the channels default to the first convolution's.
        """
        if num_classes is not None and self.num_classes is None:
            if self.name.startswith("torchvision:"):  # optical flow: no classes at all
                raise CnnshapeError(f"{self.name} has no classes to set.", "Leave out --classes.")
            raise CnnshapeError(
                f"--classes cannot change {self.name}: it takes no num_classes argument.",
                "Leave out --classes, or give the class or factory a num_classes keyword.",
            )
        asked = self.in_channels if in_channels is None else in_channels
        classes = self.num_classes if num_classes is None else num_classes
        try:
            model = built_on(device, lambda: self.make(asked, classes))
        except (RuntimeError, TypeError, ValueError, OverflowError) as err:
            # A registry or library builder refusing what was asked (10^21 input channels).
            raise CnnshapeError(
                f"Building {self.name} for {asked} input channels and {classes} classes "
                f"failed: {str(err).strip().splitlines()[0] if str(err).strip() else err!r}",
                "Give --in-channels and --classes the network can have.",
            ) from None
        check_no_cycle(model, self.name)
        if self.follows_in_channels:
            return model, asked
        expected = first_conv_channels(model)
        if in_channels is None:
            return model, expected or self.in_channels
        if expected not in (None, in_channels):
            raise CnnshapeError(
                f"{self.name} is built for {expected} input channels, not {in_channels}.",
                f"Leave out --in-channels (default {expected}): for models outside the "
                "registry it describes the input and cannot change the first layer.",
            )
        return model, in_channels


def built_on(device: str, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with ``device`` as the default device."""
    try:
        with torch.device(device):
            return build()
    except NotImplementedError as err:
        if device != "meta" or "meta" not in str(err):
            raise
    # Some builders read tensor values while building (torchvision's RegNet computes its
    # widths with tensors): their tensors stay on the CPU, their weights do not.
    with _weights_on_meta():
        return build()


@contextlib.contextmanager
def _weights_on_meta() -> Iterator[None]:
    """Every parameter and buffer moves to the meta device as its module registers it, so
    that a layer's own initialization runs on meta too: nothing of the weights' size is
    allocated or computed (RegNet-Y-128GF: 645 M parameters in 0.1 s)."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter_on_meta(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer_on_meta(module, name, tensor, persistent=True):
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter_on_meta, buffer_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = (
            register_parameter,
            register_buffer,
        )


def first_conv_channels(model: nn.Module) -> int | None:
    """Input channels of the first convolution registered, the usual input layer."""
    conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return conv.in_channels if conv is not None else None


def resolve(ref: str) -> Target:
    """A model reference -> Target. Registry names keep their close-match suggestions."""
    prefix, sep, rest = ref.partition(":")
    if not sep:
        return _registry_target(get_spec(ref))
    if prefix == "torchvision":
        return _torchvision_target(rest)
    if prefix == "timm":
        return _timm_target(rest)
    path, _, attr = ref.rpartition(":")  # rpartition: a Windows path keeps its drive colon
    return _user_target(path, attr)


def _registry_target(spec: ModelSpec) -> Target:
    return Target(
        spec.name,
        spec.size,
        1,
        10,
        lambda c, k: spec.build(in_channels=c, num_classes=k),
        follows_in_channels=True,
    )


# ---------------------------------------------------------------- torchvision


def torchvision_meta(name: str) -> dict:
    """The DEFAULT weights' published metadata (num_params, _ops, min_size); {} if none."""
    entry = torchvision_models.weights_entry(name, None)
    return dict(entry.meta) if entry is not None else {}


def _torchvision_target(ref: str) -> Target:
    """``torchvision:NAME`` (its DEFAULT weights' build and input) or ``NAME@ENTRY``."""
    name, at, entry_name = ref.partition("@")
    families = torchvision_models.families()
    if name not in families:
        raise CnnshapeError(
            f"torchvision has no model {name!r}.",
            _did_you_mean(name, list(families)) + "Run `cnnshape list --source "
            "torchvision` to see them all.",
        )
    family = torchvision_models.FAMILIES[families[name]]
    weights = torchvision_models.weights_entry(name, entry_name if at else None)
    categories = weights.meta.get("categories") if weights is not None else None

    def make(in_channels: int, num_classes: int | None) -> nn.Module:
        return torchvision_models.build(name, family.name, weights, num_classes)

    return Target(
        f"torchvision:{ref}",
        torchvision_models.default_size(family, weights),
        3,
        len(categories) if categories else None,
        make,
        layout=family.layout,
        frames=family.frames,
        note=family.note,
    )


# ---------------------------------------------------------------- timm


def _timm_target(name: str) -> Target:
    timm = _import_timm()
    names = timm.list_models()
    if name not in names:
        raise CnnshapeError(
            f"timm has no model {name!r}.",
            _did_you_mean(name, names) + "Run `cnnshape list --source timm` to see them all.",
        )

    def make(in_channels: int, num_classes: int) -> nn.Module:
        return timm.create_model(
            name, pretrained=False, in_chans=in_channels, num_classes=num_classes
        )

    # timm builds the first layer for in_chans, as the registry does; its default input
    # is the model's pretrained configuration's (384 for vit_base_patch16_384).
    config = timm.get_pretrained_cfg(name)
    size = config.input_size[-1] if config is not None else IMAGENET_SIZE
    return Target(f"timm:{name}", size, 3, IMAGENET_CLASSES, make, follows_in_channels=True)


def timm_names() -> list[str]:
    return _import_timm().list_models()


def _import_timm() -> ModuleType:
    try:
        import timm
    except ImportError:
        raise CnnshapeError(
            "timm is not installed; cnnshape does not depend on it.",
            "pip install timm, then run the command again.",
        ) from None
    return timm


# ---------------------------------------------------------------- your own code


def _user_target(location: str, attr: str) -> Target:
    if not location or not attr:
        raise CnnshapeError(
            f"{location}:{attr!r} is not a model reference.",
            "Give path/to/file.py:Net, package.module:factory, "
            "torchvision:NAME, timm:NAME or a registry name.",
        )
    module = _load(location)
    if not hasattr(module, attr):
        public = [n for n in vars(module) if not n.startswith("_")]
        raise CnnshapeError(
            f"{location} has no attribute {attr!r}.",
            _did_you_mean(attr, public, n=3)
            + f"Names there: {', '.join(_module_like(module)) or 'none'}.",
        )
    obj = getattr(module, attr)
    label = f"{location}:{attr}"
    defaults = _keyword_defaults(obj, ("in_channels", "num_classes"))

    def make(in_channels: int, num_classes: int | None) -> nn.Module:
        asked = {"in_channels": in_channels, "num_classes": num_classes}
        return _call_user_code(obj, label, {name: asked[name] for name in defaults})

    # Code that takes in_channels / num_classes is built for what is asked, by default for
    # its own defaults; otherwise as written (3 channels, an RGB image, only when the model
    # has no convolution to ask).
    channels, classes = defaults.get("in_channels", 3), defaults.get("num_classes")
    if "num_classes" in defaults and classes is None:  # required, or a default of None
        classes = IMAGENET_CLASSES
    return Target(
        label,
        IMAGENET_SIZE,
        channels if isinstance(channels, int) else 3,
        classes if isinstance(classes, int) else None,
        make,
        follows_in_channels="in_channels" in defaults,
    )


def _keyword_defaults(obj, names: tuple[str, ...]) -> dict[str, object]:
    """Which of ``names`` a class or factory takes by keyword, with their defaults (None where
    there is none); {} for an instance, or for code whose signature cannot be read."""
    if isinstance(obj, nn.Module) or not callable(obj):
        return {}
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return {}
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {
        name: None if p.default is inspect.Parameter.empty else p.default
        for name, p in parameters.items()
        if name in names and p.kind in keyword
    }


def _load(location: str) -> ModuleType:
    """A file path (anything ending in .py or with a slash) or an importable module name."""
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = Path(location)
        try:
            found = path.is_file()
        except OSError as err:  # a name too long for the file system, say
            raise CnnshapeError(f"Cannot read {location}: {err.strerror or err}.") from None
        if not found:
            raise CnnshapeError(
                f"No file {location}.", "Give the path to a Python file, e.g. models/net.py:Net."
            )
        # Read as Python source whatever its suffix, as `python FILE` would.
        name = f"_cnnshape_user_{path.stem}"
        loader = importlib.machinery.SourceFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        with _imports_next_to(path):
            _run_user_import(lambda: spec.loader.exec_module(module), location)
        return module
    return _run_user_import(lambda: importlib.import_module(location), location)


@contextlib.contextmanager
def _imports_next_to(path: Path) -> Iterator[None]:
    """Let a user's file import its neighbours, as `python file.py` would."""
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


def _run_user_import(load, location: str):
    try:
        return load()
    except ModuleNotFoundError as err:
        if err.name and location.startswith(err.name):
            raise CnnshapeError(
                f"No module named {location!r}.",
                "Give an importable module (package.module:factory) or a "
                "file path (path/to/file.py:Net).",
            ) from None
        raise CnnshapeError(f"Importing {location} failed: {err}") from None
    except SystemExit as exit:
        raise CnnshapeError(
            f"Importing {location} called sys.exit({exit.code!r}).",
            'Put the code that exits under `if __name__ == "__main__":`, so that importing the '
            "file only defines the model.",
        ) from None
    except Exception as err:
        raise CnnshapeError(f"Importing {location} failed: {type(err).__name__}: {err}") from None


def _call_user_code(obj, label: str, keywords: dict[str, object]) -> nn.Module:
    if isinstance(obj, nn.Module):
        return obj  # an instance in the file: inspected as it is
    if not callable(obj):
        raise CnnshapeError(
            f"{label} is not an nn.Module but a {type(obj).__name__}.",
            "Point at an nn.Module subclass or a function that returns one.",
        )
    call = f"{label}({', '.join(f'{k}={v!r}' for k, v in keywords.items())})"
    try:
        model = obj(**keywords)
    except SystemExit as exit:
        raise CnnshapeError(f"Building {call} called sys.exit({exit.code!r}).") from None
    except Exception as err:
        raise CnnshapeError(
            f"Building {call} failed: {type(err).__name__}: {err}",
            "cnnshape passes in_channels and num_classes when it takes them and nothing "
            "else, under torch.device('meta') (tensors without data; --time and train: the "
            "chosen device): give a class or factory whose other arguments have defaults.",
        ) from None
    if not isinstance(model, nn.Module):
        raise CnnshapeError(
            f"{call} returned a {type(model).__name__}, not an nn.Module.",
            "Point at an nn.Module subclass or a function that returns one.",
        )
    return model


def _module_like(module: ModuleType) -> list[str]:
    """The names in a user's module that could be models: Module subclasses and functions."""
    return [
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and (
            (inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == module.__name__)
            or inspect.isfunction(v)
        )
    ]


def _did_you_mean(name: str, names: list[str], n: int = 3) -> str:
    return did_you_mean(difflib.get_close_matches(name, names, n=n, cutoff=0.5))

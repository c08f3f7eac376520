"""cnnshape: see convolutional networks layer by layer, and train them on Fashion-MNIST.

    >>> import cnnshape
    >>> net = cnnshape.get_model("googlenet")
    >>> report = cnnshape.summary(net, input_size=(1, 1, 96, 96), depth=2)
    >>> report.total_params, report.to_dict()["layers"][0]["output_shape"]

Importing the package is cheap: the library API (``cnnshape.api``, which imports torch) is
loaded on first use of one of its names.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = (
    "TimeSettings",
    "compare",
    "evaluate",
    "get_model",
    "list_models",
    "memory",
    "resume",
    "scan_sizes",
    "show",
    "summary",
    "train",
    "valid_sizes",
)
_ELSEWHERE = {
    "CnnshapeError": "errors",
    "WalkError": "errors",
    "Report": "inspect.report",
    "Row": "inspect.report",
    "TrainSettings": "train.config",
}

__all__ = sorted([*_API, *_ELSEWHERE])


def __getattr__(name: str):
    import importlib

    if name in _API:
        return getattr(importlib.import_module(".api", __name__), name)
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(f".{_ELSEWHERE[name]}", __name__), name)
    raise AttributeError(f"module 'cnnshape' has no attribute {name!r}")

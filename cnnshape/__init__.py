"""cnnshape: see convolutional networks layer by layer, and train them on Fashion-MNIST.

    >>> import cnnshape
    >>> net = cnnshape.get_model("googlenet")
    >>> report = cnnshape.summary(net, input_size=(1, 1, 96, 96), depth=2)
    >>> report.total_params, report.to_dict()["layers"][0]["output_shape"]

Importing the package is cheap: the library API (``cnnshape.api``) imports torch inside the
calls that need it. Training from Python is ``cnnshape.api.train``, ``resume`` and
``evaluate`` (``cnnshape.train`` is the training package).
"""

__version__ = "0.1.0"

from .api import (  # noqa: E402
    TimeSettings,
    compare,
    get_model,
    list_models,
    memory,
    scan_sizes,
    show,
    summary,
    valid_sizes,
)
from .errors import CnnshapeError, WalkError  # noqa: E402
from .inspect.report import Report, Row  # noqa: E402
from .train.config import TrainSettings  # noqa: E402

__all__ = [
    "CnnshapeError",
    "Report",
    "Row",
    "TimeSettings",
    "TrainSettings",
    "WalkError",
    "compare",
    "get_model",
    "list_models",
    "memory",
    "scan_sizes",
    "show",
    "summary",
    "valid_sizes",
]

"""cnnshape: see convolutional networks layer by layer, and train them on Fashion-MNIST.

    >>> import cnnshape
    >>> net = cnnshape.get_model("googlenet")
    >>> report = cnnshape.summary(net, input_size=(1, 1, 96, 96), depth=2)
    >>> report.total_params, report.to_dict()["layers"][0]["output_shape"]
"""

__version__ = "0.1.0"

from .api import (  # noqa: E402
    TimeSettings,
    compare,
    get_model,
    list_models,
    scan_sizes,
    show,
    summary,
    valid_sizes,
)
from .errors import CnnshapeError  # noqa: E402
from .report import Report, Row  # noqa: E402

__all__ = ["CnnshapeError", "Report", "Row", "TimeSettings", "compare", "get_model", "list_models",
           "scan_sizes", "show", "summary", "valid_sizes"]

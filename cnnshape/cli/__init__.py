"""The `cnnshape` command line: parse options, call one library function, render the result.

Data goes to stdout, messages to stderr, so `cnnshape show resnet18 --format json | jq` works.
Importing this package imports neither torch nor matplotlib: `--help` and `list` answer at
once, and each command imports the library (``cnnshape.api``) when it runs. One module per
command group (inspection, graph, memory, cache, training, predict) registers its commands on
the app.
"""

# Each module registers its commands on the app.
from . import cache, graph, inspection, memory, predict, training  # noqa: F401
from .app import app
from .errors import friendly_errors
from .options import Optimizer

__all__ = ["Optimizer", "app", "friendly_errors"]

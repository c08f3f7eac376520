"""The layout tells the story: the package is layers, and imports only point down.

foundation   errors, _common, views, registry, models, step (the one training step)
inspect      the walk and its views, the memory predictor
graph        the drawing of a walk
train        data, the loop, run folders (uses the walk and the predictor)
api          the library calls the command line makes
cli          parsing and rendering
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cnnshape

PACKAGE = Path(cnnshape.__file__).parent
LAYERS = [
    ("cnnshape.errors", "cnnshape._common", "cnnshape.views", "cnnshape.registry")
    + ("cnnshape.models", "cnnshape.step"),
    ("cnnshape.inspect",),
    ("cnnshape.graph",),
    ("cnnshape.train",),
    ("cnnshape.api", "cnnshape.__init__", "cnnshape.__version__"),
    ("cnnshape.cli", "cnnshape.__main__"),
]


def cnnshape_imports(path: Path) -> set[str]:
    """The cnnshape modules a file imports when it runs, as absolute names (relative imports
    resolved; imports for type annotations only, under ``if TYPE_CHECKING:``, left out)."""
    package = ".".join(("cnnshape", *path.relative_to(PACKAGE).parent.parts))
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.split(".")[0] == "cnnshape"}


def files(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def layer_of(module: str) -> int:
    """The layer of a module (or of a name in it): the one whose names it is or lies under."""
    for index, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    return ".".join(("cnnshape", *path.relative_to(PACKAGE).with_suffix("").parts))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=module_name)
def test_imports_only_point_down(path):
    own = layer_of(module_name(path))
    # `from .. import step` names the package too; importing any module runs the package's
    # __init__ anyway, so the package itself is not an import of the layer above.
    imported = cnnshape_imports(path) - {"cnnshape"}
    above = {m for m in imported if layer_of(m) > own}
    assert not above, f"{module_name(path)} (layer {own}) imports {above}, from a layer above"


def test_a_step_up_is_caught():
    assert layer_of("cnnshape.train.loop") > layer_of("cnnshape.inspect.memory")
    assert layer_of("cnnshape.step") < layer_of("cnnshape.inspect.memory")
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("cnnshape.elsewhere")


def test_the_checker_sees_relative_imports():
    imports = cnnshape_imports(PACKAGE / "inspect" / "walk.py")
    assert "cnnshape._common" in imports and "cnnshape.inspect.shapes" in imports


def test_no_api_name_hides_a_subpackage():
    # `from .api import train` in cnnshape/__init__ once made `cnnshape.train` the function,
    # and `cnnshape.train.run` an AttributeError for everyone who imported the package first.
    import importlib

    for name in ("inspect", "train", "models"):
        module = importlib.import_module(f"cnnshape.{name}")
        assert getattr(cnnshape, name) is module, name
    assert not {"inspect", "train", "models"} & set(cnnshape.__all__)


# What the command line may import when it starts (everything else, the library and torch,
# is imported by the command that needs it): its own modules, plain data and the renderers.
CLI_STARTS_WITH = {
    "cnnshape",
    "cnnshape.__version__",
    "cnnshape._common",
    "cnnshape.errors",
    "cnnshape.views",
    "cnnshape.inspect.report",
    "cnnshape.inspect.inputs",
    "cnnshape.train.config",
}


def top_level_imports(path: Path) -> set[str]:
    """The cnnshape modules a file imports when it is imported (not inside its functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ["cnnshape", *path.relative_to(PACKAGE).parent.parts][: 2 - node.level + 1]
            name = ".".join(base + ([node.module] if node.module else []))
            found.add(name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnshape"):
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", files("cli"), ids=lambda p: p.name)
def test_the_command_line_starts_with_its_own_modules_and_plain_data(path):
    imported = {m for m in top_level_imports(path) if not m.startswith("cnnshape.cli")}
    assert imported <= CLI_STARTS_WITH, f"{path.name} imports {imported - CLI_STARTS_WITH}"

"""The layout tells the story: inspection and training never import each other; what both
need lives in the shared modules, which import neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cnnshape

PACKAGE = Path(cnnshape.__file__).parent
SHARED = ["_common.py", "views.py", "errors.py", "registry.py"]


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


@pytest.mark.parametrize(
    ("path", "forbidden"),
    [
        *((p, "cnnshape.train") for p in files("inspect")),
        *((p, "cnnshape.inspect") for p in files("train")),
        *((p, "cnnshape.inspect") for p in files("models")),
        *((p, "cnnshape.train") for p in files("models")),
        *((p, "cnnshape.train") for p in files("graph")),
    ],
)
def test_the_two_paths_never_import_each_other(path, forbidden):
    crossing = {m for m in cnnshape_imports(path) if m.startswith(forbidden)}
    assert not crossing, f"{path.relative_to(PACKAGE)} imports {crossing}"


@pytest.mark.parametrize("name", SHARED)
def test_the_shared_modules_import_neither_path(name):
    imports = cnnshape_imports(PACKAGE / name)
    assert not {m for m in imports if m.startswith(("cnnshape.inspect", "cnnshape.train"))}


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

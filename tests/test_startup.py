"""Start-up: what each command imports, in a fresh interpreter, as a user's process would.

`--help` and `list` are a table of facts: they must not pay for torch. `show`, `compare` and
`sizes` need torch, but not torch._dynamo or sympy, which PyTorch's Python meta kernels pull
in (about 1.5 s together); inspect/shapes.py answers those ops instead. Nor triton, which
torch.utils.flop_counter imports (inspect/flop_formulas.py). The times are measured side by
side in benchmarks/show_vs_torchinfo.py, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cnnshape.registry import list_specs

HEAVY = ("torch", "torchvision", "numpy", "matplotlib", "sympy")

# Runs the CLI in one fresh interpreter, once per argv, and reports the top-level packages
# and the torch modules imported by then.
PROBE = r"""
import json, sys
from cnnshape.cli import app
for argv in json.loads(sys.argv[1]):
    try:
        app(argv, standalone_mode=False)
    except SystemExit as exit:
        assert exit.code in (0, None), (argv, exit.code)
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(*argvs: list[str], cache: bool = False) -> set[str]:
    env = dict(os.environ)
    if not cache:
        env["CNNSHAPE_NO_CACHE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_and_list_import_nothing_heavy():
    commands = ["list", "show", "compare", "sizes", "memory", "train", "eval"]
    modules = imported_by(
        ["--help"],
        ["--version"],
        *([command, "--help"] for command in commands),
        ["list"],
        ["list", "--format", "json"],
    )
    assert not {m.split(".")[0] for m in modules} & set(HEAVY)


@pytest.mark.parametrize("command", ["show", "compare", "sizes"])
def test_inspection_never_imports_dynamo_sympy_or_triton(command):
    # Registry models only: importing torchvision itself imports torch._dynamo.
    argvs = [[command, spec.name, "--format", "json"] for spec in list_specs()]
    modules = imported_by(*argvs)
    assert "torch" in modules  # the walks ran
    assert not {"torch._dynamo", "sympy", "triton", "torchvision", "matplotlib"} & modules


def test_triton_spared_by_a_walk_stays_importable_for_torch_compile():
    pytest.importorskip("triton")
    after_a_walk = r"""
import sys
from cnnshape.cli import app
app(["show", "lenet"], standalone_mode=False)
assert "triton" not in sys.modules
import triton.runtime.jit  # hidden only while torch.utils.flop_counter was imported
import torch.utils._triton
assert torch.utils._triton.has_triton_package()
"""
    env = dict(os.environ, CNNSHAPE_NO_CACHE="1")
    done = subprocess.run(
        [sys.executable, "-c", after_a_walk], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr


def test_a_repeated_question_is_answered_without_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSHAPE_CACHE_DIR", str(tmp_path))
    asks = (["show", "googlenet", "--depth", "2"], ["compare", "lenet*"], ["sizes", "alexnet"])
    assert "torch" in imported_by(*asks, cache=True)  # the first time, the walks run
    assert "torch" not in imported_by(*asks, cache=True)  # then the answers are on disk


def test_the_library_imports_pytorchs_flop_counter_as_pytorch_makes_it():
    # Only the command line hides triton; `import cnnshape` in a user's fresh process counts
    # with the module untouched (a missing import here once broke every library walk).
    as_a_library = r"""
import cnnshape
report = cnnshape.show("lenet")  # before anything else imports torch.utils.flop_counter
import torch, torch.utils.flop_counter as flop_counter
model = cnnshape.get_model("lenet")
with flop_counter.FlopCounterMode(display=False) as counter:
    model(torch.zeros(1, 1, 28, 28))
assert report.total_flops == counter.get_total_flops(), (report.total_flops, counter)
"""
    done = subprocess.run(
        [sys.executable, "-c", as_a_library], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr

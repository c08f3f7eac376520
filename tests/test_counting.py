"""--convention from the command line: each total equals the real tool's on the same model,
and a count that leaves out ops with arithmetic says so (--strict: an error)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_clean_error, cli
from torchvision.models import resnet18

from cnnshape.inspect.conventions import CONVENTIONS
from cnnshape.inspect.report import CONVENTION_NAMES


def shown(*args):
    result = cli("show", *args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_the_three_conventions_give_the_three_tools_totals_for_resnet18():
    fvcore = pytest.importorskip("fvcore.nn")
    ptflops = pytest.importorskip("ptflops")
    model = resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        fv_total = fvcore.FlopCountAnalysis(model, x).unsupported_ops_warnings(False).total()
        pt_macs, _ = ptflops.get_model_complexity_info(
            model, (3, 224, 224), as_strings=False, print_per_layer_stat=False, verbose=False
        )
        flop_counter = torch.utils.flop_counter.FlopCounterMode(display=False)
        with flop_counter:
            model(x)
    totals = {c: shown("torchvision:resnet18", "--convention", c) for c in CONVENTION_NAMES}
    assert totals["torch"]["total_macs"] == flop_counter.get_total_flops() // 2
    assert totals["fvcore"]["total_macs"] == fv_total
    assert totals["ptflops"]["total_macs"] == pt_macs
    assert totals["torch"]["complete"] and not totals["fvcore"]["complete"]
    assert totals["fvcore"]["uncounted"] == {"add_": 8, "max_pool2d_with_indices": 1}
    for doc in totals.values():
        assert doc["total_flops"] == 2 * doc["total_macs"]


SPECTRAL = """
import torch
from torch import nn


class Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3)

    def forward(self, x):
        return torch.fft.rfft(self.conv(x)).abs()
"""


def test_an_op_no_formula_counts_makes_the_count_partial_and_strict_refuses_it(tmp_path):
    (tmp_path / "spectral.py").write_text(SPECTRAL)
    model = f"{tmp_path / 'spectral.py'}:Spectral"
    doc = shown(model, "--input", "1x1x64")
    assert doc["complete"] is False and "_fft_r2c" in doc["uncounted"]
    table = cli("show", model, "--input", "1x1x64").stdout
    assert "(partial: see below)" in table and "_fft_r2c x 1" in table
    assert_clean_error(cli("show", model, "--input", "1x1x64", "--strict"), "_fft_r2c")
    compared = cli("compare", "lenet", model, "--input", "1x1x64")
    assert "Partial count" in compared.stdout


def test_a_complete_count_says_nothing_of_it_and_strict_passes():
    doc = shown("resnet18", "--strict")
    assert doc["complete"] is True and doc["uncounted"] == {}
    assert "partial" not in cli("show", "resnet18").stdout


def test_the_clis_conventions_are_the_modules():
    assert tuple(CONVENTIONS) == CONVENTION_NAMES
    help_text = cli("show", "--help").stdout
    assert "<torch|fvcore|ptflops>" in help_text

"""Measured latency: it measures real time, keeps layers in the walk's order, and leaves the
model exactly as it was."""

import json
import time

import pytest
import torch
from conftest import cli
from torch import nn

from cnnshape.inspect.timing import time_model


class Sleep(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


def net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(Sleep(0.004), nn.ReLU()), nn.Flatten()
    )


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_times_are_real_and_in_call_order():
    model = net()
    timing, calls = time_model(
        model, (2, 1, 8, 8), warmup=1, repeats=5, layers=["0", "1", "2", "2.0", "2.1", "3"]
    )
    assert [name for name, _ in calls] == ["0", "1", "2", "2.0", "2.1", "3"]
    times = dict(calls)
    assert times["2.0"].median_ms >= 4  # the sleep is measured, not estimated
    assert times["2"].median_ms >= times["2.0"].median_ms  # a block contains its layers
    assert timing.forward.median_ms >= 4 and timing.batch == 2 and timing.repeats == 5
    for measured in times.values():
        assert measured.q1_ms <= measured.median_ms <= measured.q3_ms
    assert timing.images_per_sec == pytest.approx(2 / (timing.forward.median_ms / 1e3))


def test_the_model_is_left_as_it_was():
    model = net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    time_model(model, (2, 1, 8, 8), warmup=1, repeats=2, layers=["0", "1"])
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()  # BatchNorm statistics untouched: timed in eval mode
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert no_hooks(model)


def test_hooks_are_removed_when_the_forward_fails():
    calls = []

    class FailsLate(nn.Module):
        def forward(self, x):
            calls.append(1)
            if len(calls) > 2:  # after the warm-up and the whole-forward run
                raise RuntimeError("boom")
            return x

    model = nn.Sequential(FailsLate())
    with pytest.raises(RuntimeError, match="boom"):
        time_model(model, (1, 1, 2, 2), warmup=1, repeats=1, layers=["0"])
    assert no_hooks(model)


def test_show_time_json_and_table():
    result = cli("show", "lenet", "--time", "--device", "cpu", "--repeats", "3", "-f", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["timing"]["measured"] is True and doc["timing"]["device"] == "cpu"
    assert doc["timing"]["repeats"] == 3 and doc["timing"]["forward_ms"]["median_ms"] > 0
    assert all(layer["time_ms"] > 0 for layer in doc["layers"])
    table = cli("show", "lenet", "--time", "--repeats", "2").stdout
    assert "measured, not derived" in table and "Time (ms)" in table
    plain = json.loads(cli("show", "lenet", "-f", "json").stdout)
    assert "timing" not in plain and "time_ms" not in plain["layers"][0]


def test_compare_time_adds_throughput():
    result = cli(
        "compare", "lenet", "lenet-bn", "--time", "--batch", "4", "--repeats", "2", "-f", "json"
    )
    assert result.exit_code == 0, result.stderr
    for model in json.loads(result.stdout)["models"]:
        assert model["timing"]["batch"] == 4 and model["timing"]["images_per_sec"] > 0
    assert "Images/s" in cli("compare", "lenet", "--time", "--repeats", "2").stdout


def test_missing_gpu_is_a_clean_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = cli("show", "lenet", "--time", "--device", "cuda")
    assert result.exit_code == 1 and "Error: --device cuda" in result.stderr
    assert "Traceback" not in result.stderr

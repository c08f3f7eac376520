"""`cnnshape memory`, `show --memory`, `compare --memory` and train's check that a step fits,
against the predictor (tests/test_memory.py checks the predictor against the allocator)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from conftest import assert_clean_error, cli

from cnnshape.errors import CnnshapeError
from cnnshape.inspect.memory import ERROR_BOUNDS, predict_step
from cnnshape.registry import get_spec
from cnnshape.train import data, preflight
from cnnshape.train.config import TrainSettings


def meta_model(name: str):
    with torch.device("meta"):
        return get_spec(name).build()


def peak(name: str, batch: int, **options) -> int:
    size = get_spec(name).size
    return predict_step(meta_model(name), (batch, 1, size, size), **options).peak


def test_memory_json_is_the_predictors_step_with_its_breakdown():
    result = cli("memory", "lenet-bn", "--batch", "64", "--device", "cpu", "-f", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["input_shape"] == [64, 1, 28, 28]
    assert (doc["optimizer"], doc["precision"], doc["device"]) == ("sgd", "fp32", "cpu")
    step = doc["step"]
    assert step["peak"] == peak("lenet-bn", 64)
    assert sum(step["at_peak"].values()) == step["peak"]
    law = doc["law"]
    assert law["fixed_bytes"] + 8 * law["per_image_bytes"] == peak("lenet-bn", 8)
    assert doc["train_resident_bytes"] == data.resident_bytes() == 70_000 * (28 * 28 + 8)
    assert doc["train_total_bytes"] == step["peak"] + doc["train_resident_bytes"]
    assert doc["fit"] is None and doc["curve"] is None


def test_the_seed_recipe_batch_is_the_default():
    doc = json.loads(cli("memory", "lenet", "--device", "cpu", "-f", "json").stdout)
    assert doc["input_shape"] == [256, 1, 28, 28]


def test_fit_finds_the_largest_batch_a_training_run_fits():
    budget = 200_000_000
    result = cli("memory", "lenet-bn", "--fit", "200MB", "--device", "cpu", "-f", "json")
    assert result.exit_code == 0, result.stderr
    fit = json.loads(result.stdout)["fit"]
    largest, resident = fit["largest_batch"], data.resident_bytes()
    assert fit["budget_bytes"] == budget and fit["budget_source"] == "--fit"
    assert peak("lenet-bn", largest) + resident <= budget < peak("lenet-bn", largest + 1) + resident
    table = cli("memory", "lenet-bn", "--fit", "200MB", "--device", "cpu").stdout
    assert f"fits in 200.00 MB (--fit): {largest:,}" in table


def test_other_models_options_and_the_picture(tmp_path):
    doc = json.loads(
        cli(
            "memory",
            "torchvision:resnet18",
            "--batch",
            "2",
            "--size",
            "64",
            "--optimizer",
            "adam",
            "--precision",
            "bf16",
            "--device",
            "cpu",
            "--plot",
            tmp_path / "m.png",
            "-f",
            "json",
        ).stdout
    )
    assert doc["input_shape"] == [2, 3, 64, 64] and doc["train_resident_bytes"] is None
    assert (doc["optimizer"], doc["precision"]) == ("adam", "bf16")
    assert doc["step"]["optimizer_state"] > 0
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [point["batch"] for point in doc["curve"]][0] == 2


def test_a_cuda_device_is_predicted_without_one():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the prediction would be for it")
    doc = json.loads(cli("memory", "lenet", "--device", "cuda", "-f", "json").stdout)
    assert (doc["device"], doc["precision"]) == ("cuda", "bf16")
    assert doc["step"]["peak"] % 512 == 0  # the CUDA allocator's blocks


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fit", "lots"], "not a memory size"),
        (["--fit", "0GB"], "no memory at all"),
        (["--optimizer", "lbfgs"], "lbfgs"),
        (["--batch", "1"], "cannot train on a batch of one image"),
        (["--size", "8"], "cannot take a 256x1x8x8"),
    ],
)
def test_bad_memory_options(args, message):
    assert_clean_error(cli("memory", "lenet-bn", "--device", "cpu", *args), message)


def test_show_memory_says_what_each_layer_saves_for_backward():
    doc = json.loads(
        cli("show", "resnet18", "--batch", "4", "--memory", "--device", "cpu", "-f", "json").stdout
    )
    step = doc["train_step"]
    assert step["peak"] == peak("resnet18", 4)
    layers = sum(x["saved_bytes"] for x in step["layers"] if x["name"] != "(loss)")
    assert sum(row["saved_bytes"] for row in doc["layers"]) == layers > 0
    plain = json.loads(cli("show", "resnet18", "-f", "json").stdout)
    assert "train_step" not in plain and "saved_bytes" not in plain["layers"][0]
    assert "Saved for backward" in cli("show", "lenet", "--memory", "--device", "cpu").stdout


def test_compare_memory_adds_each_models_train_peak():
    doc = json.loads(
        cli(
            "compare", "lenet", "nin", "--batch", "2", "--memory", "--device", "cpu", "-f", "json"
        ).stdout
    )
    assert [m["train_peak_bytes"] for m in doc["models"]] == [peak("lenet", 2), peak("nin", 2)]
    assert "Train peak" in cli("compare", "lenet", "--memory", "--device", "cpu").stdout


def test_a_training_step_that_cannot_fit_is_refused_with_the_largest_batch_that_does():
    config = TrainSettings("resnet18", device="cpu").resolve()
    with pytest.raises(CnnshapeError, match="does not fit on cpu") as err:
        preflight.check_step_fits(config, free_bytes=300_000_000)
    largest = int(err.value.hint.split("--batch-size ")[1].split()[0])
    assert peak("resnet18", largest) <= 300_000_000 < peak("resnet18", largest + 1)
    preflight.check_step_fits(config, free_bytes=peak("resnet18", 256))  # it fits


def test_measure_runs_the_real_step_and_says_how_close_the_prediction_is():
    doc = json.loads(
        cli(
            "memory", "lenet-bn", "--batch", "16", "--device", "cpu", "--measure", "-f", "json"
        ).stdout
    )
    predicted, measured = doc["step"]["peak"], doc["measured"]
    assert abs(measured["tensor_peak_bytes"] - predicted) <= 64  # exact at the tensor level
    low, high = measured["bound_low_bytes"], measured["bound_high_bytes"]
    threads = torch.get_num_threads()
    assert measured["threads"] == threads
    assert (low, high) == ERROR_BOUNDS["cpu"].allocator_range(predicted, "fp32", threads)
    assert low <= measured["peak_bytes"] <= high
    table = cli("memory", "lenet-bn", "--batch", "16", "--device", "cpu", "--measure")
    assert "Measured on this CPU" in table.stdout and "inside the bound" in table.stdout
    assert "USDT" not in table.stderr
    assert_clean_error(cli("memory", "lenet", "--device", "cuda", "--measure"), "on the CPU")


def test_the_table_states_the_bound_and_no_measured_percentages():
    bound = ERROR_BOUNDS["cpu"]
    for precision in ("fp32", "bf16"):
        args = ("memory", "lenet", "--device", "cpu", "--precision", precision)
        lines = cli(*args).stdout.splitlines()
        stated = (
            f"-{bound.below_bytes} B to +max({bound.above[precision]:.0%}, "
            f"{bound.per_thread_bytes // 1024} KiB per thread)"
        )
        assert any(x.startswith("Bound: ") and stated in x for x in lines)
        # Measured gaps belong in benchmarks/RESULTS.md, with the machine they came from.
        note = next(x for x in lines if x.startswith("Predicted, not measured"))
        assert not re.search(r"\d%", note)
        rule = json.loads(cli(*args, "-f", "json").stdout)["bound"]
        assert rule["above_fraction"] == bound.above[precision]
        assert (rule["per_thread_bytes"], rule["below_bytes"]) == (
            bound.per_thread_bytes,
            bound.below_bytes,
        )
    cuda = cli("memory", "lenet", "--device", "cuda").stdout
    assert "Bound: none stated on cuda (not measured yet" in cuda
    doc = json.loads(cli("memory", "lenet", "--device", "cuda", "-f", "json").stdout)
    assert doc["bound"]["above_fraction"] is None


def test_fit_finds_batches_past_a_million_images_and_says_when_it_is_a_cap():
    resident = data.resident_bytes()
    doc = json.loads(
        cli("memory", "lenet", "--device", "cpu", "--fit", "141GB", "-f", "json").stdout
    )
    largest = doc["fit"]["largest_batch"]
    assert largest > 2**20 and doc["fit"]["budget_capped_at"] is None
    assert peak("lenet", largest) + resident <= 141 * 10**9 < peak("lenet", largest + 1) + resident
    table = cli("memory", "lenet", "--device", "cpu", "--fit", "99999999999999999999TB").stdout
    assert "a cap: torch counts bytes in int64" in table
    capped = json.loads(
        cli(
            "memory", "lenet", "--device", "cpu", "--fit", "99999999999999999999TB", "-f", "json"
        ).stdout
    )
    assert capped["fit"]["budget_capped_at"] == 2**63 - 1


def test_show_says_what_its_activation_memory_is():
    doc = json.loads(cli("show", "lenet", "-f", "json").stdout)
    outputs = sum(4 * math.prod(layer["output_shape"]) for layer in doc["layers"])
    assert doc["activation_bytes"] == outputs  # every leaf layer's float32 output
    footer = cli("show", "lenet").stdout
    assert "the sum of every leaf layer's output tensor bytes" in footer
    assert "not what training keeps (show --memory and cnnshape memory predict that)" in footer

"""The command line as a user meets it: exit codes, stdout data, stderr messages."""

import csv
import io
import json
import subprocess
import sys

import pytest
from conftest import assert_clean_error
from conftest import cli as run
from seed_shapes import SEED_SHAPES


def test_show_json_is_one_document_with_the_documented_schema():
    result = run("show", "googlenet", "--size", "96", "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"] == "googlenet"
    assert doc["input_shape"] == [1, 1, 96, 96]
    first = doc["layers"][0]
    assert first["name"] == "0" and first["type"] == "Sequential" and first["depth"] == 1
    assert first["output_shape"] == [1, 64, 24, 24] and first["params"] == 3200
    assert first["flops"] == 2 * first["macs"]
    for key in ("total_params", "trainable_params", "total_macs", "total_flops"):
        assert isinstance(doc[key], int)
    assert [layer["output_shape"] for layer in doc["layers"]] == SEED_SHAPES["googlenet", 96]


def test_show_depth_uses_qualified_names():
    doc = json.loads(run("show", "googlenet", "--depth", "3", "-f", "json").stdout)
    assert "3.1.p2_2" in [layer["name"] for layer in doc["layers"]]


def test_show_table_states_the_counting_convention():
    result = run("show", "lenet")
    assert result.exit_code == 0
    assert "61,706" in result.stdout
    assert "FLOPs = 2 x MACs" in result.stdout
    assert "Not counted" in result.stdout


def test_csv_and_markdown_carry_the_same_rows_as_json():
    doc = json.loads(run("show", "resnet18", "--depth", "2", "-f", "json").stdout)
    rows = list(
        csv.DictReader(io.StringIO(run("show", "resnet18", "--depth", "2", "-f", "csv").stdout))
    )
    assert [r["Layer"] for r in rows] == [layer["name"] for layer in doc["layers"]]
    assert [int(r["FLOPs"]) for r in rows] == [layer["flops"] for layer in doc["layers"]]
    markdown = run("show", "resnet18", "--depth", "2", "-f", "markdown").stdout
    table_lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table_lines) == 1 + len(doc["layers"])  # header + one line per layer


def test_size_height_by_width_and_batch_and_channels():
    doc = json.loads(
        run(
            "show",
            "resnet18",
            "--size",
            "64x32",
            "--batch",
            "4",
            "--in-channels",
            "3",
            "--classes",
            "5",
            "-f",
            "json",
        ).stdout
    )
    assert doc["input_shape"] == [4, 3, 64, 32]
    assert doc["layers"][-1]["output_shape"] == [4, 5]


def test_names_are_case_and_dash_insensitive_with_aliases():
    assert json.loads(run("show", "ResNet", "-f", "json").stdout)["model"] == "resnet18"
    assert json.loads(run("show", "lenet_bn", "-f", "json").stdout)["model"] == "lenet-bn"
    assert json.loads(run("show", "VGG11", "-f", "json").stdout)["model"] == "vgg"


def test_unknown_model_suggests_the_closest():
    assert_clean_error(run("show", "resnet19"), "Unknown model 'resnet19'", "resnet18")


@pytest.mark.parametrize("size", ["0", "-3", "abc", "96x", "x96", "1.5", "96x0"])
def test_bad_sizes(size):
    assert_clean_error(run("show", "lenet", "--size", size))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--batch", "0"),
        ("--depth", "-1"),
        ("--depth", "0"),
        ("--in-channels", "0"),
        ("--classes", "0"),
        ("--batch", "two"),
    ],
)
def test_bad_numbers(option, value):
    assert_clean_error(run("show", "lenet", option, value), option)


def test_a_size_the_network_cannot_take():
    result = assert_clean_error(
        run("show", "alexnet", "--size", "96"), "layer 14 (Linear)", "6400", "256x1x1", "193-224"
    )
    assert "Layers computed before the failure" in result.stderr
    assert result.stdout == ""


def test_debug_shows_the_traceback_and_only_debug_does():
    def cnnshape(*args):
        command = [sys.executable, "-m", "cnnshape", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    plain, debug = cnnshape("sizes", "resnet19"), cnnshape("--debug", "sizes", "resnet19")
    assert plain.returncode == debug.returncode == 1
    assert "Traceback" not in plain.stderr and "Error: Unknown model" in plain.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert "cnnshape.errors.CnnshapeError: Unknown model 'resnet19'" in debug.stderr


def test_list_shows_every_model_with_counts():
    doc = json.loads(run("list", "-f", "json").stdout)
    names = [m["name"] for m in doc["models"]]
    assert names[:2] == ["lenet", "alexnet"] and len(names) == 10
    lenet = doc["models"][0]
    assert (lenet["params"], lenet["macs"], lenet["size"]) == (61_706, 416_520, 28)
    assert lenet["recipe"] == {"lr": 0.9, "batch_size": 256, "epochs": 10}
    table = run("list").stdout
    assert "googlenet" in table and "d2l 7.4" in table


def test_compare_relative_figures_and_patterns():
    doc = json.loads(run("compare", "lenet", "alexnet", "-f", "json").stdout)
    lenet, alexnet = doc["models"]
    assert lenet["relative"]["params"] == 1
    assert alexnet["relative"]["params"] == pytest.approx(alexnet["params"] / lenet["params"])
    assert alexnet["valid_sizes"] == [[193, 224]]
    assert alexnet["weight_layers"] == 8
    doc = json.loads(run("compare", "lenet*", "-f", "json").stdout)
    assert [m["model"] for m in doc["models"]] == ["lenet", "lenet-bn-scratch", "lenet-bn"]
    doc = json.loads(run("compare", "all", "-f", "json").stdout)
    assert len(doc["models"]) == 10


def test_compare_at_one_size_marks_models_that_do_not_fit():
    result = run("compare", "resnet18", "alexnet", "--size", "96", "-f", "json")
    assert result.exit_code == 0
    resnet, alexnet = json.loads(result.stdout)["models"]
    assert resnet["input_shape"] == [1, 1, 96, 96]
    assert "6400" in alexnet["error"]
    assert "does not fit" in run("compare", "resnet18", "alexnet", "--size", "96").stdout


def test_compare_unknown_pattern():
    assert_clean_error(run("compare", "lenet", "zz*"), "No model matches")


def test_sizes_json():
    doc = json.loads(run("sizes", "alexnet", "-f", "json").stdout)
    assert doc["model"] == "alexnet"
    assert doc["valid"] == [[193, 224]]
    assert doc["checked_up_to"] == 1024


def test_sizes_table_says_why():
    out = run("sizes", "lenet-bn", "--up-to", "64").stdout
    assert "28-31" in out and "refused" in out and "input features" in out


def test_help_explains_the_conventions():
    result = run("--help")
    assert result.exit_code == 0
    assert "FLOPs = 2 x" in result.stdout
    assert "--depth" in run("show", "--help").stdout

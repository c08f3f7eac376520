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


@pytest.mark.parametrize("size", ["0", "-3", "abc", "96x", "x96", "1.5", "96x0", "9" * 30])
@pytest.mark.parametrize("command", ["show", "compare", "memory"])
def test_bad_sizes_are_usage_errors_like_every_malformed_option(command, size):
    result = assert_clean_error(run(command, "lenet", "--size", size), "Invalid value for")
    assert result.exit_code == 2 and "Usage:" in result.stderr


@pytest.mark.parametrize("fit", ["lots", "12XB", "0GB", "-1GB", "1" * 30])
def test_a_bad_fit_is_a_usage_error(fit):
    result = assert_clean_error(run("memory", "lenet", "--fit", fit), "'--fit'")
    assert result.exit_code == 2


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


# ---- one option, one name, its choices shown ----------------------------------------------------


@pytest.mark.parametrize("command", ["show", "compare", "memory", "train"])
def test_every_command_with_a_batch_takes_batch_size_and_batch(command):
    assert "--batch-size, --batch" in run(command, "--help").stdout


def test_batch_and_batch_size_are_one_option():
    assert (
        json.loads(run("show", "lenet", "--batch", "3", "-f", "json").stdout)["input_shape"]
        == json.loads(run("show", "lenet", "--batch-size", "3", "-f", "json").stdout)["input_shape"]
    )


@pytest.mark.parametrize(
    ("command", "listed"),
    [
        ("memory", "<auto|fp32|bf16|fp16>"),
        ("memory", "<sgd|momentum|adam|adamw>"),
        ("train", "<auto|fp32|bf16|fp16>"),
        ("train", "<fashion-mnist|mnist|cifar10|cifar100|folder|synthetic>"),
        ("eval", "<fashion-mnist|mnist|cifar10|cifar100|folder|synthetic>"),
    ],
)
def test_options_with_choices_list_them(command, listed):
    assert listed in run(command, "--help").stdout


def test_the_clis_optimizers_are_the_predictors():
    from cnnshape.cli import Optimizer
    from cnnshape.step import OPTIMIZERS

    assert tuple(o.value for o in Optimizer) == OPTIMIZERS


def test_csv_writes_every_shape_one_way():
    show = list(csv.DictReader(io.StringIO(run("show", "lenet", "-f", "csv").stdout)))
    compare = list(csv.DictReader(io.StringIO(run("compare", "lenet", "-f", "csv").stdout)))
    assert show[0]["Output shape"] == "1x6x28x28"
    assert (compare[0]["Input"], compare[0]["Output"]) == ("1x1x28x28", "1x10")


# ---- the model's own words go to stderr ---------------------------------------------------------

PRINTING_MODEL = """
from torch import nn
print("importing the model file")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        print("building Net")
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        print("forward", x.shape)
        return self.conv(x)
"""


@pytest.mark.parametrize(
    "command",
    [
        ["show", "-f", "json"],
        ["show", "--time", "--repeats", "1", "--warmup", "0", "-f", "json"],
        ["compare", "lenet", "-f", "json"],
        ["sizes", "--up-to", "8", "-f", "json"],
    ],
)
def test_a_model_that_prints_leaves_stdout_to_the_data(tmp_path, command):
    (tmp_path / "prints.py").write_text(PRINTING_MODEL)
    name, *options = command
    models = [str(tmp_path / "prints.py:Net")]
    if name == "compare":
        models, options = [options[0], *models], options[1:]
    result = run(name, *models, *options)
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)  # nothing else on stdout
    assert "importing the model file" in result.stderr and "forward" in result.stderr


# ---- any rank of layer, at the walk's image input -----------------------------------------------

OTHER_RANKS = """
from torch import nn


class Audio(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3)

    def forward(self, x):
        return self.conv(x)


class Video(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3)
        self.pool = nn.MaxPool3d(2)

    def forward(self, x):
        return self.pool(self.conv(x))
"""


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (
            "Audio",
            "it takes 3-D input (batch, channels, length), or 2-D without the batch, not 4-D",
        ),
        ("Video", "it reads a 4-D input as one sample without the batch"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["show"],
        ["show", "--rf"],
        ["show", "--time", "--repeats", "1", "--warmup", "0"],
        ["show", "--memory", "--device", "cpu"],
        ["memory", "--device", "cpu", "--batch", "2"],
        ["sizes", "--up-to", "16"],
    ],
)
def test_a_layer_of_another_rank_says_why_it_refuses_an_image(tmp_path, model, says, command):
    (tmp_path / "dims.py").write_text(OTHER_RANKS)
    name, *options = command
    result = run(name, f"{tmp_path / 'dims.py'}:{model}", *options)
    if name == "sizes":  # a scan answers: no size, and why
        assert result.exit_code == 0, result.stderr
        assert says in " ".join(result.stdout.split())
    else:
        assert_clean_error(result, f"layer conv ({'Conv1d' if model == 'Audio' else 'Conv3d'})")
        assert says in " ".join(result.stderr.split())


def test_compare_keeps_its_table_when_a_model_takes_another_rank(tmp_path):
    (tmp_path / "dims.py").write_text(OTHER_RANKS)
    result = run("compare", "lenet", f"{tmp_path / 'dims.py'}:Video", "-f", "json")
    assert result.exit_code == 0, result.stderr
    lenet, video = json.loads(result.stdout)["models"]
    assert lenet["params"] == 61_706 and "Conv3d" in video["error"]


# ---- comparisons that cannot divide -------------------------------------------------------------


def test_a_first_model_without_parameters_gives_no_ratio_not_nan(tmp_path):
    (tmp_path / "empty.py").write_text(
        "from torch import nn\n\n\ndef Pool():\n    return nn.Sequential(nn.MaxPool2d(2))\n"
    )
    pool = f"{tmp_path / 'empty.py'}:Pool"
    result = run("compare", pool, "lenet", "--size", "28", "--in-channels", "1", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert "NaN" not in result.stdout
    first, lenet = json.loads(result.stdout)["models"]
    assert first["relative"]["params"] is None and lenet["relative"]["params"] is None
    assert lenet["relative"]["activation_bytes"] > 0  # what can be divided still is
    table = run("compare", pool, "lenet", "--size", "28", "--in-channels", "1").stdout
    assert "nan" not in table.lower() and "61.71 K –" in table


# ---- user mistakes that once were internal errors -----------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["show", "a" * 300 + ".py:Net"], "File name too long"),
        (["show", "/proc/self/status:X"], "Importing /proc/self/status failed: SyntaxError"),
        (["show", "lenet", "--plot", "a" * 300 + ".png"], "File name too long"),
        (["show", "lenet", "--plot", "/no/such/folder/x.png"], "there is no folder"),
        (["show", "lenet", "--plot", ""], "is not a file name"),
    ],
)
def test_mistakes_are_errors_not_internal_errors(args, says):
    result = assert_clean_error(run(*args), says)
    assert "internal error" not in result.stderr


def test_memory_of_a_model_that_is_no_classifier_says_so(tmp_path):
    (tmp_path / "prints.py").write_text(PRINTING_MODEL)
    for command in (["memory", "--batch", "2", "--size", "8"], ["show", "--memory"]):
        result = run(command[0], f"{tmp_path / 'prints.py'}:Net", *command[1:], "--device", "cpu")
        assert_clean_error(result, "gives 1x4x222x222" if "show" in command else "2x4x6x6")
        assert "(batch, classes)" in result.stderr


def test_batch_norm_of_another_rank_is_refused_by_the_walk_and_the_scan_alike(tmp_path):
    (tmp_path / "norm.py").write_text(
        "from torch import nn\n\n\ndef Norm():\n    return nn.Sequential(nn.BatchNorm1d(3))\n"
    )
    says = "it takes 3-D input (batch, channels, length), or 2-D (batch, features), not 4-D"
    shown = assert_clean_error(run("show", f"{tmp_path / 'norm.py'}:Norm", "--size", "8"))
    assert says in shown.stderr
    scan = run("sizes", f"{tmp_path / 'norm.py'}:Norm", "--up-to", "8", "-f", "json")
    assert json.loads(scan.stdout)["valid"] == []

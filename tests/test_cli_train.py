"""`cnnshape train` and `cnnshape eval` as a user runs them, on tiny IDX files."""

import json
import signal

import pytest
import typer
from conftest import cli
from fmnist_files import write_fashion_dir

from cnnshape import api
from cnnshape.cli import friendly_errors
from cnnshape.train.config import TrainSettings
from cnnshape.train.events import EpochStats
from cnnshape.train.run import RunResult
from cnnshape.train.signals import Stopped


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    return write_fashion_dir(tmp_path_factory.mktemp("fashion"), n_train=400, n_test=100)


def train(fashion_dir, out, *args):
    return cli(
        "train",
        "lenet-bn",
        "--data-dir",
        fashion_dir,
        "--out",
        out,
        "--batch-size",
        "100",
        "--device",
        "cpu",
        *args,
    )


def test_train_prints_the_books_final_lines_and_writes_the_run(fashion_dir, tmp_path):
    result = train(fashion_dir, tmp_path / "run", "--epochs", "2")
    assert result.exit_code == 0, result.stderr
    loss_line, speed_line = result.stdout.strip().splitlines()
    assert loss_line.startswith("loss ") and ", train acc " in loss_line
    assert ", test acc " in loss_line
    assert speed_line.endswith("examples/sec on cpu")
    # the header and one row per epoch go to stderr
    assert "44,878 params" in result.stderr and "563.28 KFLOPs" in result.stderr
    assert "lr 1, batch size 100" in result.stderr
    assert "chance level" not in result.stderr  # this toy task is learnable
    for name in ("config.json", "metrics.csv", "curves.png", "checkpoint.pt"):
        assert (tmp_path / "run" / name).is_file()


def test_train_json_then_resume_then_eval(fashion_dir, tmp_path):
    first = json.loads(train(fashion_dir, tmp_path / "run", "--epochs", "1", "-f", "json").stdout)
    assert [e["epoch"] for e in first["history"]] == [1]
    assert first["config"]["lr"] == 1.0 and first["config"]["size"] == 28

    resumed = cli("train", "--resume", str(tmp_path / "run"), "--epochs", "2", "-f", "json")
    assert resumed.exit_code == 0, resumed.stderr
    history = json.loads(resumed.stdout)["history"]
    assert [e["epoch"] for e in history] == [1, 2]
    assert history[0] == first["history"][0]

    evaluated = cli("eval", str(tmp_path / "run"), "--bn", "-f", "json")
    assert evaluated.exit_code == 0, evaluated.stderr
    doc = json.loads(evaluated.stdout)
    assert doc["epoch"] == 2
    assert doc["test_acc"] == pytest.approx(history[1]["test_acc"])
    assert [c["name"] for c in doc["per_class"]][:2] == ["T-shirt/top", "Trouser"]
    assert sum(map(sum, doc["confusion"])) == 100
    assert [layer["type"] for layer in doc["batch_norm"]] == [
        "BatchNorm2d",
        "BatchNorm2d",
        "BatchNorm1d",
        "BatchNorm1d",
    ]
    table = cli("eval", str(tmp_path / "run"), "--bn").stdout
    assert "Confusion matrix" in table and "gamma" in table and "Ankle boot" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--size", "8"], "cannot take a 1x1x8x8 input"),
        (["--device", "tpu"], "Unknown device"),
    ],
)
def test_bad_training_options(fashion_dir, tmp_path, args, message):
    result = train(fashion_dir, tmp_path / "run", *args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "Invalid value for '--batch-size' / '--batch'"),
        (["--batch", "x"], "Invalid value for '--batch-size' / '--batch'"),
        (["--precision", "fp8"], "'fp8' is not one of 'auto', 'fp32', 'bf16', 'fp16'"),
        (["--dataset", "mnist2"], "'mnist2' is not one of 'fashion-mnist', 'mnist', 'cifar10'"),
        (["--size", "96x64"], "training resizes images to a square"),
        (["--size", "big"], "'big' is not a size"),
    ],
)
def test_malformed_training_options_are_usage_errors(fashion_dir, tmp_path, args, message):
    """As for every option click checks: exit 2, the usage line, and nothing written."""
    result = train(fashion_dir, tmp_path / "run", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "1e308"], "--lr must be a positive number a float32 holds"),
        (["--lr", "inf"], "--lr must be a positive number"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--lr", "0"], "--lr must be a positive number"),
        (["--epochs", HUGE], "--epochs must be at most 2^63 - 1"),
        (["--batch-size", HUGE], "--batch-size must be at most 60,000 (the training images)"),
        (["--train-limit", HUGE], "--train-limit must be at most 2^63 - 1"),
        (["--test-limit", HUGE], "--test-limit must be at most 2^63 - 1"),
        (["--seed", HUGE], "--seed must be from -2^63 to 2^64 - 1"),
        (["--seed", "-" + HUGE], "--seed must be from -2^63 to 2^64 - 1"),
    ],
)
def test_numbers_no_run_can_use_are_refused_before_anything_happens(tmp_path, args, message):
    # No data there: a check after loading it would say so instead.
    where = ["--data-dir", tmp_path / "no-data", "--out", tmp_path / "run", "--device", "cpu"]
    result = cli("train", "lenet", *where, *args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error:"), result.stderr  # no blank line before it
    error, hint = result.stderr.strip().splitlines()
    assert error.startswith(f"Error: {message}") and hint.startswith("Hint: "), result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_data_names_the_four_files(tmp_path):
    result = cli("train", "lenet", "--data-dir", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert name in result.stderr


def test_resume_takes_settings_that_agree_and_refuses_those_that_differ(fashion_dir, tmp_path):
    assert train(fashion_dir, tmp_path / "run", "--epochs", "1").exit_code == 0
    # The user's own command again, with --resume added and a longer run: accepted.
    again = train(fashion_dir, tmp_path / "run", "--epochs", "2", "--resume", tmp_path / "run")
    assert again.exit_code == 0, again.stderr
    assert "resuming after epoch 1" in again.stderr
    differs = cli("train", "--resume", tmp_path / "run", "--epochs", "3", "--lr", "0.5")
    assert differs.exit_code == 1
    assert "--lr cannot change when resuming: the run has 1.0, not 0.5" in differs.stderr
    other = cli("train", "resnet18", "--resume", tmp_path / "run", "--epochs", "3")
    assert "MODEL cannot change when resuming: the run has 'lenet-bn', not 'resnet18'" in (
        other.stderr
    )


def test_train_needs_a_model_or_resume():
    result = cli("train")
    assert result.exit_code == 1 and "Which model?" in result.stderr


def test_eval_of_a_missing_run(tmp_path):
    result = cli("eval", str(tmp_path))
    assert result.exit_code == 1 and "No checkpoint" in result.stderr


def test_ctrl_c_exits_130_and_says_how_to_resume(monkeypatch, tmp_path):
    # The fault-injection tests send real signals; here: what the CLI does with the outcome.
    def stopped_run(settings, on_event, out, force):
        history = [EpochStats(1, 0.5, 0.8, 0.8, 1.0, 1.0, 1.0)]
        config = TrainSettings("lenet", device="cpu").resolve()
        return RunResult(tmp_path, config, history, signal.SIGINT, examples_per_sec=0.0)

    monkeypatch.setattr(api, "train", stopped_run)
    result = cli("train", "lenet", "--dataset", "synthetic")
    assert result.exit_code == 130
    assert f"cnnshape train --resume {tmp_path}" in result.stderr


def test_a_sigterm_landing_while_an_error_unwinds_says_why_under_torchrun(monkeypatch, capsys):
    # torchrun stops rank 0 the moment another rank dies, often while rank 0's own error (its
    # collective lost the peer) is still unwinding: the SIGTERM replaces it.
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)

    @friendly_errors
    def command():
        try:
            raise RuntimeError("Connection closed by peer")
        finally:
            raise Stopped(signal.SIGTERM)

    with pytest.raises(typer.Exit) as stopped:
        command()
    assert stopped.value.exit_code == 143
    assert (
        "[rank 0] Interrupted (SIGTERM: torchrun stops every rank when one fails"
        in capsys.readouterr().err
    )


def test_a_run_that_ends_at_chance_level_says_so(tmp_path):
    # Random labels cannot be learned: the final train accuracy stays near 1/10.
    result = cli(
        "train",
        "lenet",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--train-limit",
        "1000",
        "--test-limit",
        "100",
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.stderr
    assert "Warning: the final train accuracy" in result.stderr
    assert "chance level" in result.stderr


def test_train_and_eval_print_their_tables_as_csv_and_markdown(fashion_dir, tmp_path):
    import csv
    import io

    result = train(fashion_dir, tmp_path / "run", "--epochs", "2", "-f", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # metrics.csv's columns, one row per epoch
    saved = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [float(r["test acc"]) for r in rows] == [float(line.split(",")[3]) for line in saved[1:]]
    markdown = cli("eval", tmp_path / "run", "-f", "markdown").stdout
    assert "| class | correct | total | accuracy |" in markdown and "| Ankle boot |" in markdown
    per_class = list(csv.DictReader(io.StringIO(cli("eval", tmp_path / "run", "-f", "csv").stdout)))
    assert sum(int(r["total"]) for r in per_class) == 100

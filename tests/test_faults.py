"""Fault injection: runs never lose, mix or trust damaged data, and every failure of the
environment is one clear error.

Real processes are killed (`kill -9`), stopped (SIGTERM, Ctrl-C twice) and raced for one
run folder; disk failures (a full disk, a read-only folder) are injected at the write as the
OSError the operating system would raise. The long kill loop is marked slow: CI runs it,
`python -m pytest -m "not slow"` skips it locally.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_error, cli
from fmnist_files import write_fashion_dir

from cnnshape import api
from cnnshape.errors import CnnshapeError
from cnnshape.train import checkpoint, folder
from cnnshape.train.config import TrainSettings
from cnnshape.train.events import RunStart

WORKER = Path(__file__).with_name("fault_worker.py")
SETTINGS = ["lenet-bn", "--batch-size", "50", "--device", "cpu", "--seed", "5"]


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    return write_fashion_dir(tmp_path_factory.mktemp("fashion"), n_train=300, n_test=60)


def start(
    *args,
    batch_seconds=0.0,
    save_seconds=0.0,
    hold_after=None,
    release=None,
    file_limit_after=None,
    cwd=None,
) -> subprocess.Popen:
    """`cnnshape ARGS` in its own process, output captured; slowed down where asked, held
    once ``hold_after`` epochs are saved until the file ``release`` exists, or under a file
    size limit once ``file_limit_after`` epochs are saved (tests/fault_worker.py).
    """
    env = dict(
        os.environ,
        CNNSHAPE_TEST_BATCH_SECONDS=str(batch_seconds),
        CNNSHAPE_TEST_SAVE_SECONDS=str(save_seconds),
        CNNSHAPE_NO_CACHE="1",
    )
    if hold_after is not None:
        env["CNNSHAPE_TEST_HOLD_AFTER"] = str(hold_after)
    if release is not None:
        env["CNNSHAPE_TEST_RELEASE"] = str(release)
    if file_limit_after is not None:
        env["CNNSHAPE_TEST_FILE_LIMIT_AFTER"] = str(file_limit_after)
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def train_args(fashion_dir, out, epochs=2, *more):
    return ["train", *SETTINGS, "--data-dir", fashion_dir, "--out", out, "--epochs", epochs, *more]


def assert_consistent(run_dir: Path) -> int:
    """The folder describes one run: a whole checkpoint, metrics.csv its history or one epoch
    behind it, config.json whole. Returns the saved epoch (0: none)."""
    if (run_dir / "config.json").exists():
        json.loads((run_dir / "config.json").read_text())
    if not (run_dir / "checkpoint.pt").exists():
        assert not (run_dir / "metrics.csv").exists()  # the checkpoint comes first
        return 0
    state = checkpoint.load(run_dir)  # verified: every checksum
    saved = [row["epoch"] for row in state["history"]]
    assert saved == list(range(1, state["epoch"] + 1))
    if (run_dir / "metrics.csv").exists():
        shown = [s.epoch for s in folder.read_metrics(run_dir / "metrics.csv")]
        assert shown in (saved, saved[:-1])
    return state["epoch"]


# ---- whose folder ---------------------------------------------------------------------------


def test_out_must_be_a_folder_the_run_may_take(fashion_dir, tmp_path):
    assert_clean_error(cli(*train_args(fashion_dir, "")), "--out '' is not a folder")
    (tmp_path / "file").write_text("x")
    assert_clean_error(cli(*train_args(fashion_dir, tmp_path / "file")), "is a file")
    assert_clean_error(cli(*train_args(fashion_dir, tmp_path / "file" / "run")), "lies under")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my,own\n1,2\n")
    (mine / "notes.txt").write_text("keep me")
    refused = assert_clean_error(cli(*train_args(fashion_dir, mine, 1)), "not empty", "--force")
    assert "metrics.csv, notes.txt" in refused.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.csv", "notes.txt"]  # untouched
    assert (mine / "metrics.csv").read_text() == "my,own\n1,2\n"
    forced = cli(*train_args(fashion_dir, mine, 1), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert (mine / "notes.txt").read_text() == "keep me"  # only cnnshape's own names replaced


def test_a_folder_holding_a_run_is_left_to_resume(fashion_dir, tmp_path):
    assert cli(*train_args(fashion_dir, tmp_path / "r", 1)).exit_code == 0
    other = cli("train", "resnet18", "--data-dir", fashion_dir, "--out", tmp_path / "r")
    assert_clean_error(other, "already holds a run", f"--resume {tmp_path / 'r'}")


def test_a_run_killed_before_its_first_save_leaves_a_folder_a_new_run_may_take(
    fashion_dir, tmp_path
):
    run = start(*train_args(fashion_dir, tmp_path / "r", 2), hold_after=0)
    wait_for(lambda: (tmp_path / "r" / "config.json").exists())
    run.kill()
    finish(run)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
    again = cli(*train_args(fashion_dir, tmp_path / "r", 1))
    assert again.exit_code == 0, again.stderr


def test_a_run_killed_in_its_first_save_leaves_a_folder_a_new_run_cleans_and_takes(
    fashion_dir, tmp_path
):
    run = start(*train_args(fashion_dir, tmp_path / "r", 2), save_seconds=2)
    wait_for(lambda: _writing("checkpoint.pt")(tmp_path / "r") or run.poll() is not None)
    run.kill()
    finish(run)
    assert [p.name for p in (tmp_path / "r").glob(".checkpoint.pt.*.tmp")]  # left by the kill
    again = cli(*train_args(fashion_dir, tmp_path / "r", 1))
    assert again.exit_code == 0, again.stderr
    assert f"Cleaned {tmp_path / 'r'}: removed 1 unfinished temporary file." in again.stderr
    assert not list((tmp_path / "r").glob(".*.tmp"))
    assert assert_consistent(tmp_path / "r") == 1


def test_only_cnnshapes_own_temporary_files_count_as_its_own(fashion_dir, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    ours = [".checkpoint.pt.0123456789ab.tmp", ".config.json.ba9876543210.tmp"]
    theirs = [".notes.tmp", ".checkpoint.pt.mine.tmp", ".model.pt.0123456789ab.tmp"]
    for name in ours + theirs:
        (out / name).write_text("x")
    refused = assert_clean_error(cli(*train_args(fashion_dir, out, 1)), "is not empty")
    assert ", ".join(sorted(theirs)) in refused.stderr
    forced = cli(*train_args(fashion_dir, out, 1), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "removed 2 unfinished temporary files" in forced.stderr
    assert sorted(p.name for p in out.glob(".*.tmp")) == sorted(theirs)  # kept


def test_two_runs_racing_for_one_folder(fashion_dir, tmp_path):
    go = tmp_path / "go"
    first = start(*train_args(fashion_dir, tmp_path / "r", 3), hold_after=0, release=go)
    wait_for(lambda: (tmp_path / "r" / "config.json").exists())
    second = start(*train_args(fashion_dir, tmp_path / "r", 2, "--lr", "0.5"))
    resume = start("train", "--resume", tmp_path / "r", "--epochs", "4")
    for code, _, err in (finish(second), finish(resume)):
        assert code == 1 and "is in use by another cnnshape run (pid" in err, err
        assert "Traceback" not in err
    assert first.poll() is None  # refused while the first was still training
    go.touch()
    assert finish(first)[0] == 0
    assert assert_consistent(tmp_path / "r") == 3
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert recorded["lr"] == checkpoint.load(tmp_path / "r")["config"]["lr"] == 1.0


def test_a_killed_runs_lock_does_not_block(fashion_dir, tmp_path):
    run = start(*train_args(fashion_dir, tmp_path / "r", 3), hold_after=1)
    wait_for(lambda: (tmp_path / "r" / "metrics.csv").exists())
    run.kill()  # SIGKILL: no handler runs, the kernel drops the lock
    finish(run)
    resumed = cli("train", "--resume", tmp_path / "r")
    assert resumed.exit_code == 0, resumed.stderr


# ---- kill -9 at any instant -------------------------------------------------------------


def _writing(name: str):
    """The run is inside a save of ``name``: its temporary file exists (fault_worker keeps it
    there for a while before the rename)."""
    return lambda run_dir: any(run_dir.glob(f".{name}.*.tmp"))


def _after_first_epoch(instant):
    return lambda run_dir: (run_dir / "curves.png").exists() and instant(run_dir)


# Instants told by what the folder shows, not by the clock, so a slow start on a loaded
# machine moves them all alike. Each is polled; the kill follows at once.
KILL_INSTANTS = {
    "starting": lambda run_dir: True,
    "saving config.json": _writing("config.json"),
    "saving the first checkpoint.pt": _writing("checkpoint.pt"),
    "saving the first metrics.csv": _writing("metrics.csv"),
    "saving the first curves.png": _writing("curves.png"),
    "training epoch 2": lambda run_dir: (run_dir / "curves.png").exists(),
    "saving a later checkpoint.pt": _after_first_epoch(_writing("checkpoint.pt")),
    "saving a later metrics.csv": _after_first_epoch(_writing("metrics.csv")),
    "saving a later curves.png": _after_first_epoch(_writing("curves.png")),
}


@pytest.mark.slow
@pytest.mark.parametrize("instant", KILL_INSTANTS)
def test_kill_9_at_any_instant_leaves_one_consistent_run_that_resumes_exactly(
    fashion_dir, tmp_path, whole_run, instant
):
    run_dir = tmp_path / "killed"
    run = start(*train_args(fashion_dir, run_dir, 3), batch_seconds=0.01, save_seconds=0.3)
    wait_for(lambda: KILL_INSTANTS[instant](run_dir) or run.poll() is not None)
    assert run.poll() is None, f"the run ended before the instant '{instant}'"
    run.kill()
    finish(run)
    if instant.startswith("saving"):
        assert list(run_dir.glob(".*.tmp"))  # the kill did land inside the save
    saved = assert_consistent(run_dir)
    if saved == 0:
        return
    code, _, err = finish(start("train", "--resume", run_dir))
    if saved == 3:
        assert code == 1 and "already finished" in err
        return
    assert code == 0, err
    assert not list(run_dir.glob(".*.tmp"))  # the resume cleaned up
    state = checkpoint.load(run_dir)
    assert [r["test_acc"] for r in state["history"]] == [
        r["test_acc"] for r in whole_run["history"]
    ]
    assert all(torch.equal(state["model"][k], whole_run["model"][k]) for k in whole_run["model"])
    assert assert_consistent(run_dir) == 3


@pytest.fixture(scope="module")
def whole_run(fashion_dir, tmp_path_factory):
    """The checkpoint of the same 3-epoch run, never killed."""
    whole = tmp_path_factory.mktemp("whole")
    assert cli(*train_args(fashion_dir, whole, 3)).exit_code == 0
    return checkpoint.load(whole)


def test_resume_repairs_what_a_kill_left_and_says_so(fashion_dir, tmp_path):
    assert cli(*train_args(fashion_dir, tmp_path / "r", 2)).exit_code == 0
    metrics = tmp_path / "r" / "metrics.csv"
    rows = metrics.read_text().splitlines()
    metrics.write_text("\n".join(rows[:-1]) + "\n")  # a kill between checkpoint and metrics
    (tmp_path / "r" / ".checkpoint.pt.0123456789ab.tmp").write_bytes(b"half")
    resumed = cli("train", "--resume", tmp_path / "r", "--epochs", "3")
    assert resumed.exit_code == 0, resumed.stderr
    assert "Repaired" in resumed.stderr and "removed 1 unfinished temporary file" in (
        resumed.stderr
    )
    assert "rewrote metrics.csv (1 epochs) from checkpoint.pt (2 epochs)" in resumed.stderr
    assert assert_consistent(tmp_path / "r") == 3
    assert not list((tmp_path / "r").glob(".*.tmp"))


# ---- signals ----------------------------------------------------------------------------


def test_sigterm_saves_the_last_epoch_and_exits_143(fashion_dir, tmp_path):
    run = start(*train_args(fashion_dir, tmp_path / "r", 5), hold_after=1)
    wait_for(lambda: (tmp_path / "r" / "metrics.csv").exists())
    run.send_signal(signal.SIGTERM)
    code, _, err = finish(run)
    assert code == 143, err
    assert "Traceback" not in err and f"cnnshape train --resume {tmp_path / 'r'}" in err
    assert assert_consistent(tmp_path / "r") == 1


@pytest.mark.parametrize("presses", [2, 3])
def test_ctrl_c_pressed_again_and_again_still_saves_and_says_how_to_resume(
    fashion_dir, tmp_path, presses
):
    run = start(*train_args(fashion_dir, tmp_path / "r", 5), hold_after=1)
    wait_for(lambda: (tmp_path / "r" / "metrics.csv").exists())
    for _ in range(presses):
        run.send_signal(signal.SIGINT)
        time.sleep(0.001)
    code, _, err = finish(run)
    assert code == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert f"cnnshape train --resume {tmp_path / 'r'}" in err
    assert assert_consistent(tmp_path / "r") == 1


def test_ctrl_c_during_the_last_save_says_the_run_is_complete(fashion_dir, tmp_path, monkeypatch):
    write_metrics = folder._write_metrics

    def metrics_then_ctrl_c(path, history):
        write_metrics(path, history)
        if len(history) == 2:  # the last epoch
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(folder, "_write_metrics", metrics_then_ctrl_c)
    result = cli(*train_args(fashion_dir, tmp_path / "r", 2))
    assert result.exit_code == 130
    assert "the run in" in result.stderr and "is complete" in result.stderr
    assert "--resume" not in result.stderr
    assert assert_consistent(tmp_path / "r") == 2


# ---- damaged data -----------------------------------------------------------------------


def test_a_checkpoint_with_flipped_bytes_is_refused_by_eval_and_resume(fashion_dir, tmp_path):
    assert cli(*train_args(fashion_dir, tmp_path / "r", 1)).exit_code == 0
    path = tmp_path / "r" / "checkpoint.pt"
    with zipfile.ZipFile(path) as archive:
        member = next(i for i in archive.infolist() if "/data/" in i.filename)
    raw = bytearray(path.read_bytes())
    header = member.header_offset  # the local header says where the data starts
    name_length = int.from_bytes(raw[header + 26 : header + 28], "little")
    extra_length = int.from_bytes(raw[header + 28 : header + 30], "little")
    raw[header + 30 + name_length + extra_length + 7] ^= 0x40  # one bit inside a tensor
    path.write_bytes(raw)
    for command in (
        ["eval", tmp_path / "r"],
        ["train", "--resume", tmp_path / "r", "--epochs", "2"],
    ):
        assert_clean_error(cli(*command), f"{path} is damaged", "fails its checksum", "Hint:")


def test_weights_that_do_not_fit_the_model_are_one_line(fashion_dir, tmp_path):
    assert cli(*train_args(fashion_dir, tmp_path / "r", 1)).exit_code == 0
    state = checkpoint.load(tmp_path / "r")
    state["model"]["0.weight"] = torch.zeros(3, 3)
    del state["model"]["4.bias"]
    torch.save(state, tmp_path / "r" / "checkpoint.pt")
    result = assert_clean_error(cli("eval", tmp_path / "r"), "do not fit the model")
    assert "1 missing, 1 of another shape" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # Error and Hint, no wall of keys


# ---- the disk's failures ------------------------------------------------------------------


def fail_when(monkeypatch, name: str, err: int, after: int = 0):
    """From the ``after``+1-th write of ``name`` in a run folder on, the write stops half-way
    with OSError(err), as the operating system would report a full or read-only disk."""
    write = folder.RunFolder._write
    count = {"n": 0}

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"half a file")
        raise OSError(err, os.strerror(err))

    def failing(self, file, writer):
        if file == name:
            count["n"] += 1
            if count["n"] > after:
                writer = half_then_fail
        return write(self, file, writer)

    monkeypatch.setattr(folder.RunFolder, "_write", failing)


@pytest.mark.parametrize(
    ("err", "cause"),
    [
        (errno.ENOSPC, "the disk is full"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_a_failing_disk_during_a_save_is_one_error_and_keeps_the_earlier_epoch(
    fashion_dir, tmp_path, monkeypatch, err, cause
):
    fail_when(monkeypatch, "checkpoint.pt", err, after=1)  # epoch 2's checkpoint
    result = assert_clean_error(
        cli(*train_args(fashion_dir, tmp_path / "r", 3)),
        f"Cannot write {tmp_path / 'r' / 'checkpoint.pt'}: {cause}.",
        "earlier files are as they were",
    )
    assert "internal error" not in result.stderr
    assert assert_consistent(tmp_path / "r") == 1
    assert not list((tmp_path / "r").glob(".*.tmp"))


def test_a_file_size_limit_during_a_save_is_one_error_and_keeps_the_earlier_epoch(
    fashion_dir, tmp_path
):
    pytest.importorskip("resource")  # POSIX: `ulimit -f`, and writes past it fail with EFBIG
    run = start(*train_args(fashion_dir, tmp_path / "r", 3), file_limit_after=1)
    code, _, err = finish(run)
    assert code == 1, err
    assert f"Error: Cannot write {tmp_path / 'r' / 'checkpoint.pt'}: the file is larger " in err
    assert "(ulimit -f)" in err and "internal error" not in err and "Traceback" not in err
    assert assert_consistent(tmp_path / "r") == 1
    assert not list((tmp_path / "r").glob(".*.tmp"))


def test_a_full_disk_at_the_start_is_one_error(fashion_dir, tmp_path, monkeypatch):
    fail_when(monkeypatch, "config.json", errno.ENOSPC)
    assert_clean_error(cli(*train_args(fashion_dir, tmp_path / "r", 1)), "the disk is full")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.parametrize("free", [0, 3000])
def test_a_real_full_write_surfaces_as_the_disk_error(tmp_path, monkeypatch, free):
    # The OSError of the file's write, not PyTorch's opaque "[enforce fail at
    # inline_container.cc] unexpected pos", also when the disk fills up half-way.
    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(".tmp"):
            write, left = handle.write, [free]

            def until_full(data):
                if len(data) > left[0]:
                    write(bytes(data)[: left[0]])
                    left[0] = 0
                    raise OSError(errno.ENOSPC, "No space left on device")
                left[0] -= len(data)
                return write(data)

            handle.write = until_full
        return handle

    monkeypatch.setattr("builtins.open", full_open)
    run_folder = folder.RunFolder(tmp_path)
    model = torch.nn.Linear(40, 40)  # a checkpoint of 8 KB
    with pytest.raises(CnnshapeError, match="the disk is full"):
        run_folder.save_epoch(
            [],
            "t",
            1,
            model=model,
            scaler=None,
            config={},
            optimizer=torch.optim.SGD(model.parameters(), 0.1),
        )
    assert list(tmp_path.iterdir()) == []


# ---- a batch of one image -------------------------------------------------------------------


def test_a_last_batch_of_one_image_is_left_out_for_batchnorm(fashion_dir, tmp_path):
    starts = []
    settings = TrainSettings(
        "lenet-bn",
        epochs=1,
        batch_size=100,
        device="cpu",
        data_dir=str(fashion_dir),
        train_limit=201,
    )
    result = api.train(settings, starts.append, out=tmp_path / "r")
    assert isinstance(starts[0], RunStart) and starts[0].left_out_per_epoch == 1
    assert result.history[0].images_per_sec > 0 and assert_consistent(tmp_path / "r") == 1
    # Without BatchNorm, every image is used: nothing to leave out.
    plain = api.train(replace(settings, model="lenet"), starts.append, out=tmp_path / "plain")
    assert [e for e in starts if isinstance(e, RunStart)][-1].left_out_per_epoch == 0
    assert plain.history


def test_the_header_says_so(fashion_dir, tmp_path):
    result = cli(*train_args(fashion_dir, tmp_path / "r", 1, "--train-limit", "201"))
    assert result.exit_code == 0, result.stderr
    assert "leaves out its last batch (1 image)" in result.stderr


# ---- resuming where the run was left ----------------------------------------------------------


def test_the_data_folder_is_recorded_absolute_and_can_move(fashion_dir, tmp_path):
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(fashion_dir, work / "data")
    first = start("train", *SETTINGS, "--data-dir", "data", "--out", "r", "--epochs", "1", cwd=work)
    assert finish(first)[0] == 0
    recorded = checkpoint.load(work / "r")["config"]["data_dir"]
    assert recorded == str((work / "data").resolve())
    # From another folder: the absolute path still finds the data.
    assert cli("train", "--resume", work / "r", "--epochs", "2").exit_code == 0
    # The data moved: --data-dir says where it is now.
    shutil.move(work / "data", tmp_path / "moved")
    lost = cli("train", "--resume", work / "r", "--epochs", "3")
    assert_clean_error(lost, "Fashion-MNIST was not found")
    found = cli("train", "--resume", work / "r", "--epochs", "3", "--data-dir", tmp_path / "moved")
    assert found.exit_code == 0, found.stderr


def test_settings_that_would_be_ignored_on_resume_are_refused(fashion_dir, tmp_path):
    assert cli(*train_args(fashion_dir, tmp_path / "r", 1)).exit_code == 0
    for flag, value, recorded in (
        ("--seed", "6", "5"),
        ("--precision", "bf16", "'fp32'"),
        ("--train-limit", "10", "None"),
    ):
        result = cli("train", "--resume", tmp_path / "r", "--epochs", "2", flag, value)
        assert_clean_error(result, f"{flag} cannot change when resuming: the run has {recorded}")
    same = cli("train", "--resume", tmp_path / "r", "--epochs", "2", "--seed", "5")
    assert same.exit_code == 0, same.stderr


# ---- everything else the environment can do ----------------------------------------------


USER_CODE = """
import sys
from torch import nn


class Loop(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.again = self


class Exits(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        sys.exit(3)


class Fails(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        raise ValueError("not today")
"""


@pytest.fixture
def user_code(tmp_path):
    (tmp_path / "net.py").write_text(USER_CODE)
    (tmp_path / "bye.py").write_text("import sys\nsys.exit(0)\n")
    return tmp_path


def test_user_code_that_loops_exits_or_fails(user_code):
    net = user_code / "net.py"
    assert_clean_error(cli("show", f"{net}:Loop"), "contains itself", "again")
    assert_clean_error(cli("show", f"{net}:Exits", "--size", "8"), "called sys.exit(3)")
    assert_clean_error(cli("show", f"{net}:Exits", "--time", "--size", "8"), "sys.exit(3)")
    assert_clean_error(cli("show", f"{user_code / 'bye.py'}:Net"), "called sys.exit(0)")
    failing = assert_clean_error(cli("show", f"{net}:Fails", "--size", "8"), "not today")
    assert "accepts square inputs" not in failing.stderr  # not a question of size


def test_impossible_sizes_and_batches(tmp_path):
    assert_clean_error(cli("show", "lenet", "--size", "9" * 3000), "too large")
    assert_clean_error(cli("show", "lenet", "--batch", str(2**64)), "more than a PyTorch tensor")
    assert_clean_error(cli("sizes", "lenet", "--in-channels", str(2**70)), "Building lenet for")


def test_out_of_memory_in_time_is_an_error(monkeypatch):
    from cnnshape.inspect import timing

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(timing, "time_model", exhausted)
    assert_clean_error(
        cli("show", "lenet", "--time", "--batch", "4096"), "Not enough memory", "smaller --batch"
    )


def test_a_missing_data_file_is_named(fashion_dir, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(fashion_dir, partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    result = cli(*train_args(partial, tmp_path / "r", 1))
    assert_clean_error(result, "incomplete", "t10k-labels-idx1-ubyte (or .gz) is missing")


def test_flags_are_named_as_typed(fashion_dir, tmp_path):
    result = cli(*train_args(fashion_dir, tmp_path / "r", 1, "--train-limit", "0"))
    assert_clean_error(result, "--train-limit must be at least 1")

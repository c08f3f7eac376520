"""`cnnshape train` under torchrun: two CPU processes (gloo) on tiny IDX files.

Every run is a real ``python -m torch.distributed.run`` of tests/ddp_worker.py (the CLI plus
test-only instrumentation), bounded by a timeout so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fmnist_files import write_fashion_dir

from cnnshape import api
from cnnshape.train import checkpoint
from cnnshape.train.config import TrainSettings
from cnnshape.train.data import Split, batches

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT = 120
RUN_FILES = {"config.json", "metrics.csv", "curves.png", "checkpoint.pt", ".cnnshape-lock"}
# 200 images in global batches of 63: 63, 63, 63, 11. Every batch splits unevenly over two
# ranks (31/32, and 5/6 for the last), so a loss that were not scaled by each rank's share
# would give a different step than one process.
SETTINGS = ["--batch-size", "63", "--device", "cpu", "--seed", "3"]


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    return write_fashion_dir(tmp_path_factory.mktemp("fashion"), n_train=200, n_test=50)


def torchrun(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(WORKER),
        "train",
        *args,
    ]
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
    )


def torchrun_train(cwd: Path, fashion_dir, model: str, *more: str, env: dict | None = None):
    """`cnnshape train MODEL` on the tiny files into ``cwd/run``, with SETTINGS unless
    ``more`` names its own batch size."""
    settings = [] if "--batch-size" in more else SETTINGS
    data = ["--data-dir", str(fashion_dir), "--out", "run"]
    return torchrun(cwd, model, *data, *more, *settings, env=env)


@pytest.fixture(scope="module")
def two_ranks(fashion_dir, tmp_path_factory):
    """A 2-epoch run on two ranks; each rank dumps its final state and the files it wrote."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "dump").mkdir()
    result = torchrun_train(
        root / "work",
        fashion_dir,
        "lenet",
        *("--epochs", "2", "-f", "json"),
        env={"CNNSHAPE_TEST_DUMP": str(root / "dump")},
    )
    assert result.returncode == 0, result.stderr
    return root, result


def test_ranks_agree_with_each_other_and_with_one_process(two_ranks, fashion_dir, tmp_path):
    root, result = two_ranks
    rank0 = torch.load(root / "dump" / "rank0.pt")
    rank1 = torch.load(root / "dump" / "rank1.pt")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)

    settings = TrainSettings(
        "lenet", epochs=2, batch_size=63, device="cpu", seed=3, data_dir=str(fashion_dir)
    )
    single = api.train(settings, out=str(tmp_path / "one"))
    saved = checkpoint.load(root / "work" / "run")["model"]
    expected = checkpoint.load(tmp_path / "one")["model"]
    assert saved.keys() == expected.keys()  # the bare model's names, no "module." prefix
    for name in expected:
        assert torch.allclose(saved[name], expected[name], rtol=1e-4, atol=1e-6), name

    # Metrics are reduced over both ranks: the whole epoch's loss and accuracy, and the
    # test accuracy over all 50 test images, as one process measures them.
    history = json.loads(result.stdout)["history"]
    for ours, theirs in zip(history, single.history, strict=True):
        assert ours["train_loss"] == pytest.approx(theirs.train_loss, rel=1e-4)
        assert ours["train_acc"] == theirs.train_acc and ours["test_acc"] == theirs.test_acc


def test_only_rank_0_prints_and_writes(two_ranks):
    root, result = two_ranks
    assert {p.name for p in (root / "work" / "run").iterdir()} == RUN_FILES
    assert {p.name for p in (root / "work").iterdir()} == {"run"}
    written = {
        rank: json.loads((root / "dump" / f"rank{rank}-writes.json").read_text()) for rank in (0, 1)
    }
    assert "run/checkpoint.pt" in written[0] and written[1] == []
    assert len(json.loads(result.stdout)["history"]) == 2  # one JSON document: rank 0's
    assert result.stderr.count("epoch  train loss") == 1
    assert "DDP over 2 processes" in result.stderr


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_run_non_zero_without_hanging(fashion_dir, tmp_path, how):
    started = time.monotonic()
    result = torchrun_train(
        tmp_path, fashion_dir, "lenet", "--epochs", "2", env={"CNNSHAPE_TEST_FAIL": how}
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    if how == "raise":
        assert "[rank 1] Error: internal error: RuntimeError: test: rank 1 fails" in result.stderr
    # The survivor says why it stopped too: its next collective failed, or torchrun stopped it.
    assert "[rank 0] Error:" in result.stderr or "torchrun stops every rank" in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_distributed_resume_repeats_the_uninterrupted_run(two_ranks, fashion_dir, tmp_path):
    first = torchrun_train(tmp_path, fashion_dir, "lenet", "--epochs", "1")
    assert first.returncode == 0, first.stderr
    resumed = torchrun(tmp_path, "--resume", "run", "--epochs", "2", "-f", "json")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stderr
    whole = checkpoint.load(two_ranks[0] / "work" / "run")
    state = checkpoint.load(tmp_path / "run")
    metrics = ("epoch", "train_loss", "train_acc", "test_acc")
    assert [[row[k] for k in metrics] for row in state["history"]] == [
        [row[k] for k in metrics] for row in whole["history"]
    ]
    assert all(torch.equal(state["model"][k], whole["model"][k]) for k in whole["model"])


def test_each_rank_takes_its_share_of_every_global_batch_once():
    n = 23  # batches of 5: the last one (3) has fewer images than 7 ranks
    split = Split(torch.zeros(n, 28, 28, dtype=torch.uint8), torch.arange(n))
    whole = [y.tolist() for _, y in batches(split, 5, 28, shuffle_seed=7)]
    for world in (2, 3, 7):
        parts = [
            [y.tolist() for _, y in batches(split, 5, 28, shuffle_seed=7, part=(r, world))]
            for r in range(world)
        ]
        for i, batch in enumerate(whole):
            assert sum((part[i] for part in parts), []) == batch  # rank order rebuilds it
            sizes = [len(part[i]) for part in parts]
            assert max(sizes) - min(sizes) <= 1


def test_sync_bn_refuses_the_from_scratch_batchnorm_once(fashion_dir, tmp_path):
    result = torchrun_train(tmp_path, fashion_dir, "lenet-bn-scratch", "--sync-bn")
    assert result.returncode != 0
    assert result.stderr.count("--sync-bn cannot convert lenet-bn-scratch") == 1  # rank 0 only
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_ranks_share_of_one_image_is_left_out_for_batchnorm(fashion_dir, tmp_path):
    # 200 images in batches of 99: the last batch of 2 gives each rank a single image, which
    # BatchNorm cannot normalize; one process trains on it, two leave that batch out.
    result = torchrun_train(
        tmp_path, fashion_dir, "lenet-bn", "--epochs", "1", "--batch-size", "99", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    assert "leaves out its last batch (2 images)" in result.stderr

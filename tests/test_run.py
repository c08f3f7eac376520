"""Run directories: files written, resume, Ctrl-C, divergence, safe checkpoints, evaluation."""

from __future__ import annotations

import csv
import json
import os
import signal
import zipfile
from pathlib import Path

import pytest
import torch
from fmnist_files import write_fashion_dir

from cnnshape import api
from cnnshape._common import atomic_write
from cnnshape.errors import CnnshapeError
from cnnshape.train import checkpoint, folder, run
from cnnshape.train.config import TrainSettings
from cnnshape.train.data import CLASSES
from cnnshape.train.events import BatchProgress, EpochStats, RunStart
from cnnshape.train.loop import NonFiniteLossError


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    return write_fashion_dir(tmp_path_factory.mktemp("fashion"), n_train=500, n_test=100)


def train(fashion_dir, out, on_event=None, *, progress_every=0.25, **settings):
    """A short lenet-bn run on the tiny IDX files, into ``out``."""
    settings = {
        "model": "lenet-bn",
        "epochs": 2,
        "batch_size": 100,
        "device": "cpu",
        "data_dir": str(fashion_dir),
        **settings,
    }
    return api.train(
        TrainSettings(**settings), on_event, out=out and str(out), progress_every=progress_every
    )


def leftovers(run_dir):
    return [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_a_run_writes_config_metrics_curves_and_checkpoint(fashion_dir, tmp_path):
    events = []
    result = train(fashion_dir, tmp_path / "r", events.append)
    run_dir = tmp_path / "r"
    assert result.run_dir == run_dir and not result.interrupted and len(result.history) == 2
    assert events[0].run_dir == str(run_dir) and isinstance(events[0], RunStart)

    info = json.loads((run_dir / "config.json").read_text())
    assert info["config"]["lr"] == 1.0 and info["config"]["precision"] == "fp32"
    assert info["config"]["device"] == "cpu" and info["data"]["train_images"] == 500
    assert {"torch", "torchvision", "python"} <= set(info["versions"])

    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["test_acc"]) == result.history[1].test_acc
    assert folder.read_metrics(run_dir / "metrics.csv") == result.history

    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = checkpoint.load(run_dir)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert leftovers(run_dir) == []


def test_default_run_dir_is_runs_model_timestamp(fashion_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = {"epochs": 1, "train_limit": 100, "test_limit": 50}
    first = train(fashion_dir, None, **settings)
    second = train(fashion_dir, None, **settings)  # likely within the same second
    assert first.run_dir.parent == second.run_dir.parent == Path("runs")
    assert first.run_dir.name.startswith("lenet-bn-20") and first.run_dir != second.run_dir
    assert (tmp_path / second.run_dir / "checkpoint.pt").is_file()


def test_an_existing_run_is_not_overwritten(fashion_dir, tmp_path):
    train(fashion_dir, tmp_path / "r", epochs=1, train_limit=100)
    with pytest.raises(CnnshapeError, match="already holds a run") as err:
        train(fashion_dir, tmp_path / "r", epochs=1, train_limit=100)
    assert "--resume" in err.value.hint


def test_a_size_the_model_cannot_take_fails_before_any_work(fashion_dir, tmp_path):
    with pytest.raises(CnnshapeError, match="cannot take a 1x1x8x8 input: layer 4 ") as err:
        train(fashion_dir, tmp_path / "r", size=8)
    assert "accepts square inputs of size 28-31" in err.value.hint
    assert not (tmp_path / "r").exists()


# ---- Ctrl-C and resume --------------------------------------------------------------------------


def interrupt_in_epoch(epoch):
    def on_event(event):
        if isinstance(event, BatchProgress) and event.epoch == epoch and event.batch == 2:
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, delivered mid-epoch

    return on_event


def test_ctrl_c_mid_epoch_keeps_the_last_finished_epoch(fashion_dir, tmp_path):
    result = train(fashion_dir, tmp_path / "r", interrupt_in_epoch(2), progress_every=0, epochs=3)
    assert result.interrupted and [s.epoch for s in result.history] == [1]
    state = checkpoint.load(tmp_path / "r")
    assert state["epoch"] == 1
    assert len(folder.read_metrics(tmp_path / "r" / "metrics.csv")) == 1
    assert leftovers(tmp_path / "r") == []


def test_ctrl_c_while_saving_waits_until_all_files_are_written(fashion_dir, tmp_path, monkeypatch):
    write_metrics = folder._write_metrics

    def metrics_then_ctrl_c(*args, **kwargs):  # Ctrl-C between checkpoint.pt and curves.png
        write_metrics(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(folder, "_write_metrics", metrics_then_ctrl_c)
    result = train(fashion_dir, tmp_path / "r", epochs=3)
    assert result.interrupted and len(result.history) == 1
    assert checkpoint.load(tmp_path / "r")["epoch"] == 1  # written although Ctrl-C came first
    assert len(folder.read_metrics(tmp_path / "r" / "metrics.csv")) == 1
    assert (tmp_path / "r" / "curves.png").is_file() and leftovers(tmp_path / "r") == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_repeats_an_uninterrupted_run_exactly(fashion_dir, tmp_path):
    whole = train(fashion_dir, tmp_path / "whole", epochs=3)
    cut = train(fashion_dir, tmp_path / "cut", interrupt_in_epoch(2), progress_every=0, epochs=3)
    assert cut.interrupted
    events = []
    resumed = api.resume(tmp_path / "cut", on_event=events.append)
    assert events[0].start_epoch == 1 and not resumed.interrupted
    key = [(s.epoch, s.train_loss, s.train_acc, s.test_acc) for s in whole.history]
    assert [(s.epoch, s.train_loss, s.train_acc, s.test_acc) for s in resumed.history] == key
    a, b = checkpoint.load(tmp_path / "whole")["model"], checkpoint.load(tmp_path / "cut")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # BatchNorm running statistics included
    assert len(folder.read_metrics(tmp_path / "cut" / "metrics.csv")) == 3


def test_resume_of_a_finished_run_asks_for_more_epochs(fashion_dir, tmp_path):
    train(fashion_dir, tmp_path / "r", epochs=1, train_limit=100)
    with pytest.raises(CnnshapeError, match="already finished") as err:
        api.resume(tmp_path / "r")
    assert "--epochs" in err.value.hint
    longer = api.resume(tmp_path / "r", TrainSettings(epochs=2))
    assert [s.epoch for s in longer.history] == [1, 2] and longer.config.epochs == 2


# ---- divergence ---------------------------------------------------------------------------------


def test_divergence_keeps_the_last_good_checkpoint(fashion_dir, tmp_path, monkeypatch):
    real_fit = run.fit

    def fit_that_diverges_in_epoch_2(model, *args, **kwargs):
        def on_event(event, forward=args[2]):
            forward(event)
            if isinstance(event, EpochStats):  # after epoch 1 is saved, the weights blow up
                with torch.no_grad():
                    model[0].weight.fill_(float("inf"))

        return real_fit(model, args[0], args[1], on_event, **kwargs)

    monkeypatch.setattr(run, "fit", fit_that_diverges_in_epoch_2)
    with pytest.raises(NonFiniteLossError) as err:
        train(fashion_dir, tmp_path / "r", epochs=3)
    assert err.value.epoch == 2 and err.value.last_epoch == 1
    assert str(tmp_path / "r") in err.value.hint
    state = checkpoint.load(tmp_path / "r")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# ---- checkpoints --------------------------------------------------------------------------------


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_with_a_pickled_object_is_refused_and_runs_nothing(tmp_path):
    proof = tmp_path / "code-ran"
    torch.save(
        {"format": checkpoint.FORMAT, "model": {}, "payload": _Payload(str(proof))},
        tmp_path / "evil.pt",
    )
    with pytest.raises(CnnshapeError, match="Refusing to load") as err:
        checkpoint.load(tmp_path / "evil.pt")
    assert "weights_only" in err.value.hint
    assert not proof.exists()


@pytest.mark.parametrize(
    "damage", [lambda raw: raw[: len(raw) // 2], lambda raw: b"", lambda raw: os.urandom(300)]
)
def test_damaged_checkpoints_are_clear_errors(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    torch.save({"x": torch.ones(100)}, path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CnnshapeError, match="damaged"):
        checkpoint.load(path)


@pytest.mark.slow
def test_every_flipped_bit_of_the_central_directory_is_damage_or_harmless(tmp_path):
    # The zip's index of its members: zipfile and zlib fail on its damage in many ways
    # (NotImplementedError for a "zip file version 6.4", zlib.error, struct.error, ...), and
    # torch.load reads some fields zipfile ignores.
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "checkpoint.pt"
    checkpoint.write(
        path,
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), 0.1),
        scaler=None,
        epoch=1,
        config={"seed": 0},
        history=[{"epoch": 1}],
    )
    original = checkpoint.load(path)
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        start = archive.start_dir  # the central directory runs from here to the end
    flipped = tmp_path / "flipped.pt"
    for bit in range(8 * start, 8 * len(raw)):
        damaged = bytearray(raw)
        damaged[bit // 8] ^= 1 << bit % 8
        flipped.write_bytes(damaged)
        try:
            state = checkpoint.load(flipped)
        except CnnshapeError as err:
            assert "is damaged" in str(err), (bit, err)
            continue
        assert _same(state, original), bit


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_missing_and_foreign_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CnnshapeError, match="No checkpoint"):
        checkpoint.load(tmp_path)
    torch.save({"state_dict": {"w": torch.ones(1)}}, tmp_path / "checkpoint.pt")
    with pytest.raises(CnnshapeError, match="not a cnnshape checkpoint"):
        checkpoint.load(tmp_path)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


# ---- evaluation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, bn_type", [("lenet-bn-scratch", "BatchNorm"), ("lenet-bn", "BatchNorm2d")]
)
def test_evaluate_run_reports_accuracy_classes_confusion_and_batchnorm(
    fashion_dir, tmp_path, model, bn_type
):
    trained = train(fashion_dir, tmp_path / "r", model=model, epochs=1)
    result = api.evaluate(tmp_path / "r", TrainSettings(device="cpu"))
    assert result.test_acc == trained.history[-1].test_acc  # same model, same data, same math
    assert sum(map(sum, result.confusion)) == 100 and result.epoch == 1
    assert [c.name for c in result.per_class] == list(CLASSES)
    assert sum(c.correct for c in result.per_class) == round(result.test_acc * 100)
    assert [len(b.gamma) for b in result.batch_norm] == [6, 16, 120, 84]
    assert result.batch_norm[0].type == bn_type
    state = checkpoint.load(tmp_path / "r")["model"]
    first = "1.gamma" if bn_type == "BatchNorm" else "1.weight"
    assert result.batch_norm[0].gamma == state[first].reshape(-1).tolist()


def test_evaluate_run_on_synthetic_data(tmp_path):
    settings = TrainSettings(
        "lenet", epochs=1, device="cpu", dataset="synthetic", train_limit=200, test_limit=64
    )
    api.train(settings, out=str(tmp_path))
    result = api.evaluate(tmp_path / "checkpoint.pt", TrainSettings(test_limit=64))
    assert sum(c.total for c in result.per_class) == 64 and result.batch_norm == []


def test_the_run_header_carries_the_walks_forward_flops(fashion_dir, tmp_path):
    starts = []
    train(fashion_dir, tmp_path / "r", starts.append, epochs=1, train_limit=100)
    assert isinstance(starts[0], RunStart)
    assert starts[0].flops_per_image == 563_280  # lenet-bn at 28x28: 2 x 281,640 MACs
    assert starts[0].run_dir == str(tmp_path / "r")


# ---- one way to count ---------------------------------------------------------------------------


class Attend(torch.nn.Module):
    """Patches of a 28x28 image attend to each other: scaled_dot_product_attention."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.patches = torch.nn.Conv2d(in_channels, 8, kernel_size=4, stride=4)
        self.head = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        batch = x.shape[0]
        heads = self.patches(x).flatten(2).view(batch, 2, 4, 49).transpose(2, 3).contiguous()
        mixed = torch.nn.functional.scaled_dot_product_attention(heads, heads, heads)
        return self.head(mixed.transpose(1, 2).reshape(batch, 49, 8).mean(1))


def test_the_training_header_counts_what_show_counts_attention_included(tmp_path, monkeypatch):
    import sys
    import types

    from torch.utils.flop_counter import FlopCounterMode

    from cnnshape import registry

    models = types.ModuleType("cnnshape.models.attend")
    models.attend = Attend
    monkeypatch.setitem(sys.modules, "cnnshape.models.attend", models)
    spec = registry.ModelSpec(
        "attend",
        "attend:attend",
        size=28,
        section="test",
        recipe=registry.Recipe(0.1, 32),
        description="",
        params=0,
        macs=0,
    )
    monkeypatch.setitem(registry._LOOKUP, "attend", spec)

    starts = []
    settings = TrainSettings(
        "attend", epochs=1, device="cpu", dataset="synthetic", train_limit=64, test_limit=32
    )
    api.train(
        settings,
        lambda e: starts.append(e) if isinstance(e, RunStart) else None,
        out=tmp_path / "run",
    )
    shown = api.show("attend").total_flops
    with torch.device("meta"):
        meta = Attend()
    with FlopCounterMode(display=False) as on_meta:
        meta(torch.empty(1, 1, 28, 28, device="meta"))
    with torch.no_grad(), FlopCounterMode(display=False) as on_cpu:  # as a header might
        Attend()(torch.zeros(1, 1, 28, 28))
    assert starts[0].flops_per_image == shown == on_meta.get_total_flops()
    # A count on real CPU tensors would have missed the attention (FlopCounterMode has no
    # formula for its fused CPU kernel): why the header walks instead.
    assert on_cpu.get_total_flops() < shown

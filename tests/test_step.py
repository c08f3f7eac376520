"""One training step: the memory predictor replays exactly the ops that `fit` runs per batch.

`fit` runs on real CPU tensors under a dispatch mode that logs every aten op; the predictor
runs the same model and batch on fake tensors, its dispatch mode logging the same way. A
change to the loop's step (gradient clipping, another loss, a second backward) shows up in
fit's log: unless the predictor runs it too, the two logs differ and this test fails.
"""

from __future__ import annotations

import pytest
import torch
from fmnist_files import learnable_split
from torch.utils._python_dispatch import TorchDispatchMode

from cnnshape.inspect import memory
from cnnshape.registry import get_spec
from cnnshape.train import data, loop
from cnnshape.train.config import TrainSettings

BATCH = 8

# What the loop does per batch after the step, for its progress figures: the batch's loss and
# correct predictions written into a device buffer, and nothing else.
BOOKKEEPING = {"select", "copy", "argmax", "eq", "sum"}
# Left out of both logs: queries and views that neither compute nor allocate, which autograd
# and the predictor's own watching make at different points (saved tensors are detached).
NEITHER_COMPUTE_NOR_ALLOCATE = {"detach", "device"}


class OpLog(TorchDispatchMode):
    def __init__(self, log: list[str]):
        super().__init__()
        self.log = log

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        record(self.log, func)
        return func(*args, **(kwargs or {}))


def record(ops: list[str], func) -> None:
    """An op by its name, an in-place op as its out-of-place form: autograd sums two gradients
    in place (``add_``) only when no dispatch mode watches it, and here one always does."""
    name = func.overloadpacket.__name__
    if name not in NEITHER_COMPUTE_NOR_ALLOCATE:
        ops.append(name.removesuffix("_") if not name.startswith("_") else name)


def fit_ops_per_batch(model_name: str, monkeypatch) -> list[list[str]]:
    """The aten ops `fit` runs between one batch being ready and the next being asked for."""
    log: list[str] = []
    markers: list[int] = []
    batches = data.batches

    def marked_batches(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            markers.append(len(log))  # the batch is ready: its body starts
            yield batch
            markers.append(len(log))  # the next batch is asked for: the body is over

    monkeypatch.setattr(loop.data_mod, "batches", marked_batches)
    monkeypatch.setattr(loop, "accuracy", lambda *args: 0.0)  # the epoch's test: not a step
    cfg = TrainSettings(
        model_name, epochs=1, batch_size=BATCH, device="cpu", seed=0, dataset="synthetic"
    ).resolve()
    images, labels = learnable_split(3 * BATCH, 1)
    split = data.Split(images, labels.long())
    torch.manual_seed(0)
    model = get_spec(model_name).build()
    with OpLog(log):
        # No progress report inside the epoch: reading the metrics back is not the step either.
        loop.fit(model, data.Dataset("toy", "toy", split, split), cfg, progress_every=1e9)
    return [log[start:end] for start, end in zip(markers[::2], markers[1::2], strict=True)]


def predicted_ops_per_step(model_name: str, monkeypatch) -> list[list[str]]:
    """The aten ops the predictor runs in each step it replays."""
    log: list[str] = []
    starts: list[int] = []
    dispatch, start_step = (
        memory._StorageTracker.__torch_dispatch__,
        memory._StorageTracker.start_step,
    )

    def logged_dispatch(self, func, types, args=(), kwargs=None):
        record(log, func)
        return dispatch(self, func, types, args, kwargs)

    def marked_start(self):
        starts.append(len(log))
        start_step(self)

    monkeypatch.setattr(memory._StorageTracker, "__torch_dispatch__", logged_dispatch)
    monkeypatch.setattr(memory._StorageTracker, "start_step", marked_start)
    model = get_spec(model_name).build()
    memory.predict_step(model, (BATCH, 1, get_spec(model_name).size, get_spec(model_name).size))
    return [log[start:end] for start, end in zip(starts, [*starts[1:], len(log)], strict=True)]


@pytest.mark.parametrize("model_name", ["lenet", "lenet-bn", "lenet-bn-scratch", "nin"])
def test_the_predictor_runs_the_ops_fit_runs_per_batch(model_name, monkeypatch):
    fitted = fit_ops_per_batch(model_name, monkeypatch)
    first, steady = predicted_ops_per_step(model_name, monkeypatch)
    assert len(fitted) == 3
    for body, predicted in ((fitted[0], first), (fitted[1], steady), (fitted[2], steady)):
        assert body[: len(predicted)] == predicted
        assert set(body[len(predicted) :]) <= BOOKKEEPING, body[len(predicted) :]
    # The step is most of the body: a forward, a backward and an optimizer step of ops.
    assert len(steady) > 2 * len(fitted[1][len(steady) :])


def test_a_loop_that_clips_gradients_is_caught(monkeypatch):
    """The check above sees a change to the loop that the predictor does not make."""
    from cnnshape import step

    train_step = step.train_step

    def clipping_step(model, *args, **kwargs):
        result = train_step(model, *args, **kwargs)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        return result

    monkeypatch.setattr(loop.step_mod, "train_step", clipping_step)
    fitted = fit_ops_per_batch("lenet", monkeypatch)
    monkeypatch.setattr(loop.step_mod, "train_step", train_step)  # the predictor's own
    _, steady = predicted_ops_per_step("lenet", monkeypatch)
    assert not set(fitted[1][len(steady) :]) <= BOOKKEEPING

"""The training loop: the book's numerics, the fast switches on CPU, divergence, validation."""

from __future__ import annotations

import math

import pytest
import torch
from fmnist_files import learnable_split
from torch import nn

from cnnshape.errors import CnnshapeError
from cnnshape.registry import get_spec
from cnnshape.train import data
from cnnshape.train.config import TrainConfig, TrainSettings
from cnnshape.train.evaluate import accuracy
from cnnshape.train.events import BatchProgress, EpochStats, RunEnd
from cnnshape.train.loop import NonFiniteLossError, epoch_seed, fit, init_weights, make_optimizer


def toy(n_train: int = 600, n_test: int = 200) -> data.Dataset:
    """The learnable toy task as an in-memory Dataset."""
    splits = [
        data.Split(images, labels.long())
        for images, labels in (learnable_split(n_train, 1), learnable_split(n_test, 2))
    ]
    return data.Dataset("toy", "toy task", *splits)


def config(model: str = "lenet-bn", **settings) -> TrainConfig:
    settings = {"epochs": 2, "device": "cpu", "seed": 0, **settings}
    return TrainSettings(model, **settings).resolve()


def build(cfg: TrainConfig) -> nn.Module:
    torch.manual_seed(cfg.seed)
    return get_spec(cfg.model).build()


# ---- the book's init, optimizer, loss and loop -----------------------------------------------


def test_init_is_xavier_uniform_on_exact_linear_and_conv2d_only():
    class MyLinear(nn.Linear):  # a subclass: train_ch6 tests type(m) ==, so it is left alone
        pass

    model = nn.Sequential(
        nn.Conv2d(1, 6, 5),
        nn.BatchNorm2d(6),
        nn.Flatten(),
        nn.Linear(6 * 24 * 24, 120),
        MyLinear(120, 10),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    init_weights(model)
    torch.manual_seed(3)
    expected = [
        nn.init.xavier_uniform_(torch.empty(6, 1, 5, 5)),
        nn.init.xavier_uniform_(torch.empty(120, 6 * 24 * 24)),
    ]
    assert torch.equal(model[0].weight, expected[0])
    assert torch.equal(model[3].weight, expected[1])
    bound = math.sqrt(6 / (6 * 24 * 24 + 120))
    assert model[3].weight.abs().max() <= bound
    after = model.state_dict()
    for key in ("0.bias", "1.weight", "1.bias", "3.bias", "4.weight", "4.bias"):
        assert torch.equal(after[key], before[key]), key


def test_optimizer_is_plain_sgd():
    cfg = config(lr=0.3)
    opt = make_optimizer(build(cfg), cfg)
    assert type(opt) is torch.optim.SGD
    group = opt.param_groups[0]
    assert (
        group["lr"],
        group["momentum"],
        group["weight_decay"],
        group["dampening"],
        group["nesterov"],
    ) == (0.3, 0, 0, 0, False)


def book_train_ch6(net: nn.Module, dataset: data.Dataset, cfg: TrainConfig) -> list[tuple]:
    """d2l's train_ch6 as the book writes it (fed the same batches), for comparison."""

    def init_weights(m):
        if type(m) == nn.Linear or type(m) == nn.Conv2d:  # noqa: E721 (the book's test)
            nn.init.xavier_uniform_(m.weight)

    net.apply(init_weights)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    loss = nn.CrossEntropyLoss()
    history = []
    for epoch in range(1, cfg.epochs + 1):
        metric = [0.0, 0.0, 0]
        net.train()
        for X, y in data.batches(
            dataset.train, cfg.batch_size, cfg.size, shuffle_seed=epoch_seed(cfg.seed, epoch)
        ):
            optimizer.zero_grad()
            y_hat = net(X)
            l = loss(y_hat, y)  # noqa: E741 (the book's name)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                metric[0] += float(l * X.shape[0])
                metric[1] += float((y_hat.argmax(axis=1) == y).sum())
                metric[2] += X.shape[0]
        net.eval()
        correct = total = 0
        with torch.no_grad():
            for X, y in data.batches(dataset.test, cfg.batch_size, cfg.size):
                correct += float((net(X).argmax(axis=1) == y).sum())
                total += y.numel()
        history.append((metric[0] / metric[2], metric[1] / metric[2], correct / total))
    return history


@pytest.mark.parametrize("model", ["lenet-bn-scratch", "lenet"])
def test_fit_reproduces_the_books_loop(model):
    cfg = config(model, batch_size=128)  # 600 images: four full batches and a partial one
    dataset = toy()
    reference_model = build(cfg)
    reference = book_train_ch6(reference_model, dataset, cfg)
    ours = build(cfg)
    history = fit(ours, dataset, cfg)
    for stats, (loss, acc, test_acc) in zip(history, reference, strict=True):
        assert stats.train_loss == pytest.approx(loss, rel=1e-6)
        assert (stats.train_acc, stats.test_acc) == (acc, test_acc)
    for key, value in reference_model.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_loss_falls_and_the_model_learns():
    cfg = config("lenet-bn", epochs=3, batch_size=64)
    history = fit(build(cfg), toy(), cfg)
    assert history[-1].train_loss < 0.5 * history[0].train_loss
    assert history[-1].test_acc > 0.9  # ten classes: chance is 0.1


def test_events_in_order_with_progress_counts():
    events = []
    cfg = config("lenet", batch_size=100)
    fit(build(cfg), toy(), cfg, events.append, progress_every=0)
    assert isinstance(events[0], BatchProgress) and isinstance(events[-1], RunEnd)
    per_epoch = [e for e in events if isinstance(e, EpochStats)]
    assert [e.epoch for e in per_epoch] == [1, 2]
    progress = [e for e in events if isinstance(e, BatchProgress) and e.epoch == 1]
    assert [e.batch for e in progress] == [1, 2, 3, 4, 5, 6]
    assert progress[-1].train_loss == pytest.approx(per_epoch[0].train_loss)
    assert events[-1].history == per_epoch
    assert all(e.images_per_sec > 0 for e in per_epoch)


def test_seeded_runs_are_deterministic_and_seeds_matter():
    def run(seed):
        cfg = config("lenet-bn", seed=seed, epochs=1)
        return fit(build(cfg), toy(), cfg)[0]

    a, b, c = run(0), run(0), run(1)
    assert (a.train_loss, a.test_acc) == (b.train_loss, b.test_acc)
    assert a.train_loss != c.train_loss


def test_evaluate_restores_the_models_mode_and_uses_moving_statistics():
    cfg = config("lenet-bn-scratch", epochs=1)
    model = build(cfg)
    fit(model, toy(), cfg)
    moving = model[1].moving_mean.clone()
    model.train()
    accuracy(model, toy().test, cfg)
    assert model.training  # left as it was
    assert torch.equal(model[1].moving_mean, moving)  # no_grad: the scratch BN did not update


# ---- precision and memory format on CPU --------------------------------------------------------


def test_bf16_autocast_and_channels_last_on_cpu_agree_with_fp32():
    dataset = toy()
    base = config("lenet-bn", epochs=1)
    fast = config("lenet-bn", epochs=1, precision="bf16", channels_last=True)
    ref_model, fast_model = build(base), build(fast)
    ref = fit(ref_model, dataset, base)[0]
    dtypes = []
    fast_model[0].register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    got = fit(fast_model, dataset, fast)[0]
    assert dtypes and set(dtypes) == {torch.bfloat16}  # the switch really is on
    assert fast_model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert got.train_loss == pytest.approx(ref.train_loss, rel=0.05)
    assert abs(got.test_acc - ref.test_acc) <= 0.05
    assert got.train_loss != ref.train_loss  # bf16 does round differently


def test_channels_last_alone_is_fp32_numerics():
    dataset = toy()
    ref = fit(build(config(epochs=1)), dataset, config(epochs=1))[0]
    cl = config(epochs=1, channels_last=True)
    got = fit(build(cl), dataset, cl)[0]
    assert got.train_loss == pytest.approx(ref.train_loss, rel=1e-4)


def test_auto_precision_is_fp32_on_cpu():
    cfg = TrainSettings("lenet", device="cpu").resolve()
    assert (cfg.precision, cfg.channels_last) == ("fp32", False)


# ---- divergence --------------------------------------------------------------------------------


def test_non_finite_loss_names_epoch_and_the_first_bad_batch():
    cfg = config("lenet", batch_size=100, lr=0.9)
    model = build(cfg)

    def poison(event):  # what a too-high lr does, made deterministic: weights go NaN
        if isinstance(event, BatchProgress) and (event.epoch, event.batch) == (2, 2):
            with torch.no_grad():
                model[0].weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError) as err:
        fit(model, toy(), cfg, poison, progress_every=0)
    assert (err.value.epoch, err.value.batch) == (2, 3)
    assert "epoch 2" in str(err.value) and "batch 3" in str(err.value)
    assert "--lr" in err.value.hint and isinstance(err.value, CnnshapeError)


def test_divergence_is_caught_at_epoch_end_without_progress_points():
    cfg = config("lenet", epochs=1, batch_size=100)
    model = build(cfg)
    calls = []

    def nan_on_third_batch(module, inputs, output):
        calls.append(1)
        return output * float("nan") if len(calls) == 3 else output

    model[0].register_forward_hook(nan_on_third_batch)
    with pytest.raises(NonFiniteLossError) as err:
        fit(model, toy(), cfg, progress_every=1e9)
    assert (err.value.epoch, err.value.batch) == (1, 3)
    assert len(calls) == 6  # noticed only at the epoch's end: no sync inside the batch loop


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"epochs": 0}, "--epochs"),
        ({"lr": -1}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"batch_size": 0}, "--batch-size"),
        ({"size": 0}, "--size"),
        ({"precision": "fp8"}, "--precision"),
        ({"dataset": "imagenet"}, "--dataset"),
        ({"train_limit": 0}, "--train-limit must be at least 1"),
        ({"test_limit": -2}, "--test-limit must be at least 1"),
        ({"lr": 3.5e38}, "--lr must be a positive number a float32 holds"),
        ({"lr": 1e-46}, "--lr must be a positive number a float32 holds"),
        ({"epochs": 2**63}, r"--epochs must be at most 2\^63 - 1"),
        ({"batch_size": 60_001}, "--batch-size must be at most 60,000"),
        ({"train_limit": 2**63}, "--train-limit must be at most"),
        ({"test_limit": 2**63}, "--test-limit must be at most"),
        ({"seed": 2**64}, "--seed must be from"),
        ({"seed": -(2**63) - 1}, "--seed must be from"),
    ],
)
def test_bad_options_are_clear_errors(settings, message):
    with pytest.raises(CnnshapeError, match=message):
        TrainSettings("lenet", **settings).resolve()


def test_the_extremes_a_run_can_use_are_accepted():
    extremes = {"epochs": 2**63 - 1, "batch_size": 60_000, "lr": 3.4e38, "seed": 2**64 - 1}
    cfg = TrainSettings("lenet", device="cpu", **extremes).resolve()
    assert {name: getattr(cfg, name) for name in extremes} == extremes
    assert TrainSettings("lenet", device="cpu", seed=-(2**63)).resolve().seed == -(2**63)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "tpu", "cuda:x"])
def test_unusable_devices_are_clear_errors(device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(CnnshapeError, match="device"):
        TrainSettings("lenet", device=device).resolve()


def test_recipe_defaults_fill_what_is_not_given():
    cfg = TrainSettings("resnet18", epochs=3, device="cpu").resolve()
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.batch_size, cfg.size) == (
        "resnet18",
        3,
        0.05,
        256,
        96,
    )

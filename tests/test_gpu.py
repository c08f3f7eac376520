"""The CUDA path (bf16 autocast, channels_last, cudnn.benchmark, no syncs in the batch loop).

Skips itself on machines without a CUDA GPU; run it whenever one is available.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from test_train import build, config, toy

from cnnshape.train.loop import fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_on_cuda_means_bf16_and_channels_last():
    cfg = config(device="auto")
    assert cfg.device == "cuda:0" and cfg.channels_last is True
    assert cfg.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


def test_bf16_channels_last_on_cuda_agrees_with_fp32_on_cuda_and_cpu():
    dataset = toy()
    histories = {}
    for name, settings in {
        "cpu": {"device": "cpu"},
        "cuda-fp32": {"device": "cuda", "precision": "fp32", "channels_last": False},
        "cuda-fast": {"device": "cuda"},
    }.items():
        cfg = config("lenet-bn", epochs=2, **settings)
        histories[name] = fit(build(cfg), dataset.to(cfg.device), cfg)
    cpu, fp32, fast = (histories[k][-1] for k in ("cpu", "cuda-fp32", "cuda-fast"))
    # fp32 on the GPU is fp32 (TF32 off): the same numbers as the CPU up to summation order.
    assert fp32.train_loss == pytest.approx(cpu.train_loss, rel=1e-3)
    assert fast.train_loss == pytest.approx(fp32.train_loss, rel=0.05)
    assert abs(fast.test_acc - fp32.test_acc) <= 0.05


def _syncs_while(run) -> int:
    """How many host-device synchronizations CUDA's sync debug mode reports during run()."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def _syncs_during_one_epoch(n_train: int) -> int:
    cfg = config("lenet", epochs=1, batch_size=32, device="cuda", train_limit=n_train)
    dataset = toy(n_train=n_train, n_test=64).to("cuda:0")
    model = build(cfg)
    return _syncs_while(lambda: fit(model, dataset, cfg, progress_every=1e9))


def test_the_batch_loop_never_waits_for_the_gpu():
    # The probe works: a read-back of a CUDA value is reported as a sync.
    assert _syncs_while(lambda: torch.ones(1, device="cuda").item()) >= 1
    # An epoch syncs (its end reads the metrics back), but twice the batches must not mean
    # more syncs: they happen per epoch, not per batch.
    small, large = _syncs_during_one_epoch(640), _syncs_during_one_epoch(1280)
    assert small >= 1 and small == large


def test_compiled_training_runs_and_learns():
    cfg = config("lenet-bn", epochs=2, device="cuda", compile=True, batch_size=64)
    history = fit(build(cfg), toy().to("cuda:0"), cfg)
    assert history[-1].train_loss < history[0].train_loss


def test_time_on_cuda_synchronizes_each_layer():
    from cnnshape import api

    report = api.show("resnet18", timed=api.TimeSettings("cuda", warmup=2, repeats=5))
    assert report.timing.device == "cuda:0"
    assert all(row.time_ms > 0 for row in report.rows)
    # Synchronized per layer: the layers' medians roughly add up to the whole forward.
    assert sum(row.time_ms for row in report.rows) >= 0.5 * report.timing.forward.median_ms


def test_a_step_that_cannot_fit_the_gpu_is_refused_before_training(tmp_path):
    from conftest import assert_clean_error, cli

    result = cli(
        "train",
        "vgg",
        "--batch-size",
        "100000",
        "--device",
        "cuda",
        "--dataset",
        "synthetic",
        "--out",
        tmp_path / "r",
    )
    assert_clean_error(result, "does not fit on cuda:0", "--batch-size")
    assert not (tmp_path / "r").exists()


def test_predicted_step_memory_is_what_the_gpu_allocates():
    # benchmarks/memory_gpu.py measures this over many models; here, one quick case.
    from cnnshape.inspect.memory import predict_step
    from cnnshape.registry import get_spec

    torch.manual_seed(0)
    model = get_spec("resnet18").build().cuda().to(memory_format=torch.channels_last)
    x = torch.randn(32, 1, 96, 96, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,), device="cuda")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    for step in range(2):
        if step == 1:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = torch.cuda.memory_allocated()
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() - start
    predicted = predict_step(model, (32, 1, 96, 96), precision="bf16", device="cuda")
    above_start = predicted.peak - predicted.live_at_step_start
    assert above_start == pytest.approx(measured, rel=0.10)

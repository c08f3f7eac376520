"""The data pipeline beyond the book: --normalize (the training images' mean and std, recorded
for resume, eval and predict) and streaming data that does not fit in the device's memory
(forced here on the CPU, where it yields exactly the resident batches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import cli
from image_files import write_folder
from torchvision import transforms

from cnnshape.errors import CnnshapeError
from cnnshape.registry import get_spec
from cnnshape.train import checkpoint, data, image_folder, run_data
from cnnshape.train.config import TrainConfig, TrainSettings, resume_config
from cnnshape.train.predict import predict


@pytest.fixture(autouse=True)
def _private_data_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSHAPE_DATA", str(tmp_path / "data-cache"))
    monkeypatch.delenv(data.STREAM_VARIABLE, raising=False)


def colour_split(n: int = 37, side: int = 12) -> data.Split:
    """Made-up images whose channels differ in brightness and spread."""
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)
    images[:, 0] //= 4  # a dark channel
    images[:, 2] = 100 + images[:, 2] // 16  # a narrow one
    return data.Split(images, torch.randint(0, 10, (n,), generator=g))


# ---- --normalize -------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_stats_are_the_plain_mean_and_population_std(channels):
    images = colour_split().images
    images = images[:, 1] if channels == 1 else images  # one channel: stored as (N, H, W)
    stats = data.channel_stats(images)
    x = (images.unsqueeze(1) if channels == 1 else images).double() / 255
    assert stats.mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), rel=1e-12)
    assert stats.std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), rel=1e-12)


def test_a_channel_that_never_varies_is_only_shifted():
    images = torch.full((4, 2, 3, 3), 7, dtype=torch.uint8)
    images[:, 1] = torch.arange(4, dtype=torch.uint8).view(4, 1, 1)
    stats = data.channel_stats(images)
    assert stats.mean[0] == pytest.approx(7 / 255) and stats.std[0] == 1.0
    assert stats.std[1] > 0


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("size", [12, 20])  # stored size, and resized
def test_normalized_batches_are_torchvisions_normalize_of_the_plain_ones(augment, size):
    split = colour_split()
    stats = data.channel_stats(split.images)
    normalize = transforms.Normalize(stats.mean, stats.std)
    options = {"shuffle_seed": 3, "augment": augment}
    plain = list(data.batches(split, 8, size, **options))
    ours = list(data.batches(split.normalized(stats), 8, size, channels_last=True, **options))
    for (x, y), (expected, labels) in zip(ours, plain, strict=True):
        assert torch.equal(x, normalize(expected)) and torch.equal(y, labels)
        assert x.is_contiguous(memory_format=torch.channels_last)


def test_load_data_normalizes_by_the_trained_images_or_the_recorded_statistics(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=(6, 3))
    settings = TrainSettings("lenet", dataset="folder", data_dir=str(root), device="cpu")
    cfg = TrainSettings(**{**settings.given(), "normalize": True, "train_limit": 10}).resolve()
    dataset = run_data.load(cfg)
    head = image_folder.load(root, cfg.size).train.images[:10]  # the images it trains on
    assert dataset.train.normalization == data.channel_stats(head)
    assert dataset.test.normalization == dataset.train.normalization
    recorded = cfg.with_data(("a",), 3, 28, data.Normalization((0.1, 0.2, 0.3), (1, 2, 3)))
    assert run_data.load(recorded).train.normalization == data.Normalization(
        (0.1, 0.2, 0.3), (1, 2, 3)
    )
    assert run_data.load(settings.resolve()).train.normalization is None


GRAY_NET = """
from torch import nn

class Gray(nn.Module):  # takes one channel whatever the data has: cnnshape converts the data
    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes)
        )

    def forward(self, x):
        return self.body(x)
"""


def test_the_statistics_are_of_the_images_in_the_models_channels(tmp_path):
    """RGB images for a network that takes gray ones: converted first, then measured, so
    the statistics are one channel's, the one the network sees."""
    root = write_folder(tmp_path / "imgs")
    (tmp_path / "gray_net.py").write_text(GRAY_NET)
    model = f"{tmp_path / 'gray_net.py'}:Gray"
    settings = {"dataset": "folder", "data_dir": str(root), "device": "cpu", "size": 16}
    cfg = TrainSettings(model, normalize=True, **settings).resolve()
    dataset = run_data.load(cfg)
    # Stored as decoded (RGB, no converted copy); converted batch by batch.
    assert dataset.channels == 1 and dataset.train.images.shape == (18, 3, 16, 16)
    stored = image_folder.load(root, 16)
    gray = data.gray(stored.train.images)
    assert dataset.train.normalization == data.channel_stats(gray)
    [inputs] = [x for x, _ in data.batches(dataset.test, 9, 16)]
    gray_test = data.Split(data.gray(stored.test.images), stored.test.labels)
    [plain] = [x for x, _ in data.batches(gray_test, 9, 16)]
    stats = dataset.train.normalization
    assert inputs.shape == (9, 1, 16, 16)
    assert torch.equal(inputs, transforms.Normalize(stats.mean, stats.std)(plain))


def test_gray_images_reach_an_rgb_model_repeated_batch_by_batch():
    images = torch.randint(0, 256, (10, 8, 8), dtype=torch.uint8)
    split = data.Split(images, torch.arange(10)).converted(3)
    assert split.channels == 3 and split.images.shape == (10, 8, 8)  # nothing stored twice
    rgb = images.unsqueeze(1).repeat(1, 3, 1, 1)
    for augment in (False, True):
        ours = list(data.batches(split, 4, 8, shuffle_seed=5, augment=augment))
        plain = data.Split(rgb, torch.arange(10))
        theirs = list(data.batches(plain, 4, 8, shuffle_seed=5, augment=augment))
        assert all(torch.equal(a[0], b[0]) for a, b in zip(ours, theirs, strict=True))
    assert data.channel_stats(images, 3) == data.channel_stats(rgb)


def test_a_config_without_normalization_loads_and_a_resume_keeps_it():
    old = TrainSettings("lenet", device="cpu").resolve().to_dict()
    for name in ("normalize", "mean", "std"):
        old.pop(name)
    loaded = TrainConfig.from_dict(old)
    assert (loaded.normalize, loaded.mean, loaded.std) == (False, None, None)
    assert data.Normalization.recorded(loaded) is None

    stats = data.Normalization((0.25,), (0.5,))
    normalized = TrainSettings("lenet", device="cpu", normalize=True).resolve()
    recorded = normalized.with_data(data.CLASSES, 1, 28, stats)
    through_json = TrainConfig.from_dict(json.loads(json.dumps(recorded.to_dict())))
    assert through_json == recorded and data.Normalization.recorded(through_json) == stats
    with pytest.raises(CnnshapeError, match="--normalize cannot change when resuming"):
        resume_config(loaded, TrainSettings(normalize=True))
    assert resume_config(through_json, TrainSettings(epochs=5)).mean == (0.25,)


def _model_of(state: dict) -> tuple[TrainConfig, torch.nn.Module]:
    cfg = TrainConfig.from_dict(state["config"])
    model = get_spec(cfg.model).build(in_channels=cfg.channels, num_classes=cfg.num_classes)
    model.load_state_dict(state["model"])
    return cfg, model.eval()


def test_predict_normalizes_by_the_runs_statistics(tmp_path):
    root = write_folder(tmp_path / "imgs")
    run = tmp_path / "run"
    trained = cli(
        "train", "lenet-bn", "--dataset", "folder", "--data-dir", root, "--device", "cpu",
        "--epochs", "1", "--out", run,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    # The run's checkpoint as a run with --normalize records it (its own statistics).
    state = checkpoint.load(run)
    stats = data.Normalization((0.2, 0.5, 0.1), (0.3, 0.25, 0.2))
    state["config"] = {**state["config"], "normalize": True, "mean": stats.mean, "std": stats.std}
    torch.save(state, run / "checkpoint.pt")

    image = root / "train" / "green" / "4.jpg"
    [only] = predict(run, [image], top=3).predictions
    cfg, model = _model_of(state)
    pixels = image_folder.load(root, cfg.size).train.images[6 + 4 : 6 + 5]  # green 4
    inputs = transforms.Normalize(stats.mean, stats.std)(data.to_input(pixels, cfg.size))
    with torch.no_grad():
        expected = model(inputs).softmax(1)[0].sort(descending=True)
    assert [g.name for g in only.top] == [cfg.classes[i] for i in expected.indices]
    assert [g.probability for g in only.top] == pytest.approx(expected.values.tolist(), abs=1e-6)


def test_a_normalized_run_records_its_statistics_and_resumes_with_them(tmp_path):
    root = write_folder(tmp_path / "imgs")
    run = tmp_path / "run"
    args = ["--dataset", "folder", "--data-dir", root, "--device", "cpu", "--out", run]
    first = cli("train", "lenet-bn", *args, "--epochs", "1", "--normalize", "-f", "json")
    assert first.exit_code == 0, first.stderr
    recorded = json.loads((run / "config.json").read_text())["config"]
    stats = data.channel_stats(image_folder.load(root, recorded["size"]).train.images)
    assert recorded["normalize"] is True
    assert (tuple(recorded["mean"]), tuple(recorded["std"])) == (stats.mean, stats.std)
    resumed = cli("train", "--resume", run, "--epochs", "2", "-f", "json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["config"]["mean"] == list(stats.mean)


# ---- streaming ---------------------------------------------------------------------------------


@pytest.fixture
def copies(monkeypatch) -> list[int]:
    """How many batches went through the streamed path's host gather and copy."""
    counted: list[int] = []
    real = data._copied

    def counting(images, index, device):
        counted.append(len(index))
        return real(images, index, device)

    monkeypatch.setattr(data, "_copied", counting)
    return counted


@pytest.mark.parametrize("part", [(0, 1), (1, 3)])
@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("gray", [False, True])
def test_streamed_batches_are_the_resident_ones(part, augment, normalize, gray, copies):
    split = colour_split()
    split = data.Split(split.images[:, 0], split.labels) if gray else split
    split = split.normalized(data.channel_stats(split.images) if normalize else None)
    resident, streamed = split.to("cpu", stream=False), split.to("cpu", stream=True)
    assert (resident.streamed, streamed.streamed) == (False, True)
    for seed in (5, None):  # shuffled, and in the stored order (as evaluation reads)
        options = {"shuffle_seed": seed, "augment": augment and seed is not None, "part": part}
        options |= {"length": 33}  # as an epoch that leaves out a last batch of one
        ours = list(data.batches(streamed, 8, 16, **options))
        expected = list(data.batches(resident, 8, 16, **options))
        assert len(ours) == len(expected) == 5
        for (x, y), (x_expected, y_expected) in zip(ours, expected, strict=True):
            assert torch.equal(x, x_expected) and torch.equal(y, y_expected)
    # Every batch of both passes was gathered in host memory and copied (this rank's share).
    assert copies == 2 * [len(y) for _, y in expected]


def test_the_environment_forces_streaming_or_residence(monkeypatch):
    dataset = data.Dataset("toy", "toy", colour_split(), colour_split(5))
    assert not dataset.to("cpu").train.streamed and not dataset.to("cpu").notes  # CPU: never
    monkeypatch.setenv(data.STREAM_VARIABLE, "1")
    forced = dataset.to("cpu")
    assert forced.train.streamed and forced.test.streamed
    assert forced.notes == (
        f"data streams to cpu batch by batch from host memory ({dataset_bytes(dataset)}; "
        "CNNSHAPE_STREAM=1)",
    )
    monkeypatch.setenv(data.STREAM_VARIABLE, "0")
    assert not dataset.to("cpu").train.streamed
    monkeypatch.setenv(data.STREAM_VARIABLE, "yes")
    with pytest.raises(CnnshapeError, match="CNNSHAPE_STREAM must be 0, 1 or auto, not 'yes'"):
        dataset.to("cpu")


def dataset_bytes(dataset: data.Dataset) -> str:
    from cnnshape._common import byte_size

    return byte_size(dataset.train.nbytes + dataset.test.nbytes)


def mapped_files(tensor: torch.Tensor) -> list[Path]:
    """The files mapped where ``tensor``'s memory lies (Linux's /proc/self/maps)."""
    address = tensor.data_ptr()
    found = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, *rest = line.split()
        lo, hi = (int(part, 16) for part in span.split("-"))
        if lo <= address < hi and len(rest) >= 5:
            found.append(Path(rest[4]))
    return found


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_a_streamed_image_folder_is_a_memory_map_of_its_cache(tmp_path):
    root = write_folder(tmp_path / "imgs")
    for attempt in ("decoded now", "cache reused"):
        dataset = image_folder.load(root, 16).to("cpu", stream=True)
        [entry] = image_folder.cache_dir().iterdir()
        assert mapped_files(dataset.train.images) == [entry], attempt
        assert mapped_files(dataset.test.images) == [entry], attempt


def test_a_streamed_run_repeats_a_resident_one_and_says_it_streams(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "imgs", per_class=(12, 4))
    args = ["--dataset", "folder", "--data-dir", root, "--device", "cpu", "--epochs", "2"]
    runs = {}
    for stream in ("0", "1"):
        monkeypatch.setenv(data.STREAM_VARIABLE, stream)
        args_here = [*args, "--augment", "--batch-size", "8", "--out", tmp_path / stream]
        result = cli("train", "lenet-bn", *args_here, "-f", "json")
        assert result.exit_code == 0, result.stderr
        assert ("data streams to cpu batch by batch" in result.stderr) == (stream == "1")
        runs[stream] = [
            (e["train_loss"], e["train_acc"], e["test_acc"])
            for e in json.loads(result.stdout)["history"]
        ]
    assert runs["0"] == runs["1"]


# ---- decoding an image folder ------------------------------------------------------------------


def test_threads_and_one_by_one_decode_alike(tmp_path, monkeypatch):
    """Slow images are decoded on all cores, fast ones one by one: the same images either way,
    bad ones named in the same place."""
    root = write_folder(tmp_path / "imgs", per_class=(14, 3))
    (root / "train" / "red" / "9.png").write_bytes(b"not a png")
    train, test = image_folder._splits(root)
    classes = image_folder._class_folders(train)
    files = image_folder._scan(train, classes), image_folder._scan(test, classes)
    monkeypatch.setattr(image_folder, "_PROBE", 4)
    decoded = {}
    for threads, above in (("threads", 0.0), ("one by one", float("inf"))):
        monkeypatch.setattr(image_folder, "_THREADS_ABOVE", above)
        decoded[threads] = image_folder._decode_all(files, 16)
    assert decoded["threads"]["bad"] == decoded["one by one"]["bad"]
    assert decoded["threads"]["bad"][0][0].endswith("red/9.png")
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(decoded["threads"][key], decoded["one by one"][key]), key
    assert decoded["threads"]["train_images"].shape == (41, 3, 16, 16)

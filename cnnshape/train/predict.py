"""`cnnshape predict`: a trained run's top classes for image files, prepared as its
training images were (decoded to the data's channels and stored size, then resized to the
run's size and scaled to [0, 1] on the device, normalized by the run's mean and std if it
was trained with --normalize)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .._common import resolve_device
from ..errors import CnnshapeError
from . import checkpoint, data
from .config import TrainConfig
from .image_folder import EXTENSIONS, read_image
from .model import build_model, load_weights, prepare_model
from .run import classes_of

DEFAULT_TOP = 5


@dataclass(frozen=True)
class Guess:
    rank: int  # 1: the most probable class
    name: str
    probability: float


@dataclass(frozen=True)
class ImagePrediction:
    image: str
    top: list[Guess]


@dataclass(frozen=True)
class PredictResult:
    checkpoint: str
    model: str
    epoch: int  # finished epochs in the checkpoint
    classes: tuple[str, ...]
    predictions: list[ImagePrediction]


def predict(
    run: str | Path, images: list[str | Path], top: int | None = None, device: str | None = None
) -> PredictResult:
    """The ``top`` most probable classes (default 5, at most every class) of each image, or
    of each image in a folder given, by the run's model (in eval mode, fp32)."""
    if top is not None and top < 1:
        raise CnnshapeError(f"--top must be at least 1, not {top}.")
    files = image_files(images)
    state = checkpoint.load(run)
    cfg = _for_prediction(TrainConfig.from_dict(state["config"]), device)
    classes = classes_of(cfg)
    model = build_model(cfg)
    load_weights(model, state["model"], checkpoint.resolve_path(run))
    prepare_model(model, cfg).eval()
    k = min(top or DEFAULT_TOP, len(classes))
    predictions = []
    for start in range(0, len(files), cfg.batch_size):
        chunk = files[start : start + cfg.batch_size]
        probabilities = _probabilities(model, chunk, cfg)
        values, indices = probabilities.topk(k, dim=1)
        for path, p, i in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            guesses = [
                Guess(r + 1, classes[c], q) for r, (q, c) in enumerate(zip(p, i, strict=True))
            ]
            predictions.append(ImagePrediction(str(path), guesses))
    return PredictResult(
        str(checkpoint.resolve_path(run)), cfg.model, state["epoch"], classes, predictions
    )


def image_files(paths: list[str | Path]) -> list[Path]:
    """The files given, and the images in the folders given (sorted), checked to exist."""
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            inside = sorted(
                p for p in given.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
            )
            if not inside:
                raise CnnshapeError(
                    f"{given} holds no images ({', '.join(EXTENSIONS)}).",
                    "Give image files, or folders that hold some.",
                )
            found += inside
        elif given.is_file():
            found.append(given)
        else:
            raise CnnshapeError(f"There is no image at {given}.", "Give image files or folders.")
    if not found:
        raise CnnshapeError("No images to predict.", "Give image files or folders.")
    return found


def _for_prediction(recorded: TrainConfig, device: str | None) -> TrainConfig:
    """The run's config on ``device`` (default: auto), in fp32: a handful of images needs
    no autocast, and fp32 is the run's numbers at their most exact."""
    where = resolve_device(device or "auto")
    return replace(recorded, device=where, precision="fp32", channels_last=False)


def _probabilities(model: torch.nn.Module, files: list[Path], cfg: TrainConfig) -> torch.Tensor:
    pixels = torch.stack([read_image(path, cfg.image_size, cfg.channels) for path in files])
    if cfg.channels == 1:
        pixels = pixels[:, 0]  # as one-channel datasets store their images: (N, H, W)
    with torch.no_grad():
        normalization = data.Normalization.recorded(cfg)  # the run's own statistics
        inputs = data.to_input(pixels.to(cfg.device), cfg.size, normalization=normalization)
        return model(inputs).float().softmax(dim=1).cpu()

"""How well a model classifies: the test accuracy each epoch ends with, and a finished run's
report (`cnnshape eval`): accuracy per class, the confusion matrix, BatchNorm's parameters.

In eval mode under ``no_grad``, as the book's ``evaluate_accuracy_gpu``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .. import step
from ..models.batchnorm import BatchNorm as ScratchBatchNorm
from . import checkpoint, data, distributed, run_data
from .config import TrainConfig, TrainSettings, resume_config
from .data import Split
from .model import build_model, load_weights, prepare_model


def confusion_matrix(
    model: nn.Module, split: Split, cfg: TrainConfig, num_classes: int = len(data.CLASSES)
) -> torch.Tensor:
    """(true class, predicted class) counts over ``split``, in eval mode under no_grad.

    Under torchrun each rank predicts its share of every batch and the counts are summed.

    no_grad, not inference_mode, as the book: the scratch BatchNorm switches to its moving
    statistics on ``torch.is_grad_enabled()``. The model's train/eval mode is restored after.
    """
    was_training = model.training
    model.eval()
    counts = torch.zeros(num_classes * num_classes, dtype=torch.long, device=cfg.device)
    try:
        with torch.no_grad(), step.autocast(cfg.precision, cfg.device_type):
            for X, y in data.batches(
                split,
                cfg.batch_size,
                cfg.size,
                channels_last=cfg.channels_last,
                part=(distributed.rank(), distributed.world_size()),
            ):
                cell = y * num_classes + model(X).argmax(dim=1)
                # index_add_, not bincount: bincount sizes its output from a host-side max().
                counts.index_add_(0, cell, torch.ones_like(cell))
    finally:
        model.train(was_training)
    distributed.all_reduce_sum(counts)  # under torchrun each rank counted its share
    return counts.view(num_classes, num_classes).cpu()


def accuracy(model: nn.Module, split: Split, cfg: TrainConfig) -> float:
    """Accuracy over the whole split (the book's ``evaluate_accuracy_gpu``)."""
    counts = confusion_matrix(model, split, cfg, cfg.num_classes)
    return counts.trace().item() / max(counts.sum().item(), 1)


@dataclass(frozen=True)
class ClassAccuracy:
    name: str
    correct: int
    total: int
    accuracy: float


@dataclass(frozen=True)
class BatchNormParams:
    """One BatchNorm layer's learned scale and shift, flattened (the book's
    ``net[1].gamma.reshape((-1,))``)."""

    name: str  # qualified module name, e.g. "1"
    type: str  # BatchNorm2d, BatchNorm1d, or BatchNorm (the book's scratch layer)
    gamma: list[float]
    beta: list[float]


@dataclass(frozen=True)
class EvalResult:
    checkpoint: Path
    model: str
    epoch: int  # finished epochs in the checkpoint
    device: str
    data_source: str
    test_acc: float
    per_class: list[ClassAccuracy]
    confusion: list[list[int]]  # [true class][predicted class]
    classes: tuple[str, ...]
    batch_norm: list[BatchNormParams]


def evaluate_run(path: str | Path, settings: TrainSettings | None = None) -> EvalResult:
    """Test accuracy, per-class accuracy, confusion matrix and BatchNorm parameters of a run
    folder's (or a checkpoint file's) model, on the data it was trained on unless told.

    ``settings`` may give ``device``, ``dataset``, ``data_dir``, ``test_limit`` and
    ``batch_size``; precision and channels_last are chosen for the device.
    """
    settings = settings or TrainSettings()
    state = checkpoint.load(path)
    recorded = TrainConfig.from_dict(state["config"])
    # The run's own config (its model, channels, normalization), on the device asked for
    # (precision and channels_last chosen there), with only the test images it asks for.
    moved = resume_config(
        recorded, TrainSettings(device=settings.device or "auto", data_dir=settings.data_dir)
    )
    cfg = replace(
        moved,
        dataset=settings.dataset or recorded.dataset,
        batch_size=settings.batch_size or recorded.batch_size,
        train_limit=0,
        test_limit=settings.test_limit,
    )
    dataset = run_data.load(cfg)
    model = build_model(cfg)
    load_weights(model, state["model"], checkpoint.resolve_path(path))
    prepare_model(model, cfg)
    test = dataset.test
    counts = confusion_matrix(model, test, cfg, num_classes=len(dataset.classes))
    return EvalResult(
        checkpoint=checkpoint.resolve_path(path),
        model=cfg.model,
        epoch=state["epoch"],
        device=cfg.device,
        data_source=dataset.source,
        test_acc=counts.trace().item() / max(counts.sum().item(), 1),
        per_class=_per_class(counts, dataset.classes),
        confusion=counts.tolist(),
        classes=dataset.classes,
        batch_norm=batch_norm_params(model),
    )


def _per_class(counts: torch.Tensor, classes: tuple[str, ...]) -> list[ClassAccuracy]:
    result = []
    for i, name in enumerate(classes):
        correct, total = int(counts[i, i]), int(counts[i].sum())
        result.append(ClassAccuracy(name, correct, total, correct / total if total else 0.0))
    return result


def batch_norm_params(model: nn.Module) -> list[BatchNormParams]:
    """gamma/beta of every BatchNorm layer: torch's (weight/bias) and the scratch one's."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            gamma, beta = module.weight, module.bias
        elif isinstance(module, ScratchBatchNorm):
            gamma, beta = module.gamma, module.beta
        else:
            continue
        found.append(
            BatchNormParams(
                name,
                type(module).__name__,
                gamma.detach().reshape(-1).tolist(),
                beta.detach().reshape(-1).tolist(),
            )
        )
    return found

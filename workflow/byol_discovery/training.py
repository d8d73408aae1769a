"""BYOL training on a preprocessed uint8 image array, entirely on one device.

The whole uint8 array is copied to the device once (300k 64x64x3 images are 3.7 GB), batches
are gathered by a seeded permutation and augmented on the device, so no DataLoader, worker
process or per-image CPU work stands between the data and the accelerator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from byol_discovery.augmentation import AugmentationConfig, BatchAugmenter
from byol_discovery.io.atomic import atomic_path, write_csv_atomic
from byol_discovery.model import BYOL, build_backbone, feature_dim

HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "val_loss",
    "learning_rate",
    "images_per_second",
    "seconds",
)

# Fixed normalisation: uint8 / 255 then (x - 0.5) / 0.5, i.e. [-1, 1], for every channel.
INPUT_MEAN = 0.5
INPUT_STD = 0.5


def to_model_input(batch_uint8: Tensor) -> Tensor:
    """uint8 images (B, C, H, W) -> float32 in [0, 1] -> (x - 0.5) / 0.5, on the same device.

    The one conversion used for training and for feature extraction alike.
    """
    if batch_uint8.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {batch_uint8.dtype}")
    x = batch_uint8.to(torch.float32) / 255.0
    return (x - INPUT_MEAN) / INPUT_STD


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch.device."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return resolved


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a BYOL training run (stored in the checkpoint)."""

    arch: str = "resnet18"
    small_stem: bool = False
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    tau: float = 0.99
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    validation_fraction: float = 0.1
    hidden_dim: int = 4096
    projection_dim: int = 256

    def __post_init__(self) -> None:
        feature_dim(self.arch)  # validates the architecture name
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            # BatchNorm in the projector needs at least two samples per batch.
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError("learning_rate must be > 0 and weight_decay >= 0")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}")


def ema_tau(base: float, step: int, total_steps: int) -> float:
    """BYOL's target decay schedule: cosine increase from ``base`` to 1 over training."""
    if total_steps <= 1:
        return base
    progress = min(step / (total_steps - 1), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def validate_images(images: np.ndarray) -> None:
    """Raise ValueError unless ``images`` is a non-empty uint8 (N, C, H, W) array."""
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D (N, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("the image array is empty: nothing to train on")


def split_indices(n_images: int, validation_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random train/validation split of ``range(n_images)``."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_images, generator=generator)
    n_val = round(n_images * validation_fraction) if validation_fraction > 0 else 0
    n_val = min(max(n_val, 1 if validation_fraction > 0 else 0), n_images - 1)
    return order[n_val:], order[:n_val]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA; plain fp32 elsewhere (CPU bf16 is slow and changes results)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_views(
    batch_uint8: Tensor,
    augmenter: BatchAugmenter,
    generator: torch.Generator,
    channels_last: bool,
) -> tuple[Tensor, Tensor]:
    """Two independently augmented float views of a uint8 batch (one warp call for both)."""
    x = to_model_input(batch_uint8)
    views = augmenter(torch.cat([x, x]), generator)
    if channels_last:
        views = views.contiguous(memory_format=torch.channels_last)
    view1, view2 = views.chunk(2)
    return view1, view2


def train_step(
    model: BYOL,
    optimizer: torch.optim.Optimizer,
    view1: Tensor,
    view2: Tensor,
    tau: float,
    device: torch.device,
) -> Tensor:
    """One optimiser step and target update; returns the detached loss (no host sync)."""
    with _autocast(device):
        loss = model.loss(view1, view2)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.update_target(tau)
    return loss.detach()


def _batches(indices: Tensor, batch_size: int, drop_last: bool) -> Iterator[Tensor]:
    stop = len(indices) - len(indices) % batch_size if drop_last else len(indices)
    for start in range(0, stop, batch_size):
        yield indices[start : start + batch_size]


def _validation_loss(
    model: BYOL,
    data: Tensor,
    indices: Tensor,
    config: TrainConfig,
    augmenter: BatchAugmenter,
    device: torch.device,
    channels_last: bool,
) -> float:
    """Mean BYOL loss on the validation images, in eval mode, with fixed augmentations.

    The augmentation generator is re-seeded each epoch so every epoch is scored on the
    same views and the losses are comparable.
    """
    if len(indices) == 0:
        return float("nan")
    generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    model.eval()
    total = torch.zeros((), device=device)
    with torch.inference_mode(), _autocast(device):
        for batch in _batches(indices.to(device), config.batch_size, drop_last=False):
            view1, view2 = make_views(data[batch], augmenter, generator, channels_last)
            total += model.loss(view1, view2).float() * len(batch)
    model.train()
    return total.item() / len(indices)


def _checkpoint(
    model: BYOL, config: TrainConfig, in_channels: int, epoch: int, val_loss: float
) -> dict[str, Any]:
    """Checkpoint of plain types only, loadable with ``torch.load(weights_only=True)``."""
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.backbone.state_dict().items()}
    return {
        "arch": config.arch,
        "small_stem": config.small_stem,
        "in_channels": in_channels,
        "feature_dim": feature_dim(config.arch),
        "backbone_state": state,
        "epoch": epoch,
        "val_loss": float(val_loss),
        "config": dataclasses.asdict(config),
        "device": device_description(next(model.backbone.parameters()).device),
    }


def device_description(device: torch.device) -> str:
    """The device as a person would name it in a provenance table."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _save(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def _build(config: TrainConfig, in_channels: int, device: torch.device) -> tuple[BYOL, torch.optim.Optimizer]:
    backbone = build_backbone(config.arch, in_channels=in_channels, small_stem=config.small_stem)
    model = BYOL(backbone, feature_dim(config.arch), config.hidden_dim, config.projection_dim).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        model.trainable_parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    return model, optimizer


def _improves(score: float, best: float, first: bool) -> bool:
    """Whether this epoch's model replaces the saved one (the first always is saved, so a
    checkpoint exists even if every loss is NaN; a NaN never replaces a finite loss)."""
    if first:
        return True
    return math.isfinite(score) and (score < best or not math.isfinite(best))


def _check_split(n_train: int, config: TrainConfig) -> None:
    if config.batch_size > n_train:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training split ({n_train} images "
            f"after holding out {config.validation_fraction:.0%} for validation); "
            "use a smaller batch or more images"
        )


def train_byol(
    images: np.ndarray,
    config: TrainConfig,
    checkpoint_path: str | os.PathLike[str],
    history_path: str | os.PathLike[str],
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Train BYOL on ``images`` (uint8, N x C x H x W); return the per-epoch history.

    Writes ``history_path`` (CSV, rewritten after each epoch) and ``checkpoint_path`` (the
    backbone with the lowest validation loss, or the lowest training loss when
    ``validation_fraction`` is 0), both atomically.
    """
    log = log if log is not None else logging.getLogger(__name__)
    images = np.asarray(images)
    validate_images(images)
    train_idx, val_idx = split_indices(len(images), config.validation_fraction, config.seed)
    _check_split(len(train_idx), config)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    channels_last = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    in_channels = images.shape[1]
    data = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    model, optimizer = _build(config, in_channels, device)
    augmenter = BatchAugmenter(config.augmentation)
    order_generator = torch.Generator().manual_seed(config.seed)
    augment_generator = torch.Generator(device=device).manual_seed(config.seed + 2)
    steps_per_epoch = len(train_idx) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    log.info(
        "BYOL %s on %s: %d train / %d validation images, %d steps per epoch",
        config.arch, device, len(train_idx), len(val_idx), steps_per_epoch,
    )

    rows: list[dict[str, float]] = []
    best = math.inf
    model.train()
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        order = train_idx[torch.randperm(len(train_idx), generator=order_generator)].to(device)
        total = torch.zeros((), device=device)
        for step, batch in enumerate(_batches(order, config.batch_size, drop_last=True)):
            tau = ema_tau(config.tau, (epoch - 1) * steps_per_epoch + step, total_steps)
            view1, view2 = make_views(data[batch], augmenter, augment_generator, channels_last)
            total += train_step(model, optimizer, view1, view2, tau, device)
        train_loss = total.item() / steps_per_epoch
        train_seconds = time.perf_counter() - started
        val_loss = _validation_loss(model, data, val_idx, config, augmenter, device, channels_last)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "learning_rate": optimizer.param_groups[0]["lr"],
            "images_per_second": steps_per_epoch * config.batch_size / train_seconds,
            "seconds": time.perf_counter() - started,
        }
        rows.append(row)
        write_csv_atomic(history_path, pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)))
        score = val_loss if len(val_idx) else train_loss
        improved = _improves(score, best, first=epoch == 1)
        if improved:
            best = score
            _save(_checkpoint(model, config, in_channels, epoch, val_loss), checkpoint_path)
        log.info(
            "epoch %d/%d  loss %.4f  val loss %.4f  %.0f img/s  %.1f s%s",
            epoch, config.epochs, train_loss, val_loss, row["images_per_second"], row["seconds"],
            "  (best so far, saved)" if improved else "",
        )
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))

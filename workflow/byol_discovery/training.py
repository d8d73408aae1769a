"""BYOL training on a preprocessed uint8 image array: its config, the step and the loop.

The whole uint8 array is copied to the device once when it fits (300k 64x64x3 images are
3.7 GB; otherwise it stays in host memory and batches travel one at a time), batches are
gathered by a seeded permutation and augmented on the device, so no DataLoader, worker
process or per-image CPU work stands between the data and the accelerator.

Every epoch ends with an atomic resume state (:mod:`byol_discovery.resume`); a run killed
part-way continues from it with the same result as an uninterrupted run. The model file
(:mod:`byol_discovery.checkpoint`) is written once, when training has finished.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from byol_discovery.augmentation import AugmentationConfig, BatchAugmenter
from byol_discovery.checkpoint import Checkpoint
from byol_discovery.code_tracking import code_digest
from byol_discovery.distributed import SINGLE, Shard, data_parallel_loss, local_device, process_group
from byol_discovery.evaluation import KnnProbe
from byol_discovery.feature_extraction import extract_features
from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.logs import Throttle, progress_line
from byol_discovery.model import (
    BYOL,
    RESNET_STAGES,
    batch_statistics,
    build_backbone,
    feature_dim,
    freeze_before,
    imagenet_backbone,
)
from byol_discovery.optim import LR_SCHEDULES, OPTIMIZERS, TAU_SCHEDULES, build_optimizer, ema_tau, learning_rate_at
from byol_discovery.resume import TrainingRun, data_fingerprint, default_state_path, read_state, resume_key
from byol_discovery.tensors import (
    autocast,
    check_image_array,
    cuda_convolutions,
    device_description,
    gather,
    normalise,
    place_images,
    resolve_device,
    save_atomic,
    to_unit_range,
)

HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "val_loss",
    "learning_rate",
    "knn_probe",
    "images_per_second",
    "seconds",
)
SELECTIONS: tuple[str, ...] = ("best_val", "last")

@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a BYOL training run (stored in the checkpoint)."""

    arch: str = "resnet18"
    small_stem: bool = False
    fixed_batchnorm: bool = False
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    tau: float = 0.99
    tau_schedule: str = "cosine"
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    validation_fraction: float = 0.1
    hidden_dim: int = 4096
    projection_dim: int = 256
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    imagenet_weights: str | None = None
    select: str = "last"
    probe_size: int = 2000
    compile: bool = False
    deterministic: bool = True
    train_from: str | None = None

    def __post_init__(self) -> None:
        feature_dim(self.arch)  # validates the architecture name
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")
        if self.tau_schedule not in TAU_SCHEDULES:
            raise ValueError(f"tau_schedule must be one of {TAU_SCHEDULES}, got {self.tau_schedule!r}")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        if self.train_from is not None:
            if self.train_from not in RESNET_STAGES:
                raise ValueError(f"train_from must be one of {RESNET_STAGES} or null, got {self.train_from!r}")
            if not self.fixed_batchnorm:
                # Batch norm in train mode would still move the frozen layers' statistics.
                raise ValueError("train_from needs fixed_batchnorm: true, so the frozen layers stay as they are")
        if self.imagenet_weights and self.small_stem:
            raise ValueError("imagenet_weights need the standard stem: set small_stem to false")
        if self.probe_size < 0:
            raise ValueError(f"probe_size must be >= 0, got {self.probe_size}")
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


def validate_images(images: np.ndarray) -> None:
    """Raise ValueError unless ``images`` is a non-empty uint8 (N, C, H, W) array."""
    check_image_array(images)
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


def make_views(
    batch_uint8: Tensor,
    augmenter: BatchAugmenter,
    generator: torch.Generator,
    channels_last: bool,
    shard: Shard = SINGLE,
) -> tuple[Tensor, Tensor]:
    """Two independently augmented float views of a uint8 batch (one warp call for both).

    ``batch_uint8`` is ``shard``'s rows of a global batch: the draws are made for the whole
    global batch (both views) and this process applies its rows, so the views do not
    depend on how many processes share the batch.
    """
    x = to_unit_range(batch_uint8)
    global_size = len(x) * shard.world_size
    draws = augmenter.draws(2 * global_size, x.device, generator)
    rows = shard.rows(global_size)
    mine = torch.cat([draws[rows], draws[global_size:][rows]])
    # Augmented in [0, 1], where the intensity power applies and zero padding is blank sky.
    views = normalise(augmenter(torch.cat([x, x]), draws=mine))
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
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """One optimiser step and target update; returns the detached loss (no host sync).

    ``loss_fn`` is ``model.loss`` or a compiled version of it.
    """
    with autocast(device):
        loss = (loss_fn or model.loss)(view1, view2)
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
    shard: Shard = SINGLE,
) -> float:
    """Mean BYOL loss on the validation images, with fixed augmentations, as training
    computes it: batch norm on each batch's statistics (the running statistics untouched).

    Eval mode would score another function: BYOL's projector and predictor rely on batch
    statistics, and with running ones the loss of training and validation images alike
    comes out 0.5-4 higher and jumps between epochs, a gap that looks like overfitting.
    Every process scores its rows of each global batch (batch norm then covers the global
    batch); the last batch is trimmed to split evenly, and one with fewer than two images
    per process is left out. The augmentation generator is re-seeded each epoch so every
    epoch is scored on the same views and the losses are comparable.
    """
    per_process = 2 * shard.world_size
    batches = [batch[: len(batch) - len(batch) % shard.world_size]
               for batch in _batches(indices.to(data.device), config.batch_size, drop_last=False)
               if len(batch) >= per_process]
    if not batches:
        return float("nan")
    generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    total = torch.zeros((), device=device)
    with batch_statistics(model), torch.no_grad():
        for batch in batches:
            local = gather(data, batch[shard.rows(len(batch))], device)
            # Views in fp32 and only the loss under autocast, as train_step does (bf16 would
            # round the warp's sampling grid and the blur).
            view1, view2 = make_views(local, augmenter, generator, channels_last, shard)
            with autocast(device):
                loss = model.loss(view1, view2)
            total += shard.mean(loss.float()) * len(batch)
    return total.item() / sum(len(batch) for batch in batches)


def build_model(config: TrainConfig, in_channels: int, device: torch.device) -> tuple[BYOL, torch.optim.Optimizer]:
    if config.imagenet_weights:
        backbone = imagenet_backbone(config.imagenet_weights, config.arch, in_channels, config.fixed_batchnorm).train()
    else:
        backbone = build_backbone(config.arch, in_channels, config.small_stem, config.fixed_batchnorm)
    if config.train_from is not None:
        freeze_before(backbone, config.train_from)
    model = BYOL(backbone, feature_dim(config.arch), config.hidden_dim, config.projection_dim).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(
        config.optimizer, model.trainable_parameters(), config.learning_rate, config.weight_decay
    )
    return model, optimizer


def _probe_score(probe: KnnProbe, model: BYOL, images: np.ndarray, device: torch.device) -> float:
    """The kNN probe's score of the backbone as it is now (left in train mode)."""
    features = extract_features(model.backbone, images[probe.indices], batch_size=256, device=device)
    model.backbone.train()
    return probe.score(features)


def _check_split(n_train: int, config: TrainConfig) -> None:
    if config.batch_size > n_train:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training split ({n_train} images "
            f"after holding out {config.validation_fraction:.0%} for validation); "
            "use a smaller batch or more images"
        )


def _loss_function(config: TrainConfig, model: BYOL, shard: Shard, device: torch.device) -> Callable[..., Tensor]:
    """``model.loss``, or on several processes the same loss with gradients averaged over
    them (DDP) and batch norm statistics over the global batch; compiled if asked."""
    loss_fn: Callable[..., Tensor] = data_parallel_loss(model, device) if shard.distributed else model.loss
    return torch.compile(loss_fn) if config.compile else loss_fn


def _check_shard(config: TrainConfig, shard: Shard, n_validation: int) -> None:
    if config.batch_size % shard.world_size:
        raise ValueError(
            f"batch_size {config.batch_size} (the global batch) must be a multiple of the "
            f"{shard.world_size} training processes"
        )
    if config.select == "best_val" and config.validation_fraction > 0 and n_validation < 2 * shard.world_size:
        # Without one scorable validation batch every epoch's loss would be NaN, and epoch 1 kept.
        raise ValueError(
            f"select: best_val needs at least {2 * shard.world_size} validation images, but "
            f"validation_fraction {config.validation_fraction} holds out {n_validation}; "
            "raise it, or use select: last"
        )


def train_byol(
    images: np.ndarray,
    config: TrainConfig,
    checkpoint_path: str | os.PathLike[str],
    history_path: str | os.PathLike[str],
    log: logging.Logger | None = None,
    labels: ArrayLike | None = None,
    resume: bool = True,
    state_path: str | os.PathLike[str] | None = None,
    remove_state: bool = True,
) -> pd.DataFrame:
    """Train BYOL on ``images`` (uint8, N x C x H x W); return the per-epoch history.

    Once training has finished, writes ``history_path`` (CSV; the log shows each epoch as it
    ends) and ``checkpoint_path``: the backbone of the epoch ``config.select`` picks (lowest
    validation loss, or training loss without a validation split; or the last). ``labels``
    (one per image, missing allowed) turn on the per-epoch kNN probe. With ``resume``, a
    resume state at ``state_path`` (default ``<checkpoint>.resume``) left by an interrupted
    run of the same config on the same images is continued; it is removed at the end unless
    ``remove_state`` is false (the caller then removes it once its own outputs are written).

    Under torchrun each process trains on its share of every global batch of
    ``config.batch_size`` (see :mod:`byol_discovery.distributed`); rank 0 writes the files.
    """
    log = log if log is not None else logging.getLogger(__name__)
    images = np.asarray(images)
    validate_images(images)
    train_idx, val_idx = split_indices(len(images), config.validation_fraction, config.seed)
    _check_split(len(train_idx), config)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    device = local_device(resolve_device(config.device))
    with process_group(device) as shard:
        _check_shard(config, shard, len(val_idx))
        if not shard.is_main:
            log = logging.getLogger(f"{__name__}.rank{shard.rank}")
            log.setLevel(logging.WARNING)
        return _train(images, config, device, shard, train_idx, val_idx, Path(checkpoint_path), history_path, log,
                      labels, resume, state_path, remove_state)


def _train(
    images: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    shard: Shard,
    train_idx: Tensor,
    val_idx: Tensor,
    checkpoint_path: Path,
    history_path: str | os.PathLike[str],
    log: logging.Logger,
    labels: ArrayLike,
    resume: bool,
    state_path: str | os.PathLike[str] | None,
    remove_state: bool,
) -> pd.DataFrame:
    channels_last = device.type == "cuda"
    if device.type == "cuda":
        cuda_convolutions(config.deterministic)
    in_channels = images.shape[1]
    data = place_images(images, device)
    model, optimizer = build_model(config, in_channels, device)
    augmenter = BatchAugmenter(config.augmentation)
    probe = KnnProbe.from_labels(labels, config.probe_size, config.seed) if shard.is_main else None
    run = TrainingRun(model, optimizer, config.seed, device)
    state_path = Path(state_path) if state_path is not None else default_state_path(checkpoint_path)
    # A state left by other code (Snakemake reruns this stage after an edit) is not continued.
    key = resume_key(config, data_fingerprint(images), device, code_digest(__file__))
    state = read_state(state_path, key, log) if resume else None
    if state is not None:
        run.restore(state)
        log.info("resuming from %s after epoch %d of %d", state_path, run.epoch, config.epochs)
    loss_fn = _loss_function(config, model, shard, device)
    steps_per_epoch = len(train_idx) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = config.warmup_epochs * steps_per_epoch
    log.info(
        "BYOL %s on %s%s (data on %s): %d train / %d validation images, %d steps per epoch, %s",
        config.arch, device, f" x {shard.world_size} processes" if shard.distributed else "", data.device,
        len(train_idx), len(val_idx), steps_per_epoch,
        f"kNN probe on {len(probe.indices)} labelled images" if probe else "no kNN probe",
    )

    model.train()
    throttle = Throttle(30.0)
    while run.epoch < config.epochs:
        run.epoch += 1
        epoch = run.epoch
        started = time.perf_counter()
        order = train_idx[torch.randperm(len(train_idx), generator=run.order_generator)].to(data.device)
        total = torch.zeros((), device=device)
        for step, batch in enumerate(_batches(order, config.batch_size, drop_last=True)):
            global_step = (epoch - 1) * steps_per_epoch + step
            lr = learning_rate_at(global_step, total_steps, warmup_steps, config.learning_rate, config.lr_schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            tau = ema_tau(config.tau, global_step, total_steps, config.tau_schedule)
            local = gather(data, batch[shard.rows(len(batch))], device)
            view1, view2 = make_views(local, augmenter, run.augment_generator, channels_last, shard)
            total += train_step(model, optimizer, view1, view2, tau, device, loss_fn)
            if throttle.due() and shard.is_main:
                # Counted in images, as the rate is, so that the ETA comes out in seconds.
                images_done = (step + 1) * config.batch_size
                rate = images_done / (time.perf_counter() - started)
                log.info("epoch %d/%d %s loss %.4f", epoch, config.epochs,
                         progress_line(images_done, steps_per_epoch * config.batch_size, rate, "img"),
                         total.item() / (step + 1))
        train_loss = shard.mean(total).item() / steps_per_epoch
        train_seconds = time.perf_counter() - started
        val_loss = _validation_loss(model, data, val_idx, config, augmenter, device, channels_last, shard)
        if not shard.is_main:
            continue
        knn_probe = _probe_score(probe, model, images, device) if probe else math.nan
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "learning_rate": optimizer.param_groups[0]["lr"],
            "knn_probe": knn_probe,
            "images_per_second": steps_per_epoch * config.batch_size / train_seconds,
            "seconds": time.perf_counter() - started,
        }
        run.rows.append(row)
        kept = run.keep_if_better(config.select, val_loss if config.validation_fraction > 0 else train_loss, val_loss)
        save_atomic(run.state(key), state_path)  # holds the history so far
        log.info(
            "epoch %d/%d  loss %.4f  val loss %.4f  kNN probe %.3f  %.0f img/s  %.1f s%s",
            epoch, config.epochs, train_loss, val_loss, knn_probe, row["images_per_second"], row["seconds"],
            "  (kept)" if kept and config.select == "best_val" else "",
        )
    if shard.is_main:
        # Written once training has finished, as the model is: a killed run leaves neither.
        write_csv_atomic(history_path, pd.DataFrame(run.rows, columns=list(HISTORY_COLUMNS)))
        Checkpoint(
            arch=config.arch,
            small_stem=config.small_stem,
            in_channels=in_channels,
            backbone_state=run.best_backbone,
            epoch=run.best_epoch,
            feature_dim=feature_dim(config.arch),
            val_loss=run.best_val_loss,
            config=dataclasses.asdict(config),
            device=device_description(device),
        ).save(checkpoint_path)
        if remove_state:
            state_path.unlink(missing_ok=True)
        log.info("model of epoch %d written to %s", run.best_epoch, checkpoint_path)
    return pd.DataFrame(run.rows, columns=list(HISTORY_COLUMNS))

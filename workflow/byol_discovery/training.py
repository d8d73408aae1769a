"""BYOL training on a preprocessed uint8 image array, entirely on one device.

The whole uint8 array is copied to the device once when it fits (300k 64x64x3 images are
3.7 GB; otherwise it stays in pinned host memory), batches are gathered by a seeded
permutation and augmented on the device, so no DataLoader, worker process or per-image CPU
work stands between the data and the accelerator.

Every epoch ends with an atomic resume state (model, optimiser, random generators, history);
a run killed part-way continues from it with the same result as an uninterrupted run. The
model file itself is written once, when training has finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from byol_discovery.augmentation import AugmentationConfig, BatchAugmenter
from byol_discovery.code_tracking import code_digest
from byol_discovery.distributed import SINGLE, Shard, globalise_batchnorm, local_device, process_group
from byol_discovery.io.atomic import atomic_path, write_csv_atomic
from byol_discovery.logs import Throttle, progress_line
from byol_discovery.model import (
    BYOL,
    RESNET_STAGES,
    batch_statistics,
    build_backbone,
    feature_dim,
    freeze_before,
    imagenet_backbone,
    load_weights_file,
)
from byol_discovery.optim import LR_SCHEDULES, OPTIMIZERS, build_optimizer, learning_rate_at

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
TAU_SCHEDULES: tuple[str, ...] = ("cosine", "constant")
PROBE_K = 5
PROBE_SPLITS = 10

# Fixed normalisation: uint8 / 255 then (x - 0.5) / 0.5, i.e. [-1, 1], for every channel.
INPUT_MEAN = 0.5
INPUT_STD = 0.5


def to_unit_range(batch_uint8: Tensor) -> Tensor:
    """uint8 images (B, C, H, W) -> float32 in [0, 1], on the same device."""
    if batch_uint8.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {batch_uint8.dtype}")
    return batch_uint8.to(torch.float32) / 255.0


def normalise(x: Tensor) -> Tensor:
    """Values in [0, 1] -> (x - 0.5) / 0.5, what the model sees."""
    return (x - INPUT_MEAN) / INPUT_STD


def to_model_input(batch_uint8: Tensor) -> Tensor:
    """uint8 images (B, C, H, W) -> float32 in [0, 1] -> (x - 0.5) / 0.5, on the same device.

    The one conversion used for training (where augmentation comes between the two steps)
    and for feature extraction alike.
    """
    return normalise(to_unit_range(batch_uint8))


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


def ema_tau(base: float, step: int, total_steps: int, schedule: str = "cosine") -> float:
    """BYOL's target decay schedule: cosine increase from ``base`` to 1 over training (or
    ``base`` throughout with ``constant``, as byol-pytorch and the paper's code did)."""
    if schedule == "constant" or total_steps <= 1:
        return base
    progress = min(step / (total_steps - 1), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def check_image_array(images: Any) -> None:
    """Raise ValueError unless ``images`` (array or HDF5 dataset) is uint8 (N, C, H, W)."""
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D (N, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")


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
    with _autocast(device):
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


def place_images(images: np.ndarray, device: torch.device, max_fraction: float = 0.5) -> Tensor:
    """The uint8 images as one tensor: on the GPU when they take under ``max_fraction`` of its
    free memory, else the host array itself (batches then travel one at a time). Not a pinned
    copy: that would double host memory, and a batch indexed out of it is pageable anyway."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if device.type != "cuda":
        return tensor
    free, _ = torch.cuda.mem_get_info(device)
    if tensor.nbytes < max_fraction * free:
        return tensor.to(device)
    return tensor


def _gather(data: Tensor, batch: Tensor, device: torch.device) -> Tensor:
    """Images of ``batch`` (indices on ``data``'s device) on ``device``, wherever ``data`` lives."""
    return data[batch].to(device, non_blocking=True)


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
            local = _gather(data, batch[shard.rows(len(batch))], device)
            # Views in fp32 and only the loss under autocast, as train_step does (bf16 would
            # round the warp's sampling grid and the blur).
            view1, view2 = make_views(local, augmenter, generator, channels_last, shard)
            with _autocast(device):
                loss = model.loss(view1, view2)
            total += shard.mean(loss.float()) * len(batch)
    return total.item() / sum(len(batch) for batch in batches)


@dataclass(frozen=True)
class KnnProbe:
    """A fixed labelled subset on which each epoch's backbone is scored by kNN accuracy
    (k=5, cosine, 10 random 80/20 splits): a label-aware view of training progress that
    the BYOL loss, which can fall while the features get worse, does not give."""

    indices: np.ndarray
    labels: np.ndarray
    seed: int

    @classmethod
    def from_labels(cls, labels: Any, size: int, seed: int) -> KnnProbe | None:
        """Up to ``size`` labelled objects drawn at random; None when fewer than two classes
        or too few objects are labelled for a kNN split."""
        from byol_discovery.evaluation import clean_labels

        if labels is None or size == 0:
            return None
        keep, codes, names = clean_labels(labels)
        labelled = np.flatnonzero(keep)
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(labelled), size=min(size, len(labelled)), replace=False))
        # Checked on the drawn subset: a small one can hold too few objects or a single class.
        if len(chosen) < 5 * (PROBE_K + 1) or len(np.unique(codes[chosen])) < 2:
            return None
        return cls(labelled[chosen], codes[chosen], seed)

    def score(self, backbone: torch.nn.Module, images: np.ndarray, device: torch.device) -> float:
        from byol_discovery.evaluation import knn_accuracy
        from byol_discovery.features import extract_features

        features = extract_features(backbone, images[self.indices], batch_size=256, device=device)
        backbone.train()
        mean, _ = knn_accuracy(features, self.labels, k=PROBE_K, n_splits=PROBE_SPLITS, metric="cosine", seed=self.seed)
        return mean


def _checkpoint(
    backbone_state: dict[str, Tensor], config: TrainConfig, in_channels: int, epoch: int, val_loss: float,
    device: torch.device,
) -> dict[str, Any]:
    """Checkpoint of plain types only, loadable with ``torch.load(weights_only=True)``."""
    return {
        "arch": config.arch,
        "small_stem": config.small_stem,
        "in_channels": in_channels,
        "feature_dim": feature_dim(config.arch),
        "backbone_state": backbone_state,
        "epoch": epoch,
        "val_loss": float(val_loss),
        "config": dataclasses.asdict(config),
        "device": device_description(device),
    }


def _cpu_copy(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def device_description(device: torch.device) -> str:
    """The device as a person would name it in a provenance table."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _save(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


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


def _improves(score: float, best: float, first: bool) -> bool:
    """Whether this epoch's model replaces the kept one (the first always is kept, so a
    model exists even if every loss is NaN; a NaN never replaces a finite loss)."""
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


def cuda_convolutions(deterministic: bool) -> None:
    """cuDNN's choice of convolution algorithms: autotuned ones are faster but may differ
    from run to run; fixed ones give a rerun the same numbers (the CPU is deterministic)."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def data_fingerprint(images: np.ndarray) -> str:
    """A cheap digest of the image array (shape and an even sample of images), so a resume
    state is never applied to other data."""
    digest = hashlib.sha256(repr((images.shape, str(images.dtype))).encode())
    digest.update(np.ascontiguousarray(images[:: max(1, len(images) // 256)]).tobytes())
    return digest.hexdigest()


def resume_key(config: TrainConfig, fingerprint: str, device: torch.device) -> dict[str, str]:
    """What a resume state must match to be continued: the config, the images, the kind of
    device (random generator states differ between CPU and CUDA) and the code."""
    return {
        "config": json.dumps(dataclasses.asdict(config), sort_keys=True),
        "data": fingerprint,
        "device": device.type,
        # A state left by other code (Snakemake reruns this stage after an edit) is not continued.
        "code": code_digest(__file__),
    }


def default_state_path(checkpoint_path: str | os.PathLike[str]) -> Path:
    """Where the resume state of a run writing ``checkpoint_path`` lives (not a Snakemake
    output, so it survives the job being killed)."""
    return Path(f"{checkpoint_path}.resume")


def _read_state(path: Path, key: dict[str, str], log: logging.Logger) -> dict[str, Any] | None:
    """The resume state at ``path`` if it matches ``key`` (:func:`resume_key`)."""
    if not path.is_file():
        return None
    try:
        state = load_weights_file(path, "resume state")
    except ValueError as error:
        log.warning("%s; starting afresh", error)
        return None
    if not isinstance(state, dict):
        log.warning("%s is not a resume state; starting afresh", path)
        return None
    changed = [name for name, value in key.items() if state.get(name) != value]
    if changed:
        log.warning("%s was written for another %s; starting afresh", path, " / ".join(changed))
        return None
    return state


class _Run:
    """The mutable state of one training run: what a resume state saves and restores."""

    def __init__(self, model: BYOL, optimizer: torch.optim.Optimizer, seed: int, device: torch.device) -> None:
        self.model, self.optimizer = model, optimizer
        self.order_generator = torch.Generator().manual_seed(seed)
        self.augment_generator = torch.Generator(device=device).manual_seed(seed + 2)
        self.epoch = 0
        self.rows: list[dict[str, float]] = []
        self.best = math.inf
        self.best_epoch = 0
        self.best_val_loss = math.nan
        self.best_backbone: dict[str, Tensor] = {}

    def state(self, key: dict[str, str]) -> dict[str, Any]:
        return {
            **key,
            "epoch": self.epoch,
            "model": _cpu_copy(self.model),
            "optimizer": self.optimizer.state_dict(),
            "order_rng": self.order_generator.get_state(),
            "augment_rng": self.augment_generator.get_state(),
            "history": self.rows,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "best_backbone": self.best_backbone,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.order_generator.set_state(state["order_rng"])
        self.augment_generator.set_state(state["augment_rng"])
        self.epoch, self.rows = int(state["epoch"]), list(state["history"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.best_val_loss, self.best_backbone = float(state["best_val_loss"]), state["best_backbone"]

    def keep_if_better(self, config: TrainConfig, train_loss: float, val_loss: float) -> bool:
        """Keep this epoch's backbone as the model when ``config.select`` prefers it."""
        score = val_loss if config.validation_fraction > 0 else train_loss
        better = config.select == "last" or _improves(score, self.best, first=self.epoch == 1)
        if better:
            self.best, self.best_epoch, self.best_val_loss = score, self.epoch, val_loss
            self.best_backbone = _cpu_copy(self.model.backbone)
        return better


# Running statistics are equal on every process already, so DDP need not broadcast them
# before each forward (the keyword was renamed in torch 2.1x; envs allow torch >= 2.2).
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


class _Objective(nn.Module):
    """BYOL's loss as a module's forward, which is what DistributedDataParallel wraps."""

    def __init__(self, model: BYOL) -> None:
        super().__init__()
        self.model = model

    def forward(self, view1: Tensor, view2: Tensor) -> Tensor:
        return self.model.loss(view1, view2)


def _loss_function(config: TrainConfig, model: BYOL, shard: Shard, device: torch.device) -> Callable[..., Tensor]:
    """``model.loss``, or on several processes the same loss with gradients averaged over
    them (DDP) and batch norm statistics over the global batch; compiled if asked."""
    loss_fn: Callable[..., Tensor] = model.loss
    if shard.distributed:
        globalise_batchnorm(model)
        loss_fn = DistributedDataParallel(
            _Objective(model), device_ids=[device.index] if device.type == "cuda" else None, **_NO_BUFFER_SYNC
        )
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
    labels: Any = None,
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
    labels: Any,
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
    run = _Run(model, optimizer, config.seed, device)
    state_path = Path(state_path) if state_path is not None else default_state_path(checkpoint_path)
    key = resume_key(config, data_fingerprint(images), device)
    state = _read_state(state_path, key, log) if resume else None
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
            local = _gather(data, batch[shard.rows(len(batch))], device)
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
        knn_probe = probe.score(model.backbone, images, device) if probe else math.nan
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
        kept = run.keep_if_better(config, train_loss, val_loss)
        _save(run.state(key), state_path)  # holds the history so far
        log.info(
            "epoch %d/%d  loss %.4f  val loss %.4f  kNN probe %.3f  %.0f img/s  %.1f s%s",
            epoch, config.epochs, train_loss, val_loss, knn_probe, row["images_per_second"], row["seconds"],
            "  (kept)" if kept and config.select == "best_val" else "",
        )
    if shard.is_main:
        # Written once training has finished, as the model is: a killed run leaves neither.
        write_csv_atomic(history_path, pd.DataFrame(run.rows, columns=list(HISTORY_COLUMNS)))
        _save(
            _checkpoint(run.best_backbone, config, in_channels, run.best_epoch, run.best_val_loss, device),
            checkpoint_path,
        )
        if remove_state:
            state_path.unlink(missing_ok=True)
        log.info("model of epoch %d written to %s", run.best_epoch, checkpoint_path)
    return pd.DataFrame(run.rows, columns=list(HISTORY_COLUMNS))

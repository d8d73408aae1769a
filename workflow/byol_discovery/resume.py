"""The resume state of a training run: written atomically after every epoch, so that a run
killed part-way continues from it with the same result as an uninterrupted run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from byol_discovery.model import BYOL, load_weights_file
from byol_discovery.tensors import cpu_copy


def data_fingerprint(images: np.ndarray) -> str:
    """A cheap digest of the image array (shape and an even sample of images), so a resume
    state is never applied to other data."""
    digest = hashlib.sha256(repr((images.shape, str(images.dtype))).encode())
    digest.update(np.ascontiguousarray(images[:: max(1, len(images) // 256)]).tobytes())
    return digest.hexdigest()


def resume_key(config: Any, fingerprint: str, device: torch.device, code: str) -> dict[str, str]:
    """What a resume state must match to be continued: the config (a dataclass), the images,
    the kind of device (random generator states differ between CPU and CUDA) and the digest
    of the training code (a state left by other code is not continued: Snakemake reruns the
    stage after an edit)."""
    return {
        "config": json.dumps(dataclasses.asdict(config), sort_keys=True),
        "data": fingerprint,
        "device": device.type,
        "code": code,
    }


def default_state_path(checkpoint_path: str | os.PathLike[str]) -> Path:
    """Where the resume state of a run writing ``checkpoint_path`` lives (not a Snakemake
    output, so it survives the job being killed)."""
    return Path(f"{checkpoint_path}.resume")


def read_state(path: Path, key: dict[str, str], log: logging.Logger) -> dict[str, Any] | None:
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


def _improves(score: float, best: float, first: bool) -> bool:
    """Whether this epoch's model replaces the kept one (the first always is kept, so a
    model exists even if every loss is NaN; a NaN never replaces a finite loss)."""
    if first:
        return True
    return math.isfinite(score) and (score < best or not math.isfinite(best))


class TrainingRun:
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
            "model": cpu_copy(self.model),
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

    def keep_if_better(self, select: str, score: float, val_loss: float) -> bool:
        """Keep this epoch's backbone as the model when ``select`` ('last', or 'best_val': the
        lowest ``score``) prefers it."""
        better = select == "last" or _improves(score, self.best, first=self.epoch == 1)
        if better:
            self.best, self.best_epoch, self.best_val_loss = score, self.epoch, val_loss
            self.best_backbone = cpu_copy(self.model.backbone)
        return better

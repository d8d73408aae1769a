"""The trained model file: a backbone's weights and what describes them.

:class:`Checkpoint` is the only place the file's keys are named; training writes it and the
features stage reads it through this class. It holds plain types only, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from byol_discovery.model import load_weights_file
from byol_discovery.tensors import save_atomic


@dataclass(frozen=True)
class BackboneSpec:
    """What builds a backbone of the checkpoint's shape: also stored with the features
    extracted from it, so that validation builds its backbone baselines alike."""

    arch: str
    small_stem: bool
    in_channels: int

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any]) -> BackboneSpec:
        """The spec of a features file's attributes (see :meth:`Checkpoint.attributes`)."""
        return cls(str(attributes["arch"]), bool(attributes["small_stem"]), int(attributes["in_channels"]))


@dataclass(frozen=True)
class Checkpoint:
    """A ``train`` model file (fields in the order they are written)."""

    arch: str
    small_stem: bool
    in_channels: int
    backbone_state: dict[str, Tensor]
    epoch: int
    feature_dim: int | None = None
    val_loss: float = math.nan
    config: dict[str, Any] = field(default_factory=dict)  # the TrainConfig, as plain types
    device: str = ""  # as a person would name it (:func:`byol_discovery.tensors.device_description`)

    @property
    def spec(self) -> BackboneSpec:
        return BackboneSpec(self.arch, bool(self.small_stem), int(self.in_channels))

    def attributes(self) -> dict[str, Any]:
        """What a features file records of the model it came from."""
        return {**dataclasses.asdict(self.spec), "epoch": self.epoch}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the checkpoint to ``path`` atomically."""
        payload = {
            "arch": self.arch,
            "small_stem": self.small_stem,
            "in_channels": self.in_channels,
            "feature_dim": self.feature_dim,
            "backbone_state": self.backbone_state,
            "epoch": self.epoch,
            "val_loss": float(self.val_loss),
            "config": self.config,
            "device": self.device,
        }
        save_atomic(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """The checkpoint at ``path``, read with weights_only=True; any failure, or a required
        key missing, is a ValueError naming the file."""
        raw = load_weights_file(path, "BYOL checkpoint")
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: checkpoint is a {type(raw).__name__}, expected a dict")
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in raw and _required(f)]
        if missing:
            raise ValueError(f"{path}: checkpoint lacks {missing}")
        return cls(**{f.name: raw[f.name] for f in fields if f.name in raw})


def _required(field_: dataclasses.Field[Any]) -> bool:
    return field_.default is dataclasses.MISSING and field_.default_factory is dataclasses.MISSING

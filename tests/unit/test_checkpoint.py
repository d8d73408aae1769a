"""The model file: written and read back through one class, clear errors for a bad file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from byol_discovery.checkpoint import BackboneSpec, Checkpoint


def _checkpoint(**changes: object) -> Checkpoint:
    fields = {"arch": "resnet18", "small_stem": True, "in_channels": 1, "epoch": 3,
              "backbone_state": {"conv1.weight": torch.arange(6.0).reshape(1, 1, 2, 3)}}
    return Checkpoint(**{**fields, **changes})


def test_a_checkpoint_reads_back_as_written_and_loads_without_code(tmp_path: Path) -> None:
    written = _checkpoint(feature_dim=512, val_loss=0.25, config={"epochs": 3}, device="cpu (1 threads)")
    written.save(tmp_path / "model.pt")
    read = Checkpoint.load(tmp_path / "model.pt")
    assert read.backbone_state.keys() == written.backbone_state.keys()
    assert torch.equal(read.backbone_state["conv1.weight"], written.backbone_state["conv1.weight"])
    assert (read.arch, read.small_stem, read.in_channels, read.epoch) == ("resnet18", True, 1, 3)
    assert (read.feature_dim, read.val_loss, read.config, read.device) == (512, 0.25, {"epochs": 3}, "cpu (1 threads)")
    # Plain types only: torch's safe loader reads it.
    assert torch.load(tmp_path / "model.pt", weights_only=True)["epoch"] == 3
    assert not list(tmp_path.glob(".*partial*"))


def test_the_optional_fields_of_an_older_checkpoint_get_defaults(tmp_path: Path) -> None:
    torch.save({"arch": "resnet18", "small_stem": False, "in_channels": 3, "epoch": 1, "backbone_state": {}},
               tmp_path / "old.pt")
    read = Checkpoint.load(tmp_path / "old.pt")
    assert read.feature_dim is None and math.isnan(read.val_loss) and read.config == {}


def test_a_checkpoint_lacking_a_key_is_named_with_the_key(tmp_path: Path) -> None:
    torch.save({"arch": "resnet18", "epoch": 1}, tmp_path / "short.pt")
    lacking = r"short\.pt: checkpoint lacks \['small_stem', 'in_channels', 'backbone_state'\]"
    with pytest.raises(ValueError, match=lacking):
        Checkpoint.load(tmp_path / "short.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt: checkpoint is a list"):
        Checkpoint.load(tmp_path / "list.pt")


def test_the_features_attributes_give_back_the_backbone_spec() -> None:
    checkpoint = _checkpoint()
    attributes = {**checkpoint.attributes(), "dihedral_average": True}
    assert attributes["epoch"] == 3
    assert BackboneSpec.from_attributes(attributes) == BackboneSpec("resnet18", True, 1) == checkpoint.spec

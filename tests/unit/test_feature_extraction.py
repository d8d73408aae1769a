"""Loading backbones and extracting features from arrays and HDF5 datasets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from byol_discovery.checkpoint import Checkpoint
from byol_discovery.feature_extraction import extract_features, load_backbone, random_backbone
from byol_discovery.training import TrainConfig, train_byol

pytestmark = pytest.mark.usefixtures("one_thread")


def _store(n: int = 10, channels: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    config = TrainConfig(epochs=1, batch_size=4, device="cpu", hidden_dim=32, projection_dim=16)
    train_byol(_store(), config, folder / "model.pt", folder / "history.csv")
    return folder / "model.pt"


def test_load_backbone_returns_trained_weights_in_eval_mode(checkpoint: Path) -> None:
    backbone = load_backbone(checkpoint, device="cpu", arch="resnet18")
    assert not backbone.training
    saved = Checkpoint.load(checkpoint).backbone_state
    torch.testing.assert_close(backbone.state_dict()["conv1.weight"], saved["conv1.weight"])
    assert extract_features(backbone, _store(3), device="cpu").shape == (3, 512)


def test_load_backbone_rejects_another_architecture(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match=r"model\.pt.*'resnet18', expected 'resnet50'"):
        load_backbone(checkpoint, device="cpu", arch="resnet50")


def test_load_backbone_rejects_weights_that_do_not_fit(checkpoint: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "lying.pt"
    dataclasses.replace(Checkpoint.load(checkpoint), arch="resnet50").save(wrong)
    with pytest.raises(ValueError, match="lying.pt"):
        load_backbone(wrong, device="cpu")


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_load_backbone_rejects_malformed_files(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"arch": "resnet18"}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.pt"):
        load_backbone(path, device="cpu")


def test_random_backbone_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = random_backbone("resnet18", in_channels=1, small_stem=True, seed=5)
    b = random_backbone("resnet18", in_channels=1, small_stem=True, seed=5)
    c = random_backbone("resnet18", in_channels=1, small_stem=True, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert a.conv1.in_channels == 1


def test_features_match_for_numpy_and_hdf5_and_any_batch_size(tmp_path: Path) -> None:
    images = _store(n=11)
    backbone = random_backbone("resnet18", seed=0)
    reference = extract_features(backbone, images, batch_size=4, device="cpu")
    assert reference.shape == (11, 512) and reference.dtype == np.float32
    with h5py.File(tmp_path / "store.h5", "w") as file:
        file.create_dataset("images", data=images, chunks=(1, 3, 32, 32))
    with h5py.File(tmp_path / "store.h5", "r") as file:
        from_h5 = extract_features(backbone, file["images"], batch_size=4, device="cpu")
    np.testing.assert_allclose(from_h5, reference, atol=1e-5, rtol=0)
    for batch_size in (1, 3, 256):
        other = extract_features(backbone, images, batch_size=batch_size, device="cpu")
        np.testing.assert_allclose(other, reference, atol=1e-5, rtol=0)


def test_dihedral_features_do_not_depend_on_orientation(tmp_path: Path) -> None:
    images = _store(n=3, channels=1)
    turned = np.ascontiguousarray(np.rot90(images, 1, axes=(2, 3)))
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    backbone = random_backbone("resnet18", in_channels=1, seed=0)
    plain = extract_features(backbone, images, device="cpu")
    assert not np.allclose(plain, extract_features(backbone, turned, device="cpu"), atol=1e-3)
    invariant = extract_features(backbone, images, device="cpu", dihedral=True)
    for other in (turned, mirrored):
        np.testing.assert_allclose(extract_features(backbone, other, device="cpu", dihedral=True), invariant, atol=1e-5)
    with pytest.raises(ValueError, match="square images, got 32 x 16"):
        extract_features(backbone, images[:, :, :, :16], device="cpu", dihedral=True)


def test_features_of_an_empty_array_have_the_right_width() -> None:
    out = extract_features(random_backbone(), np.zeros((0, 3, 32, 32), dtype=np.uint8), device="cpu")
    assert out.shape == (0, 512)


def test_extract_features_rejects_wrong_channels_or_dtype() -> None:
    backbone = random_backbone("resnet18", in_channels=1)
    with pytest.raises(ValueError, match="channels"):
        extract_features(backbone, _store(2, channels=3), device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        extract_features(backbone, np.zeros((2, 1, 32, 32), dtype=np.float32), device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_features_agree_with_cpu() -> None:
    images = _store(n=8)
    cpu = extract_features(random_backbone(seed=1), images, device="cpu")
    gpu = extract_features(random_backbone(seed=1), images, device="cuda")
    # cuDNN may use TF32 for convolutions: compare loosely.
    np.testing.assert_allclose(gpu, cpu, atol=5e-2, rtol=5e-2)


def test_config_roundtrip_through_checkpoint(checkpoint: Path) -> None:
    saved = Checkpoint.load(checkpoint).config
    expected = TrainConfig(epochs=1, batch_size=4, device="cpu", hidden_dim=32, projection_dim=16)
    assert saved == dataclasses.asdict(expected)

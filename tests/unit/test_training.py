"""BYOL training: outputs written, reproducible on CPU, clear errors for bad input."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from byol_discovery.augmentation import AugmentationConfig
from byol_discovery.training import (
    HISTORY_COLUMNS,
    TrainConfig,
    ema_tau,
    split_indices,
    to_model_input,
    train_byol,
)

# Tiny and fast: ImageNet stem at 32 px leaves 1x1 maps after layer4, small heads.
TINY = TrainConfig(
    arch="resnet18",
    epochs=2,
    batch_size=8,
    learning_rate=1e-3,
    seed=3,
    device="cpu",
    num_threads=1,
    hidden_dim=64,
    projection_dim=32,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids OpenMP barrier stalls on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _store(n: int = 20, channels: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)


def _train(tmp_path: Path, images: np.ndarray, config: TrainConfig = TINY, name: str = "run") -> tuple[pd.DataFrame, Path, Path]:
    checkpoint, history = tmp_path / name / "model.pt", tmp_path / name / "history.csv"
    frame = train_byol(images, config, checkpoint, history)
    return frame, checkpoint, history


def test_to_model_input_maps_uint8_to_minus_one_one() -> None:
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).reshape(1, 3, 1, 1)
    out = to_model_input(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([-1.0, 1.0, 51 / 127.5 - 1.0]))
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(x.float())


def test_training_writes_checkpoint_and_history(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        frame, checkpoint, history = _train(tmp_path, _store())
    assert list(frame.columns) == list(HISTORY_COLUMNS)
    assert list(frame["epoch"]) == [1, 2]
    on_disk = pd.read_csv(history)
    assert len(on_disk) == 2
    np.testing.assert_allclose(on_disk["train_loss"], frame["train_loss"])
    assert np.isfinite(frame[["train_loss", "val_loss", "images_per_second"]].to_numpy()).all()
    assert (frame["learning_rate"] == TINY.learning_rate).all()

    saved = torch.load(checkpoint, weights_only=True)
    assert saved["arch"] == "resnet18" and saved["in_channels"] == 3 and saved["feature_dim"] == 512
    assert saved["small_stem"] is False
    assert saved["epoch"] in (1, 2)
    # The saved backbone is the one with the lowest validation loss.
    assert saved["val_loss"] == pytest.approx(frame["val_loss"].min())
    assert saved["config"]["batch_size"] == 8
    assert saved["config"]["augmentation"]["crop_scale"] == (0.7, 1.0)
    assert "conv1.weight" in saved["backbone_state"]
    assert not list(checkpoint.parent.glob(".*partial*"))
    assert sum("epoch 2/2" in message for message in caplog.messages) == 1


def test_same_seed_gives_identical_history(tmp_path: Path) -> None:
    images = _store()
    first, _, _ = _train(tmp_path, images, name="a")
    second, _, _ = _train(tmp_path, images, name="b")
    columns = ["train_loss", "val_loss"]
    pd.testing.assert_frame_equal(first[columns], second[columns], check_exact=True)


def test_different_seed_gives_different_history(tmp_path: Path) -> None:
    images = _store()
    config = dataclasses.replace(TINY, epochs=1)
    first, _, _ = _train(tmp_path, images, config, name="a")
    other, _, _ = _train(tmp_path, images, dataclasses.replace(config, seed=4), name="b")
    assert first["train_loss"].iloc[0] != other["train_loss"].iloc[0]


def test_single_channel_small_stem_without_validation_or_augmentation(tmp_path: Path) -> None:
    config = dataclasses.replace(
        TINY,
        epochs=1,
        small_stem=True,
        validation_fraction=0.0,
        augmentation=AugmentationConfig.disabled(),
    )
    frame, checkpoint, _ = _train(tmp_path, _store(n=8, channels=1, size=8), config)
    assert np.isnan(frame["val_loss"].iloc[0])
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["in_channels"] == 1 and saved["small_stem"] is True


def test_batch_larger_than_training_split_is_rejected(tmp_path: Path) -> None:
    # 20 images, 10 % held out -> 18 training images.
    with pytest.raises(ValueError, match="batch_size 19 is larger than the training split \\(18 images"):
        _train(tmp_path, _store(), dataclasses.replace(TINY, batch_size=19))


def test_empty_store_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        _train(tmp_path, np.zeros((0, 3, 32, 32), dtype=np.uint8))


@pytest.mark.parametrize(
    ("images", "message"),
    [(np.zeros((4, 32, 32), dtype=np.uint8), "4-D"), (np.zeros((4, 3, 32, 32), dtype=np.float32), "uint8")],
)
def test_wrong_shape_or_dtype_is_rejected(tmp_path: Path, images: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _train(tmp_path, images)


@pytest.mark.parametrize("kwargs", [{"batch_size": 1}, {"epochs": 0}, {"validation_fraction": 1.0}, {"arch": "vit"}])
def test_invalid_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(TINY, **kwargs)


def test_split_is_seeded_disjoint_and_complete() -> None:
    train, val = split_indices(100, 0.1, seed=1)
    assert len(val) == 10 and len(train) == 90
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    again, _ = split_indices(100, 0.1, seed=1)
    assert torch.equal(train, again)


def test_ema_schedule_rises_from_base_to_one() -> None:
    assert ema_tau(0.99, 0, 100) == pytest.approx(0.99)
    assert ema_tau(0.99, 99, 100) == pytest.approx(1.0)
    assert 0.99 < ema_tau(0.99, 50, 100) < 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_training_on_the_gpu(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, device="cuda", batch_size=16, epochs=2)
    frame, checkpoint, _ = _train(tmp_path, _store(n=40, size=64), config)
    assert np.isfinite(frame["train_loss"]).all()
    saved = torch.load(checkpoint, weights_only=True)
    assert all(t.device.type == "cpu" for t in saved["backbone_state"].values())

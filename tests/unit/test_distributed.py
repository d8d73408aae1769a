"""Data-parallel training: 2 gloo processes on the CPU follow one process's trajectory."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from byol_discovery import stages
from byol_discovery.augmentation import AugmentationConfig, BatchAugmenter
from byol_discovery.distributed import SINGLE, GlobalBatchNorm, Shard, globalise_batchnorm, processes_for
from byol_discovery.feature_extraction import load_backbone
from byol_discovery.io.store import create_store
from byol_discovery.model import BYOL, FixedStatisticsBatchNorm2d, build_backbone
from byol_discovery.training import make_views


def test_shard_rows_split_a_global_batch() -> None:
    assert Shard(0, 2).rows(8) == slice(0, 4)
    assert Shard(1, 2).rows(8) == slice(4, 8)
    assert SINGLE.rows(5) == slice(0, 5)
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        Shard(0, 3).rows(8)


def test_sharded_views_are_the_rows_of_the_single_process_views() -> None:
    """Each process augments its rows exactly as one process augments the whole batch."""
    batch = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    augmenter = BatchAugmenter(AugmentationConfig())
    single = make_views(batch, augmenter, torch.Generator().manual_seed(5), False)
    parts = [
        make_views(batch[Shard(rank, 2).rows(8)], augmenter, torch.Generator().manual_seed(5), False, Shard(rank, 2))
        for rank in (0, 1)
    ]
    for view in (0, 1):
        torch.testing.assert_close(torch.cat([part[view] for part in parts]), single[view])


def test_global_batchnorm_is_plain_batchnorm_in_one_process() -> None:
    model = BYOL(build_backbone("resnet18", in_channels=1), 512, hidden_dim=32, projection_dim=16)
    reference = {key: value.clone() for key, value in model.state_dict().items()}
    x = torch.randn(6, 1, 32, 32)
    expected = model.backbone(x)
    plain_stats = model.backbone.bn1.running_mean.clone()
    model.load_state_dict(reference)
    globalise_batchnorm(model)
    assert isinstance(model.backbone.bn1, GlobalBatchNorm)
    assert isinstance(model.projector[1], GlobalBatchNorm)
    assert set(model.state_dict()) == set(reference)  # checkpoints stay loadable by plain models
    torch.testing.assert_close(model.backbone(x), expected)
    torch.testing.assert_close(model.backbone.bn1.running_mean, plain_stats)


def test_fixed_statistics_batchnorm_is_left_alone_by_the_global_swap() -> None:
    model = BYOL(build_backbone("resnet18", in_channels=1, fixed_batchnorm=True), 512, hidden_dim=32, projection_dim=16)
    globalise_batchnorm(model)
    assert isinstance(model.backbone.bn1, FixedStatisticsBatchNorm2d), "no batch statistics to reduce"
    assert isinstance(model.projector[1], GlobalBatchNorm), "the heads still normalise by the global batch"


def test_processes_follow_the_visible_gpus(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test")
    visible = torch.cuda.device_count()
    assert processes_for(1, log) == 1
    with caplog.at_level(logging.WARNING):
        assert processes_for(visible + 2, log) == max(visible, 1)
    assert "requested but" in caplog.text


def _store(path: Path, n: int = 48, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    with create_store(path, channels=1, size=size) as writer:
        for i in range(n):
            writer.append(f"obj{i:03d}", rng.integers(0, 256, (1, size, size), dtype=np.uint8))
        writer.finish(pd.DataFrame({"id": [f"obj{i:03d}" for i in range(n)]}), {})
    return path


SETTINGS = {
    "arch": "resnet18", "epochs": 3, "batch_size": 16, "optimizer": "lars", "learning_rate": 0.005, "seed": 1,
    "device": "cpu", "num_threads": 1, "hidden_dim": 64, "projection_dim": 32, "validation_fraction": 0.25,
    "select": "last", "resume": False,
}


def _run(tmp_path: Path, store: Path, name: str, processes: int) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    out = tmp_path / name
    frame = stages.train(store, out / "model.pt", out / "history.csv", out / "loss.png", SETTINGS,
                         processes=processes)
    assert (out / "loss.png").is_file()
    return frame, load_backbone(out / "model.pt").state_dict()


def test_two_gloo_processes_give_the_loss_trajectory_of_one(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes, each on half of every global batch of 16, against one
    process on the whole batch: same losses epoch by epoch, same weights at the end (up to
    float rounding: the batch-norm statistics are computed another way and reduced in
    another order; in float64 the gradients agree to 1e-14). Measured: training losses agree to 1e-6,
    validation losses to 1.1e-5, weights to 7e-5.

    LARS, the large-batch optimiser, at a small learning rate. Adam is not a fair test of
    the distributed path: its per-element normalisation turns rounding-level differences in
    near-zero gradients into full-size steps, so even one process diverges by ~0.5 % in loss
    within 4 steps when only the order of the rows in the batch is reversed."""
    store = _store(tmp_path / "store.h5")
    one, weights_one = _run(tmp_path, store, "one", 1)
    two, weights_two = _run(tmp_path, store, "two", 2)
    assert list(two["epoch"]) == [1, 2, 3]
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-5)
    # Scored on the weights after each epoch, which agree to about 1e-4 (below).
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=5e-5)
    assert one["train_loss"].iloc[-1] != one["train_loss"].iloc[0]  # it did learn something
    for key, value in weights_one.items():
        if value.is_floating_point():
            torch.testing.assert_close(weights_two[key], value, rtol=1e-3, atol=5e-4, msg=key)


def test_a_failing_process_fails_the_stage_with_its_error(tmp_path: Path) -> None:
    store = _store(tmp_path / "store.h5")
    settings = {**SETTINGS, "batch_size": 15}
    with pytest.raises(RuntimeError, match="must be a multiple of the 2 training processes"):
        stages.train(store, tmp_path / "m.pt", tmp_path / "h.csv", tmp_path / "l.png", settings, processes=2)

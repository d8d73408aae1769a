"""Feature extraction written to the file batch by batch, and the PCA of a large features file."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from byol_discovery import clustering
from byol_discovery.feature_extraction import extract_features, random_backbone
from byol_discovery.io.store import create_store, load_features, save_feature_blocks, save_features

N_IMAGES = 150


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    """A store of 150 random 1 x 16 x 16 images and a checkpoint of a random small-stem ResNet-18."""
    root = tmp_path_factory.mktemp("blocks")
    rng = np.random.default_rng(0)
    ids = np.array([f"img{i:04d}" for i in range(N_IMAGES)], dtype=object)
    with create_store(root / "store.h5", channels=1, size=16) as writer:
        for object_id in ids:
            writer.append(object_id, rng.integers(0, 256, (1, 16, 16), dtype=np.uint8))
        writer.finish(pd.DataFrame({"id": ids}), {})
    backbone = random_backbone("resnet18", in_channels=1, small_stem=True, seed=0)
    torch.save({"arch": "resnet18", "small_stem": True, "in_channels": 1, "epoch": 0,
                "backbone_state": backbone.state_dict()}, root / "model.pt")
    return root, ids, backbone


SETTINGS = {"batch_size": 32, "pca_variance": 0.9, "seed": 0, "device": "cpu"}


def test_features_written_in_batches_are_those_extracted_at_once_and_the_pca_is_unchanged(dataset, caplog):
    from byol_discovery import stages

    root, ids, backbone = dataset
    torch.set_num_threads(1)
    with caplog.at_level(logging.INFO, logger="byol_discovery.stages"):
        stages.features(root / "store.h5", root / "model.pt", root / "f.h5", root / "pca.h5",
                       {**SETTINGS, "pca_fit_samples": 1000})
    with h5py.File(root / "store.h5", "r") as file:
        expected = extract_features(backbone, file["images"], batch_size=50, device="cpu")
    written_ids, written, attrs = load_features(root / "f.h5")
    np.testing.assert_array_equal(written_ids, ids)
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)
    assert attrs["representation"] == "byol"
    reduced, _ = clustering.reduce_pca(written, variance=0.9, seed=0)
    np.testing.assert_array_equal(load_features(root / "pca.h5")[1], reduced)  # today's PCA, to the bit
    assert "images/s" in caplog.text


def test_above_pca_fit_samples_the_pca_is_fitted_on_a_subsample_and_applied_in_blocks(dataset, tmp_path):
    from byol_discovery import stages

    root, _, _ = dataset
    stages.features(root / "store.h5", root / "model.pt", tmp_path / "f.h5", tmp_path / "pca.h5",
                   {**SETTINGS, "pca_fit_samples": 100})
    features = load_features(tmp_path / "f.h5")[1]
    _, reduced, attrs = load_features(tmp_path / "pca.h5")
    pca = clustering.fit_pca_on_subsample(features, 0.9, 100, seed=0)
    np.testing.assert_allclose(reduced, pca.transform(features.astype(np.float64)), rtol=1e-4, atol=1e-5)
    full = clustering.reduce_pca(features, variance=0.9, seed=0)[1]
    # The leading direction is the same one (up to sign) whether fitted on 100 or 150 objects.
    assert abs(np.dot(pca.components_[0], full.components_[0])) > 0.95
    assert attrs["explained_variance"] >= 0.9


def test_fit_on_a_subsample_of_everything_is_the_full_fit():
    x = np.random.default_rng(1).normal(size=(120_000, 6)) * np.arange(1, 7)
    pca = clustering.fit_pca_on_subsample(x, 1.0, 200_000, seed=0)
    np.testing.assert_allclose(pca.components_, clustering.reduce_pca(x, 1.0)[1].components_, atol=1e-10)
    blocks = list(clustering.pca_blocks(pca, x))
    assert [len(b) for b in blocks] == [50_000, 50_000, 20_000]


def test_block_writer_checks_rows_and_values(tmp_path):
    ids = np.array(["a", "b", "c"], dtype=object)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    save_feature_blocks(tmp_path / "f.h5", ids, iter([x[:2], x[2:]]), 2, {"k": 1}, "test features")
    save_features(tmp_path / "g.h5", ids, x, {"k": 1})
    blocks_ids, blocks_x, blocks_attrs = load_features(tmp_path / "f.h5")
    whole_ids, whole_x, whole_attrs = load_features(tmp_path / "g.h5")
    np.testing.assert_array_equal(blocks_ids, whole_ids)
    np.testing.assert_array_equal(blocks_x, whole_x)
    assert blocks_attrs == whole_attrs
    with pytest.raises(ValueError, match="test features: 2 feature rows for 3 ids"):
        save_feature_blocks(tmp_path / "h.h5", ids, iter([x[:2]]), 2, {}, "test features")
    bad = x.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="test features: 1 of 1 feature vectors .* 'c'"):
        save_feature_blocks(tmp_path / "h.h5", ids, iter([bad[:2], bad[2:]]), 2, {}, "test features")
    assert not (tmp_path / "h.h5").exists()  # nothing half-written

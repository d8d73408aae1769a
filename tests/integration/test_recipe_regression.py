"""Regression guard on the training recipe: the demo's BYOL features must beat a random network.

The recipe is read from config/config.yaml (the `sim_optical` dataset's merged `preprocess`
and `train` settings, the demo's fixed budget of 4 epochs), so a change to the recipe, the
augmentations, the model or the training loop that leaves the features no better than
the randomly initialised backbone fails here. Measured on 2 CPU cores (about 2 minutes):
kNN accuracy 0.92 (cosine) against 0.85 for the random network and the pixel PCA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from byol_discovery.config import stage_settings
from byol_discovery.evaluation import knn_accuracy
from byol_discovery.features import extract_features, load_backbone, random_backbone
from byol_discovery.io.store import ImageStore
from byol_discovery.stages.acquire import acquire
from byol_discovery.stages.preprocess import preprocess
from byol_discovery.stages.train import train

REPO = Path(__file__).resolve().parents[2]
DATASET = "sim_optical"
# Well below the measured 6-7 points, so float noise across CPUs cannot flip it, and well
# above the spread of kNN over splits (standard error about 0.003 here).
MARGIN = 0.03


def _knn(features: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    return {
        metric: knn_accuracy(features, labels, k=5, n_splits=20, metric=metric, seed=seed)[0]
        for metric in ("euclidean", "cosine")
    }


@pytest.mark.slow
def test_demo_recipe_features_beat_the_random_network(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    seed = config["seed"]
    catalogue = acquire(config["datasets"][DATASET]["source"], tmp_path / "data", seed)
    preprocess(catalogue, tmp_path / "store.h5", tmp_path / "quarantine.csv",
               stage_settings(config, DATASET, "preprocess"), DATASET)
    recipe = {**stage_settings(config, DATASET, "train"), "seed": seed, "device": "cpu", "resume": False}
    recipe.pop("probe_label", None)  # monitoring only: it does not change the model
    train(tmp_path / "store.h5", tmp_path / "model.pt", tmp_path / "history.csv", tmp_path / "loss.png", recipe)

    with ImageStore(tmp_path / "store.h5") as store:
        images, labels = store.load_images(), store.catalogue()["morphology"].to_numpy()
    learned = _knn(extract_features(load_backbone(tmp_path / "model.pt", device="cpu"), images, device="cpu"),
                   labels, seed)
    untrained = _knn(extract_features(random_backbone("resnet18", images.shape[1], False, seed), images,
                                      device="cpu"), labels, seed)
    figures = ", ".join(f"{m} {learned[m]:.3f} against {untrained[m]:.3f}" for m in learned)
    assert all(learned[m] > untrained[m] + MARGIN for m in learned), (
        f"kNN accuracy of the demo recipe's features is not {MARGIN} above the random network's "
        f"({figures}): the recipe no longer learns"
    )

"""Regression guard on the training recipe: the demo's BYOL features must beat a random network.

The recipe is read from config/config.yaml (the `sim_optical` dataset's merged `preprocess`
and `train` settings, the demo's fixed budget of 4 epochs), so a change to the recipe, the
augmentations, the model or the training loop that leaves the features no better than
the randomly initialised backbone fails here. It runs the stages the workflow runs
(acquire, preprocess, train, features, validate). Measured on 2 CPU cores (about 2 minutes):
kNN accuracy (validate's 50 splits) 0.924 / 0.923 (Euclidean / cosine) against 0.855 / 0.860
for the random network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from byol_discovery.config import stage_settings
from byol_discovery.stages.acquire import acquire
from byol_discovery.stages.features import extract
from byol_discovery.stages.preprocess import preprocess
from byol_discovery.stages.train import train
from byol_discovery.stages.validate import validate

REPO = Path(__file__).resolve().parents[2]
DATASET = "sim_optical"
# Well below the measured 6-7 points, so float noise across CPUs cannot flip it, and well
# above the spread of kNN over splits (standard error about 0.003 here).
MARGIN = 0.03


@pytest.mark.slow
def test_demo_recipe_features_beat_the_random_network(tmp_path: Path) -> None:
    """The pipeline's own stages, as the workflow runs them, on the demo's settings."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

    def settings(stage: str) -> dict:
        return {**stage_settings(config, DATASET, stage), "seed": config["seed"], "device": "cpu"}

    catalogue = acquire(config["datasets"][DATASET]["source"], tmp_path / "data", config["seed"])
    preprocess(catalogue, tmp_path / "store.h5", tmp_path / "quarantine.csv",
               stage_settings(config, DATASET, "preprocess"), DATASET)
    recipe = {**settings("train"), "resume": False}
    recipe.pop("probe_label", None)  # monitoring only: it does not change the model
    train(tmp_path / "store.h5", tmp_path / "model.pt", tmp_path / "history.csv", tmp_path / "loss.png", recipe)
    extract(tmp_path / "store.h5", tmp_path / "model.pt", tmp_path / "features.h5", tmp_path / "pca.h5",
            settings("features"))
    table = validate(tmp_path / "store.h5", tmp_path / "features.h5", tmp_path / "knn.csv", tmp_path / "knn.png",
                     tmp_path / "confusion.png", {**settings("validate"), "probe_folds": 0})

    knn = table[table["method"] == "knn"].pivot(index="metric", columns="representation", values="accuracy_mean")
    figures = ", ".join(f"{metric} {row.byol:.3f} against {row.random_init:.3f}" for metric, row in knn.iterrows())
    assert (knn["byol"] > knn["random_init"] + MARGIN).all(), (
        f"kNN accuracy of the demo recipe's features is not {MARGIN} above the random network's "
        f"({figures}): the recipe no longer learns"
    )

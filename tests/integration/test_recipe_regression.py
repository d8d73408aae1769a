"""Regression guard on the training recipes: BYOL features must beat a random network.

Each recipe is read from a shipped config (a dataset's merged `preprocess` and `train`
settings), so a change to the recipe, the augmentations, the model or the training loop
that leaves the features no better than the randomly initialised backbone fails here. It
runs the stages the workflow runs (acquire, preprocess, train, features, validate).

- `sim_optical` in config/config.yaml, the demo's fixed budget (4 epochs at 48 px). Measured
  on 2 CPU cores (about 2 minutes): kNN accuracy (validate's 50 splits) 0.937 / 0.931
  (Euclidean / cosine) against 0.855 / 0.859 for the random network.
- `mirabest` in config/mirabest.yaml (the radio recipe), on the MiraBest basic release in
  ../shared/data at a small budget: 8 epochs at 32 px instead of 50 at 64 px. Measured (about
  2 minutes): 0.766 / 0.777 against 0.715 / 0.717 for the random network (0.732 / 0.692 for
  pixel PCA); the recipe studies (docs/recipes.md) find 3-5 points over three training seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from byol_discovery.config import deep_merge, stage_settings
from byol_discovery.stages.acquire import acquire
from byol_discovery.stages.features import features
from byol_discovery.stages.preprocess import preprocess
from byol_discovery.stages.train import train
from byol_discovery.stages.validate import validate

REPO = Path(__file__).resolve().parents[2]
MIRABEST_BASIC = REPO.parent / "shared" / "data" / "mirabest" / "MiraBest_basic_batches.tar.gz"

# (config file, dataset, overrides of the dataset's sections for the test's budget, margin).
# Margins sit well below the measured gains, so float noise across CPUs cannot flip them,
# and well above the spread of kNN over splits (standard error about 0.003-0.006).
RECIPES = {
    "sim_optical": ("config.yaml", "sim_optical", {}, 0.03),
    "mirabest": (
        "mirabest.yaml",
        "mirabest",
        {
            "source": {"url": None, "path": str(MIRABEST_BASIC), "md5": "fa9d6ad8fdde95b0a19df11433e8bca3",
                       "classes": ["FRI", "FRII"]},
            "preprocess": {"image_size": 32},
            "train": {"epochs": 8},
        },
        0.03,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_recipe_features_beat_the_random_network(recipe: str, tmp_path: Path) -> None:
    """The pipeline's own stages, as the workflow runs them, on the recipe's settings."""
    config_file, dataset, overrides, margin = RECIPES[recipe]
    if dataset == "mirabest" and not MIRABEST_BASIC.is_file():
        pytest.skip(f"{MIRABEST_BASIC} is not there")
    config = yaml.safe_load((REPO / "config" / config_file).read_text())
    config["datasets"][dataset] = deep_merge(config["datasets"][dataset], overrides)

    def settings(stage: str) -> dict[str, Any]:
        return {**stage_settings(config, dataset, stage), "seed": config["seed"], "device": "cpu"}

    catalogue = acquire(config["datasets"][dataset]["source"], tmp_path / "data", config["seed"])
    preprocess(catalogue, tmp_path / "store.h5", tmp_path / "quarantine.csv",
               stage_settings(config, dataset, "preprocess"), dataset)
    training = {**settings("train"), "resume": False, "num_threads": 2}
    training.pop("probe_label", None)  # monitoring only: it does not change the model
    train(tmp_path / "store.h5", tmp_path / "model.pt", tmp_path / "history.csv", tmp_path / "loss.png", training)
    features(tmp_path / "store.h5", tmp_path / "model.pt", tmp_path / "features.h5", tmp_path / "pca.h5",
            settings("features"))
    label_set = settings("validate")["label_columns"][0]
    table = validate(tmp_path / "store.h5", tmp_path / "features.h5", tmp_path / "knn.csv", tmp_path / "knn.png",
                     tmp_path / "confusion.png", {**settings("validate"), "label_columns": [label_set],
                                                  "probe_folds": 0})

    knn = table[table["method"] == "knn"].pivot(index="metric", columns="representation", values="accuracy_mean")
    figures = ", ".join(f"{metric} {row.byol:.3f} against {row.random_init:.3f}" for metric, row in knn.iterrows())
    assert (knn["byol"] > knn["random_init"] + margin).all(), (
        f"kNN accuracy of the {recipe} recipe's features is not {margin} above the random network's "
        f"({figures}): the recipe no longer learns"
    )

"""A synthetic results folder, as the pipeline leaves it, for the labelling page's tests and
benchmark: store, PCA features, the three ranked tables, the catalogue and a few FITS files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml
from astropy.io import fits
from byol_discovery.io.store import save_features

DATASET = "toy"
CONFIG = {
    "results_dir": "results",
    "data_dir": "data",
    "datasets": {DATASET: {"preprocess": {"channels": 3, "stretch": "asinh"},
                           "anomaly": {"target": {"column": "is_rare", "values": [1]}}}},
}


def write_results(root: Path, n: int = 60, n_fits: int = 3, dims: int = 8, seed: int = 0) -> list[str]:
    """Write config/config.yaml, data/toy and results/toy under ``root``; return the ids in rank order.

    Objects ``obj00000`` ... carry catalogue ids ``J<number>+<number>`` and features in three
    clumps; ``obj00001`` repeats ``obj00000``'s features (its nearest neighbour)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"obj{i:05d}" for i in range(n)], dtype=object)
    results, data = root / "results" / DATASET, root / "data" / DATASET
    for folder in (results / "active_learning", results / "anomaly", results / "cluster", results / "features",
                   results / "preprocess", results / "neighbours",
                   data / "cutouts", root / "config"):
        folder.mkdir(parents=True, exist_ok=True)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    catalogue = pd.DataFrame({
        "id": ids, "catalogue_id": [f"J{i:06d}+{(7 * i) % 1000:04d}" for i in range(n)],
        "ra": rng.uniform(150, 200, n), "dec": rng.uniform(0, 30, n),
        "morphology": rng.choice(["spiral", "elliptical"], n), "is_rare": (np.arange(n) % 10 == 0).astype(int),
    })
    catalogue["file"] = [f"cutouts/{i}.fits" for i in ids]
    catalogue.to_csv(data / "catalogue.csv", index=False)
    for object_id in ids[:n_fits]:
        header = fits.Header({"BANDS": "grz"})
        fits.PrimaryHDU(rng.normal(0, 1, (3, 24, 24)).astype(np.float32), header).writeto(
            data / "cutouts" / f"{object_id}.fits")
    # The store's layout (byol_discovery.io.store), written in one go: 300,000 appends take minutes.
    with h5py.File(results / "preprocess" / "store.h5", "w") as store:
        store.create_dataset("images", data=rng.integers(0, 255, (n, 3, 8, 8), dtype=np.uint8), chunks=(1, 3, 8, 8))
        store.create_dataset("ids", data=ids, dtype=h5py.string_dtype("utf-8"))
        group = store.create_group("catalogue")
        for column in ("catalogue_id", "morphology"):
            group.create_dataset(column, data=catalogue[column].to_numpy(dtype=object), dtype=h5py.string_dtype())
        for column in ("ra", "dec", "is_rare"):
            group.create_dataset(column, data=catalogue[column].to_numpy())
    centres = rng.normal(0, 5, (3, dims))
    clump = np.arange(n) % 3
    x = centres[clump] + rng.normal(0, 1, (n, dims))
    x[1] = x[0]
    save_features(results / "features" / "features_pca.h5", ids, x, {})
    score = rng.uniform(0, 5, n)
    order = np.argsort(-score, kind="stable")
    anomalies = pd.DataFrame({"id": ids[order], "isolation_forest": score[order], "lof": rng.uniform(0, 5, n)[order],
                              "rank": np.arange(1, n + 1)})
    named = catalogue.set_index("id").loc[anomalies["id"], ["catalogue_id", "ra", "dec", "morphology"]]
    anomalies = pd.concat([anomalies, named.reset_index(drop=True)], axis=1)
    anomalies.to_csv(results / "anomaly" / "ranking.csv", index=False)
    active = anomalies[["id", "isolation_forest"]].assign(
        label="", neighbour_score=anomalies["isolation_forest"], gp_mean="", gp_sd="", expected_improvement="",
        interest_probability=anomalies["isolation_forest"] / 5,
        classifier_priority=anomalies["isolation_forest"] / 5 + 0.1,
        rank=anomalies["rank"])
    active = pd.concat([active, named.reset_index(drop=True)], axis=1)
    active.to_csv(results / "active_learning" / "ranking.csv", index=False)
    pd.DataFrame({"id": ids, "hdbscan": np.where(np.arange(n) % 7 == 0, -1, clump), "hdbscan_probability": 1.0,
                  "gmm": clump, "map_x": x[:, 0], "map_y": x[:, 1], "morphology": catalogue["morphology"],
                  "label": np.where(catalogue["morphology"] == "spiral", "S", "E"),  # cluster.label_column
                  "is_rare": catalogue["is_rare"]}).to_csv(results / "cluster" / "assignments.csv", index=False)
    return list(anomalies["id"])

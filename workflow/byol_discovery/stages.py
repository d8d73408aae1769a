"""One function per pipeline stage: paths and plain settings in, files out.

The Snakemake scripts only unpack the ``snakemake`` object into these calls, so every stage
also runs (and is tested) from Python without Snakemake. Each stage imports only what it
uses, so it runs in its own small conda environment (``envs/<stage>.yaml``). ``settings`` are the merged
per-dataset stage settings of the workflow config (see :mod:`byol_discovery.config`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from byol_discovery.config import from_mapping
from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.io.store import ImageStore, load_features, save_features

Settings = Mapping[str, Any]
_log = logging.getLogger(__name__)


def acquire(source: Settings, out_dir: str | Path, seed: int, log: logging.Logger = _log) -> Path:
    """Fetch or make a dataset's cutouts and ``catalogue.csv`` in ``out_dir``; return its path."""
    kind = source.get("type")
    options = {key: value for key, value in source.items() if key != "type"}
    if kind == "firstgalaxydata":
        from byol_discovery.sources.first import extract_first

        extract_first(out_dir, splits=tuple(options.get("splits", ("train", "valid", "test"))),
                      limit=options.get("limit"), log=log)
    elif kind == "simulated_optical":
        from byol_discovery.sources.simulated import SimulationConfig, simulate_dataset

        config = from_mapping(SimulationConfig, {"seed": seed, **options}, "source")
        catalogue = simulate_dataset(out_dir, config)
        log.info("simulated %d optical cutouts (%d planted rarities) in %s",
                 len(catalogue), int(catalogue["is_rare"].sum()), out_dir)
    elif kind == "local":
        from byol_discovery.sources.local import index_local_folder

        index_local_folder(options["catalogue"], out_dir, log=log)
    else:
        raise ValueError(f"unknown source type {kind!r}")
    return Path(out_dir) / "catalogue.csv"


def preprocess(catalogue: str | Path, store: str | Path, quarantine: str | Path, settings: Settings,
               dataset: str = "", log: logging.Logger = _log) -> pd.DataFrame:
    """Build the HDF5 image store; return the quarantine table."""
    from byol_discovery.preprocessing import PreprocessConfig, build_store

    options = dict(settings)
    columns, workers = options.pop("columns", []), options.pop("workers", 1)
    config = from_mapping(PreprocessConfig, options, "preprocess")
    rejected = build_store(catalogue, store, quarantine, config, columns=columns, workers=workers,
                           dataset=dataset, log=log)
    if len(rejected):
        log.warning("%d cutouts quarantined; reasons: %s", len(rejected), rejected["reason"].value_counts().to_dict())
    return rejected


def train(store: str | Path, checkpoint: str | Path, history: str | Path, loss_plot: str | Path,
          settings: Settings, log: logging.Logger = _log) -> pd.DataFrame:
    """Train BYOL on the store's images; write checkpoint, loss history and its plot."""
    from byol_discovery import plotting
    from byol_discovery.training import TrainConfig, train_byol

    config = from_mapping(TrainConfig, settings, "train")
    with ImageStore(store) as images:
        frame = train_byol(images.load_images(), config, checkpoint, history, log=log)
    plotting.loss_curves(frame, loss_plot)
    return frame


def extract(store: str | Path, checkpoint: str | Path, features: str | Path, pca_features: str | Path,
            settings: Settings, log: logging.Logger = _log) -> None:
    """Backbone features of every stored image, and their PCA keeping ``pca_variance``."""
    from byol_discovery import clustering
    import torch

    from byol_discovery.features import extract_features, load_backbone

    backbone = load_backbone(checkpoint, device=settings.get("device", "auto"))
    meta = torch.load(checkpoint, map_location="cpu", weights_only=True)
    with ImageStore(store) as images:
        ids = images.ids
        matrix = extract_features(backbone, images.images, batch_size=settings["batch_size"],
                                  device=settings.get("device", "auto"))
    model = {key: meta[key] for key in ("arch", "small_stem", "in_channels", "epoch")}
    save_features(features, ids, matrix, {"representation": "byol", **model})
    reduced, pca = clustering.reduce_pca(matrix, variance=settings["pca_variance"], seed=settings["seed"])
    save_features(pca_features, ids, reduced, {"representation": "byol_pca", "pca_variance": settings["pca_variance"],
                                               "explained_variance": float(pca.explained_variance_ratio_.sum()), **model})
    log.info("features %s -> PCA %d components (%.1f%% of variance)", matrix.shape, reduced.shape[1],
             100 * pca.explained_variance_ratio_.sum())


def _label_arrays(catalogue: pd.DataFrame, columns: list[str]) -> dict[str, np.ndarray]:
    missing = [column for column in columns if column not in catalogue.columns]
    if missing:
        raise ValueError(f"label columns {missing} are not in the store; carry them with preprocess.columns")
    return {column: catalogue[column].to_numpy() for column in columns}


def _baselines(images: Any, attrs: Mapping[str, Any], settings: Settings) -> dict[str, np.ndarray]:
    """Representations that cost nothing to learn, to compare BYOL's features against."""
    from byol_discovery import evaluation

    baselines = {}
    if settings.get("pixel_pca_components", 0):
        baselines["pixel_pca"] = evaluation.pixel_pca_features(images, settings["pixel_pca_components"],
                                                                seed=settings["seed"])
    if settings.get("random_backbone", False):
        from byol_discovery.features import extract_features, random_backbone

        backbone = random_backbone(attrs["arch"], int(attrs["in_channels"]), bool(attrs["small_stem"]), settings["seed"])
        baselines["random_init"] = extract_features(backbone, images, batch_size=256, device=settings.get("device", "auto"))
    return baselines


def validate(store: str | Path, features: str | Path, table: str | Path, accuracy_plot: str | Path,
             confusion_plot: str | Path, settings: Settings, log: logging.Logger = _log) -> pd.DataFrame:
    """kNN accuracy (k, splits from settings) of BYOL features and baselines on each label set."""
    from byol_discovery import evaluation, plotting

    ids, matrix, attrs = load_features(features)
    with ImageStore(store) as images:
        catalogue = images.catalogue()
        _check_same_objects(ids, catalogue["id"].to_numpy(), features, store)
        labels = _label_arrays(catalogue, list(settings["label_columns"]))
        representations = {"byol": matrix, **_baselines(images.images, attrs, settings)}
    result = evaluation.validation_table(representations, labels, k=settings["k"], n_splits=settings["n_splits"],
                                         test_fraction=settings["test_fraction"], seed=settings["seed"])
    write_csv_atomic(table, result)
    plotting.accuracy_bars(result, accuracy_plot)
    first_label = next(iter(labels))
    matrix_counts, names = evaluation.confusion_matrix_knn(matrix, labels[first_label], k=settings["k"],
                                                           seed=settings["seed"], metric="cosine")
    plotting.confusion_matrix_plot(matrix_counts, names, confusion_plot,
                                   f"kNN (k={settings['k']}, cosine) on BYOL features: {first_label}")
    for row in result.itertuples():
        log.info("kNN %-12s %-10s %-9s %.3f +- %.3f (chance %.3f)", row.representation, row.label_set, row.metric,
                 row.accuracy_mean, row.accuracy_sem, row.chance)
    return result


def _check_same_objects(feature_ids: np.ndarray, store_ids: np.ndarray, features: Any, store: Any) -> None:
    if len(feature_ids) != len(store_ids) or not np.array_equal(feature_ids, store_ids):
        raise ValueError(f"{features} and {store} hold different objects; rerun extract_features")


def cluster(store: str | Path, pca_features: str | Path, outputs: Mapping[str, str | Path], settings: Settings,
            log: logging.Logger = _log) -> pd.DataFrame:
    """HDBSCAN and a Bayesian Gaussian mixture on the PCA features, with tables and figures.

    ``outputs`` keys: assignments, summary, scores, map_clusters, map_labels, gallery_hdbscan, gallery_gmm.
    """
    from byol_discovery import clustering, plotting

    ids, x, _ = load_features(pca_features)
    hdb = settings["hdbscan"]
    gmm = settings["gmm"]
    seed = settings["seed"]
    hdb_labels, hdb_prob = clustering.hdbscan_clusters(x, hdb["min_cluster_size"], hdb["min_samples"])
    gmm_labels = clustering.gaussian_mixture_clusters(x, gmm["max_components"], gmm["weight_concentration_prior"],
                                                      gmm["n_init"], seed)
    xy = clustering.embed_2d(x, seed)
    assignments = pd.DataFrame({"id": ids, "hdbscan": hdb_labels, "hdbscan_probability": hdb_prob,
                                "gmm": gmm_labels, "map_x": xy[:, 0], "map_y": xy[:, 1]})
    with ImageStore(store) as images:
        catalogue = images.catalogue()
        _check_same_objects(ids, catalogue["id"].to_numpy(), pca_features, store)
        truth_column = settings.get("label_column")
        truth = catalogue[truth_column].to_numpy() if truth_column else None
        summaries, scores = [], []
        for method, labels in (("hdbscan", hdb_labels), ("gmm", gmm_labels)):
            summaries.append(clustering.cluster_summary(labels, truth).assign(method=method))
            scores.append({"method": method, **clustering.clustering_scores(x, labels, truth, seed)})
            members = clustering.central_members(x, labels, settings["gallery_per_cluster"])
            plotting.cluster_galleries(images.images, members, outputs[f"gallery_{method}"],
                                       settings["gallery_per_cluster"])
    plotting.scatter_map(xy, hdb_labels, outputs["map_clusters"], "PCA map of BYOL features, HDBSCAN clusters")
    if truth is not None:
        assignments[truth_column] = truth
        plotting.scatter_map(xy, truth, outputs["map_labels"], f"PCA map of BYOL features, by {truth_column}")
    else:
        plotting.scatter_map(xy, gmm_labels, outputs["map_labels"], "PCA map of BYOL features, Gaussian mixture")
    write_csv_atomic(outputs["assignments"], assignments)
    write_csv_atomic(outputs["summary"], pd.concat(summaries, ignore_index=True))
    score_table = pd.DataFrame(scores)
    write_csv_atomic(outputs["scores"], score_table)
    for row in score_table.to_dict("records"):
        log.info("clustering %s", ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return assignments


def rank_anomalies(store: str | Path, pca_features: str | Path, outputs: Mapping[str, str | Path],
                   settings: Settings, log: logging.Logger = _log) -> pd.DataFrame:
    """Isolation forest and LOF scores (0-5, 5 most anomalous), ranked; gallery of the top N.

    ``outputs`` keys: ranking, gallery, evaluation (targets found among the top N, where the
    catalogue says which objects are the targets).
    """
    from byol_discovery import anomaly, plotting

    ids, x, _ = load_features(pca_features)
    scores = {
        "isolation_forest": anomaly.isolation_forest_scores(x, settings["n_estimators"], settings["seed"]),
        "lof": anomaly.lof_scores(x, settings["lof_neighbors"]),
    }
    ranking = anomaly.anomaly_table(ids, scores)
    with ImageStore(store) as images:
        catalogue = images.catalogue().set_index("id")
        _check_same_objects(ids, images.ids, pca_features, store)
        top = ranking.head(settings["top_n"])
        order = [int(np.flatnonzero(ids == object_id)[0]) for object_id in top["id"]]
        gallery = np.stack([images.images[i] for i in order]) if order else np.zeros((0, 1, 8, 8), np.uint8)
        plotting.image_gallery(gallery, outputs["gallery"], titles=[f"#{r} {s:.2f}" for r, s in
                               zip(top["rank"], top["isolation_forest"])], title="Most anomalous (isolation forest)")
    target = settings.get("target")
    evaluation_table = _target_recovery(ranking, catalogue, target, settings["top_n"])
    if target:
        ranking["is_target"] = _is_target(catalogue.loc[ranking["id"]], target).to_numpy().astype(int)
    write_csv_atomic(outputs["ranking"], ranking)
    write_csv_atomic(outputs["evaluation"], evaluation_table)
    for row in evaluation_table.to_dict("records"):
        log.info("anomaly %s", row)
    return ranking


def _is_target(catalogue: pd.DataFrame, target: Settings) -> pd.Series:
    column = target["column"]
    if column not in catalogue.columns:
        raise ValueError(f"anomaly target column {column!r} is not in the store; carry it with preprocess.columns")
    return catalogue[column].astype(str).isin([str(v) for v in target["values"]])


def _target_recovery(ranking: pd.DataFrame, catalogue: pd.DataFrame, target: Settings | None,
                     top_n: int) -> pd.DataFrame:
    """How many targets each ranking puts in its top N, against a random order."""
    from byol_discovery import anomaly

    columns = ["scorer", "top_n", "targets_found", "targets_total", "expected_random", "median_score_targets",
               "median_score_all"]
    if not target:
        return pd.DataFrame(columns=columns)
    is_target = _is_target(catalogue.loc[ranking["id"]], target).to_numpy()
    rows = []
    for scorer in ("isolation_forest", "lof"):
        order = np.argsort(-ranking[scorer].to_numpy(), kind="stable")
        rows.append({"scorer": scorer, "top_n": top_n, "targets_found": anomaly.recall_at(is_target[order], top_n),
                     "targets_total": int(is_target.sum()), "expected_random": top_n * is_target.mean(),
                     "median_score_targets": float(np.median(ranking[scorer][is_target])) if is_target.any() else np.nan,
                     "median_score_all": float(np.median(ranking[scorer]))})
    return pd.DataFrame(rows, columns=columns)

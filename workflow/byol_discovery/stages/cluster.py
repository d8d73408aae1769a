"""Stage ``cluster``: HDBSCAN and a Bayesian Gaussian mixture on the PCA features."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.io.store import ImageStore, load_features
from byol_discovery.stages.common import LOG, Settings, check_same_objects


def cluster(
    store: str | Path,
    pca_features: str | Path,
    outputs: Mapping[str, str | Path],
    settings: Settings,
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """HDBSCAN and a Bayesian Gaussian mixture on the PCA features, with tables and figures.

    ``outputs`` keys: assignments, summary, scores, map_clusters, map_labels, gallery_hdbscan, gallery_gmm.
    """
    from byol_discovery import clustering, plotting

    ids, x, _ = load_features(pca_features)
    hdb = settings["hdbscan"]
    gmm = settings["gmm"]
    seed = settings["seed"]
    hdb_labels, hdb_prob = clustering.hdbscan_clusters(x, hdb["min_cluster_size"], hdb["min_samples"])
    gmm_labels = clustering.gaussian_mixture_clusters(
        x, gmm["max_components"], gmm["weight_concentration_prior"], gmm["n_init"], seed
    )
    xy = clustering.embed_2d(x, seed)
    assignments = pd.DataFrame(
        {
            "id": ids,
            "hdbscan": hdb_labels,
            "hdbscan_probability": hdb_prob,
            "gmm": gmm_labels,
            "map_x": xy[:, 0],
            "map_y": xy[:, 1],
        }
    )
    with ImageStore(store) as images:
        catalogue = images.catalogue()
        check_same_objects(ids, catalogue["id"].to_numpy(), pca_features, store)
        truth_column = settings.get("label_column")
        truth = catalogue[truth_column].to_numpy() if truth_column else None
        summaries, scores = [], []
        for method, labels in (("hdbscan", hdb_labels), ("gmm", gmm_labels)):
            summaries.append(clustering.cluster_summary(labels, truth).assign(method=method))
            scores.append({"method": method, **clustering.clustering_scores(x, labels, truth, seed)})
            members = clustering.central_members(x, labels, settings["gallery_per_cluster"])
            plotting.cluster_galleries(
                images.images, members, outputs[f"gallery_{method}"], settings["gallery_per_cluster"]
            )
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
        log.info(
            "clustering %s", ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
    return assignments

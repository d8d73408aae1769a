"""Stage ``cluster``: HDBSCAN (in a UMAP embedding by default) and a Bayesian Gaussian mixture on the PCA features."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.io.store import ImageStore, load_features
from byol_discovery.io.tables import with_catalogue, write_ranked_table
from byol_discovery.settings import ClusterSettings, GmmSettings, HdbscanSettings, stage_settings_of
from byol_discovery.stages.common import LOG, Settings, checked_catalogue, store_columns


def _mixture_options(gmm: GmmSettings) -> dict[str, Any]:
    """Keyword arguments of gaussian_mixture_clusters from the ``gmm`` settings (seed aside)."""
    return {
        "max_components": gmm.max_components,
        "weight_concentration_prior": gmm.weight_concentration_prior,
        "n_init": gmm.n_init,
        "max_fit_samples": gmm.max_fit_samples,
    }


def _stability(
    x: np.ndarray, hdbscan_x: np.ndarray, labels: Mapping[str, np.ndarray], options: ClusterSettings
) -> dict[str, tuple[float, float, int]]:
    """(mean ARI, sd, number of refits) per labelling: the mixture's components and merged
    groups across seeds (on ``x``), HDBSCAN's core and soft labels across subsamples of the
    space it clusters (``hdbscan_x``: the embedding is not recomputed)."""
    from byol_discovery import clustering, merging

    stability, hdb, gmm, seed = options.stability, options.hdbscan, options.gmm, options.seed
    min_cluster_size = _min_cluster_size(hdbscan_x.shape[0], hdb)
    return {
        **merging.mixture_seed_stability(
            x, labels, gmm.merge_threshold, stability.n_seeds, seed, **_mixture_options(gmm)
        ),
        **clustering.hdbscan_subsample_stability(
            hdbscan_x,
            labels["hdbscan"],
            min_cluster_size,
            hdb.min_samples,
            n_subsamples=stability.n_subsamples,
            fraction=stability.subsample_fraction,
            seed=seed,
            max_points=hdb.max_fit_samples,
            soft_reference=labels["hdbscan_soft"],
        ),
    }


def _fit_sizes(n_points: int, options: ClusterSettings) -> dict[str, dict[str, int]]:
    """Per method, the points it is fitted on and those each stability refit sees (fewer than
    ``n_points`` where ``max_fit_samples`` subsamples them): columns of scores.csv."""
    from byol_discovery.clustering import stability_subsample_size

    hdb, gmm = options.hdbscan, options.gmm
    hdb_fit = min(n_points, hdb.max_fit_samples or n_points)
    gmm_fit = min(n_points, gmm.max_fit_samples or n_points)
    refit = stability_subsample_size(n_points, options.stability.subsample_fraction, hdb.max_fit_samples)
    return {
        "hdbscan": {"fit_samples": hdb_fit, "stability_fit_samples": refit},
        "gmm": {"fit_samples": gmm_fit, "stability_fit_samples": gmm_fit},
    }


def _fit_note(sizes: Mapping[str, int], n_points: int) -> str:
    if sizes["fit_samples"] >= n_points:
        return f"fitted on all {n_points} objects"
    return (f"fitted on a seeded subsample of {sizes['fit_samples']} of {n_points} objects, the rest assigned; "
            f"stability refits on {sizes['stability_fit_samples']}")


def _min_cluster_size(n_objects: int, hdb: HdbscanSettings) -> int:
    """HDBSCAN's min_cluster_size: as configured, or min_cluster_fraction of the objects."""
    from byol_discovery import clustering

    return clustering.scaled_min_cluster_size(n_objects, hdb.min_cluster_size, hdb.min_cluster_fraction)


# The soft and merged labellings come from the same fits as the core ones.
FITTED_AS = {"hdbscan_soft": "hdbscan", "gmm_merged": "gmm"}

ASSIGNMENT_COLUMNS = (
    "id", "hdbscan", "hdbscan_probability", "hdbscan_soft", "hdbscan_soft_probability", "gmm", "gmm_merged",
    "map_x", "map_y",
)


def cluster(
    store: str | Path,
    pca_features: str | Path,
    outputs: Mapping[str, str | Path],
    settings: ClusterSettings | Settings,
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """HDBSCAN (in ``hdbscan.space``: a UMAP embedding of the PCA features by default) and a Bayesian
    Gaussian mixture on the PCA features, with tables and figures.

    ``outputs`` keys: assignments (CSV), assignments_ecsv (the same with units), summary, scores,
    map_clusters, map_labels, map_gmm_merged, gallery_hdbscan, gallery_gmm, gallery_gmm_merged.
    HDBSCAN's core assignment (-1 = noise) is column ``hdbscan``; ``hdbscan_soft`` gives every
    point, noise included, its most likely cluster. ``gmm`` holds the mixture's components,
    ``gmm_merged`` the groups left after merging components closer than ``gmm.merge_threshold``
    in Hellinger distance; the scores table gives both counts (``groups_before_merging`` on the
    ``gmm_merged`` row: the occupied components).
    The scores table carries each method's stability (``stability_ari``: mean adjusted Rand
    index between the fit and refits with other seeds (GMM) or on random subsamples (HDBSCAN)),
    and the points each was fitted on (``fit_samples``) and each refit saw (``stability_fit_samples``):
    fewer than the objects where ``max_fit_samples`` subsamples them.
    """
    from byol_discovery import clustering, merging, plotting

    options = stage_settings_of(ClusterSettings, settings, "cluster")
    ids, features, _ = load_features(pca_features)
    truth_column = options.label_column
    if truth_column in ASSIGNMENT_COLUMNS:
        raise ValueError(f"cluster.label_column {truth_column!r} is the name of a column assignments.csv computes "
                         f"({', '.join(ASSIGNMENT_COLUMNS)}); rename the catalogue column")
    catalogue = checked_catalogue(store, ids, pca_features)  # and the labels: both fail before the fits
    truth = store_columns(catalogue, [truth_column], "cluster.label_column")[truth_column] if truth_column else None
    x = clustering.leading_components(features, options.max_dims)
    log.info("clustering %d objects in %d of %d PCA dimensions", x.shape[0], x.shape[1], features.shape[1])
    hdb, seed = options.hdbscan, options.seed
    fitted = _fit_sizes(x.shape[0], options)
    clock = time.perf_counter()
    space = hdb.space
    hdbscan_x = clustering.hdbscan_space(x, space, dataclasses.asdict(hdb.umap), seed, hdb.max_fit_samples)
    if space != "pca":
        log.info("HDBSCAN space: %s embedding, %d dimensions: %.1f s", space, hdbscan_x.shape[1],
                 time.perf_counter() - clock)
    clock = time.perf_counter()
    min_cluster_size = _min_cluster_size(x.shape[0], hdb)
    hdb_labels, hdb_prob, hdb_soft, hdb_soft_prob = clustering.hdbscan_soft_clusters(
        hdbscan_x, min_cluster_size, hdb.min_samples, max_fit_samples=hdb.max_fit_samples, seed=seed
    )
    log.info("HDBSCAN (min_cluster_size %d): %.1f s, %s", min_cluster_size, time.perf_counter() - clock,
             _fit_note(fitted["hdbscan"], x.shape[0]))
    clock = time.perf_counter()
    mixture = clustering.fit_gaussian_mixture(x, seed=seed, **_mixture_options(options.gmm))
    gmm_labels, merged_labels, n_components = merging.merged_labels(mixture, x, options.gmm.merge_threshold)
    log.info("Gaussian mixture: %d occupied components, %d groups after Hellinger merging below %.2f: %.1f s, %s",
             n_components, merged_labels.max() + 1, options.gmm.merge_threshold, time.perf_counter() - clock,
             _fit_note(fitted["gmm"], x.shape[0]))
    labels = {"hdbscan": hdb_labels, "gmm": gmm_labels, "hdbscan_soft": hdb_soft, "gmm_merged": merged_labels}
    clock = time.perf_counter()
    stability = _stability(x, hdbscan_x, labels, options)
    log.info("stability refits: %.1f s", time.perf_counter() - clock)
    clock = time.perf_counter()
    xy = clustering.map_2d(x, options.map, seed, hdb.umap.n_neighbors, hdb.max_fit_samples)
    log.info("map: %s, %.1f s", options.map, time.perf_counter() - clock)
    drawn = f"{options.map.upper()} map of BYOL features"
    columns = (ids, hdb_labels, hdb_prob, hdb_soft, hdb_soft_prob, gmm_labels, merged_labels, xy[:, 0], xy[:, 1])
    assignments = pd.DataFrame(dict(zip(ASSIGNMENT_COLUMNS, columns, strict=True)))
    with ImageStore(store) as images:
        summaries, scores = [], []
        for method, method_labels in labels.items():
            summaries.append(clustering.cluster_summary(method_labels, truth).assign(method=method))
            mean, sd, runs = stability.get(method, (np.nan, np.nan, 0))
            scores.append(
                {
                    "method": method,
                    **clustering.clustering_scores(x, method_labels, truth, seed),
                    "stability_ari": mean,
                    "stability_ari_sd": sd,
                    "stability_runs": runs,
                    **fitted[FITTED_AS.get(method, method)],
                    "groups_before_merging": n_components if method == "gmm_merged" else np.nan,
                }
            )
            if f"gallery_{method}" not in outputs:
                continue
            members = clustering.central_members(x, method_labels, options.gallery_per_cluster)
            sizes = {int(c): int(n) for c, n in zip(*np.unique(method_labels, return_counts=True), strict=True)}
            plotting.cluster_galleries(
                images.images,
                members,
                outputs[f"gallery_{method}"],
                options.gallery_per_cluster,
                sizes=sizes,
                title=f"{method}: members nearest each cluster centre",
            )
    plotting.scatter_map(xy, hdb_labels, outputs["map_clusters"], f"{drawn}, HDBSCAN clusters")
    plotting.scatter_map(xy, merged_labels, outputs["map_gmm_merged"],
                         f"{drawn}, mixture after merging ({n_components} components)")
    if truth is not None:
        assignments[truth_column] = truth
        plotting.scatter_map(xy, truth, outputs["map_labels"], f"{drawn}, by {truth_column}")
    else:
        plotting.scatter_map(xy, gmm_labels, outputs["map_labels"], f"{drawn}, Gaussian mixture")
    write_ranked_table(outputs["assignments"], outputs["assignments_ecsv"], with_catalogue(assignments, catalogue))
    write_csv_atomic(outputs["summary"], pd.concat(summaries, ignore_index=True))
    score_table = pd.DataFrame(scores)
    write_csv_atomic(outputs["scores"], score_table)
    for row in score_table.to_dict("records"):
        log.info(
            "clustering %s", ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
    return assignments

"""Unsupervised grouping of the features: PCA, HDBSCAN, Bayesian Gaussian mixture, scores.

As in the paper, features are reduced with plain (unstandardised) PCA keeping 95 % of the
variance before clustering. Cluster ids are renumbered 0..k-1 by decreasing size (noise
stays -1) so that "cluster 0" always means the largest group, whatever the algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.decomposition import PCA
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.mixture import BayesianGaussianMixture
from threadpoolctl import threadpool_limits

from byol_discovery.evaluation import clean_labels

NOISE = -1


def reduce_pca(features: ArrayLike, variance: float = 0.95, seed: int = 0) -> tuple[np.ndarray, PCA]:
    """Project onto the fewest principal components explaining ``variance`` of the variance.

    ``variance >= 1`` keeps every component. Returns float32 coordinates and the fitted PCA.
    """
    x = np.asarray(features)
    pca = _variance_pca(x.shape, variance, seed)
    reduced = pca.fit_transform(x.astype(np.float64, copy=False))
    return reduced.astype(np.float32), pca


def _variance_pca(shape: tuple[int, ...], variance: float, seed: int) -> PCA:
    """An unfitted PCA keeping ``variance`` of the variance, for features of ``shape``."""
    if len(shape) != 2 or shape[0] < 2:
        raise ValueError(f"need a 2-D array with at least 2 rows, got shape {shape}")
    if not variance > 0:
        raise ValueError(f"variance must be > 0, got {variance}")
    return PCA(n_components=None if variance >= 1 else float(variance), svd_solver="full", random_state=seed)


_PCA_BLOCK = 50_000  # rows read from the features file at a time


def fit_pca_on_subsample(features: ArrayLike, variance: float, fit_samples: int, seed: int = 0) -> PCA:
    """:func:`reduce_pca`'s PCA fitted on a seeded random subset of ``fit_samples`` rows of
    ``features`` (an array or an h5py dataset, read block by block), so that memory holds the
    subset, not the N x D matrix; apply it with :func:`pca_blocks`."""
    pca = _variance_pca(features.shape, variance, seed)
    rows = fit_subsample(features.shape[0], fit_samples, seed)
    return pca.fit(read_rows(features, rows).astype(np.float64, copy=False))


def read_rows(features: ArrayLike, rows: np.ndarray) -> np.ndarray:
    """``features[rows]`` for sorted ``rows`` of an array or an h5py dataset, read in blocks of
    consecutive rows (h5py's own fancy indexing reads each row on its own: slow for many)."""
    picked = [
        np.asarray(features[start : start + _PCA_BLOCK])[rows[(rows >= start) & (rows < start + _PCA_BLOCK)] - start]
        for start in range(0, features.shape[0], _PCA_BLOCK)
    ]
    return np.concatenate(picked) if picked else np.zeros((0, *features.shape[1:]), dtype=features.dtype)


def pca_blocks(pca: PCA, features: ArrayLike) -> Iterator[np.ndarray]:
    """The PCA coordinates (float32) of ``features``, block by block in row order."""
    for start in range(0, features.shape[0], _PCA_BLOCK):
        block = np.asarray(features[start : start + _PCA_BLOCK], dtype=np.float64)
        yield pca.transform(block).astype(np.float32)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0..k-1 by decreasing size (ties: smaller old id first); keep -1."""
    labels = np.asarray(labels, dtype=np.int64)
    ids, counts = np.unique(labels[labels != NOISE], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    mapping = {int(old): new for new, old in enumerate(order)}
    mapping[NOISE] = NOISE
    return np.fromiter((mapping[int(v)] for v in labels), dtype=np.int64, count=labels.size)


def fit_hdbscan(
    x: ArrayLike,
    min_cluster_size: int,
    min_samples: int | None = None,
    core_dist_n_jobs: int = 1,
    prediction_data: bool = False,
) -> Any:
    """A fitted ``hdbscan.HDBSCAN``; ``prediction_data`` keeps what soft membership needs."""
    import hdbscan  # imported here: it is slow to import and only HDBSCAN needs it

    data = np.asarray(x, dtype=np.float64)
    if data.shape[0] < 2:
        raise ValueError(f"HDBSCAN needs at least 2 points, got {data.shape[0]}")
    return hdbscan.HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        core_dist_n_jobs=core_dist_n_jobs,
        prediction_data=prediction_data,
    ).fit(data)


def hdbscan_clusters(
    x: ArrayLike,
    min_cluster_size: int,
    min_samples: int | None = None,
    core_dist_n_jobs: int = 1,
    max_fit_samples: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN labels (-1 = noise, others renumbered by size) and membership probabilities.

    With more than ``max_fit_samples`` points: :func:`hdbscan_subsample_clusters`.
    """
    data = np.asarray(x, dtype=np.float64)
    if max_fit_samples is not None and data.shape[0] > max_fit_samples:
        return hdbscan_subsample_clusters(data, min_cluster_size, min_samples, max_fit_samples, seed, core_dist_n_jobs)
    model = fit_hdbscan(data, min_cluster_size, min_samples, core_dist_n_jobs)
    return relabel_by_size(model.labels_), np.asarray(model.probabilities_, dtype=np.float64)


def fit_subsample(n_points: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``size`` of ``n_points`` (all when fewer)."""
    if n_points <= size:
        return np.arange(n_points)
    return np.sort(np.random.default_rng(seed).choice(n_points, size=size, replace=False))


_PREDICT_BLOCK = 50_000  # points assigned at a time: bounds the temporaries


def approximate_predict(
    model: Any, indices: np.ndarray, distances: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``hdbscan.approximate_predict`` for points whose ``2 min_samples`` nearest fitted points
    (``indices`` into the fit, Euclidean ``distances``, nearest first, one row per point) are
    given: labels (hdbscan's cluster ids, -1 = noise), membership probabilities, and the fitted
    point each joins through (its nearest in mutual reachability).

    The same rules as hdbscan's, whose labels and probabilities it reproduces exactly given the
    same neighbours, taken for every point at once: hdbscan walks its condensed tree one point
    at a time in Python (11 s of the 16 s it took to assign 280,000 points), and searches a
    KD-tree, which in tens of dimensions visits nearly every point (the caller brings the
    neighbours, from an HNSW graph at scale).
    """
    prediction = model.prediction_data_
    min_samples = model.min_samples or model.min_cluster_size
    core = prediction.core_distances
    distances = np.asarray(distances, dtype=np.float64)
    rows = np.arange(indices.shape[0])
    # Mutual reachability to each neighbour: the largest of the two core distances and the distance.
    reach = np.maximum(np.maximum(core[indices], distances[:, min_samples : min_samples + 1]), distances)
    pick = np.argmin(reach, axis=1)
    joins, shortest = indices[rows, pick], reach[rows, pick]
    with np.errstate(divide="ignore"):
        lam = np.where(shortest > 0, 1.0 / shortest, np.finfo(np.float64).max)
    condensed = model.condensed_tree_._raw_tree
    point_rows = condensed["child"] < core.size  # the others are clusters
    point_parent = np.empty(core.size, dtype=np.int64)
    point_lambda = np.empty(core.size, dtype=np.float64)
    point_parent[condensed["child"][point_rows]] = condensed["parent"][point_rows]
    point_lambda[condensed["child"][point_rows]] = condensed["lambda_val"][point_rows]
    clusters = prediction.cluster_tree
    n_nodes = int(max(condensed["parent"].max(), condensed["child"].max())) + 1
    up_parent = np.full(n_nodes, -1, dtype=np.int64)
    up_lambda = np.full(n_nodes, -np.inf)  # a node with no parent cluster: the walk stops there
    up_parent[clusters["child"]], up_lambda[clusters["child"]] = clusters["parent"], clusters["lambda_val"]
    cluster = point_parent[joins]
    # A point denser than where its neighbour joined climbs to the cluster alive at its own lambda.
    climbing = point_lambda[joins] > lam
    root = clusters["parent"].min()
    while True:
        climbing &= (cluster > root) & (up_lambda[cluster] >= lam)
        if not climbing.any():
            break
        cluster[climbing] = up_parent[cluster[climbing]]
    label_of = np.full(n_nodes, NOISE, dtype=np.int64)
    max_lambda_of = np.zeros(n_nodes, dtype=np.float64)
    for node, label in prediction.cluster_map.items():
        label_of[node], max_lambda_of[node] = label, prediction.max_lambdas[node]
    labels, max_lambda = label_of[cluster], max_lambda_of[cluster]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.where(max_lambda > 0, np.minimum(max_lambda, lam) / max_lambda, 1.0)
    return labels, np.where(labels >= 0, inside, 0.0), joins


@dataclass(frozen=True)
class _SubsampleFit:
    """HDBSCAN fitted on ``fit_rows`` and every other point (``rest``) assigned to it; ``labels``
    are HDBSCAN's own cluster ids (not yet renumbered by size); ``nearest_fitted``, for each of
    ``rest``, the position in ``fit_rows`` of its nearest fitted point (-1 where the fit found no
    cluster: nothing was searched)."""

    model: Any
    fit_rows: np.ndarray
    rest: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    nearest_fitted: np.ndarray


def _fit_on_subsample(
    data: np.ndarray, min_cluster_size: int, min_samples: int | None, max_fit_samples: int, seed: int,
    core_dist_n_jobs: int,
) -> _SubsampleFit:
    from byol_discovery.neighbour_search import hnsw_index, hnsw_search

    fit_rows = fit_subsample(data.shape[0], max_fit_samples, seed)
    fraction = fit_rows.size / data.shape[0]
    model = fit_hdbscan(data[fit_rows], max(2, int(round(min_cluster_size * fraction))), min_samples,
                        core_dist_n_jobs, prediction_data=True)
    labels = np.empty(data.shape[0], dtype=np.int64)
    probabilities = np.empty(data.shape[0], dtype=np.float64)
    labels[fit_rows], probabilities[fit_rows] = model.labels_, model.probabilities_
    rest = np.setdiff1d(np.arange(data.shape[0]), fit_rows, assume_unique=True)
    nearest_fitted = np.full(rest.size, -1, dtype=np.int64)
    if model.prediction_data_.cluster_tree.shape[0] == 0:  # no cluster to join: all noise
        labels[rest], probabilities[rest] = NOISE, 0.0
        return _SubsampleFit(model, fit_rows, rest, labels, probabilities, nearest_fitted)
    # In tens of dimensions a KD-tree (hdbscan's) searches nearly every fitted point: 3.9 ms a
    # query against 50,000 points in 32 dimensions, 5 times the graph's. 32 candidates find 99.8 %
    # of the 4 nearest of 20,000 in the benchmark's 16 dimensions, 1.7 times faster than 64.
    index = hnsw_index(data[fit_rows])
    k = 2 * (model.min_samples or model.min_cluster_size)  # the neighbours hdbscan's own assignment reads
    for start in range(0, rest.size, _PREDICT_BLOCK):
        block = rest[start : start + _PREDICT_BLOCK]
        indices, distances = hnsw_search(index, data[block], k, ef_search=max(32, 2 * k))
        labels[block], probabilities[block], _ = approximate_predict(model, indices, distances)
        nearest_fitted[start : start + block.size] = indices[:, 0]
    return _SubsampleFit(model, fit_rows, rest, labels, probabilities, nearest_fitted)


def hdbscan_subsample_clusters(
    x: ArrayLike,
    min_cluster_size: int,
    min_samples: int | None,
    max_fit_samples: int,
    seed: int = 0,
    core_dist_n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN fitted on a seeded subsample of ``max_fit_samples`` points, the rest assigned.

    HDBSCAN's cost grows faster than N; at a few hundred thousand points a subsample of
    50,000 finds the same groups (adjusted Rand index >= 0.9 against the full fit in
    ``benchmarks/bench_discovery.py``). ``min_cluster_size`` shrinks with the subsampled
    fraction, so the same share of the data makes a cluster; ``min_samples`` (the density
    estimate's neighbours) is kept. Every other point gets the label and membership strength
    of ``hdbscan.approximate_predict`` (:func:`approximate_predict`): the cluster it would have
    joined, or noise; the fitted points near each are found in an HNSW graph.
    """
    fit = _fit_on_subsample(np.asarray(x, dtype=np.float64), min_cluster_size, min_samples, max_fit_samples, seed,
                            core_dist_n_jobs)
    return relabel_by_size(fit.labels), fit.probabilities


def scaled_min_cluster_size(n_objects: int, min_cluster_size: int | None, fraction: float, floor: int = 5) -> int:
    """HDBSCAN's smallest cluster: ``min_cluster_size`` when given, else ``fraction`` of the
    objects (at least ``floor``, at most all of them), so the same setting suits 1,000 objects
    and 1,000,000."""
    if min_cluster_size is not None:
        return int(min_cluster_size)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"min_cluster_fraction must lie in (0, 1), got {fraction}")
    return int(max(2, min(n_objects, max(floor, round(fraction * n_objects)))))


def hdbscan_soft_clusters(
    x: ArrayLike,
    min_cluster_size: int,
    min_samples: int | None = None,
    core_dist_n_jobs: int = 1,
    max_fit_samples: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HDBSCAN core labels and probabilities, plus every point's most likely cluster.

    Returns (labels, probabilities, soft_labels, soft_probability): ``labels`` as
    :func:`hdbscan_clusters` (-1 = noise); ``soft_labels`` gives noise points too the
    cluster of highest membership (hdbscan's ``all_points_membership_vectors``), in the same
    numbering, with that membership in ``soft_probability``. Without any cluster every soft
    label is -1 with probability 0. Above ``max_fit_samples`` points the fit is that of
    :func:`hdbscan_subsample_clusters`; an assigned point that is noise takes the soft
    cluster and membership of its nearest fitted point (membership vectors of every point
    would cost a pass over the condensed tree each).
    """
    import hdbscan

    data = np.asarray(x, dtype=np.float64)
    if max_fit_samples is not None and data.shape[0] > max_fit_samples:
        fit = _fit_on_subsample(data, min_cluster_size, min_samples, max_fit_samples, seed, core_dist_n_jobs)
    else:
        model = fit_hdbscan(data, min_cluster_size, min_samples, core_dist_n_jobs, prediction_data=True)
        fit = _SubsampleFit(model, np.arange(data.shape[0]), np.arange(0), np.asarray(model.labels_, dtype=np.int64),
                            np.asarray(model.probabilities_, dtype=np.float64), np.arange(0))
    raw = fit.labels
    labels = relabel_by_size(raw)
    n = raw.size
    if not (raw >= 0).any():
        return labels, fit.probabilities, np.full(n, NOISE), np.zeros(n)
    membership = np.asarray(hdbscan.all_points_membership_vectors(fit.model), dtype=np.float64)
    membership = membership.reshape(fit.fit_rows.size, -1)
    fitted_raw = raw[fit.fit_rows]
    # A core member keeps its own cluster (the vectors may favour another for border points).
    fitted_best = np.where(fitted_raw != NOISE, fitted_raw, np.argmax(membership, axis=1))
    fitted_probability = membership[np.arange(fit.fit_rows.size), fitted_best]
    best = np.empty(n, dtype=np.int64)
    soft_probability = np.empty(n, dtype=np.float64)
    best[fit.fit_rows], soft_probability[fit.fit_rows] = fitted_best, fitted_probability
    assigned = raw[fit.rest] != NOISE
    best[fit.rest] = np.where(assigned, raw[fit.rest], fitted_best[fit.nearest_fitted])
    soft_probability[fit.rest] = np.where(assigned, fit.probabilities[fit.rest], fitted_probability[fit.nearest_fitted])
    # Columns of the membership vectors are hdbscan's cluster ids 0..k-1; map them as the labels were.
    new_id = {int(old): int(new) for old, new in zip(raw, labels, strict=True) if old != NOISE}
    soft = np.fromiter((new_id[int(c)] for c in best), dtype=np.int64, count=n)
    return labels, fit.probabilities, soft, soft_probability


def fit_gaussian_mixture(
    x: ArrayLike,
    max_components: int = 20,
    weight_concentration_prior: float = 0.5,
    n_init: int = 10,
    seed: int = 0,
    max_iter: int = 100,
    max_fit_samples: int | None = None,
) -> BayesianGaussianMixture:
    """A Dirichlet-process Gaussian mixture (full covariances) fitted to ``x``.

    Fitting costs O(n_init x max_iter x N x components x d^2): with ``max_fit_samples`` the
    mixture is fit on a seeded random subset of that many points.
    """
    data = np.asarray(x, dtype=np.float64)
    if data.shape[0] < 2:
        raise ValueError(f"a mixture needs at least 2 points, got {data.shape[0]}")
    fit_data = data
    if max_fit_samples is not None and data.shape[0] > max_fit_samples:
        fit_data = data[fit_subsample(data.shape[0], max_fit_samples, seed)]
    model = BayesianGaussianMixture(
        n_components=min(max_components, fit_data.shape[0]),
        weight_concentration_prior=weight_concentration_prior,
        n_init=n_init,
        max_iter=max_iter,
        random_state=seed,
    )
    # The mixture's matrix products are small (N x d times d x d); multithreaded BLAS only
    # adds synchronisation cost to them (measured 50x slower with 2 OpenBLAS threads here).
    with threadpool_limits(limits=1, user_api="blas"):
        return model.fit(fit_data)


def gaussian_mixture_clusters(x: ArrayLike, **mixture: Any) -> np.ndarray:
    """Hard labels of a Dirichlet-process Gaussian mixture, 0..k-1 by decreasing size.

    ``mixture``: the keyword arguments of :func:`fit_gaussian_mixture`; every point is
    assigned, also when the fit used a subset. k is at most ``max_components``, and not an
    estimate of the number of groups: the variational prior can empty unneeded components,
    but on features without clear groups it mostly does not (one 20-d Gaussian blob of 3,000
    points: 20 components, one of 2,436 points and 19 of about 36). Read the sizes in the
    summary, not the count, or merge the components (:mod:`byol_discovery.merging`).
    """
    model = fit_gaussian_mixture(x, **mixture)
    with threadpool_limits(limits=1, user_api="blas"):
        return relabel_by_size(model.predict(np.asarray(x, dtype=np.float64)))


def cluster_summary(labels: ArrayLike, truth: ArrayLike | None = None) -> pd.DataFrame:
    """One row per cluster (noise as -1): cluster, size, fraction.

    With ``truth`` (missing values allowed): majority_label, purity (share of the cluster's
    labelled members carrying the majority label) and n_labelled.
    """
    labels = np.asarray(labels, dtype=np.int64)
    ids, sizes = np.unique(labels, return_counts=True)
    frame = pd.DataFrame({"cluster": ids, "size": sizes, "fraction": sizes / labels.size})
    if truth is None:
        return frame
    keep, codes, names = clean_labels(truth)
    if keep.shape[0] != labels.shape[0]:
        raise ValueError(f"{labels.shape[0]} cluster labels but {keep.shape[0]} truth labels")
    labelled_clusters = labels[keep]
    majority, purity, n_labelled = [], [], []
    for cluster in ids:
        member_codes = codes[labelled_clusters == cluster]
        n_labelled.append(int(member_codes.size))
        if member_codes.size == 0:
            majority.append(None)
            purity.append(math.nan)
            continue
        counts = np.bincount(member_codes, minlength=len(names))
        majority.append(names[int(np.argmax(counts))])
        purity.append(float(counts.max() / member_codes.size))
    frame["majority_label"] = pd.Series(majority, dtype=object)
    frame["purity"] = purity
    frame["n_labelled"] = n_labelled
    return frame


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int, max_points: int) -> float:
    """Silhouette of the non-noise points on a seeded subsample (NaN if undefined)."""
    clustered = np.flatnonzero(labels != NOISE)
    if clustered.size > max_points:
        rng = np.random.default_rng(seed)
        clustered = np.sort(rng.choice(clustered, size=max_points, replace=False))
    sub_labels = labels[clustered]
    n_distinct = np.unique(sub_labels).size
    if n_distinct < 2 or n_distinct > clustered.size - 1:
        return math.nan
    return float(silhouette_score(x[clustered], sub_labels))


def clustering_scores(
    x: ArrayLike,
    labels: ArrayLike,
    truth: ArrayLike | None = None,
    seed: int = 0,
    max_silhouette_points: int = 5000,
) -> dict[str, float]:
    """Internal and (with ``truth``) external quality of a clustering.

    n_clusters excludes noise. With truth, only labelled objects count: adjusted_rand and
    nmi treat noise as one more group (so discarding points is penalised), purity is the
    share of labelled non-noise objects whose cluster's majority label matches theirs.
    """
    data = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if data.shape[0] != labels.shape[0]:
        raise ValueError(f"{data.shape[0]} points but {labels.shape[0]} labels")
    scores: dict[str, float] = {
        "n_clusters": int(np.unique(labels[labels != NOISE]).size),
        "noise_fraction": float(np.mean(labels == NOISE)) if labels.size else math.nan,
        "silhouette": _silhouette(data, labels, seed, max_silhouette_points),
    }
    if truth is None:
        return scores
    keep, codes, _ = clean_labels(truth)
    if keep.shape[0] != labels.shape[0]:
        raise ValueError(f"{labels.shape[0]} cluster labels but {keep.shape[0]} truth labels")
    found = labels[keep]
    scores["adjusted_rand"] = float(adjusted_rand_score(codes, found)) if codes.size else math.nan
    scores["nmi"] = float(normalized_mutual_info_score(codes, found)) if codes.size else math.nan
    scores["purity"] = _purity(found, codes)
    return scores


def _purity(clusters: np.ndarray, codes: np.ndarray) -> float:
    """Fraction of non-noise objects carrying their cluster's majority label."""
    mask = clusters != NOISE
    if not mask.any():
        return math.nan
    clusters, codes = clusters[mask], codes[mask]
    correct = sum(np.bincount(codes[clusters == c]).max() for c in np.unique(clusters))
    return float(correct / clusters.size)


def central_members(x: ArrayLike, labels: ArrayLike, n_per_cluster: int) -> dict[int, np.ndarray]:
    """For each cluster (noise excluded), indices of the members nearest its centroid.

    Nearest first; ties keep index order. These are the "typical" examples to show.
    """
    data = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    result: dict[int, np.ndarray] = {}
    for cluster in np.unique(labels[labels != NOISE]):
        members = np.flatnonzero(labels == cluster)
        points = data[members]
        distance = np.linalg.norm(points - points.mean(axis=0), axis=1)
        order = np.argsort(distance, kind="stable")[:n_per_cluster]
        result[int(cluster)] = members[order]
    return result


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, NaN for none)."""
    if not values:
        return math.nan, math.nan
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), sd


def hdbscan_subsample_stability(
    x: ArrayLike,
    reference: ArrayLike,
    min_cluster_size: int,
    min_samples: int | None = None,
    n_subsamples: int = 3,
    fraction: float = 0.8,
    seed: int = 0,
    max_points: int | None = None,
    soft_reference: ArrayLike | None = None,
) -> dict[str, tuple[float, float, int]]:
    """Agreement of HDBSCAN with itself on random subsamples: {"hdbscan": (mean ARI, sd, fits)},
    and with ``soft_reference`` (the full data's soft labels) also ``"hdbscan_soft"``.

    Each subsample draws ``fraction`` of the points, at most ``max_points``, without
    replacement (with replacement, duplicated points would have zero core distance and
    distort the densities HDBSCAN reads); ``min_cluster_size`` and ``min_samples`` shrink
    by the same fraction so the same density level is sought. The subsample's labels are
    compared with ``reference`` (the full-data labels) on the same points, noise counted as
    one more group; its soft labels (:func:`hdbscan_soft_clusters`, from the same refit) with
    ``soft_reference``.
    """
    data = np.asarray(x, dtype=np.float64)
    references = {"hdbscan": np.asarray(reference, dtype=np.int64)}
    if soft_reference is not None:
        references["hdbscan_soft"] = np.asarray(soft_reference, dtype=np.int64)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not (references["hdbscan"] >= 0).any():
        # All noise: two one-group partitions agree trivially (ARI 1), which says nothing.
        return {method: (math.nan, math.nan, 0) for method in references}
    rng = np.random.default_rng(seed)
    size = stability_subsample_size(data.shape[0], fraction, max_points)
    fraction = size / data.shape[0]
    scaled_size = max(2, int(round(min_cluster_size * fraction)))
    scaled_samples = None if min_samples is None else max(1, int(round(min_samples * fraction)))
    scores: dict[str, list[float]] = {method: [] for method in references}
    for _ in range(n_subsamples):
        index = np.sort(rng.choice(data.shape[0], size=size, replace=False))
        if soft_reference is None:
            refit = {"hdbscan": hdbscan_clusters(data[index], scaled_size, scaled_samples)[0]}
        else:
            labels, _, soft, _ = hdbscan_soft_clusters(data[index], scaled_size, scaled_samples)
            refit = {"hdbscan": labels, "hdbscan_soft": soft}
        for method, labels in refit.items():
            scores[method].append(float(adjusted_rand_score(references[method][index], labels)))
    return {method: (*mean_sd(values), len(values)) for method, values in scores.items()}


def stability_subsample_size(n_points: int, fraction: float, max_points: int | None = None) -> int:
    """Points per HDBSCAN stability refit: ``fraction`` of them, at most ``max_points``."""
    size = max(2, int(round(fraction * n_points)))
    return size if max_points is None else max(2, min(size, max_points))


def leading_components(x: ArrayLike, max_dims: int | None) -> np.ndarray:
    """The first ``max_dims`` columns of PCA coordinates (all when None): PCA to fewer dims.

    PCA columns come sorted by variance, so truncating them is the same as a PCA keeping
    fewer components; density-based clustering degrades (and slows) in many dimensions.
    """
    data = np.asarray(x)
    if max_dims is None or max_dims >= data.shape[1]:
        return data
    if max_dims < 1:
        raise ValueError(f"max_dims must be >= 1, got {max_dims}")
    return data[:, :max_dims]


MAP_KINDS = ("umap", "pca")
# UMAP's own default: the map spreads each group a little, so its points can be told apart.
MAP_MIN_DIST = 0.1


def map_2d(x: ArrayLike, kind: str, seed: int = 0, n_neighbors: int = 30,
           max_fit_samples: int | None = None) -> np.ndarray:
    """The 2-D map of the features the figures and the labelling page draw, float32 (N, 2):
    a seeded UMAP embedding (``kind`` "umap"; fitted on at most ``max_fit_samples`` objects,
    the rest placed) or the first two principal components (``kind`` "pca", :func:`embed_2d`)."""
    if kind == "pca":
        return embed_2d(x, seed)
    if kind == "umap":
        return umap_embedding(x, n_components=2, n_neighbors=n_neighbors, min_dist=MAP_MIN_DIST, seed=seed,
                              max_fit_samples=max_fit_samples)
    raise ValueError(f"cluster.map must be one of {MAP_KINDS}, got {kind!r}")


def embed_2d(x: ArrayLike, seed: int = 0) -> np.ndarray:
    """A 2-D map of the features (first two principal components), float32 (N, 2)."""
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] < 2:
        raise ValueError(f"need a 2-D array with at least 2 rows, got shape {data.shape}")
    n_components = min(2, data.shape[1], data.shape[0])
    xy = PCA(n_components=n_components, random_state=seed).fit_transform(data)
    if n_components < 2:  # 1-D input: put everything on a line rather than fail
        xy = np.column_stack([xy, np.zeros((xy.shape[0], 2 - n_components))])
    return xy.astype(np.float32)


CLUSTER_SPACES = ("umap", "pca")


def umap_embedding(
    x: ArrayLike,
    n_components: int = 5,
    n_neighbors: int = 30,
    min_dist: float = 0.0,
    seed: int = 0,
    max_fit_samples: int | None = None,
) -> np.ndarray:
    """A UMAP embedding of ``x`` in ``n_components`` dimensions (float32), seeded.

    HDBSCAN reads density. In the 20-50 PCA dimensions of the features the density of
    morphologies that grade into each other has no deep valleys, so HDBSCAN keeps a few
    dense cores and calls most objects noise (72 % of FIRST, 44 % of sim_optical in
    docs/discovery.md). UMAP keeps each object's ``n_neighbors`` nearest neighbours together
    and, with ``min_dist`` 0, packs them tightly, which is the density contrast HDBSCAN needs.
    The embedding is only for clustering; distances in it mean nothing across groups. Above
    ``max_fit_samples`` points UMAP is fitted on a seeded subsample and the rest placed with
    its ``transform``, block by block. Single-threaded, so the same seed gives the same map.
    """
    import umap  # imported here: numba compiles its functions on first use

    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] <= n_components + 1:
        raise ValueError(f"a {n_components}-d UMAP embedding needs more than {n_components + 1} points, "
                         f"got shape {data.shape}")
    fit_rows = fit_subsample(data.shape[0], max_fit_samples or data.shape[0], seed)
    model = umap.UMAP(n_neighbors=min(n_neighbors, fit_rows.size - 1), n_components=n_components,
                      min_dist=min_dist, random_state=seed, transform_seed=seed, n_jobs=1)
    embedded = np.empty((data.shape[0], n_components), dtype=np.float32)
    embedded[fit_rows] = model.fit_transform(data[fit_rows])
    rest = np.setdiff1d(np.arange(data.shape[0]), fit_rows, assume_unique=True)
    for start in range(0, rest.size, _PREDICT_BLOCK):
        block = rest[start : start + _PREDICT_BLOCK]
        embedded[block] = model.transform(data[block])
    return embedded


def hdbscan_space(x: ArrayLike, space: str, umap_settings: Any | None = None, seed: int = 0,
                  max_fit_samples: int | None = None) -> np.ndarray:
    """The coordinates HDBSCAN clusters: the PCA features themselves (``space`` "pca") or
    their :func:`umap_embedding` (``space`` "umap", keyword arguments in ``umap_settings``)."""
    if space == "pca":
        return np.asarray(x)
    if space == "umap":
        return umap_embedding(x, seed=seed, max_fit_samples=max_fit_samples, **dict(umap_settings or {}))
    raise ValueError(f"cluster.hdbscan.space must be one of {CLUSTER_SPACES}, got {space!r}")

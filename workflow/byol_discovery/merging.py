"""Merging of Gaussian-mixture components by the Hellinger distance between them.

A Dirichlet-process mixture with a cap of 20 components rarely empties the ones it does
not need: a non-Gaussian group is covered by several overlapping Gaussians. Following the
paper's author (Hellinger.ipynb of Koketsoc137/Feature_extraction), components whose
fitted Gaussians overlap strongly are merged into one group. Two Gaussians
N(m1, S1), N(m2, S2) are at Hellinger distance H with

    1 - H^2 = det(S1)^(1/4) det(S2)^(1/4) / det(S)^(1/2) * exp(-(m1 - m2)' S^-1 (m1 - m2) / 8),

S = (S1 + S2) / 2: 0 for identical Gaussians, 1 for ones that do not overlap at all. The
determinants are taken as log-determinants of Cholesky factors, so 50-dimensional
covariances with tiny eigenvalues neither under- nor overflow. In many dimensions the plain
distance is close to 1 for every pair, so merging thresholds the per-dimension distance by
default (see :func:`hellinger_distance`).
Groups are formed by average-linkage agglomeration of the components, stopping at
``threshold``: two groups merge while the mean Hellinger distance between their
components is below it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.linalg import cho_factor, cho_solve
from scipy.spatial.distance import squareform
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from byol_discovery.clustering import fit_gaussian_mixture, fit_subsample, mean_sd, relabel_by_size


def _log_det(cholesky: np.ndarray) -> float:
    """log det(A) from the lower or upper Cholesky factor of A."""
    return 2.0 * float(np.sum(np.log(np.diag(cholesky))))


def log_bhattacharyya_coefficient(mean_1: ArrayLike, cov_1: ArrayLike, mean_2: ArrayLike, cov_2: ArrayLike) -> float:
    """log of the overlap integral of sqrt(p1 p2) for N(mean_1, cov_1), N(mean_2, cov_2) (<= 0).

    Raises ValueError for shapes that do not match or a covariance that is not positive
    definite (its Cholesky factorisation fails).
    """
    m1, m2 = np.asarray(mean_1, dtype=np.float64), np.asarray(mean_2, dtype=np.float64)
    s1, s2 = np.asarray(cov_1, dtype=np.float64), np.asarray(cov_2, dtype=np.float64)
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"means must be (d,) and covariances (d, d); got {m1.shape}, {s1.shape}, {m2.shape}, "
                         f"{s2.shape}")
    try:
        c1, c2 = np.linalg.cholesky(s1), np.linalg.cholesky(s2)
        pooled = cho_factor((s1 + s2) / 2.0, lower=True)
    except np.linalg.LinAlgError as error:
        raise ValueError(f"a covariance is not positive definite ({error})") from None
    delta = m1 - m2
    mahalanobis = float(delta @ cho_solve(pooled, delta))
    log_coefficient = 0.25 * (_log_det(c1) + _log_det(c2)) - 0.5 * _log_det(pooled[0]) - mahalanobis / 8.0
    # The coefficient is <= 1 in exact arithmetic; rounding may push it over.
    return min(log_coefficient, 0.0)


def hellinger_distance(
    mean_1: ArrayLike, cov_1: ArrayLike, mean_2: ArrayLike, cov_2: ArrayLike, per_dimension: bool = False
) -> float:
    """Hellinger distance (0-1) between N(mean_1, cov_1) and N(mean_2, cov_2), full covariances.

    ``per_dimension``: the distance of the d-th root of the overlap, sqrt(1 - BC^(1/d)). The
    overlap of independent dimensions multiplies, so in 30-50 PCA dimensions two components
    of one morphology are at a plain distance of 0.99+ as are two of different ones; the
    per-dimension distance does not grow with d and a threshold keeps its meaning whatever
    the number of PCA components.
    """
    log_coefficient = log_bhattacharyya_coefficient(mean_1, cov_1, mean_2, cov_2)
    if per_dimension:
        log_coefficient /= np.asarray(mean_1).shape[0]
    return float(np.sqrt(-np.expm1(log_coefficient)))


def hellinger_matrix(means: ArrayLike, covariances: ArrayLike, per_dimension: bool = False) -> np.ndarray:
    """Symmetric (k, k) matrix of Hellinger distances between k full-covariance Gaussians."""
    means = np.asarray(means, dtype=np.float64)
    covariances = np.asarray(covariances, dtype=np.float64)
    k = means.shape[0]
    if covariances.shape[0] != k:
        raise ValueError(f"{k} means but {covariances.shape[0]} covariances")
    distances = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            distances[i, j] = distances[j, i] = hellinger_distance(
                means[i], covariances[i], means[j], covariances[j], per_dimension
            )
    return distances


def merge_components(distances: ArrayLike, threshold: float) -> np.ndarray:
    """Group of each of k components (0..g-1): average-linkage merging below ``threshold``.

    ``threshold`` 0 merges nothing, 1 merges everything that overlaps at all.
    """
    distances = np.asarray(distances, dtype=np.float64)
    k = distances.shape[0]
    if distances.shape != (k, k):
        raise ValueError(f"distances must be a square matrix, got shape {distances.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the Hellinger merge threshold must lie in [0, 1], got {threshold}")
    if k < 2:
        return np.zeros(k, dtype=np.int64)
    tree = linkage(squareform(distances, checks=False), method="average")
    # fcluster's "distance" criterion keeps merges at heights <= t; below, strictly, is asked.
    groups = fcluster(tree, t=np.nextafter(threshold, -np.inf), criterion="distance")
    return groups.astype(np.int64) - 1


def merged_labels(
    model: Any, x: ArrayLike, threshold: float, per_dimension: bool = True
) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels of a fitted full-covariance mixture after merging: (component labels, merged labels,
    number of occupied components).

    ``per_dimension``: threshold the per-dimension distance (see :func:`hellinger_distance`).
    Only components that receive points are merged (an emptied component is no group);
    both labellings are renumbered 0..k-1 by decreasing size.
    """
    if getattr(model, "covariance_type", "full") != "full":
        raise ValueError(f"Hellinger merging needs full covariances, the mixture has {model.covariance_type!r}")
    with threadpool_limits(limits=1, user_api="blas"):  # small products: threads only add waiting
        raw = np.asarray(model.predict(np.asarray(x, dtype=np.float64)), dtype=np.int64)
    occupied = np.unique(raw)
    distances = hellinger_matrix(model.means_[occupied], model.covariances_[occupied], per_dimension)
    group_of = dict(zip(occupied.tolist(), merge_components(distances, threshold).tolist(), strict=True))
    merged = np.fromiter((group_of[int(c)] for c in raw), dtype=np.int64, count=raw.size)
    return relabel_by_size(raw), relabel_by_size(merged), int(occupied.size)


def mixture_seed_stability(
    x: ArrayLike, references: Mapping[str, ArrayLike], threshold: float, n_seeds: int, seed: int = 0, **mixture: Any
) -> dict[str, tuple[float, float, int]]:
    """Agreement of the mixture with itself under other seeds: (mean ARI, sd, fits) for its
    components (``references["gmm"]``) and for its groups after merging below ``threshold``
    (``references["gmm_merged"]``), both from the same refits.

    The references come from the fit with ``seed``; the mixture (``mixture`` = the keyword
    arguments of :func:`byol_discovery.clustering.fit_gaussian_mixture`) is refit with seeds
    seed+1 .. seed+n_seeds-1 and each labelling compared with its reference by the adjusted
    Rand index (1 = identical partition). A mixture whose clusters change with the seed
    describes the initialisation, not the data; merged groups can be stable where the
    components are not (two seeds may split one group differently). Above
    ``max_fit_samples`` points the labellings are compared on the reference fit's subsample
    only: predicting every point again would cost more than the refit.
    """
    data = np.asarray(x, dtype=np.float64)
    rows = fit_subsample(data.shape[0], mixture.get("max_fit_samples") or data.shape[0], seed)
    scores: dict[str, list[float]] = {"gmm": [], "gmm_merged": []}
    for i in range(1, max(n_seeds, 1)):
        model = fit_gaussian_mixture(data, seed=seed + i, **mixture)
        components, merged, _ = merged_labels(model, data[rows], threshold)
        for method, labels in (("gmm", components), ("gmm_merged", merged)):
            scores[method].append(float(adjusted_rand_score(np.asarray(references[method])[rows], labels)))
    return {method: (*mean_sd(values), len(values)) for method, values in scores.items()}

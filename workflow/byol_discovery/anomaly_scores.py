"""Anomaly scores on the Astronomaly scale: 0 (ordinary) to 5 (most anomalous).

Re-implements the behaviour of Astronomaly's isolation forest and local outlier factor
scorers (raw scores where lower means weirder are negated, then min-max scaled to [0, 5]),
with seeds, so the ranking can be reproduced, and adds a distance-to-the-nearest-neighbours
score on L2-normalised features.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

SCORE_MAX = 5.0


def scale_scores(raw: ArrayLike, lower_is_anomalous: bool = True) -> np.ndarray:
    """Min-max scale to [0, 5] with 5 the most anomalous; constant input gives zeros."""
    values = np.asarray(raw, dtype=np.float64).ravel()
    if not np.all(np.isfinite(values)):
        raise ValueError("raw anomaly scores contain NaN or infinite values")
    if values.size == 0:
        return values
    if lower_is_anomalous:
        values = -values
    span = values.max() - values.min()
    if span <= 0:  # nothing stands out: everything is equally ordinary
        return np.zeros_like(values)
    return SCORE_MAX * (values - values.min()) / span


def _as_matrix(x: ArrayLike, minimum: int) -> np.ndarray:
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"features must be 2-D (n_objects, n_features), got shape {data.shape}")
    if data.shape[0] < minimum:
        raise ValueError(f"need at least {minimum} objects, got {data.shape[0]}")
    if not np.all(np.isfinite(data)):
        raise ValueError("features contain NaN or infinite values")
    return data


def isolation_forest_scores(
    x: ArrayLike, n_estimators: int = 200, seed: int = 0, n_jobs: int | None = None
) -> np.ndarray:
    """Isolation-forest anomaly scores on the 0-5 scale (5 = most anomalous)."""
    data = _as_matrix(x, minimum=2)
    forest = IsolationForest(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
    # decision_function is lower for points isolated in fewer splits, i.e. the anomalies.
    return scale_scores(forest.fit(data).decision_function(data), lower_is_anomalous=True)


def lof_scores(x: ArrayLike, n_neighbors: int = 50, n_jobs: int | None = None) -> np.ndarray:
    """Local-outlier-factor scores on the 0-5 scale (5 = most anomalous).

    ``n_neighbors`` is clamped to n - 1 so small data sets still work.
    """
    data = _as_matrix(x, minimum=2)
    lof = LocalOutlierFactor(
        n_neighbors=min(n_neighbors, data.shape[0] - 1), novelty=False, n_jobs=n_jobs
    )
    lof.fit(data)
    # negative_outlier_factor_ is about -1 for inliers and much lower for outliers.
    return scale_scores(lof.negative_outlier_factor_, lower_is_anomalous=True)


def _unit_rows(x: ArrayLike) -> np.ndarray:
    """The rows of ``x`` scaled to unit length (zero rows stay zero)."""
    data = _as_matrix(x, minimum=2)
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    return data / np.where(norms > 0, norms, 1.0)


def knn_distance_scores(x: ArrayLike, n_neighbors: int = 10) -> np.ndarray:
    """Mean cosine distance to the ``n_neighbors`` nearest other objects, on the 0-5 scale,
    by an exact search of every object.

    The features are L2-normalised first: BYOL is trained with a cosine loss, so only the
    direction of a feature vector carries meaning. An object far from all others in that
    sense is anomalous, whatever the local density (LOF) or axis-aligned splits (isolation
    forest) say. ``n_neighbors`` is clamped to n - 1. The pipeline reads the neighbours
    from its table instead (:func:`knn_distance_from_neighbours`).
    """
    unit = _unit_rows(x)
    k = min(n_neighbors, unit.shape[0] - 1)
    distances = NearestNeighbors(n_neighbors=k).fit(unit).kneighbors()[0]
    # Euclidean distance between unit vectors is sqrt(2 - 2 cos): monotone in the cosine distance.
    return scale_scores(distances.mean(axis=1), lower_is_anomalous=False)


_CANDIDATE_BLOCK = 10_000  # objects per block: their candidates' unit vectors, (block, k, d) float64


def knn_distance_from_neighbours(x: ArrayLike, candidates: ArrayLike, n_neighbors: int = 10) -> np.ndarray:
    """:func:`knn_distance_scores` with the neighbours taken from a neighbour table.

    ``candidates`` (N, k) are row numbers of each object's k nearest others in ``x``
    (neighbours/neighbours.h5, Euclidean in the PCA features): among them, the
    ``n_neighbors`` nearest in direction (L2-normalised) are kept, so no second search of
    the data is made. Where the candidates hold an object's true ``n_neighbors`` nearest in
    direction (always when k = N - 1) its distance is :func:`knn_distance_scores`'s;
    elsewhere it can only come out larger. Nearest in space is not nearest in direction, so
    the pipeline reads the scores this way only above ``neighbours.exact_below``, where an
    exact search would cost as much as the table; ``benchmarks/bench_discovery.py`` prints
    how far its top 1 % agrees with the exact search's.
    """
    unit = _unit_rows(x)
    candidates = np.asarray(candidates)
    if candidates.ndim != 2 or candidates.shape[0] != unit.shape[0]:
        raise ValueError(f"a neighbour table of shape {candidates.shape} for {unit.shape[0]} objects; "
                         "rerun the neighbours rule")
    k = min(n_neighbors, unit.shape[0] - 1)
    if k > candidates.shape[1]:
        raise ValueError(f"anomaly.knn_neighbors ({n_neighbors}) exceeds the {candidates.shape[1]} neighbours the "
                         "table holds; raise neighbours.k and rerun the neighbours rule")
    mean_distance = np.empty(unit.shape[0], dtype=np.float64)
    for start in range(0, unit.shape[0], _CANDIDATE_BLOCK):
        block = unit[start : start + _CANDIDATE_BLOCK]
        distance = np.linalg.norm(unit[candidates[start : start + _CANDIDATE_BLOCK]] - block[:, None, :], axis=2)
        mean_distance[start : start + len(block)] = np.partition(distance, k - 1, axis=1)[:, :k].mean(axis=1)
    return scale_scores(mean_distance, lower_is_anomalous=False)


def anomaly_table(ids: ArrayLike, scores: Mapping[str, Any]) -> pd.DataFrame:
    """Columns id, one per scorer, and rank (1 = most anomalous by the first scorer).

    Rows are sorted by rank; equal scores keep their input order, so ranks are unique and
    reproducible.
    """
    if not scores:
        raise ValueError("anomaly_table needs at least one scorer")
    ids = np.asarray(ids)
    frame = pd.DataFrame({"id": ids})
    for name, values in scores.items():
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.shape[0] != ids.shape[0]:
            raise ValueError(f"scorer {name!r} has {values.shape[0]} scores for {ids.shape[0]} ids")
        frame[name] = values
    first = next(iter(scores))
    order = np.argsort(-frame[first].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    return frame


def recall_at(ranked_is_target: ArrayLike, n: int) -> int:
    """How many targets are among the first ``n`` entries of a ranked boolean list."""
    flags = np.asarray(ranked_is_target, dtype=bool).ravel()
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return int(flags[:n].sum())

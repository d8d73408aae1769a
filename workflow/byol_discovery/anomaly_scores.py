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
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

SCORE_MAX = 5.0


def scale_scores(raw: Any, lower_is_anomalous: bool = True) -> np.ndarray:
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


def _as_matrix(x: Any, minimum: int) -> np.ndarray:
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"features must be 2-D (n_objects, n_features), got shape {data.shape}")
    if data.shape[0] < minimum:
        raise ValueError(f"need at least {minimum} objects, got {data.shape[0]}")
    if not np.all(np.isfinite(data)):
        raise ValueError("features contain NaN or infinite values")
    return data


def isolation_forest_scores(
    x: Any, n_estimators: int = 200, seed: int = 0, n_jobs: int | None = None
) -> np.ndarray:
    """Isolation-forest anomaly scores on the 0-5 scale (5 = most anomalous)."""
    data = _as_matrix(x, minimum=2)
    forest = IsolationForest(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
    # decision_function is lower for points isolated in fewer splits, i.e. the anomalies.
    return scale_scores(forest.fit(data).decision_function(data), lower_is_anomalous=True)


def lof_scores(x: Any, n_neighbors: int = 50, n_jobs: int | None = None) -> np.ndarray:
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


def knn_distance_scores(
    x: Any, n_neighbors: int = 10, method: str = "exact", exact_below: int = 100_000, threads: int | None = None
) -> np.ndarray:
    """Mean cosine distance to the ``n_neighbors`` nearest other objects, on the 0-5 scale.

    The features are L2-normalised first: BYOL is trained with a cosine loss, so only the
    direction of a feature vector carries meaning. An object far from all others in that
    sense is anomalous, whatever the local density (LOF) or axis-aligned splits (isolation
    forest) say. ``n_neighbors`` is clamped to n - 1. The neighbours are searched as
    :func:`byol_discovery.neighbour_search.neighbour_table` does (``method``: exact, approximate,
    or auto below ``exact_below`` objects), so the score keeps up with the survey's size.
    """
    from byol_discovery.neighbour_search import neighbour_table

    data = _as_matrix(x, minimum=2)
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    unit = data / np.where(norms > 0, norms, 1.0)
    table = neighbour_table(np.arange(data.shape[0]), unit, n_neighbors, method, exact_below, threads=threads)
    # Euclidean distance between unit vectors is sqrt(2 - 2 cos): monotone in the cosine distance.
    return scale_scores(table.distances.astype(np.float64).mean(axis=1), lower_is_anomalous=False)


def anomaly_table(ids: Any, scores: Mapping[str, Any]) -> pd.DataFrame:
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


def recall_at(ranked_is_target: Any, n: int) -> int:
    """How many targets are among the first ``n`` entries of a ranked boolean list."""
    flags = np.asarray(ranked_is_target, dtype=bool).ravel()
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return int(flags[:n].sum())

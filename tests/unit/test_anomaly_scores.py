"""Anomaly scorers on blobs with planted far-away outliers."""

from __future__ import annotations

import numpy as np
import pytest
from byol_discovery.anomaly_scores import (
    anomaly_table,
    isolation_forest_scores,
    knn_distance_from_neighbours,
    knn_distance_scores,
    lof_scores,
    recall_at,
    scale_scores,
)
from sklearn.datasets import make_blobs

N_OUTLIERS = 10


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray]:
    """1,000 points in 3 blobs plus 10 outliers on a distant shell; returns (x, is_outlier)."""
    x, _ = make_blobs(n_samples=1000, centers=3, n_features=8, cluster_std=1.0,
                      center_box=(-10, 10), random_state=0)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(N_OUTLIERS, 8))
    outliers = 40.0 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    is_outlier = np.r_[np.zeros(len(x), bool), np.ones(N_OUTLIERS, bool)]
    return np.vstack([x, outliers]), is_outlier


def test_scale_scores_range_and_direction():
    raw = np.array([0.3, -0.2, 0.1, -0.5])
    scaled = scale_scores(raw, lower_is_anomalous=True)
    assert scaled.min() == 0.0 and scaled.max() == 5.0
    assert np.argmax(scaled) == 3  # the lowest raw value is the most anomalous
    up = scale_scores(raw, lower_is_anomalous=False)
    assert np.argmax(up) == 0
    np.testing.assert_allclose(scaled + up, 5.0)


def test_scale_scores_constant_and_bad_input():
    out = scale_scores(np.full(5, 2.5))
    assert out.tolist() == [0.0] * 5
    assert scale_scores(np.array([])).size == 0
    with pytest.raises(ValueError, match="NaN"):
        scale_scores(np.array([1.0, np.nan]))


@pytest.mark.parametrize("scorer", [isolation_forest_scores, lof_scores, knn_distance_scores])
def test_planted_outliers_rank_top(planted, scorer):
    x, is_outlier = planted
    scores = scorer(x)
    assert scores.shape == (len(x),)
    assert scores.min() == pytest.approx(0.0) and scores.max() == pytest.approx(5.0)
    ranked = is_outlier[np.argsort(-scores, kind="stable")]
    assert recall_at(ranked, N_OUTLIERS) >= N_OUTLIERS - 1
    assert recall_at(ranked, 2 * N_OUTLIERS) == N_OUTLIERS


def test_knn_distance_reads_direction_not_length():
    """On L2-normalised features a vector ten times longer is the same object; one pointing
    elsewhere is the anomaly."""
    rng = np.random.default_rng(3)
    base = np.r_[np.ones(4), np.zeros(4)] + rng.normal(scale=0.05, size=(300, 8))
    base[:20] *= 10.0  # far away in Euclidean terms, same direction
    odd = np.r_[np.zeros(4), np.ones(4)] + rng.normal(scale=0.05, size=(5, 8))
    scores = knn_distance_scores(np.vstack([base, odd]), n_neighbors=5)
    top = np.argsort(-scores, kind="stable")[:5]
    assert set(top) == set(range(300, 305))
    assert scores[:20].max() < 1.0


def test_isolation_forest_seeded(planted):
    x, _ = planted
    a = isolation_forest_scores(x, n_estimators=50, seed=3)
    np.testing.assert_array_equal(a, isolation_forest_scores(x, n_estimators=50, seed=3))
    assert not np.array_equal(a, isolation_forest_scores(x, n_estimators=50, seed=4))


def test_lof_clamps_neighbours_on_small_sets():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(30, 2)), [[8.0, 8.0]]])
    clamped = lof_scores(x, n_neighbors=50)  # more neighbours than points: must not fail
    assert clamped.shape == (31,)
    assert np.all((clamped >= 0) & (clamped <= 5))
    assert np.argmax(lof_scores(x, n_neighbors=10)) == 30
    with pytest.raises(ValueError, match="at least 2"):
        lof_scores(x[:1])


def test_anomaly_table_ranks_by_first_scorer():
    ids = np.array(["a", "b", "c", "d"])
    table = anomaly_table(ids, {"iforest": [1.0, 4.0, 4.0, 0.5], "lof": [5.0, 0.0, 1.0, 2.0]})
    assert list(table.columns) == ["id", "iforest", "lof", "rank"]
    assert table["id"].tolist() == ["b", "c", "a", "d"]  # tie b/c keeps input order
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert table.loc[table["id"] == "a", "lof"].item() == 5.0
    with pytest.raises(ValueError):
        anomaly_table(ids, {})
    with pytest.raises(ValueError, match="scores for"):
        anomaly_table(ids, {"x": [1.0, 2.0]})


def test_recall_at():
    flags = np.array([True, False, True, True, False])
    assert recall_at(flags, 0) == 0
    assert recall_at(flags, 3) == 2
    assert recall_at(flags, 100) == 3


def test_targets_match_by_value_whatever_the_column_type(caplog):
    import logging

    import pandas as pd
    from byol_discovery.stages.anomaly import target_flags

    catalogue = pd.DataFrame({"merger": [1.0, 0.0, np.nan], "flag": [1, 0, 1], "kind": ["Bent", "FRI", "Bent"]},
                             index=["a", "b", "c"])
    assert target_flags(catalogue, {"column": "merger", "values": [1]}).tolist() == [True, False, False]
    assert target_flags(catalogue, {"column": "flag", "values": [True]}).tolist() == [True, False, True]
    assert target_flags(catalogue, {"column": "kind", "values": ["Bent"]}).tolist() == [True, False, True]
    with caplog.at_level(logging.WARNING):
        assert not target_flags(catalogue, {"column": "kind", "values": ["bent"]}).any()
    assert any("no object has kind in ['bent']" in message for message in caplog.messages)


def test_knn_distance_from_a_table_of_every_other_object_is_the_exact_search(planted):
    """With every other object a candidate, the table's scores are the exact search's."""
    x, _ = planted
    n = len(x)
    every_other = np.array([np.r_[0:i, i + 1 : n] for i in range(n)])
    np.testing.assert_allclose(knn_distance_from_neighbours(x, every_other, 10), knn_distance_scores(x, 10),
                               atol=1e-12)


def test_knn_distance_from_the_nearest_in_space_finds_the_planted_outliers(planted):
    from byol_discovery.neighbour_search import exact_neighbours

    x, is_outlier = planted
    scores = knn_distance_from_neighbours(x, exact_neighbours(x, 50)[0], 10)
    ranked = is_outlier[np.argsort(-scores, kind="stable")]
    assert recall_at(ranked, 2 * N_OUTLIERS) == N_OUTLIERS


def test_knn_distance_asks_for_a_bigger_table():
    x = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(ValueError, match=r"knn_neighbors \(10\) exceeds the 5 neighbours.*raise neighbours.k"):
        knn_distance_from_neighbours(x, np.zeros((30, 5), dtype=np.int64), 10)
    with pytest.raises(ValueError, match="shape \\(29, 5\\) for 30 objects; rerun the neighbours rule"):
        knn_distance_from_neighbours(x, np.zeros((29, 5), dtype=np.int64), 3)

"""The nearest-neighbour table: exact and approximate search, LOF from it, "more like this"."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from byol_discovery.anomaly_scores import lof_scores
from byol_discovery.neighbour_search import (
    NeighbourTable,
    approximate_neighbours,
    exact_neighbours,
    load_neighbours,
    lof_from_neighbours,
    neighbour_table,
    recall_at_k,
    resolve_method,
    save_neighbours,
)
from byol_discovery.stages import neighbours
from byol_discovery.stages.anomaly import _lof
from sklearn.datasets import make_blobs
from sklearn.neighbors import LocalOutlierFactor

K = 20


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """4,000 points in 6 blobs in 12 dimensions, plus 40 scattered far out (the top 1 %)."""
    x, _ = make_blobs(n_samples=4000, centers=6, n_features=12, cluster_std=1.0, random_state=1)
    rng = np.random.default_rng(1)
    return np.vstack([x, rng.uniform(-25, 25, (40, 12))]).astype(np.float32)


@pytest.fixture(scope="module")
def exact(blobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return exact_neighbours(blobs, K)


@pytest.fixture(scope="module")
def approximate(blobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return approximate_neighbours(blobs, K)  # the defaults


def test_auto_is_exact_below_the_threshold_and_approximate_from_it():
    assert resolve_method("auto", 99, exact_below=100) == "exact"
    assert resolve_method("auto", 100, exact_below=100) == "approximate"
    assert resolve_method("exact", 10**7, exact_below=100) == "exact"
    with pytest.raises(ValueError, match="'hnsw' is not one of"):
        resolve_method("hnsw", 10, 100)


def test_exact_neighbours_exclude_the_object_itself_and_come_nearest_first(blobs, exact):
    indices, distances = exact
    assert indices.shape == distances.shape == (len(blobs), K)
    assert not (indices == np.arange(len(blobs))[:, None]).any()
    assert np.all(np.diff(distances, axis=1) >= 0)
    np.testing.assert_allclose(distances[5, 0], np.linalg.norm(blobs[5] - blobs[indices[5, 0]]), rtol=1e-6)


def test_approximate_neighbours_recall_the_exact_ones(blobs, exact, approximate):
    indices, distances = approximate
    assert not (indices == np.arange(len(blobs))[:, None]).any()
    assert recall_at_k(indices, exact[0]) >= 0.95
    # Distances are true Euclidean distances of the pairs found, not squared ones.
    np.testing.assert_allclose(distances[7], np.linalg.norm(blobs[7] - blobs[indices[7]], axis=1), rtol=1e-4)


def test_approximate_search_is_reproducible(blobs, approximate):
    again = approximate_neighbours(blobs, K, threads=2)
    np.testing.assert_array_equal(again[0], approximate[0])


def test_duplicates_do_not_count_as_their_own_neighbour():
    x = np.repeat(np.arange(10, dtype=np.float32)[:, None], 3, axis=0)  # every point three times
    indices, distances = approximate_neighbours(x, 4, ef_search=32)
    assert not (indices == np.arange(len(x))[:, None]).any()
    assert np.all(distances[:, :2] == 0)  # its two copies first


def test_lof_from_an_exact_table_is_scikit_learns_lof(blobs, exact):
    reference = LocalOutlierFactor(n_neighbors=K).fit(blobs.astype(np.float64)).negative_outlier_factor_
    np.testing.assert_array_equal(lof_from_neighbours(*exact, K), -reference)
    # fewer neighbours than the table holds: its first columns
    fewer = LocalOutlierFactor(n_neighbors=5).fit(blobs.astype(np.float64)).negative_outlier_factor_
    np.testing.assert_allclose(lof_from_neighbours(*exact, 5), -fewer, rtol=1e-12)


def test_lof_from_approximate_neighbours_ranks_the_top_percent_like_exact_lof(blobs, exact, approximate):
    top = len(blobs) // 100
    exact_top = np.argsort(-lof_from_neighbours(*exact, K))[:top]
    approximate_top = np.argsort(-lof_from_neighbours(*approximate, K))[:top]
    assert np.intersect1d(exact_top, approximate_top).size / top >= 0.9


def test_lof_asks_for_a_bigger_table_when_it_needs_more_neighbours(exact):
    with pytest.raises(ValueError, match="raise neighbours.k"):
        lof_from_neighbours(*exact, K + 1)


def test_anomaly_stage_lof_from_the_table_matches_its_own_search(tmp_path, blobs):
    ids = np.array([f"g{i}" for i in range(len(blobs))], dtype=object)
    path = tmp_path / "neighbours.h5"
    save_neighbours(path, neighbour_table(ids, blobs, K), {})
    from_table = _lof(blobs, K, load_neighbours(path, ids), logging.getLogger("test"))
    np.testing.assert_allclose(from_table, lof_scores(blobs, K), atol=1e-12)


def test_table_round_trip_and_more_like_this(tmp_path, blobs):
    ids = np.array([f"g{i}" for i in range(len(blobs))], dtype=object)
    table = neighbour_table(ids, blobs, K, method="auto", exact_below=1000)
    assert table.method == "approximate"
    path = tmp_path / "neighbours" / "neighbours.h5"
    save_neighbours(path, table, {"features": "x.h5"})
    loaded = load_neighbours(path, ids)
    assert loaded.method == "approximate" and loaded.k == K
    np.testing.assert_array_equal(loaded.indices, table.indices)
    similar = loaded.nearest(["g3", "g10"], 4)
    assert list(similar.columns) == ["query", "rank", "id", "distance"]
    assert list(similar["query"]) == ["g3"] * 4 + ["g10"] * 4
    assert list(similar["id"][:4]) == [f"g{i}" for i in table.indices[3, :4]]
    assert np.all(np.diff(similar["distance"].to_numpy()[:4]) >= 0)
    with pytest.raises(ValueError, match=r"\['nope'\] are not objects of this dataset"):
        loaded.nearest(["g1", "nope"], 3)
    with pytest.raises(ValueError, match="raise neighbours.k"):
        loaded.nearest(["g1"], K + 1)
    with pytest.raises(ValueError, match="rerun the neighbours rule"):
        load_neighbours(path, ids[::-1])


def test_k_is_clamped_to_the_objects_there_are():
    ids = np.array(["a", "b", "c"], dtype=object)
    table = neighbour_table(ids, np.array([[0.0], [1.0], [3.0]]), 50)
    assert table.k == 2
    assert list(table.nearest("a", 2)["id"]) == ["b", "c"]


def test_neighbours_stage_logs_which_search_ran(tmp_path, blobs, caplog):
    from byol_discovery.io.store import save_features

    ids = np.array([f"g{i}" for i in range(len(blobs))], dtype=object)
    save_features(tmp_path / "pca.h5", ids, blobs, {})
    settings = {"method": "auto", "exact_below": 100_000, "k": 10, "hnsw": {"m": 16, "ef_construction": 40,
                                                                              "ef_search": 64}}
    with caplog.at_level("INFO", logger="byol_discovery.stages"):
        neighbours(tmp_path / "pca.h5", tmp_path / "neighbours.h5", settings, lof_neighbors=K)
    assert "exact nearest-neighbour search (method auto" in caplog.text
    assert load_neighbours(tmp_path / "neighbours.h5").k == K  # LOF's 20 beat k's 10
    assert isinstance(load_neighbours(tmp_path / "neighbours.h5"), NeighbourTable)


def test_anomaly_stage_knn_distance_reads_the_approximate_table_and_builds_no_second_index(blobs, monkeypatch):
    """Above the exact threshold the kNN distance comes from the table's candidates: neither a
    graph nor an exact search of the objects is made, and its top 1 % is the exact search's."""
    from byol_discovery import anomaly_scores
    from byol_discovery import neighbour_search as neighbours_module
    from byol_discovery.stages.anomaly import _knn_distance

    ids = np.array([f"g{i}" for i in range(len(blobs))], dtype=object)
    table = neighbour_table(ids, blobs, 50, method="approximate")
    exact_scores = anomaly_scores.knn_distance_scores(blobs, 10)

    def no_search(*args, **kwargs):
        raise AssertionError("a second neighbour search of the objects")

    monkeypatch.setattr(neighbours_module, "hnsw_index", no_search)
    monkeypatch.setattr(anomaly_scores, "NearestNeighbors", no_search)
    scores = _knn_distance(blobs, 10, table, logging.getLogger("test"))
    top = len(blobs) // 100
    overlap = np.intersect1d(np.argsort(-scores)[:top], np.argsort(-exact_scores)[:top]).size / top
    assert overlap >= 0.9


def test_anomaly_stage_knn_distance_on_an_exact_table_keeps_the_exact_numbers(blobs):
    from byol_discovery import anomaly_scores
    from byol_discovery.stages.anomaly import _knn_distance

    ids = np.array([f"g{i}" for i in range(len(blobs))], dtype=object)
    table = neighbour_table(ids, blobs, K, method="auto")
    assert table.method == "exact"
    np.testing.assert_array_equal(_knn_distance(blobs, 10, table, logging.getLogger("test")),
                                  anomaly_scores.knn_distance_scores(blobs, 10))

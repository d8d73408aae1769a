"""The report home page's tables: the stages' CSV files rounded, one row per ranking or representation."""

from __future__ import annotations

import pandas as pd
from byol_discovery import key_figures_tables


def knn_rows() -> pd.DataFrame:
    columns = ["representation", "label_set", "method", "metric", "chance", "accuracy_mean", "accuracy_sem"]
    rows = [
        ("byol", "morphology", "knn", "euclidean", 0.3, 0.61041666, 0.0206122),
        ("byol", "morphology", "knn", "cosine", 0.3, 0.60625, 0.0241463),
        ("byol", "morphology", "linear_probe", "linear", 0.3, 0.79583, 0.0041666),
        ("pixel_pca", "morphology", "knn", "euclidean", 0.3, 0.65625, 0.0199463),
        ("pixel_pca", "morphology", "knn", "cosine", 0.3, 0.65416, 0.0167820),
        ("pixel_pca", "morphology", "linear_probe", "linear", 0.3, 0.74166, 0.0339781),
    ]
    return pd.DataFrame(rows, columns=columns)


def test_accuracy_table_has_one_row_per_representation_and_rounded_cells() -> None:
    table = key_figures_tables.accuracy_table(knn_rows())
    assert list(table.columns) == [
        "label set", "representation", "chance", "kNN euclidean", "kNN cosine", "linear probe"
    ]
    assert list(table["representation"]) == ["byol", "pixel_pca"]
    byol = table.iloc[0]
    assert (byol["chance"], byol["kNN euclidean"], byol["linear probe"]) == ("0.300", "0.610 ± 0.021", "0.796 ± 0.004")


def test_accuracy_table_without_labels_says_why() -> None:
    table = key_figures_tables.accuracy_table(knn_rows().iloc[0:0])
    assert len(table) == 1 and "validate.label_columns" in table.iloc[0, 0]


def test_targets_table_lists_each_score_then_each_strategy_against_a_random_order() -> None:
    recovery = pd.DataFrame(
        {"scorer": ["isolation_forest", "lof", "knn_distance"], "top_n": [24, 24, 24], "targets_found": [9, 10, 7],
         "targets_total": [24, 24, 24], "expected_random": [2.4, 2.4, 2.4]}
    )
    discovery = pd.DataFrame(
        {"strategy": ["neighbour_score", "classifier", "random"], "inspected": [30, 30, 30], "found": [12, 14, 4],
         "targets_total": [24, 24, 24], "expected_random": [3.0, 3.0, 3.0]}
    )
    table = key_figures_tables.targets_table(recovery, discovery)
    assert list(table["ranking"]) == [
        "anomaly score: isolation forest",
        "anomaly score: local outlier factor",
        "anomaly score: distance to the nearest neighbours (cosine)",
        "simulated person: NeighbourScore",
        "simulated person: a classifier of your labels",
        "simulated person: a random order",
    ]
    assert list(table["targets found"]) == ["9 of 24", "10 of 24", "7 of 24", "12 of 24", "14 of 24", "4 of 24"]
    assert list(table["objects inspected"]) == [24, 24, 24, 30, 30, 30]
    assert list(table["a random order finds"]) == ["2.4", "2.4", "2.4", "3.0", "3.0", "3.0"]


def test_targets_table_without_targets_says_why() -> None:
    empty = key_figures_tables.targets_table(pd.DataFrame(), pd.DataFrame())
    assert len(empty) == 1 and "anomaly.target" in empty.iloc[0, 0]

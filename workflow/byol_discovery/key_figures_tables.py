"""The run's key figures, rounded for reading: what the report's home page shows per dataset.

Two small tables from the stages' own outputs: the kNN and linear-probe accuracy of every
representation (``validate/knn_accuracy.csv``), and how many known targets the anomaly
scores put in their top N and the simulated person found (``anomaly/target_recovery.csv``,
``active_learning/discovery_summary.csv``), each against a random order. A table with nothing to
show holds one row saying why, so the page says it rather than showing an empty table.
"""

from __future__ import annotations

import pandas as pd

NO_LABELS = "no labelled objects (validate.label_columns is empty or matches no catalogue values)"
NO_TARGETS = "no targets (anomaly.target names none in the catalogue)"
# The rankings' names in the stages' tables, as the page says them.
RANKINGS = {
    "isolation_forest": "isolation forest",
    "lof": "local outlier factor",
    "knn_distance": "distance to the nearest neighbours (cosine)",
    "unsupervised": "the anomaly score alone",
    "neighbour_score": "NeighbourScore",
    "gp_ei": "Gaussian-process expected improvement",
    "classifier": "a classifier of your labels",
    "random": "a random order",
}


def _mean_and_error(row: pd.Series) -> str:
    return f"{row['accuracy_mean']:.3f} ± {row['accuracy_sem']:.3f}"


def accuracy_table(knn: pd.DataFrame) -> pd.DataFrame:
    """One row per label set and representation (in the file's order), one column per
    method and metric (``kNN euclidean``, ``kNN cosine``, ``linear probe``): mean ± standard error."""
    if knn.empty:
        return pd.DataFrame({"label set": [NO_LABELS]})
    knn = knn.assign(
        column=[("kNN " + metric) if method == "knn" else method.replace("_", " ")
                for method, metric in zip(knn["method"], knn["metric"], strict=True)],
        value=knn.apply(_mean_and_error, axis=1),
    )
    order = list(dict.fromkeys(zip(knn["label_set"], knn["representation"], strict=True)))
    table = knn.pivot_table(index=["label_set", "representation"], columns="column", values="value", aggfunc="first")
    table = table.reindex(order)[list(dict.fromkeys(knn["column"]))]
    chance = knn.groupby("label_set")["chance"].first()
    table.insert(0, "chance", [f"{chance[label_set]:.3f}" for label_set, _ in table.index])
    table = table.reset_index().rename(columns={"label_set": "label set"})
    return table.fillna("")


def targets_table(recovery: pd.DataFrame, discovery: pd.DataFrame) -> pd.DataFrame:
    """One row per ranking: each anomaly score's top N, then each strategy of the simulated
    person; the targets it found, of how many, and what a random order finds on average."""
    rows = [
        {
            "ranking": f"anomaly score: {RANKINGS.get(row.scorer, row.scorer)}",
            "objects inspected": int(row.top_n),
            "targets found": f"{int(row.targets_found)} of {int(row.targets_total)}",
            "a random order finds": f"{row.expected_random:.1f}",
        }
        for row in recovery.itertuples()
    ] + [
        {
            "ranking": f"simulated person: {RANKINGS.get(row.strategy, row.strategy)}",
            "objects inspected": int(row.inspected),
            "targets found": f"{int(row.found)} of {int(row.targets_total)}",
            "a random order finds": f"{row.expected_random:.1f}",
        }
        for row in discovery.itertuples()
    ]
    return pd.DataFrame(rows) if rows else pd.DataFrame({"ranking": [NO_TARGETS]})

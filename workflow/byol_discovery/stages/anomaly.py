"""Stage ``anomaly``: isolation forest, LOF and kNN-distance scores, ranked."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.io.store import ImageStore, load_features
from byol_discovery.io.tables import with_catalogue, write_ranked_table
from byol_discovery.neighbour_search import NeighbourTable, load_neighbours
from byol_discovery.settings import AnomalySettings, TargetSettings, stage_settings_of
from byol_discovery.stages.common import LOG, Settings, checked_catalogue, store_columns

SCORERS = ("isolation_forest", "lof", "knn_distance")


def anomaly(
    store: str | Path,
    pca_features: str | Path,
    outputs: Mapping[str, str | Path],
    settings: AnomalySettings | Settings,
    log: logging.Logger = LOG,
    neighbours: str | Path | None = None,
) -> pd.DataFrame:
    """Isolation forest, LOF and kNN-distance scores (0-5, 5 most anomalous), ranked by
    ``rank_by``; gallery of the top N.

    ``outputs`` keys: ranking (CSV), ranking_ecsv (the same with units), gallery, evaluation
    (targets found among the top N, where the catalogue says which objects are the targets).
    LOF and, above the table's exact-search threshold, the kNN distance read the
    ``neighbours`` table (neighbours/neighbours.h5) where one is given, else search the
    neighbours themselves: no second index of the objects is built.
    """
    from byol_discovery import anomaly_scores, plotting

    options = stage_settings_of(AnomalySettings, settings, "anomaly")
    ids, x, _ = load_features(pca_features)
    catalogue = checked_catalogue(store, ids, pca_features).set_index("id")  # before the scoring
    table = load_neighbours(neighbours, ids) if neighbours is not None else None
    scores = {
        "isolation_forest": anomaly_scores.isolation_forest_scores(x, options.n_estimators, options.seed),
        "lof": _lof(x, options.lof_neighbors, table, log),
        "knn_distance": _knn_distance(x, options.knn_neighbors, table, log),
    }
    rank_by = options.rank_by
    # anomaly_table ranks by its first scorer.
    ranking = anomaly_scores.anomaly_table(ids, {rank_by: scores[rank_by], **scores})
    with ImageStore(store) as images:
        top = ranking.head(options.top_n)
        position = {object_id: i for i, object_id in enumerate(ids)}
        order = [position[object_id] for object_id in top["id"]]
        gallery = np.stack([images.images[i] for i in order]) if order else np.zeros((0, 1, 8, 8), np.uint8)
        plotting.image_gallery(
            gallery,
            outputs["gallery"],
            # The id too: what a person writes in labels.csv about an object seen here.
            titles=[f"#{r} {score:.2f}\n{i}" for r, score, i in top[["rank", rank_by, "id"]].to_numpy()],
            title=f"Most anomalous ({rank_by.replace('_', ' ')})",
        )
    target = options.target
    # The targets stay out of ranking.csv (the list a person labels from): only their counts
    # go to the recovery table.
    evaluation_table = _target_recovery(ranking, catalogue, target, options.top_n)
    leave_out = [target.column] if target else []
    write_ranked_table(outputs["ranking"], outputs["ranking_ecsv"],
                       with_catalogue(ranking, catalogue.reset_index(), leave_out))
    write_csv_atomic(outputs["evaluation"], evaluation_table)
    for row in evaluation_table.to_dict("records"):
        log.info("anomaly %s", row)
    return ranking


def _lof(x: np.ndarray, n_neighbors: int, table: NeighbourTable | None, log: logging.Logger) -> np.ndarray:
    """LOF scores (0-5) from the neighbours table where there is one, else by exact search."""
    from byol_discovery import anomaly_scores
    from byol_discovery.neighbour_search import lof_from_neighbours

    if table is None:
        log.info("LOF: exact neighbour search")
        return anomaly_scores.lof_scores(x, n_neighbors)
    n_neighbors = min(n_neighbors, len(table.ids) - 1)
    log.info("LOF: %d neighbours from the neighbours table (%s search)", n_neighbors, table.method)
    return anomaly_scores.scale_scores(lof_from_neighbours(table.indices, table.distances, n_neighbors),
                                lower_is_anomalous=False)


def _knn_distance(x: np.ndarray, n_neighbors: int, table: NeighbourTable | None, log: logging.Logger) -> np.ndarray:
    """kNN-distance scores (0-5): by an exact search where the neighbours table is exact (or
    absent), the numbers exact search always gave; from the approximate table's candidates
    above the size threshold, so the survey's one HNSW graph serves this score too."""
    from byol_discovery import anomaly_scores

    if table is None or table.method == "exact":
        log.info("kNN distance: exact search of %d neighbours in direction", n_neighbors)
        return anomaly_scores.knn_distance_scores(x, n_neighbors)
    log.info("kNN distance: %d neighbours in direction among the neighbours table's %d (%s search)",
             n_neighbors, table.k, table.method)
    return anomaly_scores.knn_distance_from_neighbours(x, table.indices, n_neighbors)


def target_flags(catalogue: pd.DataFrame, target: TargetSettings | Settings) -> pd.Series:
    """True for the catalogue rows whose target ``column`` holds one of its ``values``.

    Numbers match by value (``1`` matches a float column's ``1.0``, ``true`` a 0/1 column's
    ``1``), anything else by its text. No match at all is logged: it usually means the values
    are spelt otherwise in the catalogue, and every recovery figure would be empty."""
    target = stage_settings_of(TargetSettings, target, "anomaly.target")
    values = pd.Series(
        store_columns(catalogue, [target.column], "anomaly.target.column")[target.column], index=catalogue.index
    )
    wanted = list(target.values)
    flags = values.astype(str).isin([str(v) for v in wanted])
    numbers = [float(v) for v in wanted if isinstance(v, (int, float))]  # bool is an int: true -> 1.0
    if numbers:
        flags |= pd.to_numeric(values, errors="coerce").isin(numbers)
    if not flags.any():
        LOG.warning("anomaly.target: no object has %s in %s; the column holds e.g. %s",
                    target.column, wanted, sorted(values.astype(str).unique())[:5])
    return flags


def _target_recovery(
    ranking: pd.DataFrame, catalogue: pd.DataFrame, target: TargetSettings | None, top_n: int
) -> pd.DataFrame:
    """How many targets each ranking puts in its top N, against a random order."""
    from byol_discovery import anomaly_scores

    columns = [
        "scorer",
        "top_n",
        "targets_found",
        "targets_total",
        "expected_random",
        "median_score_targets",
        "median_score_all",
    ]
    if not target:
        return pd.DataFrame(columns=columns)
    is_target = target_flags(catalogue.loc[ranking["id"]], target).to_numpy()
    rows = []
    for scorer in SCORERS:
        order = np.argsort(-ranking[scorer].to_numpy(), kind="stable")
        rows.append(
            {
                "scorer": scorer,
                "top_n": top_n,
                "targets_found": anomaly_scores.recall_at(is_target[order], top_n),
                "targets_total": int(is_target.sum()),
                "expected_random": min(top_n, len(is_target)) * is_target.mean(),
                "median_score_targets": float(np.median(ranking[scorer][is_target])) if is_target.any() else np.nan,
                "median_score_all": float(np.median(ranking[scorer])),
            }
        )
    return pd.DataFrame(rows, columns=columns)

"""Stage ``active_learning``: the anomaly ranking re-ranked by a person's labels, and the
discovery curves of a simulated person where the catalogue says which objects are targets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.io.store import ImageStore, load_features
from byol_discovery.io.tables import with_catalogue, write_ranked_table
from byol_discovery.settings import ActiveLearningSettings, TargetSettings, stage_settings_of
from byol_discovery.stages.common import LOG, Settings, checked_catalogue

CURVE_COLUMNS = ["strategy", "round", "inspected", "id", "is_target", "found"]
# The column of ranking.csv whose order each active_learning.method follows (cold starts aside).
RANKED_BY = {"neighbour_score": "neighbour_score", "classifier": "classifier_priority", "gp_ei": "expected_improvement"}


def _aligned_scores(ranking: str | Path, ids: np.ndarray, column: str) -> np.ndarray:
    """The anomaly score ``column`` of ranking.csv in feature order. Only the score is read:
    earlier outputs never become features (Astronomaly's leak)."""
    table = pd.read_csv(ranking, usecols=["id", column], dtype={"id": str}, keep_default_na=False)
    if len(table) != len(ids) or set(table["id"]) != {str(i) for i in ids}:
        raise ValueError(f"{ranking} and the features hold different objects; rerun the anomaly stage")
    return table.set_index("id").loc[[str(i) for i in ids], column].to_numpy(dtype=np.float64)


def rerank(
    ids: np.ndarray, scores: np.ndarray, x: np.ndarray, labels: np.ndarray,
    settings: ActiveLearningSettings | Settings,
) -> pd.DataFrame:
    """The person's ranking: NeighbourScore, GP expected improvement and the classifier's
    priority (interest_probability + exploration) given ``labels`` (NaN = unlabelled);
    ``rank`` follows the settings' ``method`` over the unlabelled objects,
    the labelled ones ranked after them (the top of the table is what to look at next).
    Sorted by rank."""
    from byol_discovery import active_learning_strategies as al

    options = stage_settings_of(ActiveLearningSettings, settings, "active_learning")
    seed, column = options.seed, options.score
    frame = pd.DataFrame({"id": ids, column: scores, "label": pd.array(labels, dtype="Float64").astype("Int64")})
    frame["neighbour_score"] = al.neighbour_score(scores, x, labels, options.alpha, options.n_estimators, seed)
    has_labels = bool(np.isfinite(labels).any())
    if has_labels:
        gp = al.gp_expected_improvement(x, labels, options.xi, seed)
        frame["gp_mean"], frame["gp_sd"], frame["expected_improvement"] = gp.mean, gp.sd, gp.ei
    else:  # no labels yet: nothing to regress
        frame["gp_mean"] = frame["gp_sd"] = frame["expected_improvement"] = np.nan
    interest = al.classifier_priority(
        scores, x, labels, options.interest_label, options.explore, options.classifier_c
    )
    frame["interest_probability"], frame["classifier_priority"] = interest.probability, interest.priority
    if options.method == "neighbour_score":
        order = al.order_by(frame[RANKED_BY["neighbour_score"]], scores)
    elif options.method == "classifier":  # with its cold start: half the first page spread over the data
        order = al.strategy_order("classifier", scores, x, labels, options.top_n, options, seed)
    elif has_labels:
        order = al.order_by(frame[RANKED_BY["gp_ei"]], frame["gp_mean"])
    else:  # the GP's cold start: picks spread along the first principal component
        order = al.strategy_order("gp_ei", scores, x, labels, options.top_n, options, seed)
    labelled = np.isfinite(labels)[order]
    frame = frame.iloc[np.concatenate([order[~labelled], order[labelled]])].reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    return frame


# Spread of the GP's mean over the unlabelled objects (label units, 0-5) below which it has
# learnt nothing from the labels: its expected improvement then orders by noise.
FLAT_GP_SPREAD = 0.05


def _warn_if_the_gp_learnt_nothing(table: pd.DataFrame, method: str, log: logging.Logger) -> None:
    means = table.loc[table["label"].isna(), "gp_mean"].dropna()
    if method == "gp_ei" and len(means) and means.max() - means.min() < FLAT_GP_SPREAD:
        log.warning(
            "the Gaussian process finds no structure in the %d labels (its mean is %.3f-%.3f for every "
            "unlabelled object): its ranking is close to random; label more objects, especially ones you "
            "find interesting, or use active_learning.method: neighbour_score",
            table["label"].notna().sum(), means.min(), means.max(),
        )


def _simulate(
    ids: np.ndarray, scores: np.ndarray, x: np.ndarray, is_target: np.ndarray, options: ActiveLearningSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Discovery curves (one row per inspected object) and their summary, every strategy."""
    from byol_discovery import active_learning_strategies as al

    simulate = options.simulate
    curves = al.discovery_curves(scores, x, is_target, simulate.rounds, simulate.batch, options, options.seed)
    curves["id"] = ids[curves["index"].to_numpy()]
    summary = al.curve_summary(curves, int(is_target.sum()), len(ids))
    return curves[CURVE_COLUMNS], summary


def _gallery(images: object, ids: np.ndarray, table: pd.DataFrame, path: str | Path, top_n: int) -> None:
    """The next ``top_n`` unlabelled objects of the re-ranked list: what to label next."""
    from byol_discovery import plotting

    position = {str(object_id): i for i, object_id in enumerate(ids)}
    todo = table[table["label"].isna()].head(top_n)
    index = [position[str(object_id)] for object_id in todo["id"]]
    # h5py reads in increasing index order; put the images back into rank order afterwards.
    order = np.argsort(index)
    stack = images[np.asarray(index)[order]] if index else np.zeros((0, 1, 8, 8), np.uint8)
    stack = stack[np.argsort(order)] if index else stack
    plotting.image_gallery(
        stack,
        path,
        titles=[f"#{r} {object_id}" for r, object_id in zip(todo["rank"], todo["id"], strict=True)],
        title="Next to label: rank and id (for labels.csv)",
    )


def active_learning(
    ranking: str | Path,
    pca_features: str | Path,
    store: str | Path,
    labels: str | Path | None,
    outputs: Mapping[str, str | Path],
    settings: ActiveLearningSettings | Settings,
    target: TargetSettings | Settings | None = None,
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """Re-rank the anomaly ranking with the person's ``labels`` CSV (None: no labels yet),
    and run the simulated person where ``target`` (catalogue column and values) is given.

    ``outputs`` keys: ranking (re-ranked table, CSV), ranking_ecsv (the same with units), gallery
    (next to label), curve (one row per inspected object per strategy), summary (targets found
    per strategy), curve_plot.
    """
    from byol_discovery import active_learning_strategies as al
    from byol_discovery import clustering, plotting
    from byol_discovery.stages.anomaly import target_flags

    options = stage_settings_of(ActiveLearningSettings, settings, "active_learning")
    target = stage_settings_of(TargetSettings, target, "anomaly.target") if target else None
    ids, features, _ = load_features(pca_features)
    catalogue = checked_catalogue(store, ids, pca_features)  # before the regressors are fitted
    x = clustering.leading_components(features, options.max_dims)
    scores = _aligned_scores(ranking, ids, options.score)
    person = al.read_labels(labels, known_ids=ids) if labels else al.no_labels()
    log.info("%d labelled objects from %s", len(person), labels or "no labels file")
    table = rerank(ids, scores, x, al.label_vector(ids, person), options)
    _warn_if_the_gp_learnt_nothing(table, options.method, log)
    with ImageStore(store) as images:
        _gallery(images.images, ids, table, outputs["gallery"], options.top_n)
    curves = pd.DataFrame(columns=CURVE_COLUMNS)
    n_targets = 0
    if target:
        flags = target_flags(catalogue.set_index("id"), target)
        # Not a column of ranking.csv: that is the list a person reads while labelling, and the
        # catalogue's answer beside each object would no longer leave their labels their own.
        is_target = flags.loc[ids].to_numpy()
        curves, summary = _simulate(ids, scores, x, is_target, options)
        n_targets = int(is_target.sum())
    else:
        log.info("no anomaly target in the catalogue: no simulated person")
        summary = al.curve_summary(curves, 0, len(ids))
    leave_out = [target.column] if target else []
    write_ranked_table(outputs["ranking"], outputs["ranking_ecsv"], with_catalogue(table, catalogue, leave_out))
    write_csv_atomic(outputs["curve"], curves)
    write_csv_atomic(outputs["summary"], summary)
    plotting.discovery_curves(
        curves,
        outputs["curve_plot"],
        n_targets,
        f"Simulated person: {options.simulate.rounds} rounds of {options.simulate.batch}",
        batch=options.simulate.batch,
    )
    for row in summary.to_dict("records"):
        log.info("discovery %s", row)
    return table

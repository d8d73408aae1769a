"""Active learning on anomaly scores: a person's relevance labels re-rank the list.

Three re-rankers: NeighbourScore and GP expected improvement re-implemented from the
descriptions of Astronomaly (Lochner & Bassett 2021, MichelleLochner/astronomaly) and its
Protege-style extension, and a classifier of the person's interest:

- NeighbourScore: an anomaly score ``s`` in [0, 5] is pulled towards the person's
  predicted interest ``u`` near labelled objects and left alone far from them:
  ``final = s * tanh(exp(alpha * d / mean(d)) - 1 + artanh(0.1 + 0.85 u / 5))``, with ``d``
  the distance to the nearest labelled object and ``u`` a random forest's prediction of
  the label.
- Classifier: a logistic regression learns from the labels which objects interest the
  person, retrained whenever labels change, plus an exploration bonus for objects far from
  every labelled one (the part of Astronomaly's Protege that a GP's uncertainty plays).
- Gaussian-process expected improvement: a GP (Matern nu=1.5 plus white noise) regresses
  the labels on the PCA features, and objects are ranked by their expected improvement over
  the best label so far; before any label exists the first picks are spread along the
  first principal component.

The regressors see only the feature matrix they are given, never an earlier output
(scores, predictions, ranks): feeding previous outputs back in as features is a known
Astronomaly bug that makes a ranking confirm itself.

Labels come from a CSV a person writes (``id,label`` with labels 0-5), or, to measure the
method, from a simulated person who answers from the catalogue.
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.distance import pdist
from scipy.stats import norm
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.neighbors import NearestNeighbors

from byol_discovery.settings import ActiveLearningSettings, stage_settings_of

LABEL_MIN, LABEL_MAX = 0, 5
STRATEGIES = ("unsupervised", "neighbour_score", "gp_ei", "classifier", "random")
_PREDICT_BATCH = 20_000  # rows per GP/forest prediction call: bounds memory at any N


class LabelFileError(ValueError):
    """A labels CSV that cannot be used; the message names the file and the line."""


# ----------------------------------------------------------------------------- label files


def read_labels(path: str | os.PathLike[str], known_ids: Sequence[Any] | None = None) -> pd.DataFrame:
    """Read a person's labels CSV: columns ``id`` and ``label`` (integer 0-5), others ignored.

    Returns a DataFrame (id, label, line) in file order. Blank lines, and rows whose label
    cell is empty (listed, not judged yet), are skipped. A label may be written ``3.0`` (as
    spreadsheets write an integer column with blanks in it). Raises :class:`LabelFileError`
    naming the line for a missing column, an empty id, an id not in ``known_ids`` (when
    given), a label that is not an integer from 0 to 5, or an id labelled twice (naming the
    first line too).
    """
    known = None if known_ids is None else {str(i) for i in known_ids}
    rows: list[tuple[str, int, int]] = []
    first_line: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets add a BOM
        reader = csv.reader(handle)
        try:
            id_col, label_col = _header_columns(path, reader)
            for record in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in record):
                    continue
                parsed = _parse_row(path, line, record, id_col, label_col, known)
                if parsed is None:
                    continue
                object_id, label = parsed
                if object_id in first_line:
                    raise LabelFileError(f"{path}, line {line}: id {object_id!r} is labelled again "
                                         f"(first on line {first_line[object_id]})")
                first_line[object_id] = line
                rows.append((object_id, label, line))
        except UnicodeDecodeError as error:
            # A spreadsheet's "CSV" in a Windows code page: the line is where reading stopped.
            raise LabelFileError(f"{path}, after line {reader.line_num}: not UTF-8 text ({error.reason} at byte "
                                 f"{error.start} of a read block); save it as CSV UTF-8") from None
    return pd.DataFrame(rows, columns=["id", "label", "line"]).astype({"label": np.int64, "line": np.int64})


def _header_columns(path: str | os.PathLike[str], reader: Any) -> tuple[int, int]:
    """Positions of the id and label columns in the header row."""
    header = next(reader, None)
    names = [cell.strip().lower() for cell in header] if header else []
    missing = [name for name in ("id", "label") if name not in names]
    if missing:
        # One cell holding both names: a spreadsheet saved with another separator.
        single = header[0] if header and len(header) == 1 else ""
        separator = "semicolons" if ";" in single else "tabs" if "\t" in single else None
        hint = f"; the file looks separated by {separator}: save it with commas" if separator else ""
        raise LabelFileError(
            f"{path}, line 1: the header must name the columns 'id' and 'label' (missing {missing}; "
            f"got {header or 'an empty file'}){hint}"
        )
    repeated = sorted(name for name in ("id", "label") if names.count(name) > 1)
    if repeated:
        raise LabelFileError(f"{path}, line 1: the header names {repeated} more than once ({header})")
    return names.index("id"), names.index("label")


def _parse_row(
    path: str | os.PathLike[str], line: int, record: list[str], id_col: int, label_col: int, known: set[str] | None
) -> tuple[str, int] | None:
    """(id, label) of one CSV row, None where the label cell is empty, or a LabelFileError
    naming the line."""
    if len(record) <= max(id_col, label_col):
        raise LabelFileError(f"{path}, line {line}: expected an id and a label, got {record}")
    object_id, text = record[id_col].strip(), record[label_col].strip()
    if not object_id:
        raise LabelFileError(f"{path}, line {line}: empty id")
    if known is not None and object_id not in known:
        same_but_case = next((name for name in known if name.lower() == object_id.lower()), None)
        hint = f" (did you mean {same_but_case!r}? ids are case-sensitive)" if same_but_case else ""
        raise LabelFileError(f"{path}, line {line}: id {object_id!r} is not an object of this dataset{hint}")
    if not text:
        return None
    # A plain decimal integer only: int() would also take "0_5" (5) and non-ASCII digits.
    label = int(text.split(".")[0]) if re.fullmatch(r"[+-]?[0-9]+(\.0*)?", text) else None
    if label is None or not LABEL_MIN <= label <= LABEL_MAX:
        raise LabelFileError(
            f"{path}, line {line}: label {text!r} for {object_id!r} is not an integer from {LABEL_MIN} to {LABEL_MAX}"
        )
    return object_id, label


def no_labels() -> pd.DataFrame:
    """The labels table of a person who has not labelled anything yet."""
    return pd.DataFrame({"id": pd.Series(dtype=object), "label": pd.Series(dtype=np.int64),
                         "line": pd.Series(dtype=np.int64)})


def label_vector(ids: Sequence[Any], labels: pd.DataFrame) -> np.ndarray:
    """Labels aligned with ``ids`` as floats, NaN where an object is unlabelled."""
    lookup = dict(zip(labels["id"].astype(str), labels["label"].astype(float), strict=True))
    return np.array([lookup.get(str(i), np.nan) for i in ids], dtype=np.float64)


# ----------------------------------------------------------------------------- NeighbourScore


def _features(x: ArrayLike) -> np.ndarray:
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"features must be 2-D (n_objects, n_features), got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("features contain NaN or infinite values")
    return data


def _labelled(labels: ArrayLike, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices of labelled objects, their labels) from a length-n vector with NaN = unlabelled."""
    values = np.asarray(labels, dtype=np.float64).ravel()
    if values.shape[0] != n:
        raise ValueError(f"{values.shape[0]} labels for {n} objects")
    index = np.flatnonzero(np.isfinite(values))
    if np.any((values[index] < LABEL_MIN) | (values[index] > LABEL_MAX)):
        raise ValueError(f"labels must lie in [{LABEL_MIN}, {LABEL_MAX}]")
    return index, values[index]


def _batched(predict: Callable[[np.ndarray], Any], x: np.ndarray) -> list[Any]:
    return [predict(x[start : start + _PREDICT_BATCH]) for start in range(0, x.shape[0], _PREDICT_BATCH)]


def neighbour_score(
    scores: ArrayLike,
    x: ArrayLike,
    labels: ArrayLike,
    alpha: float = 1.0,
    n_estimators: int = 200,
    seed: int = 0,
    n_jobs: int | None = None,
) -> np.ndarray:
    """NeighbourScore re-ranking of anomaly scores ``s`` (0-5) given relevance ``labels``.

    ``labels`` is aligned with ``scores`` (NaN = unlabelled). With no labels the scores come
    back unchanged. Otherwise, for every object: ``d`` = Euclidean distance in ``x`` to the
    nearest labelled object (0 for labelled ones); ``u`` = a random forest's (``n_estimators``
    trees, seeded) prediction of the label, clipped to [0.1, 5]; ``f = 0.1 + 0.85 u / 5``;
    ``delta = d / mean(d)``; ``final = s * tanh(exp(alpha * delta) - 1 + artanh(f))``. At a
    labelled point this is ``s * f``; far from every label it tends to ``s``.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    data = _features(x)
    if data.shape[0] != s.shape[0]:
        raise ValueError(f"{s.shape[0]} scores for {data.shape[0]} feature rows")
    index, values = _labelled(labels, s.shape[0])
    if index.size == 0:
        return s.copy()
    distance = NearestNeighbors(n_neighbors=1).fit(data[index]).kneighbors(data)[0][:, 0]
    distance[index] = 0.0  # exact zero even where float rounding says otherwise
    forest = RandomForestRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
    forest.fit(data[index], values)
    interest = np.clip(np.concatenate(_batched(forest.predict, data)), 0.1, 5.0)
    f = 0.1 + 0.85 * interest / 5.0
    mean_distance = distance.mean()
    delta = distance / mean_distance if mean_distance > 0 else np.zeros_like(distance)
    # exp overflows to inf for delta >~ 700: tanh(inf) = 1, which is the intended limit.
    with np.errstate(over="ignore"):
        return s * np.tanh(np.expm1(alpha * delta) + np.arctanh(f))


# ----------------------------------------------------------------------------- GP and EI


def initial_picks(x: ArrayLike, n: int) -> np.ndarray:
    """``n`` objects spread evenly along the first principal component (cold start).

    The objects at the quantiles (i + 0.5) / n of the PC1 order, so the first labels cover
    the whole range of the dominant direction of variation instead of one corner.
    """
    data = _features(x)
    n = min(n, data.shape[0])
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if data.shape[0] == 1 or data.shape[1] == 0:
        return np.arange(n, dtype=np.int64)
    pc1 = PCA(n_components=1, svd_solver="full").fit_transform(data)[:, 0]
    order = np.argsort(pc1, kind="stable")
    positions = np.floor((np.arange(n) + 0.5) * data.shape[0] / n).astype(np.int64)
    return order[positions]


def expected_improvement(mu: ArrayLike, sigma: ArrayLike, best: float, xi: float = 0.01) -> np.ndarray:
    """EI = (mu - best - xi) Phi(z) + sigma phi(z), z = (mu - best - xi) / sigma (maximising).

    Where sigma is 0 the improvement is certain: max(mu - best - xi, 0).
    """
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    gain = mu - best - xi
    ei = np.maximum(gain, 0.0)
    positive = sigma > 0
    z = gain[positive] / sigma[positive]
    ei[positive] = gain[positive] * norm.cdf(z) + sigma[positive] * norm.pdf(z)
    return ei


def _length_scale(data: np.ndarray, seed: int, sample: int = 500) -> float:
    """Median pairwise distance of a seeded sample: the natural scale of the features."""
    rng = np.random.default_rng(seed)
    pick = data[np.sort(rng.choice(data.shape[0], size=min(sample, data.shape[0]), replace=False))]
    distances = pdist(pick)
    median = float(np.median(distances)) if distances.size else 1.0
    return median if median > 0 else 1.0


@dataclass(frozen=True)
class GPResult:
    """GP posterior mean and standard deviation of the label, and expected improvement."""

    mean: np.ndarray
    sd: np.ndarray
    ei: np.ndarray


def gp_expected_improvement(x: ArrayLike, labels: ArrayLike, xi: float = 0.01, seed: int = 0) -> GPResult:
    """Fit a GP to the labelled objects and return posterior mean, sd and EI for all objects.

    Kernel: constant x Matern(nu=1.5) + white noise, hyperparameters fit by marginal
    likelihood (targets normalised), length scale started at the median distance between
    objects. ``labels`` aligned with ``x``, NaN = unlabelled; at least one label needed.
    """
    data = _features(x)
    index, values = _labelled(labels, data.shape[0])
    if index.size == 0:
        raise ValueError("the GP needs at least one labelled object")
    scale = _length_scale(data, seed)
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=scale, length_scale_bounds=(scale * 1e-2, scale * 1e2), nu=1.5
    ) + WhiteKernel(noise_level=0.1, noise_level_bounds=(1e-5, 1e1))
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed, n_restarts_optimizer=0)
    with warnings.catch_warnings():
        # A hyperparameter at its bound (e.g. no noise on clean 0/5 labels) is a fine fit.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(data[index], values)
    parts = _batched(lambda rows: gp.predict(rows, return_std=True), data)
    mean = np.concatenate([p[0] for p in parts])
    sd = np.concatenate([p[1] for p in parts])
    return GPResult(mean, sd, expected_improvement(mean, sd, float(values.max()), xi))


# ----------------------------------------------------------------------------- classifier


@dataclass(frozen=True)
class ClassifierResult:
    """The classifier's probability that an object interests the person, the exploration
    bonus (distance to the nearest labelled object over the largest such distance, 0-1),
    and the priority they sum to."""

    probability: np.ndarray
    novelty: np.ndarray
    priority: np.ndarray


def classifier_priority(
    scores: ArrayLike, x: ArrayLike, labels: ArrayLike, interest_label: float = 3.0, explore: float = 0.1,
    c: float = 0.1,
) -> ClassifierResult:
    """Interest learnt from the labels: a logistic regression retrained on every call.

    Labels >= ``interest_label`` count as interesting. The features are standardised and the
    classes weighted to equal total weight (targets are rare); ``c`` is the inverse strength
    of the L2 penalty, strong by default because the first interesting labels are few. ``priority = p + explore x
    novelty``: the exploration term sends some inspections to regions no label covers yet,
    where the classifier's guess is least tested. Until both an interesting and an
    uninteresting object are labelled there is nothing to classify: p is then the anomaly
    ``scores`` scaled to 0-1 (the simulated person and the stage then also spread half of
    each batch over the data, :func:`cold_start_order`).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s = np.asarray(scores, dtype=np.float64).ravel()
    data = _features(x)
    if data.shape[0] != s.shape[0]:
        raise ValueError(f"{s.shape[0]} scores for {data.shape[0]} feature rows")
    index, values = _labelled(labels, s.shape[0])
    interesting = values >= interest_label
    novelty = np.ones(s.shape[0])
    if index.size:
        distance = NearestNeighbors(n_neighbors=1).fit(data[index]).kneighbors(data)[0][:, 0]
        novelty = distance / distance.max() if distance.max() > 0 else np.zeros_like(distance)
    if interesting.all() or not interesting.any():
        probability = s / LABEL_MAX
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=1000))
        model.fit(data[index], interesting)
        probability = np.concatenate(_batched(lambda rows: model.predict_proba(rows)[:, 1], data))
    return ClassifierResult(probability, novelty, probability + explore * novelty)


def cold_start_order(order: np.ndarray, x: np.ndarray, labelled: np.ndarray, n_spread: int) -> np.ndarray:
    """``order`` with ``n_spread`` unlabelled objects spread along the first principal
    component of the unlabelled ones put first.

    Before the first interesting label the classifier has nothing to learn, and the anomaly
    score alone may never reach the targets (a rare class of ordinary-looking objects has
    low anomaly scores): part of each batch then samples the whole range of the data.
    """
    unlabelled = np.flatnonzero(~labelled)
    spread = unlabelled[initial_picks(x[unlabelled], n_spread)] if n_spread > 0 and unlabelled.size else unlabelled[:0]
    return np.concatenate([spread, order[~np.isin(order, spread)]])


# ----------------------------------------------------------------------------- rankings


def order_by(primary: ArrayLike, secondary: ArrayLike | None = None) -> np.ndarray:
    """Indices sorted by ``primary`` descending, ties by ``secondary`` descending, then index."""
    primary = np.asarray(primary, dtype=np.float64)
    keys = [np.arange(primary.size)]
    if secondary is not None:
        keys.append(-np.asarray(secondary, dtype=np.float64))
    keys.append(-primary)
    return np.lexsort(keys)


def _next_batch(order: np.ndarray, labelled: np.ndarray, m: int) -> np.ndarray:
    """The first ``m`` not-yet-labelled indices of ``order``."""
    return order[~labelled[order]][:m]


def strategy_order(
    strategy: str,
    scores: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray,
    batch: int,
    settings: ActiveLearningSettings | Mapping[str, Any],
    seed: int,
) -> np.ndarray:
    """The order in which ``strategy`` would show objects now, given ``labels`` (NaN = none),
    with the learners' ``settings`` (the ``active_learning`` section; missing keys: its defaults)."""
    options = stage_settings_of(ActiveLearningSettings, settings, "active_learning")
    if strategy == "unsupervised":
        return order_by(scores)
    if strategy == "neighbour_score":
        final = neighbour_score(scores, x, labels, options.alpha, options.n_estimators, seed)
        return order_by(final, scores)
    if strategy == "gp_ei":
        if not np.isfinite(labels).any():
            picks = initial_picks(x, batch)
            priority = np.zeros(scores.size)
            priority[picks] = np.arange(picks.size, 0, -1)  # picks first, in PC1 order
            return order_by(priority, scores)
        result = gp_expected_improvement(x, labels, options.xi, seed)
        return order_by(result.ei, result.mean)
    if strategy == "classifier":
        result = classifier_priority(scores, x, labels, options.interest_label, options.explore, options.classifier_c)
        order = order_by(result.priority, scores)
        if np.nanmax(labels, initial=-np.inf) >= options.interest_label:
            return order
        return cold_start_order(order, x, np.isfinite(labels), batch // 2)
    raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")


def simulate_person(
    strategy: str,
    scores: ArrayLike,
    x: ArrayLike,
    is_target: ArrayLike,
    rounds: int,
    batch: int,
    settings: ActiveLearningSettings | Mapping[str, Any] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A simulated person inspecting ``rounds`` batches of ``batch`` objects.

    Each round the person labels the first ``batch`` unlabelled objects of the strategy's
    current order, answering ``simulate.target_label`` (default 5) for catalogue targets and
    ``simulate.other_label`` (default 0) otherwise; the strategy retrains on all labels so far and
    re-ranks. ``unsupervised`` (the anomaly score alone) and ``random`` (a seeded shuffle)
    never retrain. Returns one row per inspected object: index, round, inspected
    (1, 2, ...), is_target and found (targets so far).
    """
    options = stage_settings_of(ActiveLearningSettings, settings or {}, "active_learning")
    s = np.asarray(scores, dtype=np.float64).ravel()
    data = _features(x)
    target = np.asarray(is_target, dtype=bool).ravel()
    if not s.shape[0] == data.shape[0] == target.shape[0]:
        raise ValueError(f"{s.shape[0]} scores, {data.shape[0]} feature rows, {target.shape[0]} target flags")
    if rounds < 1 or batch < 1:
        raise ValueError(f"rounds and batch must be >= 1, got {rounds} and {batch}")
    answers = np.where(target, options.simulate.target_label, options.simulate.other_label)
    labels = np.full(s.shape[0], np.nan)
    labelled = np.zeros(s.shape[0], dtype=bool)
    fixed = np.random.default_rng(seed).permutation(s.shape[0]) if strategy == "random" else None
    inspected: list[tuple[int, int]] = []
    for round_number in range(1, rounds + 1):
        order = fixed if fixed is not None else strategy_order(strategy, s, data, labels, batch, options, seed)
        chosen = _next_batch(order, labelled, batch)
        if chosen.size == 0:
            break
        labelled[chosen] = True
        labels[chosen] = answers[chosen]
        inspected.extend((int(i), round_number) for i in chosen)
    index = np.array([i for i, _ in inspected], dtype=np.int64)
    found = np.cumsum(target[index]) if index.size else np.zeros(0, dtype=np.int64)
    return pd.DataFrame(
        {
            "strategy": strategy,
            "index": index,
            "round": np.array([r for _, r in inspected], dtype=np.int64),
            "inspected": np.arange(1, index.size + 1),
            "is_target": target[index].astype(np.int64),
            "found": found.astype(np.int64),
        }
    )


def discovery_curves(
    scores: ArrayLike,
    x: ArrayLike,
    is_target: ArrayLike,
    rounds: int,
    batch: int,
    settings: ActiveLearningSettings | Mapping[str, Any] | None = None,
    seed: int = 0,
    strategies: Sequence[str] = STRATEGIES,
) -> pd.DataFrame:
    """:func:`simulate_person` for every strategy, stacked (same seed, same budget)."""
    frames = [simulate_person(s, scores, x, is_target, rounds, batch, settings, seed) for s in strategies]
    return pd.concat(frames, ignore_index=True)


def curve_summary(curves: pd.DataFrame, n_targets: int, n_objects: int) -> pd.DataFrame:
    """Per strategy: objects inspected, targets found, recall (share of all targets) and
    lift (targets found over the number a random order is expected to find)."""
    rows = []
    for strategy, frame in curves.groupby("strategy", sort=False):
        inspected = int(frame["inspected"].max()) if len(frame) else 0
        found = int(frame["found"].iloc[-1]) if len(frame) else 0
        expected = inspected * n_targets / n_objects if n_objects else math.nan
        rows.append(
            {
                "strategy": strategy,
                "inspected": inspected,
                "found": found,
                "targets_total": n_targets,
                "recall": found / n_targets if n_targets else math.nan,
                "expected_random": expected,
                "lift": found / expected if expected else math.nan,
            }
        )
    return pd.DataFrame(
        rows, columns=["strategy", "inspected", "found", "targets_total", "recall", "expected_random", "lift"]
    )

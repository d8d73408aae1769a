"""How good are the features? kNN accuracy and a linear probe on labelled subsets, baselines.

The paper's validation metric: k-nearest-neighbours (k=5) accuracy of the features,
averaged over 50 random (not stratified) 80/20 splits and reported as mean +- standard
error. A cross-validated logistic regression (the "linear probe" of the self-supervised
literature) tells whether the classes are linearly separable, which kNN does not. Baselines
that cost nothing to learn (PCA of the raw pixels, a randomly initialised backbone, an
ImageNet-initialised backbone without BYOL) go through the same tests. Everything here is
seeded, so the same inputs and seed give identical numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

METRICS = ("euclidean", "cosine")
TABLE_COLUMNS = [
    "representation", "label_set", "method", "metric", "k", "n_splits", "n_objects",
    "n_classes", "chance", "accuracy_mean", "accuracy_sem",
]


def clean_labels(labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Return (keep mask, integer codes of kept rows, sorted class names).

    A label is missing when it is None/NaN or an empty (whitespace) string. Float labels
    that are all whole numbers become ints, so class names read ``1`` rather than ``1.0``.
    """
    series = pd.Series(np.asarray(labels, dtype=object).ravel(), dtype=object)
    missing = series.isna() | series.map(lambda v: isinstance(v, str) and not v.strip())
    keep = ~missing.to_numpy(dtype=bool)
    kept = series[keep]
    values = kept.to_list()
    if values and all(isinstance(v, (float, np.floating)) for v in values):
        if all(float(v).is_integer() for v in values):
            values = [int(v) for v in values]
    try:
        names = sorted(set(values))
    except TypeError:  # mixed types (e.g. str and int): order by their text instead
        values = [str(v) for v in values]
        names = sorted(set(values))
    lookup = {name: code for code, name in enumerate(names)}
    codes = np.fromiter((lookup[v] for v in values), dtype=np.int64, count=len(values))
    return keep, codes, names


def _prepare_features(features: ArrayLike, metric: str) -> np.ndarray:
    """2-D float array. For cosine, rows are unit-normalised: cosine neighbours are the
    Euclidean neighbours of unit vectors (|a-b|^2 = 2 - 2cos), so both metrics share the
    Euclidean code path, which can use trees instead of brute force."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n_objects, n_features), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinite values")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    return x


def _split_sizes(n: int, test_fraction: float) -> tuple[int, int]:
    """(n_train, n_test) exactly as ShuffleSplit computes them."""
    n_test = math.ceil(test_fraction * n)
    return n - n_test, n_test


def _checked_inputs(
    features: ArrayLike, labels: ArrayLike, k: int, test_fraction: float, metric: str
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Drop unlabelled rows and validate; return (features, codes, class names)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = _prepare_features(features, metric)
    keep, codes, names = clean_labels(labels)
    if keep.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} feature rows but {keep.shape[0]} labels")
    x = x[keep]
    if len(names) < 2:
        raise ValueError(
            f"kNN accuracy needs at least 2 classes among the labelled objects, got {len(names)}"
        )
    n_train, n_test = _split_sizes(x.shape[0], test_fraction)
    if n_test < 1 or n_train < k:
        raise ValueError(
            f"too few labelled objects ({x.shape[0]}) for k={k} with test_fraction="
            f"{test_fraction}: the training split has {n_train} objects, need at least {k}"
        )
    return x, codes, names


def _n_candidates(n: int, k: int, test_fraction: float) -> int:
    """How many neighbours to precompute so that k of them are almost surely in training.

    Each candidate is in the training split with probability about 1 - test_fraction; twice
    the expected need plus a margin makes a shortfall (handled exactly anyway) very rare.
    """
    return min(n - 1, math.ceil(2 * k / (1.0 - test_fraction)) + 10)


def _candidate_neighbours(x: np.ndarray, n_candidates: int) -> np.ndarray:
    """Indices (n, n_candidates) of each point's nearest other points, nearest first."""
    finder = NearestNeighbors(n_neighbors=n_candidates + 1, metric="euclidean").fit(x)
    _, index = finder.kneighbors(x)
    # Drop each point itself. With exact duplicates the point may not come first (or may
    # be crowded out), so remove it where it is, else drop the last column.
    is_self = index == np.arange(x.shape[0])[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    is_self &= np.cumsum(is_self, axis=1) == 1  # at most one removal per row
    return index[~is_self].reshape(x.shape[0], n_candidates)


def _vote(neighbour_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Majority class per row; ties go to the smallest class code (as scikit-learn does)."""
    counts = np.zeros((neighbour_labels.shape[0], n_classes), dtype=np.int64)
    rows = np.repeat(np.arange(neighbour_labels.shape[0]), neighbour_labels.shape[1])
    np.add.at(counts, (rows, neighbour_labels.ravel()), 1)
    return np.argmax(counts, axis=1)


def _predict_split(
    x: np.ndarray, y: np.ndarray, candidates: np.ndarray, train: np.ndarray,
    test: np.ndarray, k: int, n_classes: int,
) -> np.ndarray:
    """kNN predictions for the test rows using only training neighbours."""
    in_train = np.zeros(x.shape[0], dtype=bool)
    in_train[train] = True
    usable = in_train[candidates[test]]
    chosen = usable & (np.cumsum(usable, axis=1) <= k)
    complete = chosen.sum(axis=1) == k
    predicted = np.empty(test.size, dtype=np.int64)
    if complete.any():
        neighbours = candidates[test[complete]][chosen[complete]].reshape(-1, k)
        predicted[complete] = _vote(y[neighbours], n_classes)
    if not complete.all():  # rare: too few training points among the candidates
        model = KNeighborsClassifier(n_neighbors=k, metric="euclidean").fit(x[train], y[train])
        predicted[~complete] = model.predict(x[test[~complete]])
    return predicted


def knn_accuracy(
    features: ArrayLike,
    labels: ArrayLike,
    k: int = 5,
    n_splits: int = 50,
    test_fraction: float = 0.2,
    metric: str = "euclidean",
    seed: int = 0,
) -> tuple[float, float]:
    """Mean kNN test accuracy and its standard error over seeded random train/test splits.

    Rows with a missing label are dropped first. The standard error is the sample standard
    deviation over splits divided by sqrt(n_splits) (NaN for a single split).

    Equivalent to fitting a k-neighbours classifier on each training split, but the
    neighbour search runs once: every point's nearest candidates are found in the whole set,
    and each split keeps the first k that fall in its training part.
    """
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    x, y, names = _checked_inputs(features, labels, k, test_fraction, metric)
    candidates = _candidate_neighbours(x, _n_candidates(x.shape[0], k, test_fraction))
    splitter = ShuffleSplit(n_splits=n_splits, test_size=test_fraction, random_state=seed)
    scores = np.empty(n_splits)
    for i, (train, test) in enumerate(splitter.split(x)):
        predicted = _predict_split(x, y, candidates, train, test, k, len(names))
        scores[i] = np.mean(predicted == y[test])
    sem = float(np.std(scores, ddof=1) / math.sqrt(n_splits)) if n_splits > 1 else math.nan
    return float(np.mean(scores)), sem


PROBE_K = 5
PROBE_SPLITS = 10


@dataclass(frozen=True)
class KnnProbe:
    """A fixed labelled subset on which each epoch's backbone is scored by kNN accuracy
    (k=5, cosine, 10 random 80/20 splits): a label-aware view of training progress that
    the BYOL loss, which can fall while the features get worse, does not give."""

    indices: np.ndarray
    labels: np.ndarray
    seed: int

    @classmethod
    def from_labels(cls, labels: ArrayLike, size: int, seed: int) -> KnnProbe | None:
        """Up to ``size`` labelled objects drawn at random; None when fewer than two classes
        or too few objects are labelled for a kNN split."""
        if labels is None or size == 0:
            return None
        keep, codes, names = clean_labels(labels)
        labelled = np.flatnonzero(keep)
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(labelled), size=min(size, len(labelled)), replace=False))
        # Checked on the drawn subset: a small one can hold too few objects or a single class.
        if len(chosen) < 5 * (PROBE_K + 1) or len(np.unique(codes[chosen])) < 2:
            return None
        return cls(labelled[chosen], codes[chosen], seed)

    def score(self, features: np.ndarray) -> float:
        """Mean kNN accuracy of ``features`` of the images at :attr:`indices`, in that order."""
        mean, _ = knn_accuracy(features, self.labels, k=PROBE_K, n_splits=PROBE_SPLITS, metric="cosine", seed=self.seed)
        return mean


def linear_probe_accuracy(
    features: ArrayLike,
    labels: ArrayLike,
    n_folds: int = 5,
    c: float = 1.0,
    seed: int = 0,
    max_iter: int = 1000,
) -> tuple[float, float]:
    """Mean and standard error of the test accuracy of a logistic regression over CV folds.

    Features are standardised on each training fold (scaler inside the pipeline, so no
    test information leaks in). Folds are stratified and shuffled with ``seed`` when every
    class has at least ``n_folds`` members, plain shuffled folds otherwise. Rows with a
    missing label are dropped.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    x = _prepare_features(features, "euclidean")
    keep, y, names = clean_labels(labels)
    if keep.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} feature rows but {keep.shape[0]} labels")
    x = x[keep]
    if len(names) < 2:
        raise ValueError(f"a linear probe needs at least 2 classes among the labelled objects, got {len(names)}")
    if x.shape[0] < n_folds:
        raise ValueError(f"too few labelled objects ({x.shape[0]}) for {n_folds} folds")
    stratify = np.bincount(y).min() >= n_folds
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = np.empty(n_folds)
    for i, (train, test) in enumerate(splitter.split(x, y)):
        if np.unique(y[train]).size < 2:  # a fold whose training part holds one class
            scores[i] = np.mean(y[test] == y[train][0])
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        with warnings.catch_warnings():
            # An unconverged probe is still a valid (slightly pessimistic) linear classifier.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[train], y[train])
        scores[i] = np.mean(model.predict(x[test]) == y[test])
    return float(np.mean(scores)), float(np.std(scores, ddof=1) / math.sqrt(n_folds))


def validation_table(
    representations: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    k: int = 5,
    n_splits: int = 50,
    test_fraction: float = 0.2,
    seed: int = 0,
    metrics: Sequence[str] = METRICS,
    probe_folds: int = 0,
    probe_c: float = 1.0,
) -> pd.DataFrame:
    """kNN accuracy of every representation on every label set with every metric, and
    (when ``probe_folds`` >= 2) a cross-validated linear probe.

    Each label array is aligned with the rows of every representation. Columns: see
    ``TABLE_COLUMNS``. ``method`` is ``knn`` or ``linear_probe``; for the probe ``metric``
    is ``linear`` and ``k`` is empty. ``chance`` is the majority-class fraction, the
    accuracy of always guessing the commonest class.
    """
    rows = []
    for rep_name, features in representations.items():
        for set_name, label_array in labels.items():
            try:  # a failing check names the label set and representation it failed on
                keep, codes, names = clean_labels(label_array)
                common = {
                    "representation": rep_name, "label_set": set_name, "n_objects": int(keep.sum()),
                    "n_classes": len(names),
                    "chance": float(np.bincount(codes).max() / codes.size) if codes.size else math.nan,
                }
                for metric in metrics:
                    mean, sem = knn_accuracy(
                        features, label_array, k=k, n_splits=n_splits,
                        test_fraction=test_fraction, metric=metric, seed=seed,
                    )
                    rows.append({**common, "method": "knn", "metric": metric, "k": k, "n_splits": n_splits,
                                 "accuracy_mean": mean, "accuracy_sem": sem})
                if probe_folds >= 2:
                    mean, sem = linear_probe_accuracy(features, label_array, probe_folds, probe_c, seed)
                    rows.append({**common, "method": "linear_probe", "metric": "linear", "k": pd.NA,
                                 "n_splits": probe_folds, "accuracy_mean": mean, "accuracy_sem": sem})
            except ValueError as error:
                raise ValueError(f"label set {set_name!r}, representation {rep_name!r}: {error}") from None
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["k"] = table["k"].astype("Int64")  # empty, not NaN-as-float, for the probe rows
    return table


def shortfalls(table: pd.DataFrame, learned: str = "byol") -> pd.DataFrame:
    """Where the ``learned`` representation is no better than the best baseline.

    One row per (label_set, method, metric) of a ``validation_table`` on which the mean
    accuracy of ``learned`` does not exceed that of every other representation, with the
    best baseline and both accuracies: features that a randomly initialised network or the
    raw pixels match carry nothing learned, whatever the clusters built on them look like.
    """
    columns = ["label_set", "method", "metric", "accuracy", "baseline", "baseline_accuracy"]
    keys = ["label_set", "method", "metric"]
    ours = table[table["representation"] == learned].set_index(keys)["accuracy_mean"]
    others = table[table["representation"] != learned].dropna(subset=["accuracy_mean"])
    if ours.empty or others.empty:
        return pd.DataFrame(columns=columns)
    best = others.loc[others.groupby(keys)["accuracy_mean"].idxmax()].set_index(keys)
    joined = best.join(ours.rename("accuracy"), how="inner")
    below = joined[joined["accuracy"] <= joined["accuracy_mean"]]
    result = below.rename(columns={"representation": "baseline", "accuracy_mean": "baseline_accuracy"})
    return result.reset_index()[columns]


def _flat_batch(images: Any, index: np.ndarray | slice) -> np.ndarray:
    """Read images (numpy or h5py, (N, C, H, W) uint8) as float32 rows scaled to [0, 1]."""
    batch = np.asarray(images[index])
    return batch.reshape(batch.shape[0], -1).astype(np.float32) / 255.0


def pixel_pca_features(
    images: Any,
    n_components: int = 50,
    seed: int = 0,
    max_fit_samples: int = 20_000,
    batch_size: int = 4096,
) -> np.ndarray:
    """Baseline representation: PCA of the raw flattened pixels, float32 (N, n_components).

    ``images`` may be a numpy array or an h5py dataset of shape (N, C, H, W). The PCA is fit
    on a seeded random subset of at most ``max_fit_samples`` images (a full 300k x 12k pixel
    matrix would not fit in memory, and the leading components are well determined by a
    subset), then every image is projected in batches.
    """
    n = int(images.shape[0])
    if n < 2:
        raise ValueError(f"pixel PCA needs at least 2 images, got {n}")
    n_pixels = int(np.prod(images.shape[1:]))
    n_fit = min(n, max_fit_samples)
    n_components = min(n_components, n_fit, n_pixels)
    rng = np.random.default_rng(seed)
    # Sorted indices: h5py fancy indexing requires increasing order.
    fit_index = np.sort(rng.choice(n, size=n_fit, replace=False)) if n_fit < n else slice(None)
    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=seed)
    pca.fit(_flat_batch(images, fit_index))
    out = np.empty((n, n_components), dtype=np.float32)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        out[start:stop] = pca.transform(_flat_batch(images, slice(start, stop)))
    return out


def confusion_matrix_knn(
    features: ArrayLike,
    labels: ArrayLike,
    k: int = 5,
    seed: int = 0,
    metric: str = "euclidean",
    test_fraction: float = 0.2,
) -> tuple[np.ndarray, list[Any]]:
    """Confusion matrix (rows true, columns predicted; counts) of kNN on one seeded split."""
    x, y, names = _checked_inputs(features, labels, k, test_fraction, metric)
    splitter = ShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    train, test = next(splitter.split(x))
    candidates = _candidate_neighbours(x, _n_candidates(x.shape[0], k, test_fraction))
    predicted = _predict_split(x, y, candidates, train, test, k, len(names))
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(matrix, (y[test], predicted), 1)
    return matrix, names

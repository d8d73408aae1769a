"""Figures of merit for discovery: how well anomaly scores, learners and clusters find and
group what the catalogue knows, set against what the features allow at all.

- :func:`enrichment`: the share of targets in a score's top fraction over their share in
  the whole set (1 = no better than a random order);
- :func:`ceiling_found`: targets in the top n of a classifier trained with every label
  (out-of-fold, so no object is ranked by a model that saw its own label): what a person
  with unlimited patience could hope to find in n inspections with these features;
- :func:`rare_class_scenario`: a labelled set with one class cut down to a small share, the
  stand-in for "rare morphology" on data whose classes are all common;
- :func:`cluster_figures`: groups, noise and NMI of HDBSCAN and the merged mixture at one
  set of settings, to compare representations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def enrichment(scores: ArrayLike, is_target: ArrayLike, fraction: float = 0.05) -> float:
    """Targets' share among the ``fraction`` highest ``scores`` over their share overall.

    Ties at the cut keep input order (a stable sort), as the rankings do. NaN without targets.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    target = np.asarray(is_target, dtype=bool).ravel()
    if s.shape != target.shape:
        raise ValueError(f"{s.size} scores for {target.size} target flags")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if not target.any():
        return math.nan
    n_top = max(1, int(round(fraction * s.size)))
    top = np.argsort(-s, kind="stable")[:n_top]
    return float(target[top].mean() / target.mean())


def ceiling_found(x: ArrayLike, is_target: ArrayLike, n: int, folds: int = 5, seed: int = 0) -> int:
    """Targets among the ``n`` objects a cross-validated classifier trained with all labels
    ranks highest (out-of-fold probabilities of a class-balanced logistic regression on the
    standardised features). ``folds`` shrinks to the number of targets where there are fewer."""
    data = np.asarray(x, dtype=np.float64)
    target = np.asarray(is_target, dtype=bool).ravel()
    n_targets = int(target.sum())
    if n_targets == 0:
        return 0
    splits = min(folds, n_targets, int((~target).sum()))
    if splits < 2:
        raise ValueError(f"a cross-validated ceiling needs 2 targets and 2 others, got {n_targets} of {target.size}")
    probability = np.zeros(target.size)
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    for train, test in StratifiedKFold(splits, shuffle=True, random_state=seed).split(data, target):
        probability[test] = model.fit(data[train], target[train]).predict_proba(data[test])[:, 1]
    return int(target[np.argsort(-probability, kind="stable")[:n]].sum())


def rare_class_scenario(labels: ArrayLike, rare: ArrayLike, share: float, seed: int = 0) -> np.ndarray:
    """Indices of a subset in which class ``rare`` makes up ``share`` of the objects: every
    object of the other classes and a seeded random draw of the rare class (sorted)."""
    values = np.asarray(labels).astype(str)
    is_rare = values == str(rare)
    if not is_rare.any():
        raise ValueError(f"no object has label {rare!r}; labels are {sorted(set(values))}")
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must lie in (0, 1), got {share}")
    others = np.flatnonzero(~is_rare)
    n_rare = max(1, int(round(share / (1.0 - share) * others.size)))
    if n_rare > is_rare.sum():
        raise ValueError(f"{rare!r} has {int(is_rare.sum())} objects, {n_rare} needed for a share of {share}")
    chosen = np.random.default_rng(seed).choice(np.flatnonzero(is_rare), size=n_rare, replace=False)
    return np.sort(np.concatenate([others, chosen]))


def cluster_figures(
    x: ArrayLike, truth: ArrayLike, min_cluster_fraction: float, min_samples: int | None, merge_threshold: float,
    seed: int = 0, space: str = "pca", umap_settings: Any | None = None, **mixture: Any,
) -> dict[str, float]:
    """HDBSCAN (groups, noise fraction, NMI with noise as a group, ARI, NMI of the soft labels)
    in ``space`` (see :func:`byol_discovery.clustering.hdbscan_space`) and the Gaussian mixture
    on ``x`` (occupied components, groups after Hellinger merging, NMI of both)."""
    from byol_discovery import clustering, merging

    data = np.asarray(x, dtype=np.float64)
    truth = np.asarray(truth).astype(str)
    size = clustering.scaled_min_cluster_size(data.shape[0], None, min_cluster_fraction)
    hdbscan_x = clustering.hdbscan_space(data, space, umap_settings, seed)
    core, _, soft, _ = clustering.hdbscan_soft_clusters(hdbscan_x, size, min_samples)
    model = clustering.fit_gaussian_mixture(data, seed=seed, **mixture)
    components, merged, occupied = merging.merged_labels(model, data, merge_threshold)
    return {
        "hdbscan_groups": int(core.max() + 1),
        "hdbscan_noise": float(np.mean(core < 0)),
        "hdbscan_nmi": float(normalized_mutual_info_score(truth, core)),
        "hdbscan_ari": float(adjusted_rand_score(truth, core)),
        "hdbscan_soft_nmi": float(normalized_mutual_info_score(truth, soft)),
        "gmm_components": occupied,
        "gmm_merged_groups": int(merged.max() + 1),
        "gmm_nmi": float(normalized_mutual_info_score(truth, components)),
        "gmm_merged_nmi": float(normalized_mutual_info_score(truth, merged)),
    }

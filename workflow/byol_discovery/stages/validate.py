"""Stage ``validate``: kNN accuracy and a linear probe of the features against baselines."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.io.store import ImageStore, load_features
from byol_discovery.settings import ValidateSettings, stage_settings_of
from byol_discovery.stages.common import LOG, Settings, checked_catalogue, store_columns


def _baselines(images: Any, attrs: Mapping[str, Any], options: ValidateSettings) -> dict[str, np.ndarray]:
    """Representations that cost nothing to learn, to compare BYOL's features against; the
    backbone baselines are extracted as the BYOL features were (``attrs``: architecture,
    input channels, dihedral averaging)."""
    from byol_discovery import evaluation
    from byol_discovery.checkpoint import BackboneSpec

    baselines = {}
    dihedral = bool(attrs.get("dihedral_average", False))
    device = options.device
    if options.pixel_pca_components:
        baselines["pixel_pca"] = evaluation.pixel_pca_features(images, options.pixel_pca_components, seed=options.seed)
    if options.random_backbone:
        from byol_discovery.feature_extraction import extract_features, random_backbone

        spec = BackboneSpec.from_attributes(attrs)
        backbone = random_backbone(spec.arch, spec.in_channels, spec.small_stem, options.seed)
        baselines["random_init"] = extract_features(backbone, images, 256, device, dihedral=dihedral)
    if options.imagenet_weights:
        from byol_discovery.feature_extraction import extract_features
        from byol_discovery.model import imagenet_backbone

        spec = BackboneSpec.from_attributes(attrs)
        backbone = imagenet_backbone(options.imagenet_weights, spec.arch, spec.in_channels)
        baselines["imagenet_init"] = extract_features(backbone, images, 256, device, dihedral=dihedral)
    return baselines


def validate(
    store: str | Path,
    features: str | Path,
    table: str | Path,
    accuracy_plot: str | Path,
    confusion_plot: str | Path,
    settings: ValidateSettings | Settings,
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """kNN accuracy (k, splits from settings) and a linear probe (``probe_folds``-fold
    logistic regression; 0 turns it off) of BYOL features and baselines on each label set."""
    from byol_discovery import evaluation, plotting

    options = stage_settings_of(ValidateSettings, settings, "validate")
    ids, matrix, attrs = load_features(features)
    labels = store_columns(checked_catalogue(store, ids, features), list(options.label_columns),
                           "validate.label_columns")
    with ImageStore(store) as images:
        representations = {"byol": matrix, **_baselines(images.images, attrs, options)}
    result = evaluation.validation_table(
        representations,
        labels,
        k=options.k,
        n_splits=options.n_splits,
        test_fraction=options.test_fraction,
        seed=options.seed,
        probe_folds=options.probe_folds,
        probe_c=options.probe_c,
    )
    if labels:  # before any output is written: a failure here leaves none that looks complete
        first_label = next(iter(labels))
        matrix_counts, names = evaluation.confusion_matrix_knn(
            matrix, labels[first_label], k=options.k, seed=options.seed, metric="cosine",
            test_fraction=options.test_fraction,
        )
    write_csv_atomic(table, result)
    plotting.accuracy_bars(result, accuracy_plot)
    if labels:
        plotting.confusion_matrix_plot(
            matrix_counts, names, confusion_plot, f"kNN (k={options.k}, cosine) on BYOL features: {first_label}"
        )
    else:  # a dataset without labels still gets its (empty) outputs, so the workflow completes
        log.warning("no label_columns configured: nothing to validate against")
        plotting.message_figure(confusion_plot, "no label columns configured")
    _log_table(result, log)
    return result


def _log_table(result: pd.DataFrame, log: logging.Logger) -> None:
    """Every accuracy, then a warning wherever BYOL is no better than a baseline."""
    from byol_discovery.evaluation import shortfalls

    for row in result.itertuples():
        log.info(
            "%-12s %-13s %-10s %-9s %.3f +- %.3f (chance %.3f)",
            row.method,
            row.representation,
            row.label_set,
            row.metric,
            row.accuracy_mean,
            row.accuracy_sem,
            row.chance,
        )
    for row in shortfalls(result).itertuples():
        log.warning(
            "BYOL features are no better than %s on %s (%s, %s): %.3f against %.3f, so training "
            "added nothing this label set can see (docs/recipes.md: 'Representation quality')",
            row.baseline, row.label_set, row.method, row.metric, row.accuracy, row.baseline_accuracy,
        )

"""Stage ``features``: backbone features of every image and their PCA."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from byol_discovery.io.store import ImageStore, save_feature_blocks, save_features
from byol_discovery.settings import FeaturesSettings, stage_settings_of
from byol_discovery.stages.common import LOG, Settings

if TYPE_CHECKING:
    from sklearn.decomposition import PCA


def features(
    store: str | Path,
    checkpoint: str | Path,
    features: str | Path,
    pca_features: str | Path,
    settings: FeaturesSettings | Settings,
    log: logging.Logger = LOG,
) -> None:
    """Backbone features of every stored image (averaged over the 8 quarter turns and
    mirror images when ``dihedral_average``), and their PCA keeping ``pca_variance``.

    The features go to the file batch by batch, so memory does not grow with the number of
    images. Above ``pca_fit_samples`` objects the PCA is fitted on a seeded subsample of that
    many and applied block by block; below, on all of them at once, as it always was."""
    from byol_discovery.checkpoint import Checkpoint
    from byol_discovery.feature_extraction import backbone_from_checkpoint, feature_batches, feature_dim

    options = stage_settings_of(FeaturesSettings, settings, "features")
    meta = Checkpoint.load(checkpoint)  # read once: the weights and what describes them
    device = options.device
    backbone = backbone_from_checkpoint(meta, checkpoint, device=device)
    dihedral = options.dihedral_average
    # Validate extracts its backbone baselines the same way, from these attributes.
    model = {**meta.attributes(), "dihedral_average": dihedral}
    with ImageStore(store) as images:
        ids = images.ids
        clock = time.perf_counter()
        batches = feature_batches(backbone, images.images, options.batch_size, device, dihedral=dihedral)
        save_feature_blocks(
            features, ids, _progress(batches, len(ids), log), feature_dim(backbone, images.images, device),
            {"representation": "byol", **model}, f"the features {checkpoint} gives",
        )
    seconds = time.perf_counter() - clock
    log.info("features of %d images in %.1f s (%.0f images/s)", len(ids), seconds, len(ids) / max(seconds, 1e-9))
    _reduce(features, pca_features, ids, options, model, log)


def _progress(batches: Iterator[np.ndarray], total: int, log: logging.Logger) -> Iterator[np.ndarray]:
    """The batches, passed on, with a log line at each tenth of the images done."""
    done, next_report, clock = 0, total / 10, time.perf_counter()
    for batch in batches:
        yield batch
        done += len(batch)
        if done >= next_report and done < total:
            seconds = time.perf_counter() - clock
            log.info("features: %d of %d images, %.0f images/s", done, total, done / max(seconds, 1e-9))
            next_report += total / 10


def _reduce(
    features: str | Path,
    pca_features: str | Path,
    ids: np.ndarray,
    options: FeaturesSettings,
    model: dict,
    log: logging.Logger,
) -> None:
    """The PCA of the features file keeping ``pca_variance``, to ``pca_features``."""
    from byol_discovery import clustering

    variance, seed, fit_samples = options.pca_variance, options.seed, options.pca_fit_samples

    def attrs(pca: PCA) -> dict:
        explained = float(pca.explained_variance_ratio_.sum())
        return {"representation": "byol_pca", "pca_variance": variance, "explained_variance": explained, **model}

    with h5py.File(features, "r") as file:
        matrix = file["features"]
        shape = matrix.shape
        if fit_samples is not None and shape[0] > fit_samples:
            pca = clustering.fit_pca_on_subsample(matrix, variance, fit_samples, seed)
            save_feature_blocks(pca_features, ids, clustering.pca_blocks(pca, matrix), int(pca.n_components_),
                                attrs(pca), f"the PCA of {features}")
        else:
            reduced, pca = clustering.reduce_pca(matrix[:], variance=variance, seed=seed)
            save_features(pca_features, ids, reduced, attrs(pca))
    log.info(
        "features %s -> PCA %d components (%.1f%% of variance, fitted on %d objects)",
        shape, pca.n_components_, 100 * pca.explained_variance_ratio_.sum(), min(shape[0], fit_samples or shape[0]),
    )

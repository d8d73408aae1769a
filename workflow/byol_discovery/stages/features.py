"""Stage ``extract_features``: backbone features of every image and their PCA."""

from __future__ import annotations

import logging
from pathlib import Path

from byol_discovery.io.store import ImageStore, check_finite, save_features
from byol_discovery.stages.common import LOG, Settings


def extract(
    store: str | Path,
    checkpoint: str | Path,
    features: str | Path,
    pca_features: str | Path,
    settings: Settings,
    log: logging.Logger = LOG,
) -> None:
    """Backbone features of every stored image (averaged over the 8 quarter turns and
    mirror images when ``dihedral_average``), and their PCA keeping ``pca_variance``."""
    from byol_discovery import clustering
    from byol_discovery.checkpoint import Checkpoint
    from byol_discovery.features import backbone_from_checkpoint, extract_features

    meta = Checkpoint.load(checkpoint)  # read once: the weights and what describes them
    backbone = backbone_from_checkpoint(meta, checkpoint, device=settings.get("device", "auto"))
    dihedral = bool(settings.get("dihedral_average", False))
    with ImageStore(store) as images:
        ids = images.ids
        matrix = extract_features(
            backbone, images.images, settings["batch_size"], settings.get("device", "auto"), dihedral=dihedral
        )
    check_finite(ids, matrix, f"the features {checkpoint} gives")
    # Validate extracts its backbone baselines the same way, from these attributes.
    model = {**meta.attributes(), "dihedral_average": dihedral}
    save_features(features, ids, matrix, {"representation": "byol", **model})
    reduced, pca = clustering.reduce_pca(matrix, variance=settings["pca_variance"], seed=settings["seed"])
    save_features(
        pca_features,
        ids,
        reduced,
        {
            "representation": "byol_pca",
            "pca_variance": settings["pca_variance"],
            "explained_variance": float(pca.explained_variance_ratio_.sum()),
            **model,
        },
    )
    log.info(
        "features %s -> PCA %d components (%.1f%% of variance)",
        matrix.shape,
        reduced.shape[1],
        100 * pca.explained_variance_ratio_.sum(),
    )

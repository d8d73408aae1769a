"""Snakemake script: features of every stored image, and their PCA."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery import stages  # noqa: E402
from byol_discovery.logs import stage_logger  # noqa: E402

log = stage_logger("features", snakemake.log[0])
stages.features(
    snakemake.input.store,
    snakemake.input.checkpoint,
    snakemake.output.features,
    snakemake.output.pca_features,
    snakemake.params.settings,
    log=log,
)

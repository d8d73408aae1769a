"""Snakemake script: the nearest neighbours of every object in the PCA features."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery import stages  # noqa: E402
from byol_discovery.logs import stage_logger  # noqa: E402

log = stage_logger("neighbours", snakemake.log[0])
stages.neighbours(
    snakemake.input.pca_features,
    snakemake.output.neighbours,
    snakemake.params.settings,
    snakemake.params.lof_neighbors,
    threads=snakemake.threads,
    log=log,
)

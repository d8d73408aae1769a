"""Snakemake script: rank anomalies with isolation forest and LOF."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery import stages  # noqa: E402
from byol_discovery.logs import stage_logger  # noqa: E402

log = stage_logger("anomaly", snakemake.log[0])
stages.anomaly(
    snakemake.input.store,
    snakemake.input.pca_features,
    dict(snakemake.output.items()),
    snakemake.params.settings,
    log=log,
    neighbours=snakemake.input.neighbours,
)

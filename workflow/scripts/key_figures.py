"""Snakemake script: the report home page's tables (kNN accuracy, targets found), rounded."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery import stages  # noqa: E402
from byol_discovery.logs import stage_logger  # noqa: E402

log = stage_logger("key_figures", snakemake.log[0])
stages.key_figures(
    snakemake.input.knn_accuracy,
    snakemake.input.target_recovery,
    snakemake.input.discovery_summary,
    snakemake.output.accuracy,
    snakemake.output.targets,
    log=log,
)

"""Snakemake script: kNN validation of the features against baselines."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery import stages  # noqa: E402
from byol_discovery.logs import stage_logger  # noqa: E402

log = stage_logger("validate", snakemake.log[0])
stages.validate(
    snakemake.input.store,
    snakemake.input.features,
    snakemake.output.table,
    snakemake.output.accuracy_plot,
    snakemake.output.confusion_plot,
    snakemake.params.settings,
    log=log,
)

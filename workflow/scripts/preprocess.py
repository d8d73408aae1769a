"""Snakemake script: build the HDF5 image store and the quarantine table."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery import stages  # noqa: E402
from byol_discovery.logs import stage_logger  # noqa: E402

log = stage_logger("preprocess", snakemake.log[0])
stages.preprocess(
    snakemake.input.catalogue,
    snakemake.output.store,
    snakemake.output.quarantine,
    {**snakemake.params.settings, "workers": snakemake.threads},
    dataset=snakemake.wildcards.dataset,
    log=log,
)

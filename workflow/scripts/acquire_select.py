"""Snakemake script: choose a survey dataset's objects and their cutout URLs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery.logs import stage_logger  # noqa: E402
from byol_discovery.stages.acquire import acquire_select, with_download_settings  # noqa: E402

log = stage_logger("acquire_select", snakemake.log[0])
source = with_download_settings(snakemake.params.source, snakemake.resources.download_settings)
acquire_select(source, snakemake.params.out_dir, snakemake.params.seed, log=log)

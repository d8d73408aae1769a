"""Snakemake script: acquire one dataset's cutouts and catalogue (or gather its download shards)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery import stages  # noqa: E402
from byol_discovery.logs import stage_logger  # noqa: E402
from byol_discovery.stages.acquire import with_download_settings  # noqa: E402

log = stage_logger("acquire", snakemake.log[0])
stages.acquire(
    with_download_settings(snakemake.params.source, snakemake.resources.download_settings),
    snakemake.params.out_dir,
    snakemake.params.seed,
    log=log,
    selection=snakemake.input.selection[0] if snakemake.input.selection else None,
    shard_ledgers=list(snakemake.input.shards),
)

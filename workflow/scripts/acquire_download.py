"""Snakemake script: download one shard of a survey dataset's cutouts."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery.logs import stage_logger  # noqa: E402
from byol_discovery.stages.acquire import acquire_download, with_download_settings  # noqa: E402

log = stage_logger("acquire_download", snakemake.log[0])
acquire_download(
    with_download_settings(snakemake.params.source, snakemake.resources.download_settings),
    snakemake.input.selection,
    snakemake.params.shard,
    snakemake.params.out_dir,
    ledger_out=snakemake.output.ledger,
    seed=snakemake.params.seed,
    log=log,
)

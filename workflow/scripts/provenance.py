"""Snakemake script: the provenance table of the run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery.logs import stage_logger  # noqa: E402
from byol_discovery.provenance import write_provenance  # noqa: E402

log = stage_logger("provenance", snakemake.log[0])
write_provenance(snakemake.output.page, snakemake.params.config, snakemake.input.checkpoints)
log.info("wrote %s", snakemake.output.page)

"""Snakemake script: train BYOL on one dataset's store (data-parallel over the job's GPUs)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery import stages  # noqa: E402
from byol_discovery.logs import stage_logger  # noqa: E402

log = stage_logger("train", snakemake.log[0])
stages.train(
    snakemake.input.store,
    snakemake.output.checkpoint,
    snakemake.output.history,
    snakemake.output.loss_plot,
    {**snakemake.params.settings, "num_threads": snakemake.threads},
    log=log,
    gpus=int(snakemake.resources.get("gpu", 1)),
)

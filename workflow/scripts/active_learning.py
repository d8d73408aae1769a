"""Snakemake script: re-rank the anomalies with the person's labels; simulated person."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the byol_discovery package

from byol_discovery import stages  # noqa: E402
from byol_discovery.logs import stage_logger  # noqa: E402

log = stage_logger("active_learning", snakemake.log[0])
labels = list(snakemake.input.labels)  # empty until a person writes the labels file
stages.active_learning(
    snakemake.input.ranking,
    snakemake.input.pca_features,
    snakemake.input.store,
    labels[0] if labels else None,
    {key: snakemake.output[key] for key in ("ranking", "ranking_ecsv", "gallery", "curve", "summary", "curve_plot")},
    snakemake.params.settings,
    target=snakemake.params.target,
    log=log,
)

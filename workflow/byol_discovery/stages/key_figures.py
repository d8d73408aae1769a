"""Stage ``key_figures``: the validation and target tables, rounded, for the report's home page."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from byol_discovery import key_figures_tables as figures
from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.stages.common import LOG


def key_figures(
    knn_accuracy: str | Path,
    target_recovery: str | Path,
    discovery_summary: str | Path,
    accuracy_out: str | Path,
    targets_out: str | Path,
    log: logging.Logger = LOG,
) -> None:
    """Read the stages' tables and write the two rounded tables the report's home page embeds."""
    accuracy = figures.accuracy_table(pd.read_csv(knn_accuracy))
    targets = figures.targets_table(pd.read_csv(target_recovery), pd.read_csv(discovery_summary))
    write_csv_atomic(accuracy_out, accuracy)
    write_csv_atomic(targets_out, targets)
    log.info("key figures: %d accuracy rows, %d target rows", len(accuracy), len(targets))

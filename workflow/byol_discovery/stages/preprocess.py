"""Stage ``preprocess``: the HDF5 image store and the quarantine table."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from byol_discovery.config import from_mapping
from byol_discovery.io.tables import POSITION_COLUMNS
from byol_discovery.stages.common import LOG, Settings


def preprocess(
    catalogue: str | Path,
    store: str | Path,
    quarantine: str | Path,
    settings: Settings,
    dataset: str = "",
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """Build the HDF5 image store; return the quarantine table."""
    from byol_discovery.preprocessing import PreprocessConfig, build_store

    options = dict(settings)
    columns, workers = list(options.pop("columns", [])), options.pop("workers", 1)
    # A name and sky position always reach the ranked tables (and the labelling page).
    header = pd.read_csv(catalogue, nrows=0).columns
    columns += [column for column in POSITION_COLUMNS if column in header and column not in columns]
    config = from_mapping(PreprocessConfig, options, "preprocess")
    rejected = build_store(
        catalogue, store, quarantine, config, columns=columns, workers=workers, dataset=dataset, log=log
    )
    if len(rejected):
        log.warning("%d cutouts quarantined; reasons: %s", len(rejected), rejected["reason"].value_counts().to_dict())
    return rejected

"""Helpers shared by the stage functions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

Settings = Mapping[str, Any]
LOG = logging.getLogger("byol_discovery.stages")


def checked_catalogue(store: Any, feature_ids: np.ndarray, features: Any) -> pd.DataFrame:
    """The store's catalogue, once it is clear that the features file describes the store's
    objects in the store's order: what a stage does before its real work, so that features
    of other objects fail at once, with an error naming both files."""
    from byol_discovery.io.store import ImageStore

    with ImageStore(store) as images:
        catalogue = images.catalogue()
    if not np.array_equal(feature_ids, catalogue["id"].to_numpy()):
        raise ValueError(f"{features} and {store} hold different objects; rerun the features stage")
    return catalogue


def store_columns(catalogue: Any, columns: list[str], setting: str) -> dict[str, np.ndarray]:
    """The named catalogue columns of a store as arrays; a missing one is an error naming the
    setting that asked for it and the columns the store does have."""
    missing = [column for column in columns if column not in catalogue.columns]
    if missing:
        raise ValueError(
            f"{setting}: columns {missing} are not in the store (it has {list(catalogue.columns)}); "
            "carry them with preprocess.columns"
        )
    return {column: catalogue[column].to_numpy() for column in columns}

"""Helpers shared by the stage functions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

Settings = Mapping[str, Any]
LOG = logging.getLogger("byol_discovery.stages")


def check_same_objects(feature_ids: np.ndarray, store_ids: np.ndarray, features: Any, store: Any) -> None:
    """Fail clearly when a features file and the store describe different objects."""
    if len(feature_ids) != len(store_ids) or not np.array_equal(feature_ids, store_ids):
        raise ValueError(f"{features} and {store} hold different objects; rerun extract_features")


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

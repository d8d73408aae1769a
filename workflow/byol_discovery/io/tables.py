"""Ranked tables as a person reads them: each object's catalogue name and sky position
beside its scores, written as CSV and as ECSV with units (TOPCAT and astropy read it as is)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from byol_discovery.io.atomic import atomic_path, write_csv_atomic

# Columns a ranked table carries, first, whenever the store's catalogue has them.
POSITION_COLUMNS = ("catalogue_id", "ra", "dec")
UNITS = {"ra": "deg", "dec": "deg"}


def with_catalogue(table: pd.DataFrame, catalogue: pd.DataFrame, leave_out: Iterable[str] = ()) -> pd.DataFrame:
    """``table`` (one row per object, ``id`` column) with the store's catalogue columns joined
    on ``id``: ``catalogue_id``, ``ra``, ``dec`` first, then the others in store order.

    ``leave_out`` are columns kept away from the table (the anomaly target: a person labelling
    from the list would see the catalogue's answer). A column whose name the table already
    uses is carried as ``catalogue_<name>`` (unless it holds the same values)."""
    skip = set(leave_out) | {"id"}
    names = [c for c in POSITION_COLUMNS if c in catalogue.columns] + [
        c for c in catalogue.columns if c not in POSITION_COLUMNS
    ]
    rows = catalogue.set_index(catalogue["id"].astype(str))
    keys = table["id"].astype(str)
    joined = table.copy()
    for name in names:
        if name in skip:
            continue
        values = rows[name].reindex(keys).to_numpy()
        if name in joined.columns:
            if (joined[name].astype(str).to_numpy() == pd.Series(values).astype(str).to_numpy()).all():
                continue
            name = f"catalogue_{name}"
        joined[name] = values
    return joined


def write_ranked_table(csv_path: str | os.PathLike[str], ecsv_path: str | os.PathLike[str],
                       frame: pd.DataFrame) -> None:
    """``frame`` as CSV and as ECSV (ra/dec in degrees), each atomically."""
    from astropy.table import Table

    write_csv_atomic(csv_path, frame)
    table = Table.from_pandas(frame.reset_index(drop=True))
    for column, unit in UNITS.items():
        if column in table.colnames:
            table[column].unit = unit
    with atomic_path(ecsv_path) as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)

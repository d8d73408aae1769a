"""Ranked tables as a person reads them: each object's catalogue name and sky position
beside its scores, written as CSV and as ECSV with units (TOPCAT and astropy read it as is)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

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
        text = [frame[name] for name in frame.columns if table[name].dtype.kind == "U"]
        if (any(table[name].dtype.kind not in _FAST_ECSV_KINDS for name in table.colnames)
                or any(column.astype(str).str.contains(_MISSING, regex=False).any() for column in text)):
            table.write(tmp, format="ascii.ecsv", overwrite=True)  # object columns, or text holding the stand-in
        else:
            _write_ecsv_rows(tmp, table, frame.reset_index(drop=True))


# Column kinds whose values pandas writes as astropy's ECSV writer does (bool, int, unsigned, float, str).
_FAST_ECSV_KINDS = "biufU"
_MISSING = "\u2400"  # stands for a missing value or empty text while pandas writes; ECSV writes them as ""
_ECSV_BLOCK = 50_000  # rows formatted at a time


def _write_ecsv_rows(path: str | os.PathLike[str], table: Any, frame: pd.DataFrame) -> None:
    """``table`` (made from ``frame``) as ECSV: astropy writes the header, pandas the rows, the
    same text astropy's writer gives (a quoted empty field for a missing value or empty text)
    in a fraction of its time, which formats each masked value on its own (minutes at a
    few hundred thousand rows)."""
    text_columns = [name for name in frame.columns if table[name].dtype.kind == "U"]
    with open(path, "w", encoding="utf-8", newline="") as file:
        table[:0].write(file, format="ascii.ecsv")
        for start in range(0, len(frame), _ECSV_BLOCK):
            block = frame.iloc[start : start + _ECSV_BLOCK].copy()
            for name in text_columns:
                block[name] = block[name].mask(block[name].astype(str) == "", _MISSING)
            rows = block.to_csv(sep=" ", header=False, index=False, na_rep=_MISSING, lineterminator="\n")
            file.write(rows.replace(_MISSING, '""'))

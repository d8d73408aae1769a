"""Catalogue tables: one row per object, keyed by a sanitised ``id``."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("id", "file")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_id(raw: object) -> str:
    """A file-name-safe form of a catalogue id: no separators, NUL, or leading dots.

    Ids come from catalogues downloaded from elsewhere; building paths from them unchecked
    would let an id such as ``../../x`` write outside the data folder.
    """
    text = _UNSAFE.sub("_", str(raw)).strip("._")
    if not text:
        raise ValueError(f"catalogue id {raw!r} has no usable characters")
    return text[:200]


def read_catalogue(path: str | Path) -> pd.DataFrame:
    """Read a dataset catalogue CSV with at least ``id`` and ``file`` columns.

    ``file`` is relative to the catalogue's folder. Ids must be unique and neither may be empty.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"id": str, "file": str}, keep_default_na=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{path}: cannot read catalogue: {error}") from error
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: catalogue lacks column(s) {missing}; it has {list(table.columns)}")
    for column in REQUIRED_COLUMNS:
        blank = table.index[table[column].isna() | (table[column].str.strip() == "")]
        if len(blank):
            lines = ", ".join(str(row + 2) for row in blank[:5])  # 1-based, after the header line
            raise ValueError(f"{path}: empty {column!r} on line(s) {lines} ({len(blank)} in all)")
    duplicated = table["id"][table["id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: duplicate ids, e.g. {duplicated.iloc[0]!r} ({len(duplicated)} in all)")
    return table

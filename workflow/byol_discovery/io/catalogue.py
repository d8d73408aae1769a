"""Catalogue tables: one row per object, keyed by a sanitised ``id``."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("id", "file")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


# pandas' default missing-value markers (read_csv's na_values), spelt out so that text
# columns can be spared them.
PANDAS_MISSING = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                  "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


def missing_markers(columns: Iterable[str], text_columns: Iterable[str]) -> dict[str, list[str]]:
    """``na_values`` for ``read_csv(keep_default_na=False)``: pandas' defaults, except that
    in ``text_columns`` (ids, file names) only an empty cell is missing, for an object may be
    called "NA" or "null"."""
    text = set(text_columns)
    return {column: [""] if column in text else list(PANDAS_MISSING) for column in columns}


def unique_safe_ids(raw_ids: Iterable[object]) -> list[str]:
    """:func:`safe_id` of each raw id, kept apart: an id with no usable characters, or one
    whose safe form an earlier, different raw id already took (``NGC 1`` and ``NGC_1``), gets
    a short hash of the raw id, so every object keeps a name of its own. Repeats of one raw
    id keep one name (the caller decides about duplicates)."""
    names: list[str] = []
    owner: dict[str, str] = {}
    for raw in raw_ids:
        text = str(raw)
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
        try:
            name = safe_id(text)
        except ValueError:
            name = f"id_{digest}"
        if owner.setdefault(name, text) != text:
            name = f"{name[:189]}-{digest}"
            owner.setdefault(name, text)
        names.append(name)
    return names


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
        header = pd.read_csv(path, nrows=0).columns
        table = pd.read_csv(path, dtype={"id": str, "file": str}, keep_default_na=False,
                            na_values=missing_markers(header, REQUIRED_COLUMNS))
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

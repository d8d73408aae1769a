"""Choosing objects from a large survey catalogue and deriving labels from its columns.

The Galaxy Zoo DECaLS catalogues are 150 MB to 2.6 GB of CSV; they are read in chunks,
keeping only the columns a selection needs, so memory follows the selection and not the
file. Selection and labelling are plain data (YAML), never code: a condition is a column
compared with ``min`` / ``max`` / ``equals``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from byol_discovery.io.catalogue import missing_markers

__all__ = ["Condition", "LabelRule", "Selection", "derive_labels", "parse_labels", "select_rows"]


@dataclass(frozen=True)
class Condition:
    """``column`` >= ``min``, <= ``max`` and == ``equals`` (each only when given)."""

    column: str
    min: float | None = None
    max: float | None = None
    equals: Any = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> Condition:
        unknown = sorted(set(raw) - {"column", "min", "max", "equals"})
        if unknown or "column" not in raw:
            raise ValueError(f"{where}: a condition needs 'column' and any of min/max/equals; got {dict(raw)}")
        return cls(str(raw["column"]), raw.get("min"), raw.get("max"), raw.get("equals"))

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """True where the row meets the condition; missing values never do."""
        values = frame[self.column]
        keep = pd.Series(True, index=frame.index)
        if self.min is not None or self.max is not None:
            numbers = pd.to_numeric(values, errors="coerce")
            keep &= numbers.notna()
            if self.min is not None:
                keep &= numbers >= float(self.min)
            if self.max is not None:
                keep &= numbers <= float(self.max)
        if self.equals is not None:
            keep &= _equal(values, self.equals)
        return keep


def _equal(values: pd.Series, target: Any) -> pd.Series:
    """Compare as text for booleans and strings, so 'False', False and 'false' agree."""
    if isinstance(target, (bool, str)):
        return values.astype(str).str.strip().str.lower() == str(target).strip().lower()
    return pd.to_numeric(values, errors="coerce") == target


@dataclass(frozen=True)
class LabelRule:
    """A label column: the first class whose condition holds, else ``default``."""

    name: str
    classes: tuple[tuple[Any, Condition], ...]
    default: Any = ""

    @property
    def columns(self) -> list[str]:
        return [condition.column for _, condition in self.classes]


def parse_labels(raw: Mapping[str, Any] | None) -> tuple[LabelRule, ...]:
    """Label rules from config: ``{name: {default: .., classes: [{value: .., column: .., min: ..}]}}``."""
    rules = []
    for name, spec in (raw or {}).items():
        where = f"labels.{name}"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("classes"), Sequence):
            raise ValueError(f"{where}: needs a list of 'classes'")
        unknown = sorted(set(spec) - {"classes", "default"})
        if unknown:
            raise ValueError(f"{where}: unknown setting(s) {unknown}")
        classes = []
        for i, entry in enumerate(spec["classes"]):
            if "value" not in entry:
                raise ValueError(f"{where}.classes[{i}]: needs a 'value'")
            condition = {k: v for k, v in entry.items() if k != "value"}
            classes.append((entry["value"], Condition.parse(condition, f"{where}.classes[{i}]")))
        rules.append(LabelRule(str(name), tuple(classes), spec.get("default", "")))
    return tuple(rules)


def derive_labels(frame: pd.DataFrame, rules: Iterable[LabelRule]) -> pd.DataFrame:
    """``frame`` with one new column per rule (e.g. smooth / featured from vote fractions)."""
    out = frame.copy()
    for rule in rules:
        values = pd.Series([rule.default] * len(out), index=out.index, dtype=object)
        decided = pd.Series(False, index=out.index)
        for value, condition in rule.classes:
            hit = condition.mask(out) & ~decided
            values[hit] = value
            decided |= hit
        out[rule.name] = _tidy(values)
    return out


def _tidy(values: pd.Series) -> pd.Series:
    """Integer labels stay integers (0/1 targets), anything else stays text."""
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return values.astype(np.int64)
    return values.astype(str)


@dataclass(frozen=True)
class Selection:
    """Which catalogue rows to use.

    cuts: conditions every row must meet (quality cuts, e.g. ``wrong_size_warning`` false);
    sample: a seeded random subset of this many rows (after the cuts);
    limit: at most this many rows (after the cuts and any sample), in catalogue order;
    carry: extra catalogue columns copied into ``catalogue.csv``.
    """

    cuts: tuple[Condition, ...] = ()
    sample: int | None = None
    limit: int | None = None
    carry: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Selection:
        raw = dict(raw or {})
        unknown = sorted(set(raw) - {"cuts", "sample", "limit", "carry"})
        if unknown:
            raise ValueError(f"selection: unknown setting(s) {unknown}; allowed: carry, cuts, limit, sample")
        cuts = tuple(Condition.parse(c, f"selection.cuts[{i}]") for i, c in enumerate(raw.get("cuts", [])))
        for key in ("sample", "limit"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"selection.{key} must be a positive integer or null, not {value!r}")
        return cls(cuts, raw.get("sample"), raw.get("limit"), tuple(raw.get("carry", ())))


def select_rows(
    path: str | Path,
    columns: Sequence[str],
    selection: Selection,
    seed: int,
    chunksize: int = 50_000,
    text_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """The rows of the CSV at ``path`` that pass ``selection``, with ``columns`` (and those
    the cuts need) only. Reads in chunks: memory follows the selected rows, not the file.

    ``text_columns`` (ids) are read as text, so that large integer ids keep every digit and
    leading zeros, whatever the other rows hold."""
    header = pd.read_csv(path, nrows=0).columns
    wanted = list(dict.fromkeys([*columns, *selection.carry, *(c.column for c in selection.cuts)]))
    missing = [column for column in wanted if column not in header]
    if missing:
        raise ValueError(f"{path}: catalogue lacks column(s) {missing}")
    kept = []
    dtypes = {column: str for column in text_columns}
    for chunk in pd.read_csv(path, usecols=wanted, dtype=dtypes, chunksize=chunksize, low_memory=False,
                             keep_default_na=False, na_values=missing_markers(wanted, text_columns)):
        mask = pd.Series(True, index=chunk.index)
        for condition in selection.cuts:
            mask &= condition.mask(chunk)
        kept.append(chunk[mask])
    rows = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=wanted)
    if selection.sample is not None and selection.sample < len(rows):
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(rows), size=selection.sample, replace=False))
        rows = rows.iloc[chosen].reset_index(drop=True)
    if selection.limit is not None:
        rows = rows.iloc[: selection.limit].reset_index(drop=True)
    return rows

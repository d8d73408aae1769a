"""A folder of the user's own cutouts (FITS / PNG / JPEG) described by a CSV."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from byol_discovery.config import check_known
from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.io.catalogue import read_catalogue, unique_safe_ids
from byol_discovery.sources.registry import source_options


def index_local_folder(catalogue: str | Path, out_dir: str | Path, log: logging.Logger | None = None) -> Path:
    """Copy the user's catalogue to ``out_dir/catalogue.csv`` with sanitised ids and absolute paths.

    The user's CSV has ``id`` and ``file`` (relative to the CSV's folder, or absolute) and any
    other columns (ra, dec, labels). Images stay where they are. Ids become file-name safe
    (see :func:`unique_safe_ids`: two ids that would look the same, or one with no usable
    characters, get a hash of their own); the id as the user wrote it stays in
    ``catalogue_id`` (unless the CSV has that column already), to join results back on.
    """
    log = log or logging.getLogger(__name__)
    source = Path(catalogue).resolve()
    table = read_catalogue(source)
    if "catalogue_id" not in table.columns:
        table.insert(1, "catalogue_id", table["id"])
    table["id"] = unique_safe_ids(table["id"])
    table["file"] = [str((source.parent / file).resolve()) for file in table["file"]]
    out = Path(out_dir) / "catalogue.csv"
    write_csv_atomic(out, table)
    log.info("indexed %d local cutouts from %s", len(table), source)
    return out


# ----------------------------------------------------------------------------------------
# The source type's entry points (see :mod:`byol_discovery.sources.registry`)
# ----------------------------------------------------------------------------------------


def check_settings(source: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The ``catalogue`` CSV of :func:`index_local_folder`."""
    options = source_options(source)
    check_known(options, ("catalogue",), "source (local)")
    if not options.get("catalogue"):
        raise ValueError("source (local): needs 'catalogue', a CSV with id and file columns")
    return options


def shards(config: Mapping[str, Any]) -> int:
    return 0


def acquire(config: Mapping[str, Any], out_dir: str | Path, seed: int, log: logging.Logger) -> None:
    index_local_folder(config["catalogue"], out_dir, log=log)

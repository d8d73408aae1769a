"""A folder of the user's own cutouts (FITS / PNG / JPEG) described by a CSV."""

from __future__ import annotations

import logging
from pathlib import Path

from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.io.catalogue import read_catalogue, safe_id


def index_local_folder(catalogue: str | Path, out_dir: str | Path, log: logging.Logger | None = None) -> Path:
    """Copy the user's catalogue to ``out_dir/catalogue.csv`` with sanitised ids and absolute paths.

    The user's CSV has ``id`` and ``file`` (relative to the CSV's folder, or absolute) and any
    other columns (ra, dec, labels). Images stay where they are.
    """
    log = log or logging.getLogger(__name__)
    source = Path(catalogue).resolve()
    table = read_catalogue(source)
    table["id"] = [safe_id(value) for value in table["id"]]
    duplicated = table["id"][table["id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{source}: ids collide once made file-name safe, e.g. {duplicated.iloc[0]!r}")
    table["file"] = [str((source.parent / file).resolve()) for file in table["file"]]
    out = Path(out_dir) / "catalogue.csv"
    write_csv_atomic(out, table)
    log.info("indexed %d local cutouts from %s", len(table), source)
    return out

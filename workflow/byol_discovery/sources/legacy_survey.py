"""Cutouts from the Legacy Surveys cutout service, for any catalogue of positions.

The acquisition of a survey runs in three steps so that a cluster can run the middle one
as N parallel jobs:

1. :func:`select_objects`: read the catalogue (in chunks), apply the selection, derive
   labels, choose each object's cutout URL and file name; write ``selection.csv``.
2. :func:`download_shard`: fetch every N-th object of the selection (shard k of N) with
   :func:`byol_discovery.sources.download.download_all`; write that shard's ledger.
3. :func:`gather_ledgers`: the dataset ledger and ``catalogue.csv`` of the objects that arrived.

Service facts (legacysurvey.org): ``{base}/fits-cutout?ra=&dec=&layer=&pixscale=&size=&bands=``
answers a float32 (bands, H, W) cube with header BANDS; ``jpeg-cutout`` a colour JPEG.
Sizes above 3000 px are silently clamped, so they are refused here.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from byol_discovery.config import from_mapping
from byol_discovery.io.atomic import atomic_path
from byol_discovery.io.catalogue import unique_safe_ids
from byol_discovery.sources.download.ledger import LEDGER_COLUMNS
from byol_discovery.sources.download.many_files import download_all
from byol_discovery.sources.download.paths import cutout_relpath
from byol_discovery.sources.download.progress import DownloadSummary
from byol_discovery.sources.download.settings import DownloadSettings, Task
from byol_discovery.sources.selection import LabelRule, Selection, derive_labels, parse_labels, select_rows

__all__ = [
    "GZ_DECALS_SIZE",
    "MAX_SIZE",
    "CutoutSpec",
    "SurveySource",
    "acquire",
    "check_settings",
    "cutout_url",
    "download_in_one_job",
    "download_shard",
    "gather",
    "gather_ledgers",
    "gz_decals_pixscale",
    "parse_survey_source",
    "plan_cutouts",
    "select",
    "select_objects",
    "shard_settings",
    "shard_tasks",
    "shards",
]

DEFAULT_BASE_URL = "https://www.legacysurvey.org/viewer"
MAX_SIZE = 3000  # the service silently clamps larger cutouts
GZ_DECALS_SIZE = 424  # pixels of a Galaxy Zoo DECaLS image
SELECTION_FILE = "selection.csv"
LEDGER_FILE = "ledger.csv"


@dataclass(frozen=True)
class CutoutSpec:
    """What to ask the cutout service for.

    pixscale: arcsec per pixel, or ``petrosian`` for the Galaxy Zoo DECaLS field of view
    (see :func:`gz_decals_pixscale`), which needs the two Petrosian radius columns.
    """

    base_url: str = DEFAULT_BASE_URL
    layer: str = "ls-dr10"
    format: str = "fits"  # fits (grz flux cube) or jpeg
    bands: str = "grz"
    size: int = 256
    pixscale: float | str = 0.262
    petro_th50_column: str = "petro_th50"
    petro_th90_column: str = "petro_th90"

    def __post_init__(self) -> None:
        if self.format not in ("fits", "jpeg"):
            raise ValueError(f"cutouts.format must be fits or jpeg, not {self.format!r}")
        if not isinstance(self.size, int) or not 8 <= self.size <= MAX_SIZE:
            raise ValueError(f"cutouts.size must be an integer in 8..{MAX_SIZE} (the service clamps larger), "
                             f"not {self.size!r}")
        if self.pixscale != "petrosian" and not (isinstance(self.pixscale, (int, float)) and self.pixscale > 0):
            raise ValueError(f"cutouts.pixscale must be a positive number or 'petrosian', not {self.pixscale!r}")
        if not self.bands.isalpha():
            raise ValueError(f"cutouts.bands must be band letters such as 'grz', not {self.bands!r}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"cutouts.base_url must be an http(s) URL, not {self.base_url!r}")

    @property
    def suffix(self) -> str:
        return ".fits" if self.format == "fits" else ".jpg"

    @property
    def columns(self) -> list[str]:
        """Catalogue columns the spec needs beyond the position."""
        return [self.petro_th50_column, self.petro_th90_column] if self.pixscale == "petrosian" else []


def gz_decals_pixscale(petro_th50: float, petro_th90: float, size: int = GZ_DECALS_SIZE) -> float:
    """Arcsec per pixel that gives the Galaxy Zoo DECaLS field of view at ``size`` pixels.

    GZ DECaLS (Walmsley et al. 2022) cut 424 px images at max(min(0.04 r50, 0.02 r90), 0.1)
    arcsec/px from the Petrosian radii (arcsec), so the galaxy fills a similar share of
    every frame; a smaller ``size`` keeps that field of view with coarser pixels.
    """
    native = max(min(0.04 * float(petro_th50), 0.02 * float(petro_th90)), 0.1)
    return native * GZ_DECALS_SIZE / size


def cutout_url(spec: CutoutSpec, ra: float, dec: float, pixscale: float) -> str:
    """The cutout service URL of one object."""
    query = {"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "layer": spec.layer, "pixscale": f"{pixscale:.4f}",
             "size": str(spec.size)}
    if spec.format == "fits":
        query["bands"] = spec.bands
    return f"{spec.base_url.rstrip('/')}/{spec.format}-cutout?{urllib.parse.urlencode(query)}"


def plan_cutouts(rows: pd.DataFrame, spec: CutoutSpec, ra_column: str = "ra", dec_column: str = "dec") -> pd.DataFrame:
    """``rows`` (with a sanitised ``id``) plus ``pixscale``, ``url`` and ``file`` (relative path)."""
    # RA wraps (-10 is 350 degrees); a declination outside [-90, 90] is no position at all.
    ra = pd.to_numeric(rows[ra_column], errors="coerce") % 360.0
    dec = pd.to_numeric(rows[dec_column], errors="coerce")
    if spec.pixscale == "petrosian":
        th50 = pd.to_numeric(rows[spec.petro_th50_column], errors="coerce")
        th90 = pd.to_numeric(rows[spec.petro_th90_column], errors="coerce")
        pixscale = [gz_decals_pixscale(a, b, spec.size) if np.isfinite(a) and np.isfinite(b) else math.nan
                    for a, b in zip(th50, th90, strict=True)]
    else:
        pixscale = [float(spec.pixscale)] * len(rows)
    out = rows.copy()
    out["pixscale"] = pixscale
    good = np.isfinite(ra) & np.isfinite(dec) & dec.between(-90, 90) & np.isfinite(out["pixscale"])
    out = out[good].reset_index(drop=True)
    out["url"] = [cutout_url(spec, r, d, p) for r, d, p in zip(ra[good], dec[good], out["pixscale"], strict=True)]
    out["file"] = [cutout_relpath(i, spec.suffix) for i in out["id"]]
    return out


@dataclass(frozen=True)
class SurveySource:
    """A catalogue of positions whose images come from a cutout service, parsed from config."""

    catalogue: str | None
    id_column: str
    ra_column: str
    dec_column: str
    selection: Selection
    labels: tuple[LabelRule, ...]
    cutouts: CutoutSpec
    shards: int
    download: DownloadSettings


SURVEY_KEYS = {"type", "catalogue", "id_column", "ra_column", "dec_column", "selection", "labels", "cutouts",
               "shards", "download"}


def parse_survey_source(source: Mapping[str, Any], extra_keys: Sequence[str] = (),
                        cutouts: Mapping[str, Any] | None = None) -> SurveySource:
    """Parse a ``legacy_survey`` source (``extra_keys`` are allowed and left to the caller)."""
    unknown = sorted(set(source) - SURVEY_KEYS - set(extra_keys))
    if unknown:
        raise ValueError(f"source: unknown setting(s) {unknown}; allowed: {sorted(SURVEY_KEYS | set(extra_keys))}")
    shards = source.get("shards", 1)
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"source.shards must be a positive integer, not {shards!r}")
    spec = cutouts if cutouts is not None else source.get("cutouts", {})
    return SurveySource(
        catalogue=source.get("catalogue"),
        id_column=source.get("id_column", "id"),
        ra_column=source.get("ra_column", "ra"),
        dec_column=source.get("dec_column", "dec"),
        selection=Selection.parse(source.get("selection")),
        labels=parse_labels(source.get("labels")),
        cutouts=from_mapping(CutoutSpec, spec, "source.cutouts"),
        shards=shards,
        download=from_mapping(DownloadSettings, source.get("download", {}), "source.download"),
    )


def selected_rows(config: SurveySource, catalogue: str | Path, seed: int,
                  log: logging.Logger | None = None) -> pd.DataFrame:
    """The catalogue rows chosen by the config, with sanitised unique ``id`` and labels."""
    log = log or logging.getLogger(__name__)
    label_columns = [column for rule in config.labels for column in rule.columns]
    needed = [config.id_column, config.ra_column, config.dec_column, *config.cutouts.columns, *label_columns]
    rows = select_rows(catalogue, needed, config.selection, seed, text_columns=[config.id_column])
    blank = rows[config.id_column].isna() | (rows[config.id_column].str.strip() == "")
    if blank.any():
        log.warning("dropping %d rows of %s with an empty %r", int(blank.sum()), catalogue, config.id_column)
        rows = rows[~blank].reset_index(drop=True)
    rows = derive_labels(rows, config.labels)
    ids = unique_safe_ids(rows[config.id_column])
    # The catalogue's own id column (the default id_column) gives way to its sanitised form.
    rows = rows.drop(columns="id", errors="ignore")
    rows.insert(0, "id", ids)
    duplicated = rows["id"].duplicated()
    if duplicated.any():
        log.warning("dropping %d rows whose id repeats an earlier one, e.g. %r", int(duplicated.sum()),
                    rows["id"][duplicated].iloc[0])
        rows = rows[~duplicated].reset_index(drop=True)
    log.info("selected %d objects from %s", len(rows), catalogue)
    return rows


def select_objects(config: SurveySource, catalogue: str | Path, out_dir: str | Path, seed: int,
                   log: logging.Logger | None = None) -> Path:
    """Write ``out_dir/selection.csv``: id, the chosen catalogue columns, labels, pixscale, url, file."""
    log = log or logging.getLogger(__name__)
    rows = selected_rows(config, catalogue, seed, log)
    planned = plan_cutouts(rows, config.cutouts, config.ra_column, config.dec_column)
    if len(planned) < len(rows):
        log.warning("%d selected rows lack a usable position or Petrosian radius", len(rows) - len(planned))
    if planned.empty:
        raise ValueError(f"{catalogue}: the selection keeps no object")
    path = Path(out_dir) / SELECTION_FILE
    with atomic_path(path) as tmp:
        planned.to_csv(tmp, index=False)
    log.info("planned %d cutouts (%s %s, %d px) in %s", len(planned), config.cutouts.layer, config.cutouts.format,
             config.cutouts.size, path)
    return path


def _shard_rows(selection: str | Path, shard: int, shards: int, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Rows ``i`` of the selection with ``i % shards == shard``, read in chunks (flat memory)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    offset = 0
    for chunk in pd.read_csv(selection, usecols=list(columns), dtype=str, chunksize=20_000, keep_default_na=False):
        mine = chunk.iloc[(shard - offset) % shards :: shards]
        offset += len(chunk)
        yield from mine.to_dict("records")


def shard_tasks(selection: str | Path, shard: int, shards: int, spec: CutoutSpec) -> Iterator[Task]:
    """The download tasks of shard ``shard`` of ``shards``."""
    kind = "fits" if spec.format == "fits" else "jpeg"
    for row in _shard_rows(selection, shard, shards, ("id", "url", "file")):
        yield Task(row["id"], row["url"], row["file"], kind, spec.bands if kind == "fits" else None, spec.size)


def shard_size(selection: str | Path, shard: int, shards: int) -> int:
    """How many objects shard ``shard`` holds."""
    return sum(1 for _ in _shard_rows(selection, shard, shards, ("id",)))


def shard_settings(settings: DownloadSettings, running_together: int) -> DownloadSettings:
    """One shard's share of the dataset's connections and request rate.

    ``connections`` and ``rate`` are budgets for the whole dataset: however many shard jobs
    the scheduler runs at once, the service never sees more than the configured rate.
    """
    if running_together <= 1:
        return settings
    return replace(settings, connections=max(1, math.ceil(settings.connections / running_together)),
                   rate=settings.rate / running_together)


def download_shard(config: SurveySource, selection: str | Path, shard: int, out_dir: str | Path,
                   ledger_out: str | Path | None = None, seed: int | None = None,
                   log: logging.Logger | None = None, running_together: int | None = None) -> DownloadSummary:
    """Download shard ``shard`` of ``config.shards`` into ``out_dir``.

    ``running_together`` is how many shards may run at once (default: all of them); each
    gets that share of the rate and connections. The ledger that makes reruns resumable
    lives in ``out_dir/state/`` (a place Snakemake never deletes); ``ledger_out`` receives
    a copy (the rule's declared output).
    """
    log = log or logging.getLogger(__name__)
    state = Path(out_dir) / "state" / f"ledger-{shard}.csv"
    total = shard_size(selection, shard, config.shards)
    settings = shard_settings(config.download, config.shards if running_together is None else running_together)
    log.info("shard %d/%d: %d cutouts, %d connection(s), %s requests/s", shard + 1, config.shards, total,
             settings.connections, f"{settings.rate:g}" if settings.rate else "unlimited")
    tasks = shard_tasks(selection, shard, config.shards, config.cutouts)
    summary = download_all(tasks, out_dir, state, settings, log, total=total, seed=seed)
    if ledger_out is not None:
        with atomic_path(ledger_out) as tmp:
            shutil.copyfile(state, tmp)
    return summary


def gather_ledgers(selection: str | Path, ledgers: Sequence[str | Path], out_dir: str | Path,
                   max_failed_fraction: float = 0.5, log: logging.Logger | None = None) -> Path:
    """Write the dataset ``ledger.csv`` and ``catalogue.csv`` (the selected objects that arrived)."""
    log = log or logging.getLogger(__name__)
    out_dir = Path(out_dir)
    ok: set[str] = set()
    counts: dict[str, int] = {}
    with atomic_path(out_dir / LEDGER_FILE) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LEDGER_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for ledger in ledgers:
            with Path(ledger).open(newline="") as source:
                for row in csv.DictReader(source):
                    writer.writerow(row)
                    counts[row["status"]] = counts.get(row["status"], 0) + 1
                    if row["status"] == "ok":
                        ok.add(row["id"])
    selected = sum(len(chunk) for chunk in pd.read_csv(selection, usecols=["id"], dtype=str, chunksize=100_000))
    log.info("gathered %d shard ledger(s): %s of %d selected objects", len(ledgers), counts, selected)
    _check_failures(selected, len(ok), counts.get("rejected", 0), max_failed_fraction, out_dir / LEDGER_FILE)
    write_catalogue(selection, ok, out_dir / "catalogue.csv")
    return out_dir / "catalogue.csv"


def write_catalogue(selection: str | Path, ok: set[str], path: str | Path) -> None:
    """Copy the selection rows whose id is in ``ok`` to ``path`` (without the url), chunk by chunk.

    Values are copied as text: guessing types chunk by chunk could write one column as ``1``
    in one chunk and ``1.0`` in the next."""
    first = True
    with atomic_path(path) as tmp:
        for chunk in pd.read_csv(selection, dtype=str, keep_default_na=False, chunksize=50_000):
            chunk[chunk["id"].isin(ok)].drop(columns=["url"], errors="ignore").to_csv(
                tmp, mode="w" if first else "a", header=first, index=False)
            first = False


def _check_failures(selected: int, ok: int, rejected: int, max_failed_fraction: float, ledger: Path) -> None:
    if ok == 0 or (selected and (selected - ok) / selected > max_failed_fraction):
        # A rerun asks again for failed objects only: rejected ones (served, but not an image)
        # stay rejected unless the user says otherwise.
        raise RuntimeError(
            f"only {ok} of {selected} cutouts could be downloaded (limit: {max_failed_fraction:.0%} missing; "
            f"{rejected} rejected by their content, {selected - ok - rejected} failed); see {ledger}. "
            "Rerun to retry the failed ones; set download.retry_rejected: true to ask again for the rejected ones."
        )


# ----------------------------------------------------------------------------------------
# The source type's entry points (see :mod:`byol_discovery.sources.registry`)
# ----------------------------------------------------------------------------------------


def check_settings(source: Mapping[str, Any], seed: int) -> SurveySource:
    return parse_survey_source(source)


def shards(config: SurveySource) -> int:
    return config.shards


def select(config: SurveySource, out_dir: str | Path, seed: int, log: logging.Logger) -> Path:
    """:func:`select_objects` from the source's own catalogue."""
    if not config.catalogue:
        raise ValueError("a legacy_survey source needs 'catalogue': a CSV with id, ra and dec columns")
    return select_objects(config, Path(config.catalogue), out_dir, seed, log)


def gather(config: SurveySource, selection: str | Path, ledgers: Sequence[str | Path], out_dir: str | Path,
           log: logging.Logger) -> Path:
    return gather_ledgers(selection, ledgers, out_dir, config.download.max_failed_fraction, log)


def download_in_one_job(config: SurveySource, selection: str | Path, out_dir: str | Path, seed: int,
                        log: logging.Logger) -> Path:
    """Every shard of ``selection`` one after the other, then :func:`gather_ledgers`: what the
    parallel download jobs and the gather job do, in this process (outside Snakemake)."""
    ledgers = []
    for shard in range(config.shards):
        ledger = Path(out_dir) / "shards" / f"ledger-{shard}.csv"
        download_shard(config, selection, shard, out_dir, ledger, seed, log, running_together=1)
        ledgers.append(ledger)
    return gather(config, selection, ledgers, out_dir, log)


def acquire(config: SurveySource, out_dir: str | Path, seed: int, log: logging.Logger) -> None:
    download_in_one_job(config, select(config, out_dir, seed, log), out_dir, seed, log)

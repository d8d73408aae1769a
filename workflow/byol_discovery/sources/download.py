"""A polite, resumable, validating downloader for many small files (survey cutouts).

Why each piece is here:

* Survey services have no published rate limit but do throttle: a few connections
  (``connections``) and a global request-rate cap shared by all threads (``rate``) keep us
  welcome; a 429 with Retry-After pauses every thread, not only the one that was told.
* 429, 5xx, timeouts and cut connections are retried with exponential backoff and jitter;
  answers that can never succeed (400, 404, a text error page, a cutout outside the
  footprint) are recorded as ``rejected`` and not asked again.
* Services answer some errors with HTTP 200 and a text page, so every body is validated
  (:func:`validate_payload`) before it is kept; files are written atomically.
* A ledger (id, url, path, status, bytes, sha256, attempts, error) records every object.
  Rows are appended to a journal as they finish, so an interrupted run loses nothing; a
  rerun skips files the ledger says are complete and retries only the failures.
* Tasks are consumed from an iterator with a bounded window of requests in flight, so
  memory does not grow with the catalogue (beyond one small ledger row per object).
"""

from __future__ import annotations

import contextlib
import csv
import email.utils
import hashlib
import http.client
import io
import logging
import math
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from byol_discovery.io.atomic import atomic_path, write_text_atomic
from byol_discovery.io.catalogue import safe_id
from byol_discovery.io.images import FITS_BLOCK, FITS_MAGIC
from byol_discovery.logs import Throttle, progress_line

__all__ = [
    "LEDGER_COLUMNS",
    "ChecksumError",
    "DownloadSettings",
    "DownloadSummary",
    "InvalidResponse",
    "Ledger",
    "RateLimiter",
    "ServiceBusy",
    "Task",
    "backoff_delay",
    "cutout_relpath",
    "download_all",
    "download_file",
    "file_digest",
    "ledger_row",
    "parse_retry_after",
    "resolve_inside",
    "validate_payload",
    "verified_copy",
]

LEDGER_COLUMNS = ("id", "url", "path", "status", "bytes", "sha256", "attempts", "error")
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 20  # bytes per read when streaming a large file


@dataclass(frozen=True)
class DownloadSettings:
    """How hard to press a service. Defaults are polite: 4 connections, 4 requests/s."""

    connections: int = 4
    rate: float = 4.0  # requests per second over all connections; 0 = no cap
    timeout: float = 60.0  # seconds per socket operation
    max_attempts: int = 6
    backoff_base: float = 1.0  # seconds before the first retry (doubled each time, jittered)
    backoff_max: float = 120.0  # longest wait of the exponential backoff
    retry_after_max: float = 3600.0  # a service's Retry-After is honoured up to this; longer fails the attempt
    max_bad_fraction: float = 0.2  # per band, zero or NaN pixels in a FITS cutout
    max_failed_fraction: float = 0.5  # fail the stage when more objects than this could not be had
    retry_rejected: bool = False  # ask again for objects a previous run recorded as rejected
    progress_every: float = 30.0  # seconds between progress lines in the log
    user_agent: str = "byol-discovery (https://github.com; research download)"

    def __post_init__(self) -> None:
        checks = {
            "connections": self.connections >= 1,
            "rate": self.rate >= 0,
            "timeout": self.timeout > 0,
            "max_attempts": self.max_attempts >= 1,
            "backoff_base": self.backoff_base >= 0,
            "backoff_max": self.backoff_max >= 0,
            "retry_after_max": self.retry_after_max >= 0,
            "max_bad_fraction": 0 <= self.max_bad_fraction <= 1,
            "max_failed_fraction": 0 <= self.max_failed_fraction <= 1,
            "progress_every": self.progress_every > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"download settings out of range: {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)}")


@dataclass(frozen=True)
class Task:
    """One file to fetch: ``path`` is relative to the download root; ``kind`` says how to validate."""

    id: str
    url: str
    path: str
    kind: str = "fits"  # fits | jpeg | png
    bands: str | None = None  # expected BANDS header and number of planes (FITS)
    size: int | None = None  # expected width and height in pixels


class InvalidResponse(Exception):
    """A body or status that is not a usable file; ``permanent`` ones are not retried."""

    def __init__(self, reason: str, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


class ChecksumError(ValueError):
    """A downloaded or configured file whose checksum is not the published one."""


# ----------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------


def cutout_relpath(object_id: object, suffix: str, folder: str = "cutouts") -> str:
    """``cutouts/<2 hex>/<safe id><suffix>``: a sanitised name spread over 256 folders.

    A survey's 300k files in one folder make every listing slow; the hash prefix spreads
    them evenly whatever the id scheme.
    """
    name = safe_id(object_id)
    bucket = hashlib.sha1(name.encode()).hexdigest()[:2]
    return f"{folder}/{bucket}/{name}{suffix}"


def resolve_inside(root: str | Path, relative: str) -> Path:
    """``root / relative``, refusing any path that would land outside ``root``."""
    if "\x00" in relative:
        raise ValueError(f"path {relative!r} contains NUL")
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"path {relative!r} escapes {base}")
    return target


# ----------------------------------------------------------------------------------------
# Validation of bodies
# ----------------------------------------------------------------------------------------


def validate_payload(body: bytes, task: Task, max_bad_fraction: float = 0.2) -> None:
    """Raise :class:`InvalidResponse` unless ``body`` is a usable file of ``task.kind``."""
    if not body:
        raise InvalidResponse("empty body", permanent=False)
    if task.kind == "fits":
        _validate_fits(body, task, max_bad_fraction)
    elif task.kind in ("jpeg", "png"):
        _validate_raster(body, task)
    else:
        raise ValueError(f"unknown file kind {task.kind!r}")


def _text_snippet(body: bytes) -> str:
    return body[:60].decode("utf-8", errors="replace").strip().replace("\n", " ")


def _validate_fits(body: bytes, task: Task, max_bad_fraction: float) -> None:
    from astropy.io import fits

    if not body.startswith(FITS_MAGIC):
        # The cutout service answers a bad layer with HTTP 200 and a short text page.
        raise InvalidResponse(f"not FITS: service said {_text_snippet(body)!r}", permanent=True)
    if len(body) % FITS_BLOCK:
        raise InvalidResponse(f"truncated FITS ({len(body)} bytes, not a multiple of {FITS_BLOCK})", permanent=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(body), memmap=False) as hdus:
                header = hdus[0].header
                data = next((np.asarray(hdu.data) for hdu in hdus if hdu.data is not None), None)
    except Exception as error:  # astropy raises many types for a corrupt file
        raise InvalidResponse(f"unreadable FITS: {error}", permanent=False) from error
    if data is None:
        raise InvalidResponse("FITS holds no image", permanent=True)
    _check_fits_shape(data, header, task)
    _check_bad_pixels(data, max_bad_fraction)


def _check_fits_shape(data: np.ndarray, header: object, task: Task) -> None:
    planes = data[np.newaxis] if data.ndim == 2 else data
    if planes.ndim != 3:
        raise InvalidResponse(f"FITS image has shape {data.shape}", permanent=True)
    if task.bands is not None:
        declared = str(header.get("BANDS", task.bands)).strip()  # type: ignore[attr-defined]
        if declared != task.bands or planes.shape[0] != len(task.bands):
            raise InvalidResponse(
                f"bands {declared!r} x{planes.shape[0]}, expected {task.bands!r} (band not covered here?)",
                permanent=True,
            )
    if task.size is not None and planes.shape[1:] != (task.size, task.size):
        raise InvalidResponse(f"FITS image is {planes.shape[1:]}, expected {task.size}x{task.size}", permanent=True)


def _check_bad_pixels(data: np.ndarray, max_bad_fraction: float) -> None:
    planes = data[np.newaxis] if data.ndim == 2 else data
    bad = ~np.isfinite(planes) | (planes == 0)
    fractions = bad.reshape(planes.shape[0], -1).mean(axis=1)
    worst = int(np.argmax(fractions))
    if fractions[worst] > max_bad_fraction:
        # Off the footprint the service returns zeros: asking again will not help.
        raise InvalidResponse(
            f"{fractions[worst]:.0%} zero/NaN pixels in plane {worst} "
            f"(limit {max_bad_fraction:.0%}; off the footprint?)",
            permanent=True,
        )


def _validate_raster(body: bytes, task: Task) -> None:
    from PIL import Image, UnidentifiedImageError

    from byol_discovery.io.images import HIGH_DEPTH_MODES, raster_array

    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
            array = raster_array(image)
            eight_bit = image.mode not in HIGH_DEPTH_MODES
    except Image.DecompressionBombError as error:  # not an OSError: PIL's guard against huge headers
        raise InvalidResponse(f"image too large to decode safely: {error}", permanent=True) from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        if body.lstrip()[:1] in (b"<", b"{") or body[:20].isascii() and b"\x00" not in body[:200]:
            raise InvalidResponse(f"not an image: service said {_text_snippet(body)!r}", permanent=True) from error
        raise InvalidResponse(f"undecodable image: {error}", permanent=False) from error
    if task.size is not None and array.shape[:2] != (task.size, task.size):
        raise InvalidResponse(f"image is {array.shape[1]}x{array.shape[0]}, expected {task.size}x{task.size}", True)
    low, high = float(array.min()), float(array.max())
    # A JPEG of a position outside the footprint is black; JPEG noise may leave a few levels.
    if (high - low <= 2 or high <= 3) if eight_bit else high == low:
        raise InvalidResponse("blank image (outside the footprint?)", permanent=True)


# ----------------------------------------------------------------------------------------
# Timing: rate cap, Retry-After, backoff
# ----------------------------------------------------------------------------------------


class RateLimiter:
    """At most ``rate`` request starts per second over all threads; ``hold`` pauses them all."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def wait(self) -> None:
        """Block until this thread may start a request."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            self._sleep(start - now)

    def hold(self, seconds: float) -> None:
        """No thread starts a request for ``seconds`` (the service asked us to wait)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        seconds = float(value)
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return max(when - (time.time() if now is None else now), 0.0)
    return None


class ServiceBusy(RuntimeError):
    """The service asked for a longer pause than ``retry_after_max``: the download stops
    (finished files are kept; a rerun later resumes) rather than retry before it said."""


def check_wait(error: InvalidResponse, url: str, settings: DownloadSettings) -> None:
    """Raise :class:`ServiceBusy` when ``error`` carries a Retry-After over ``retry_after_max``."""
    if error.retry_after is not None and error.retry_after > settings.retry_after_max:
        raise ServiceBusy(
            f"{url}: {error.reason}; the service asks to wait {error.retry_after:.0f} s (Retry-After), over "
            f"source.download.retry_after_max ({settings.retry_after_max:g} s): stopping; run again later "
            "(finished files are kept)"
        )


def backoff_delay(attempt: int, settings: DownloadSettings, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Wait before retry number ``attempt`` (1-based): jittered exponential (at most
    ``backoff_max``), and at least the service's Retry-After (at most ``retry_after_max``)."""
    rng = rng or random.Random()
    ceiling = min(settings.backoff_max, settings.backoff_base * 2 ** (attempt - 1))
    delay = ceiling * rng.uniform(0.5, 1.0)  # jitter: threads that failed together retry apart
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.retry_after_max))
    return delay


# ----------------------------------------------------------------------------------------
# One HTTP request
# ----------------------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    body: bytes
    retry_after: float | None


def _get(url: str, settings: DownloadSettings) -> _Response:
    """GET ``url``; network failures become retryable :class:`InvalidResponse`."""
    request = urllib.request.Request(url, headers={"User-Agent": settings.user_agent})
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:
            return _Response(response.status, response.read(), parse_retry_after(response.headers.get("Retry-After")))
    except urllib.error.HTTPError as error:
        body = b""
        with contextlib.suppress(Exception):  # an error page cut short is still an error
            body = error.read()
        retry_after = parse_retry_after(error.headers.get("Retry-After") if error.headers else None)
        return _Response(error.code, body, retry_after)
    except http.client.IncompleteRead as error:
        raise InvalidResponse(f"connection closed early ({len(error.partial)} bytes read)", False) from error
    except TimeoutError as error:
        raise InvalidResponse(f"timed out after {settings.timeout:g} s", False) from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, (TimeoutError, socket.timeout)):
            raise InvalidResponse(f"timed out after {settings.timeout:g} s", False) from error
        raise InvalidResponse(f"network error: {error.reason}", False) from error
    except (ConnectionError, http.client.HTTPException, OSError) as error:
        raise InvalidResponse(f"network error: {error}", False) from error


def _check_status(response: _Response) -> None:
    if response.status == 200:
        return
    snippet = _text_snippet(response.body)
    reason = f"HTTP {response.status}" + (f": {snippet}" if snippet else "")
    permanent = response.status not in RETRY_STATUS and not 500 <= response.status < 600
    raise InvalidResponse(reason, permanent=permanent, retry_after=response.retry_after)


# ----------------------------------------------------------------------------------------
# The ledger
# ----------------------------------------------------------------------------------------


class Ledger:
    """What happened to every object: a CSV rewritten atomically, plus an append-only journal.

    The journal holds rows finished since the CSV was last written, so a killed run keeps
    what it did. Loading reads both; the last row for an id wins.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.journal_path = self.path.with_name(self.path.stem + ".journal.csv")
        self.previous: dict[str, dict[str, str]] = {}
        for source in (self.path, self.journal_path):
            for row in _read_rows(source):
                self.previous[row["id"]] = row
        self.rows: dict[str, dict[str, object]] = {}
        self._lock = threading.Lock()
        self._journal: io.TextIOWrapper | None = None
        self._writer: csv.DictWriter | None = None

    def __enter__(self) -> Ledger:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.journal_path.exists() or self.journal_path.stat().st_size == 0
        if not new and not _ends_with_newline(self.journal_path):
            # Killed mid-row: end that partial row, or the next one would be glued onto it.
            with self.journal_path.open("a", newline="") as handle:
                handle.write("\r\n")
        self._journal = self.journal_path.open("a", newline="")
        self._writer = csv.DictWriter(self._journal, fieldnames=LEDGER_COLUMNS)
        if new:
            self._writer.writeheader()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def record(self, row: dict[str, object]) -> None:
        """Keep ``row`` for the final ledger and append it to the journal at once."""
        with self._lock:
            self.rows[str(row["id"])] = row
            if self._writer is not None and self._journal is not None:
                self._writer.writerow(row)
                self._journal.flush()

    def reserve(self, object_id: str) -> None:
        """Hold ``object_id``'s place, so the ledger lists objects in task order, not finishing order."""
        with self._lock:
            self.rows.setdefault(object_id, {})

    def keep(self, object_id: str) -> None:
        """Carry the previous row of ``object_id`` into this run's ledger unchanged."""
        with self._lock:
            self.rows[object_id] = self.previous[object_id]

    def write(self) -> None:
        """Write this run's rows to the CSV atomically and drop the journal."""
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LEDGER_COLUMNS)
            writer.writeheader()
            writer.writerows(row for row in self.rows.values() if row)
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()


def _read_rows(path: Path) -> Iterator[dict[str, str]]:
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            # A journal cut mid-row by a kill leaves a row short of fields (read as None).
            if row.get("id") and None not in row.values():
                yield row


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) in (b"\n", b"\r")


def ledger_row(task: Task, status: str, attempts: int, error: str = "", body: bytes | None = None,
               size: int | None = None, digest: str = "") -> dict[str, object]:
    """One ledger row for ``task``; with ``body``, its size and sha256 come from it."""
    if body is not None:
        size, digest = len(body), hashlib.sha256(body).hexdigest()
    return {"id": task.id, "url": task.url, "path": task.path, "status": status, "bytes": size or 0,
            "sha256": digest, "attempts": attempts, "error": error[:300]}


# ----------------------------------------------------------------------------------------
# Progress and summary
# ----------------------------------------------------------------------------------------


@dataclass
class DownloadSummary:
    """Counts of one run: ``ok`` includes ``skipped`` files that were already complete."""

    total: int = 0
    ok: int = 0
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    rejected: int = 0
    retries: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        rate = self.downloaded / self.seconds if self.seconds > 0 else 0.0
        return (f"download summary: {self.ok}/{self.total} ok ({self.downloaded} downloaded, {self.skipped} already "
                f"complete), {self.failed} failed, {self.rejected} rejected, {self.retries} retries, "
                f"{self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s ({rate:.2f} files/s)")


class _Progress:
    """A text progress bar with rate and ETA, written to the log every few seconds."""

    def __init__(self, total: int | None, log: logging.Logger, every: float) -> None:
        self.total, self.log = total, log
        self.throttle = Throttle(every)
        self.start = time.monotonic()
        self.done = 0
        self.fetched = 0

    def update(self, summary: DownloadSummary, fetched: bool) -> None:
        self.done += 1
        self.fetched += int(fetched)
        if self.throttle.due():
            self.show(summary)

    def show(self, summary: DownloadSummary) -> None:
        rate = self.fetched / max(time.monotonic() - self.start, 1e-9)
        self.log.info("%s; ok %d, failed %d, rejected %d, retries %d",
                      progress_line(self.done, self.total, rate, "files"),
                      summary.ok, summary.failed, summary.rejected, summary.retries)


# ----------------------------------------------------------------------------------------
# Many files
# ----------------------------------------------------------------------------------------


class _Downloader:
    """Shared state of one run: settings, rate limiter, ledger, counters."""

    def __init__(self, root: Path, ledger: Ledger, settings: DownloadSettings, seed: int | None) -> None:
        self.root, self.ledger, self.settings = root, ledger, settings
        self.limiter = RateLimiter(settings.rate)
        self.summary = DownloadSummary()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def already_done(self, task: Task) -> bool:
        """True when the ledger (or a valid file on disk) says this task needs no request."""
        previous = self.ledger.previous.get(task.id)
        target = resolve_inside(self.root, task.path)
        if previous is not None and previous.get("url") == task.url:
            if previous.get("status") == "ok" and target.is_file() and str(target.stat().st_size) == previous["bytes"]:
                self.ledger.keep(task.id)
                return True
            if previous.get("status") == "rejected" and not self.settings.retry_rejected:
                self.ledger.keep(task.id)
                return True
        if (previous is None or previous.get("url") == task.url) and target.is_file():
            # A file without a ledger row: written just before a kill, or put there by hand.
            body = target.read_bytes()
            with contextlib.suppress(InvalidResponse):
                validate_payload(body, task, self.settings.max_bad_fraction)
                self.ledger.record(ledger_row(task, "ok", 0, body=body))
                return True
        return False

    def fetch(self, task: Task) -> tuple[dict[str, object], int]:
        """Download one task with retries; return its ledger row and the number of retries."""
        target = resolve_inside(self.root, task.path)
        attempt = 0
        while True:
            attempt += 1
            self.limiter.wait()
            try:
                response = _get(task.url, self.settings)
                _check_status(response)
                validate_payload(response.body, task, self.settings.max_bad_fraction)
            except InvalidResponse as error:
                if error.permanent:
                    return ledger_row(task, "rejected", attempt, error.reason), attempt - 1
                check_wait(error, task.url, self.settings)
                if attempt >= self.settings.max_attempts:
                    return ledger_row(task, "failed", attempt, error.reason), attempt - 1
                if error.retry_after is not None:
                    self.limiter.hold(error.retry_after)  # the service asked all of us to wait
                with self._lock:
                    delay = backoff_delay(attempt, self.settings, error.retry_after, self._rng)
                time.sleep(delay)
                continue
            with atomic_path(target) as tmp:
                tmp.write_bytes(response.body)
            return ledger_row(task, "ok", attempt, body=response.body), attempt - 1

    def account(self, row: dict[str, object], retries: int, fetched: bool) -> None:
        summary = self.summary
        summary.retries += retries
        status = str(row["status"])
        if status == "ok":
            summary.ok += 1
            summary.downloaded += int(fetched)
            summary.skipped += int(not fetched)
            summary.bytes += int(row["bytes"]) if fetched else 0  # type: ignore[call-overload]
        else:
            setattr(summary, status, getattr(summary, status) + 1)
            # Group by kind of error: numbers (percentages, byte counts) vary between objects.
            reason = re.sub(r"\d+", "N", re.split(r"[:(]", str(row["error"]))[0].strip())[:60]
            summary.errors[reason] = summary.errors.get(reason, 0) + 1


def download_all(
    tasks: Iterable[Task],
    root: str | Path,
    ledger_path: str | Path,
    settings: DownloadSettings | None = None,
    log: logging.Logger | None = None,
    total: int | None = None,
    seed: int | None = None,
) -> DownloadSummary:
    """Fetch every task's file under ``root``, recording each in the ledger at ``ledger_path``.

    Files already complete (ledger row ``ok`` for the same URL and size) are not requested
    again, nor are ``rejected`` ones unless ``settings.retry_rejected``. ``total`` (the
    number of tasks, when known) lets the progress line show an ETA.
    """
    settings = settings or DownloadSettings()
    log = log or logging.getLogger(__name__)
    root = Path(root)
    start = time.monotonic()
    with Ledger(ledger_path) as ledger:
        run = _Downloader(root, ledger, settings, seed)
        progress = _Progress(total, log, settings.progress_every)
        window = 4 * settings.connections  # requests queued at once: memory stays flat
        pending: set[Future] = set()

        def collect(done: Iterable[Future]) -> None:
            for future in done:
                row, retries = future.result()
                ledger.record(row)
                run.account(row, retries, fetched=True)
                progress.update(run.summary, fetched=True)

        with ThreadPoolExecutor(max_workers=settings.connections, thread_name_prefix="download") as pool:
            for task in tasks:
                run.summary.total += 1
                ledger.reserve(task.id)
                if run.already_done(task):
                    run.account(dict(ledger.rows[task.id]), 0, fetched=False)
                    progress.update(run.summary, fetched=False)
                    continue
                pending.add(pool.submit(run.fetch, task))
                if len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
            collect(pending)
        ledger.write()
    run.summary.seconds = time.monotonic() - start
    if run.summary.total:
        progress.show(run.summary)
    log.info(run.summary.line())
    if run.summary.errors:
        log.info("failure reasons: %s", dict(sorted(run.summary.errors.items(), key=lambda kv: -kv[1])))
    return run.summary


# ----------------------------------------------------------------------------------------
# One large file (catalogues, archives): streamed, resumed, checksummed
# ----------------------------------------------------------------------------------------


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksums(path: str | Path, md5: str | None = None, sha256: str | None = None,
                     size: int | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the given size and digests."""
    path = Path(path)
    if size is not None and path.stat().st_size != size:
        raise ChecksumError(f"{path}: {path.stat().st_size} bytes, expected {size}")
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected and file_digest(path, algorithm) != expected.lower():
            raise ChecksumError(f"{path}: {algorithm} differs from the published {expected}")


def download_file(
    url: str,
    dest: str | Path,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    settings: DownloadSettings | None = None,
    log: logging.Logger | None = None,
) -> Path:
    """Download one large file to ``dest``, resuming a partial download; verify its checksums.

    A file already at ``dest`` with the right checksums is kept. The partial download lives
    beside ``dest`` (``.part``) until it is complete and verified, then is renamed into place.
    """
    settings = settings or DownloadSettings()
    log = log or logging.getLogger(__name__)
    dest = Path(dest)
    stamp = dest.with_name(dest.name + ".verified")
    if dest.is_file():
        expected = f"{md5 or ''} {sha256 or ''} {size or ''}"
        if verified_copy(dest) and stamp.read_text() == expected:
            return dest
        try:
            verify_checksums(dest, md5, sha256, size)
        except ChecksumError as error:
            log.warning("%s; downloading it again", error)
            dest.unlink()
        else:
            write_text_atomic(stamp, expected)
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _stream_with_retries(url, part, settings, log)
    try:
        verify_checksums(part, md5, sha256, size)
    except ChecksumError:
        part.unlink()  # a corrupt download must not be resumed
        raise
    os.replace(part, dest)
    write_text_atomic(stamp, f"{md5 or ''} {sha256 or ''} {size or ''}")
    log.info("downloaded %s (%.1f MB) from %s", dest.name, dest.stat().st_size / 1e6, url)
    return dest


def verified_copy(dest: str | os.PathLike[str]) -> bool:
    """Whether ``dest`` is a copy that :func:`download_file` verified, and still of the size
    it had then (the check that needs no request for the expected checksums)."""
    dest = Path(dest)
    stamp = dest.with_name(dest.name + ".verified")
    if not (dest.is_file() and stamp.is_file()):
        return False
    recorded = stamp.read_text()
    if not recorded.strip():  # nothing was checked: no reason to trust the file
        return False
    size = recorded.split(" ")[-1]
    return size == "" or size == str(dest.stat().st_size)


def _stream_with_retries(url: str, part: Path, settings: DownloadSettings, log: logging.Logger) -> None:
    rng = random.Random()
    for attempt in range(1, settings.max_attempts + 1):
        try:
            _stream(url, part, settings, log)
            return
        except InvalidResponse as error:
            if error.permanent or attempt == settings.max_attempts:
                raise RuntimeError(f"cannot download {url}: {error.reason}") from error
            check_wait(error, url, settings)
            delay = backoff_delay(attempt, settings, error.retry_after, rng)
            log.warning("%s: %s; retry %d in %.1f s", url, error.reason, attempt, delay)
            time.sleep(delay)


def _stream(url: str, part: Path, settings: DownloadSettings, log: logging.Logger) -> None:
    """Append the rest of ``url`` to ``part`` (HTTP Range), or start over if not supported."""
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": settings.user_agent}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:
            mode = "ab" if have and response.status == 206 else "wb"
            if mode == "ab":
                log.info("resuming %s at %.1f MB", part.name, have / 1e6)
            _copy(response, part, mode, settings, log)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file is already complete
            return
        raise InvalidResponse(f"HTTP {error.code}", permanent=error.code not in RETRY_STATUS and error.code < 500,
                              retry_after=parse_retry_after(error.headers.get("Retry-After"))) from error
    except http.client.IncompleteRead as error:
        raise InvalidResponse("connection closed early", False) from error
    except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as error:
        raise InvalidResponse(f"network error: {error}", False) from error


def _copy(response: http.client.HTTPResponse, part: Path, mode: str, settings: DownloadSettings,
          log: logging.Logger) -> None:
    expected = response.headers.get("Content-Length")
    written, last = 0, time.monotonic()
    with part.open(mode) as handle:
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            handle.write(chunk)
            written += len(chunk)
            if time.monotonic() - last > settings.progress_every:
                last = time.monotonic()
                log.info("%s: %.1f MB so far", part.name, (handle.tell()) / 1e6)
    if expected is not None and written != int(expected):
        raise InvalidResponse(f"connection closed after {written} of {expected} bytes", False)

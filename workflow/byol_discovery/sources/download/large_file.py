"""One large file (catalogues, archives): streamed, resumed, checksummed."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import random
import time
import urllib.error
import urllib.request
from pathlib import Path

from byol_discovery.io.atomic import write_text_atomic
from byol_discovery.sources.download.settings import RETRY_STATUS, ChecksumError, DownloadSettings, InvalidResponse
from byol_discovery.sources.download.timing import backoff_delay, check_wait, parse_retry_after

_CHUNK = 1 << 20  # bytes per read when streaming a large file


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

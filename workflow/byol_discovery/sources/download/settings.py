"""How hard to press a service (:class:`DownloadSettings`), what to fetch (:class:`Task`), and
the errors a download raises."""

from __future__ import annotations

from dataclasses import dataclass

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


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

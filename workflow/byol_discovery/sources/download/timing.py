"""Timing: the shared rate cap, Retry-After and exponential backoff with jitter."""

from __future__ import annotations

import contextlib
import email.utils
import math
import random
import threading
import time
from collections.abc import Callable

from byol_discovery.sources.download.settings import DownloadSettings, InvalidResponse


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

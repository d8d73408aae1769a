"""Retry-After, backoff and the shared rate cap."""

from __future__ import annotations

import email.utils
import random
import time

import pytest
from byol_discovery.sources.download.settings import DownloadSettings
from byol_discovery.sources.download.timing import RateLimiter, backoff_delay, parse_retry_after


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1.5)


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    settings = DownloadSettings(backoff_base=1.0, backoff_max=60.0)
    rng = random.Random(0)
    delays = [backoff_delay(n, settings, rng=rng) for n in (1, 2, 3, 4)]
    for n, delay in enumerate(delays, 1):
        assert 0.5 * 2 ** (n - 1) <= delay <= 2 ** (n - 1)
    assert backoff_delay(1, settings, retry_after=20.0, rng=rng) == 20.0
    assert backoff_delay(10, settings, retry_after=1000.0, rng=rng) == 1000.0  # the service's word, not backoff_max
    assert backoff_delay(1, settings, retry_after=1e6, rng=rng) == settings.retry_after_max


def test_rate_limiter_spaces_request_starts_and_holds_all_threads() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert slept == [0.25, 0.5]
    limiter.hold(10.0)
    limiter.wait()
    assert slept[-1] == pytest.approx(10.0)

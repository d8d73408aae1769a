"""Many small files (survey cutouts): a bounded window of requests in flight over a task iterator."""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from byol_discovery.io.atomic import atomic_path
from byol_discovery.sources.download.ledger import Ledger, ledger_row
from byol_discovery.sources.download.paths import resolve_inside
from byol_discovery.sources.download.progress import DownloadSummary, Progress
from byol_discovery.sources.download.request import check_status, http_get
from byol_discovery.sources.download.settings import DownloadSettings, InvalidResponse, Task
from byol_discovery.sources.download.timing import RateLimiter, backoff_delay, check_wait
from byol_discovery.sources.download.validation import validate_payload


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
                response = http_get(task.url, self.settings)
                check_status(response)
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
        progress = Progress(total, log, settings.progress_every)
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

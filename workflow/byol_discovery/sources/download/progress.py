"""Progress lines and the summary of a download."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from byol_discovery.logs import Throttle, progress_line


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


class Progress:
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

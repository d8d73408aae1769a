"""The ledger: one row per object (id, url, path, status, bytes, sha256, attempts, error),
appended to a journal as downloads finish so an interrupted run loses nothing."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from byol_discovery.io.atomic import atomic_path
from byol_discovery.sources.download.settings import Task

LEDGER_COLUMNS = ("id", "url", "path", "status", "bytes", "sha256", "attempts", "error")


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

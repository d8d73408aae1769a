"""labels.csv as the page keeps it: read with the active_learning rule's own reader, each
label written at once by atomic replace, writes serialised, edits made elsewhere noticed."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import threading
from collections.abc import Collection
from pathlib import Path

from byol_discovery.active_learning_strategies import LABEL_MAX, LABEL_MIN, LabelFileError, read_labels
from byol_discovery.io.atomic import atomic_path


class LabelConflict(Exception):
    """labels.csv changed on disk into something the rule cannot read: nothing is written."""


def _signature(path: Path) -> str | None:
    """A digest of the file's bytes (None when there is no file): what the server last saw."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


class LabelFile:
    """The labels of one dataset, kept in step with ``path``.

    Every write re-reads the file first when its bytes differ from what this object last
    read or wrote (a hand edit, another server): the edit is taken in and the new label set
    on top of it, or, where the edited file no longer reads, :class:`LabelConflict` is raised
    and nothing is written. Rows, columns and their order are kept as they are; a new id is
    appended."""

    def __init__(self, path: str | os.PathLike[str], known_ids: Collection[str]) -> None:
        self.path = Path(path)
        self._known = known_ids
        self._lock = threading.Lock()
        self._labels: dict[str, int] = {}
        self._seen: str | None = None
        with self._lock:
            self._reload()

    def _reload(self) -> bool:
        """Read the file again if it changed; True when it did."""
        signature = _signature(self.path)
        if signature == self._seen:
            return False
        labels: dict[str, int] = {}
        if signature is not None:
            try:
                table = read_labels(self.path, known_ids=self._known)
            except LabelFileError as error:
                raise LabelConflict(
                    f"{error}. The file was changed outside this page and cannot be read: fix it (or remove the "
                    "line), then label again; nothing was written"
                ) from None
            labels = dict(zip(table["id"].astype(str), table["label"].astype(int), strict=True))
        self._labels, self._seen = labels, signature
        return True

    def labels(self) -> dict[str, int]:
        """Every label, read again if the file changed since."""
        with self._lock:
            self._reload()
            return dict(self._labels)

    def set(self, object_id: str, label: int) -> bool:
        """Write ``label`` for ``object_id``; True when an outside edit was taken in first."""
        if not LABEL_MIN <= label <= LABEL_MAX:
            raise ValueError(f"label {label} is not an integer from {LABEL_MIN} to {LABEL_MAX}")
        with self._lock:
            reloaded = self._reload()
            text = _with_label(self.path.read_text(encoding="utf-8-sig") if self._seen else "", object_id, label)
            with atomic_path(self.path) as tmp:
                with open(tmp, "w", encoding="utf-8", newline="") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())  # on disk before the rename: a power cut keeps old or new
            self._labels[object_id] = label
            self._seen = hashlib.sha256(text.encode("utf-8")).hexdigest()
            return reloaded


def _with_label(text: str, object_id: str, label: int) -> str:
    """The CSV ``text`` (which :func:`read_labels` accepts, or empty) with ``object_id``'s
    label cell set to ``label``, or a row appended for it."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        rows = [["id", "label"]]
    names = [cell.strip().lower() for cell in rows[0]]
    id_col, label_col = names.index("id"), names.index("label")
    width = max(id_col, label_col) + 1
    for row in rows[1:]:
        if len(row) >= width and row[id_col].strip() == object_id:
            row[label_col] = str(label)
            break
    else:
        row = [""] * len(rows[0])
        row[id_col], row[label_col] = object_id, str(label)
        rows.append(row)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()

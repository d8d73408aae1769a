"""Where a downloaded file goes: a safe relative path per object, never outside the output folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

from byol_discovery.io.catalogue import safe_id


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

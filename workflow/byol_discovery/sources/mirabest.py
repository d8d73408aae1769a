"""MiraBest (Porter & Scaife): FIRST radio galaxies labelled FRI / FRII (and hybrid).

The release is a tarball of CIFAR-style *pickled* batches. Unpickling runs code chosen by
whoever wrote the file, so: the archive's md5 is checked first (downloaded or local, the
same check), members are read from the tar in memory (no extraction, so no path in the
archive can reach the disk), and each batch is unpickled by :class:`RestrictedUnpickler`,
which builds only plain containers, numbers, strings and numpy arrays.

Each 150x150 image becomes ``cutouts/<id>.png``; the catalogue has ra/dec (from the file
names), ``label`` (FRI/FRII/hybrid), ``confidence`` (confident/uncertain), ``morphology``
(standard, double-double, wide-angle tail, head-tail), the MiraBest ``code``, the
``split`` (train/test) and ``label_confident`` (FRI or FRII where confidently labelled,
else empty: the paper validates on the confident FRI/FRII subset).
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from byol_discovery.config import from_mapping
from byol_discovery.io.atomic import atomic_path, write_csv_atomic
from byol_discovery.io.catalogue import safe_id
from byol_discovery.sources.download.large_file import download_file, file_digest
from byol_discovery.sources.download.settings import ChecksumError, DownloadSettings
from byol_discovery.sources.registry import source_options

__all__ = [
    "FULL_CODES",
    "MiraBestSource",
    "RestrictedUnpickler",
    "acquire",
    "check_settings",
    "extract_mirabest",
    "load_batches",
    "restricted_loads",
    "shards",
    "write_mirabest",
]

FULL_URL = "http://www.jb.man.ac.uk/research/MiraBest/full_dataset/MiraBest_full_batches.tar.gz"
FULL_MD5 = "965b5daa83b9d8622bb407d718eecb51"  # as published with the MiraBest loader
# Label index -> MiraBest code in the full release: digits are class / confidence / morphology.
FULL_CODES = (100, 102, 104, 110, 112, 200, 201, 210, 300, 310)
CLASS_DIGIT = {1: "FRI", 2: "FRII", 3: "hybrid"}
CONFIDENCE_DIGIT = {0: "confident", 1: "uncertain"}
MORPHOLOGY_DIGIT = {0: "standard", 1: "double-double", 2: "wide-angle tail", 3: "diffuse", 4: "head-tail"}
_NAME = re.compile(r"(?P<code>[1-3][01]\d)_(?P<ra>\d+(?:\.\d+)?)_(?P<dec>[+-]\d+(?:\.\d+)?)")
_BATCH = re.compile(r"(?:^|/)(data_batch_\d+|test_batch)$")


@dataclass(frozen=True)
class MiraBestSource:
    """Where the tarball comes from (``url``, or a local ``path``), its md5, what to keep."""

    url: str | None = FULL_URL
    md5: str = FULL_MD5
    path: str | None = None
    classes: tuple[str, ...] = ("FRI", "FRII", "hybrid")
    confident_only: bool = False
    limit: int | None = None
    download: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.url and not self.path:
            raise ValueError("source (mirabest): give a url to download the tarball from, or a local path")
        if not re.fullmatch(r"[0-9a-fA-F]{32}", self.md5):
            raise ValueError(f"source.md5 must be 32 hex digits, not {self.md5!r}: never unpickle an unchecked file")


# ----------------------------------------------------------------------------------------
# Restricted unpickling
# ----------------------------------------------------------------------------------------


def _numpy_core(name: str) -> Any:
    """``numpy._core.multiarray.<name>`` (numpy 2) or ``numpy.core.multiarray.<name>`` (numpy 1)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    return getattr(multiarray, name)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it, limited to latin-1."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _name in ("_reconstruct", "scalar"):
        _ALLOWED[(_module, _name)] = _name  # resolved lazily: importing numpy.core warns on numpy 2


class RestrictedUnpickler(pickle.Unpickler):
    """Builds containers, numbers, strings and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a container, number or array")
        return _numpy_core(target) if isinstance(target, str) else target


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (latin-1 for Python 2 strings)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


# ----------------------------------------------------------------------------------------
# The tarball
# ----------------------------------------------------------------------------------------


def verified_tarball(config: MiraBestSource, out_dir: Path, log: logging.Logger) -> Path:
    """The tarball, downloaded if needed, whose md5 matches ``config.md5`` (else ChecksumError)."""
    if config.path:
        path = Path(config.path)
        digest = file_digest(path, "md5")
        if digest != config.md5.lower():
            raise ChecksumError(f"{path}: md5 {digest} is not the expected {config.md5}; not unpickling it")
        return path
    settings = from_mapping(DownloadSettings, dict(config.download or {}), "source.download")
    name = safe_id(config.url.rsplit("/", 1)[-1].split("?", 1)[0] or "mirabest.tar.gz")
    return download_file(config.url, out_dir / "raw" / name, md5=config.md5, settings=settings, log=log)


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    return {m.name: m for m in tar.getmembers() if m.isfile()}


def load_batches(tarball: str | Path, md5: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(split, batch dict) of every batch, after checking the archive's md5 (and the md5s
    of ``hash.md5`` inside it, where present)."""
    digest = file_digest(tarball, "md5")
    if digest != md5.lower():
        raise ChecksumError(f"{tarball}: md5 {digest} is not the expected {md5}; not unpickling it")
    with tarfile.open(tarball, "r:gz") as tar:
        members = _members(tar)
        listed = _listed_hashes(tar, members)
        for name in sorted(members):
            match = _BATCH.search(name)
            if not match:
                continue
            data = tar.extractfile(members[name]).read()  # type: ignore[union-attr]
            base = match.group(1)
            if base in listed and hashlib.md5(data).hexdigest() != listed[base]:
                raise ChecksumError(f"{tarball}:{name}: md5 differs from the archive's hash.md5")
            batch = restricted_loads(data)
            yield ("test" if base == "test_batch" else "train"), _check_batch(batch, name)


def _listed_hashes(tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo]) -> dict[str, str]:
    for name, info in members.items():
        if name.endswith("hash.md5"):
            text = tar.extractfile(info).read().decode("ascii", errors="replace")  # type: ignore[union-attr]
            return {parts[1]: parts[0] for parts in (line.split() for line in text.splitlines()) if len(parts) == 2}
    return {}


def _check_batch(batch: Any, name: str) -> dict[str, Any]:
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"{name}: not a MiraBest batch (expected a dict with data and labels)")
    images = np.asarray(batch["data"])
    if images.dtype != np.uint8 or images.ndim not in (2, 3) or len(images) != len(batch["labels"]):
        raise ValueError(f"{name}: data is {images.dtype} {images.shape} for {len(batch['labels'])} labels")
    if images.ndim == 2:  # flattened CIFAR rows
        side = int(round(np.sqrt(images.shape[1])))
        images = images.reshape(len(images), side, side)
    return {"data": images, "labels": [int(v) for v in batch["labels"]],
            "filenames": [str(f) for f in batch.get("filenames", [""] * len(images))]}


# ----------------------------------------------------------------------------------------
# Catalogue rows
# ----------------------------------------------------------------------------------------


def describe(filename: str, label: int) -> dict[str, Any]:
    """Catalogue fields of one object from its file name (code, ra, dec) or its label index."""
    match = _NAME.search(filename.rsplit("/", 1)[-1])
    if match:
        code = int(match.group("code"))
        ra, dec = float(match.group("ra")), float(match.group("dec"))
    else:
        code = FULL_CODES[label] if 0 <= label < len(FULL_CODES) else 100 * (label + 1)
        ra = dec = float("nan")
    digits = [int(d) for d in f"{code:03d}"]
    label_name = CLASS_DIGIT.get(digits[0], f"class{digits[0]}")
    confidence = CONFIDENCE_DIGIT.get(digits[1], "uncertain")
    return {"ra": ra, "dec": dec, "label": label_name, "confidence": confidence,
            "morphology": MORPHOLOGY_DIGIT.get(digits[2], f"type{digits[2]}"), "code": code,
            "label_confident": label_name if confidence == "confident" and label_name in ("FRI", "FRII") else ""}


def extract_mirabest(source: Mapping[str, Any], out_dir: str | Path, log: logging.Logger | None = None) -> pd.DataFrame:
    """Write ``out_dir/cutouts/<id>.png`` and ``out_dir/catalogue.csv``; return the catalogue."""
    return write_mirabest(from_mapping(MiraBestSource, dict(source), "source"), out_dir, log)


def write_mirabest(config: MiraBestSource, out_dir: str | Path, log: logging.Logger | None = None) -> pd.DataFrame:
    """:func:`extract_mirabest` of a parsed source."""
    log = log or logging.getLogger(__name__)
    out_dir = Path(out_dir)
    tarball = verified_tarball(config, out_dir, log)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    # Lazily, batch by batch: once the limit is reached no further batch is unpickled.
    samples = ((split, *sample) for split, batch in load_batches(tarball, config.md5)
               for sample in zip(batch["data"], batch["labels"], batch["filenames"], strict=True))
    for split, image, label, filename in samples:
        if config.limit is not None and len(rows) >= config.limit:
            break
        row = describe(filename, label)
        if row["label"] not in config.classes or (config.confident_only and row["confidence"] != "confident"):
            continue
        stem = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0] or f"{split}{len(rows):05d}"
        object_id = safe_id(f"mirabest_{stem}")
        if object_id in used:  # a repeated file name still gets its own id and file
            object_id = f"{object_id}_{len(rows)}"
        used.add(object_id)
        file = f"cutouts/{object_id}.png"
        with atomic_path(out_dir / file) as tmp:
            Image.fromarray(image).save(tmp)
        rows.append({"id": object_id, "file": file, **row, "split": split})
    catalogue = pd.DataFrame(rows)
    if catalogue.empty:
        raise ValueError(f"{tarball}: no MiraBest image matched classes {config.classes}")
    write_csv_atomic(out_dir / "catalogue.csv", catalogue)
    log.info("wrote %d MiraBest cutouts (%s) to %s", len(catalogue), catalogue["label"].value_counts().to_dict(),
             out_dir)
    return catalogue


# ----------------------------------------------------------------------------------------
# The source type's entry points (see :mod:`byol_discovery.sources.registry`)
# ----------------------------------------------------------------------------------------


def check_settings(source: Mapping[str, Any], seed: int) -> MiraBestSource:
    return from_mapping(MiraBestSource, source_options(source), "source")


def shards(config: MiraBestSource) -> int:
    return 0


def acquire(config: MiraBestSource, out_dir: str | Path, seed: int, log: logging.Logger) -> None:
    write_mirabest(config, out_dir, log)

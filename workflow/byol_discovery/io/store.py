"""The HDF5 image store: one file per dataset holding every preprocessed cutout.

Layout::

    /images            uint8 (N, C, H, W), one image per chunk, uncompressed
    /ids               UTF-8 strings (N,)
    /catalogue/<name>  one dataset per catalogue column carried downstream (labels included)
    attrs              dataset name, preprocessing settings (JSON), package version

Images are appended as they are made, so memory stays flat for any catalogue size, and the
file is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import pandas as pd

from byol_discovery import __version__
from byol_discovery.io.atomic import atomic_path

_STRING = h5py.string_dtype("utf-8")


class StoreWriter:
    """Append preprocessed images one by one; ids and catalogue columns are written on close."""

    def __init__(self, file: h5py.File, channels: int, size: int) -> None:
        self._file = file
        self._images = file.create_dataset(
            "images",
            shape=(0, channels, size, size),
            maxshape=(None, channels, size, size),
            dtype=np.uint8,
            chunks=(1, channels, size, size),
        )
        self._ids: list[str] = []

    def append(self, object_id: str, image: np.ndarray) -> None:
        if image.dtype != np.uint8 or image.shape != self._images.shape[1:]:
            raise ValueError(
                f"image for {object_id!r} is {image.dtype} {image.shape}, store expects uint8 {self._images.shape[1:]}"
            )
        index = len(self._ids)
        if index == self._images.shape[0]:
            # Grow in steps so that appending 300k images does not resize 300k times.
            self._images.resize(max(64, 2 * index), axis=0)
        self._images[index] = image
        self._ids.append(object_id)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def finish(self, catalogue: pd.DataFrame, attrs: Mapping[str, Any]) -> None:
        """Trim the image array and write ids, catalogue rows (in ``ids`` order) and attributes."""
        self._images.resize(len(self._ids), axis=0)
        self._file.create_dataset("ids", data=np.array(self._ids, dtype=object), dtype=_STRING)
        rows = catalogue.set_index("id").loc[self._ids] if len(self._ids) else catalogue.iloc[:0].set_index("id")
        group = self._file.create_group("catalogue")
        for column in rows.columns:
            _write_column(group, str(column), rows[column])
        _write_attrs(self._file, {"package_version": __version__, **attrs})


def _write_attrs(file: h5py.File, attrs: Mapping[str, Any]) -> None:
    """Strings and numbers as they are (numpy scalars, e.g. attrs read back from another
    file, as Python ones); anything else as JSON."""
    for key, value in attrs.items():
        if isinstance(value, np.generic):
            value = value.item()
        file.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)


def _write_column(group: h5py.Group, name: str, values: pd.Series) -> None:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        group.create_dataset(name, data=values.to_numpy(dtype=np.int64))
    elif pd.api.types.is_numeric_dtype(values):
        group.create_dataset(name, data=values.to_numpy(dtype=np.float64))
    else:
        text = values.astype(object).where(values.notna(), "").astype(str).to_numpy(dtype=object)
        group.create_dataset(name, data=text, dtype=_STRING)


@contextlib.contextmanager
def create_store(path: str | Path, channels: int, size: int) -> Iterator[StoreWriter]:
    """Open a new store for writing; it appears at ``path`` only if the block completes."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        yield StoreWriter(file, channels, size)


class ImageStore:
    """Read access to a store; ``images`` is the lazy h5py dataset, ``load_images`` reads it all."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise ValueError(f"{self.path}: not a readable HDF5 image store ({error})") from error
        if "images" not in self._file or "ids" not in self._file:
            self._file.close()
            raise ValueError(f"{self.path}: not an image store (needs /images and /ids)")

    @property
    def images(self) -> h5py.Dataset:
        return self._file["images"]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def ids(self) -> np.ndarray:
        return self._file["ids"].asstr()[:].astype(object)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._file.attrs)

    def load_images(self) -> np.ndarray:
        return self.images[:]

    def catalogue(self) -> pd.DataFrame:
        """Catalogue columns as a DataFrame with ``id`` first, in store order."""
        columns: dict[str, np.ndarray] = {"id": self.ids}
        group = self._file.get("catalogue", {})
        for name in group:
            dataset = group[name]
            columns[name] = dataset.asstr()[:] if dataset.dtype.kind == "O" else dataset[:]
        return pd.DataFrame(columns)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def check_finite(ids: np.ndarray, features: np.ndarray, what: str) -> None:
    """Feature vectors holding NaN or infinity are an error naming ``what``, how many and the
    first one's id: every later stage (PCA, clustering, kNN, anomaly scores) would fail on
    them, or quietly call everything noise."""
    bad = ~np.isfinite(features).all(axis=1) if features.ndim == 2 else np.zeros(0, dtype=bool)
    if bad.any():
        raise ValueError(
            f"{what}: {int(bad.sum())} of {len(bad)} feature vectors hold NaN or infinite values (first: id "
            f"{ids[bad][0]!r}); a training run that diverged gives these: look for a NaN loss in train/history.csv"
        )


def save_features(path: str | Path, ids: np.ndarray, features: np.ndarray, attrs: Mapping[str, Any]) -> None:
    """Write a feature matrix (N, D) with its object ids to HDF5, atomically."""
    if len(ids) != len(features):
        raise ValueError(f"{len(ids)} ids but {len(features)} feature rows")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        file.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=_STRING)
        file.create_dataset("features", data=np.asarray(features, dtype=np.float32))
        _write_attrs(file, attrs)


def save_feature_blocks(
    path: str | Path, ids: np.ndarray, blocks: Iterable[np.ndarray], dim: int, attrs: Mapping[str, Any], what: str
) -> None:
    """Write a feature matrix (N, ``dim``) block by block, in row order, as :func:`save_features`
    writes it whole: memory holds one block, whatever N. Each block is checked as it comes
    (:func:`check_finite`, naming ``what``); too few or too many rows is an error."""
    ids = np.asarray(ids, dtype=object)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        file.create_dataset("ids", data=ids, dtype=_STRING)
        features = file.create_dataset("features", shape=(len(ids), dim), dtype=np.float32)
        row = 0
        for block in blocks:
            stop = row + len(block)
            if stop > len(ids) or block.shape[1:] != (dim,):
                raise ValueError(f"{what}: a block of shape {block.shape} at row {row} does not fit {len(ids)} x {dim}")
            check_finite(ids[row:stop], block, what)
            features[row:stop] = block
            row = stop
        if row != len(ids):
            raise ValueError(f"{what}: {row} feature rows for {len(ids)} ids")
        _write_attrs(file, attrs)


def load_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read (ids, features, attrs) written by :func:`save_features`."""
    try:
        with h5py.File(path, "r") as file:
            ids, features, attrs = file["ids"].asstr()[:].astype(object), file["features"][:], dict(file.attrs)
    except (OSError, KeyError) as error:
        raise ValueError(f"{path}: not a features file ({error})") from error
    check_finite(ids, features, str(path))
    return ids, features, attrs

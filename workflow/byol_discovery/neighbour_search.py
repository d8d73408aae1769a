"""The k nearest neighbours of every object, found once per dataset and reused.

Exact search (scikit-learn) below a size threshold, so small runs give the numbers exact
search always gave; above it, an approximate HNSW graph from ``faiss-cpu``, whose recall
of the true neighbours is checked in the tests and printed by ``benchmarks/bench_discovery.py``.
The table (``neighbours/neighbours.h5``) holds, for every object, the row numbers of and
Euclidean distances to its k nearest other objects in the PCA features, nearest first. LOF
is computed from it (:func:`lof_from_neighbours`), and :meth:`NeighbourTable.nearest` is the
"more like this" of an object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from byol_discovery.io.atomic import atomic_path

METHODS = ("auto", "exact", "approximate")
_STRING = h5py.string_dtype("utf-8")
_BLOCK = 50_000  # rows per search or LOF block: bounds the memory of the temporaries at any N


def resolve_method(method: str, n_objects: int, exact_below: int) -> str:
    """``exact`` or ``approximate``: ``auto`` is exact for fewer than ``exact_below`` objects."""
    if method not in METHODS:
        raise ValueError(f"neighbour search method {method!r} is not one of {METHODS}")
    if method == "auto":
        return "exact" if n_objects < exact_below else "approximate"
    return method


def _checked(x: ArrayLike, k: int) -> np.ndarray:
    data = np.asarray(x)
    if data.ndim != 2:
        raise ValueError(f"features must be 2-D (n_objects, n_features), got shape {data.shape}")
    if data.shape[0] < 2:
        raise ValueError(f"nearest neighbours need at least 2 objects, got {data.shape[0]}")
    if not 1 <= k < data.shape[0]:
        raise ValueError(f"k must be from 1 to n_objects - 1 = {data.shape[0] - 1}, got {k}")
    return data


def exact_neighbours(x: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64, distances float64), both (N, k), of every row's k nearest other rows.

    The same search (and so the same numbers) as scikit-learn's LocalOutlierFactor does.
    """
    from sklearn.neighbors import NearestNeighbors

    data = _checked(x, k).astype(np.float64, copy=False)
    distances, indices = NearestNeighbors(n_neighbors=k).fit(data).kneighbors()
    return indices.astype(np.int64, copy=False), distances


def _drop_self(indices: np.ndarray, distances: np.ndarray, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """k of k + 1 results per query: without the query itself (or, where the search missed
    it, e.g. among exact duplicates, without the farthest); the queries are rows
    ``first_row`` onwards."""
    rows = np.arange(first_row, first_row + indices.shape[0])[:, None]
    drop = indices == rows
    drop[~drop.any(axis=1), -1] = True
    drop[np.cumsum(drop, axis=1) > 1] = False  # one per row, should the query appear twice
    keep = ~drop
    k = indices.shape[1] - 1
    return indices[keep].reshape(-1, k), distances[keep].reshape(-1, k)


def hnsw_index(x: ArrayLike, m: int = 32, ef_construction: int = 100) -> Any:
    """A faiss HNSW graph of the rows of ``x`` (float32 copies), built on one thread, so that
    the same rows always give the same graph (parallel insertion orders the links by thread
    timing). ``m`` links per node and ``ef_construction`` candidates set its quality."""
    import faiss  # imported here: only the approximate search needs it

    data = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexHNSWFlat(data.shape[1], m)
    index.hnsw.efConstruction = ef_construction
    previous = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        index.add(data)
    finally:
        faiss.omp_set_num_threads(previous)
    return index


def hnsw_search(
    index: Any, queries: ArrayLike, k: int, ef_search: int = 128, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64, Euclidean distances float32), both (Q, k), of the ``k`` nearest rows of
    ``index`` to each query, nearest first, in blocks; on ``threads`` (None: faiss's default)."""
    import faiss

    data = np.ascontiguousarray(queries, dtype=np.float32)
    index.hnsw.efSearch = max(ef_search, k)
    previous = faiss.omp_get_max_threads()
    indices = np.empty((data.shape[0], k), dtype=np.int64)
    distances = np.empty((data.shape[0], k), dtype=np.float32)
    try:
        faiss.omp_set_num_threads(threads or previous)
        for start in range(0, data.shape[0], _BLOCK):
            squared, indices[start : start + _BLOCK] = index.search(data[start : start + _BLOCK], k)
            distances[start : start + _BLOCK] = np.sqrt(np.maximum(squared, 0))
    finally:
        faiss.omp_set_num_threads(previous)
    if (indices < 0).any():  # faiss pads with -1 where a graph search finds too few points
        raise RuntimeError(f"the HNSW search found fewer than {k} neighbours for some objects; raise ef_search")
    return indices, distances


def approximate_neighbours(
    x: ArrayLike, k: int, m: int = 32, ef_construction: int = 100, ef_search: int = 128, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64, distances float32), both (N, k), from a faiss HNSW graph
    (:func:`hnsw_index`); ``ef_search`` (at least k + 1) candidates per query, the queries on
    ``threads`` (None: faiss's default, all cores or OMP_NUM_THREADS)."""
    data = _checked(x, k)
    index = hnsw_index(data, m, ef_construction)
    indices = np.empty((data.shape[0], k), dtype=np.int64)
    distances = np.empty((data.shape[0], k), dtype=np.float32)
    for start in range(0, data.shape[0], _BLOCK):  # block by block: the k + 1 columns never whole
        found, found_distances = hnsw_search(index, data[start : start + _BLOCK], k + 1, ef_search, threads)
        indices[start : start + len(found)], distances[start : start + len(found)] = _drop_self(
            found, found_distances, start
        )
    return indices, distances


@dataclass(frozen=True)
class NeighbourTable:
    """Every object's k nearest other objects: row numbers and distances (N, k), nearest first."""

    ids: np.ndarray
    indices: np.ndarray
    distances: np.ndarray
    method: str

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def nearest(self, ids: ArrayLike, k: int) -> pd.DataFrame:
        """The ``k`` objects most like each of ``ids``: columns query, rank (1 = nearest),
        id, distance; an unknown id or a k beyond the table's is an error saying what to do."""
        if not 1 <= k <= self.k:
            raise ValueError(f"k must be from 1 to {self.k} (the neighbours the table holds), got {k}; "
                             "raise neighbours.k and rerun the neighbours rule for more")
        position = {str(object_id): row for row, object_id in enumerate(self.ids)}
        queries = [str(object_id) for object_id in np.atleast_1d(np.asarray(ids, dtype=object))]
        unknown = [object_id for object_id in queries if object_id not in position]
        if unknown:
            raise ValueError(f"ids {unknown[:5]} are not objects of this dataset ({len(unknown)} unknown)")
        rows = np.array([position[object_id] for object_id in queries], dtype=np.int64)
        found = self.indices[rows, :k]
        return pd.DataFrame({
            "query": np.repeat(np.asarray(queries, dtype=object), k),
            "rank": np.tile(np.arange(1, k + 1), len(queries)),
            "id": self.ids[found.ravel()],
            "distance": self.distances[rows, :k].ravel().astype(np.float64),
        })


def neighbour_table(
    ids: ArrayLike,
    x: ArrayLike,
    k: int,
    method: str = "auto",
    exact_below: int = 100_000,
    hnsw: dict[str, int] | None = None,
    threads: int | None = None,
) -> NeighbourTable:
    """The k nearest neighbours (clamped to N - 1) of every row of ``x``, by ``method``
    (see :func:`resolve_method`); ``hnsw`` holds the keyword arguments of
    :func:`approximate_neighbours` (m, ef_construction, ef_search)."""
    ids = np.asarray(ids, dtype=object)
    n = np.asarray(x).shape[0]
    if ids.shape[0] != n:
        raise ValueError(f"{ids.shape[0]} ids but {n} feature rows")
    k = min(k, n - 1)
    used = resolve_method(method, n, exact_below)
    if used == "exact":
        indices, distances = exact_neighbours(x, k)
    else:
        indices, distances = approximate_neighbours(x, k, threads=threads, **(hnsw or {}))
    return NeighbourTable(ids, indices, distances, used)


def save_neighbours(path: str | os.PathLike[str], table: NeighbourTable, attrs: dict[str, Any]) -> None:
    """Write the table to HDF5 (ids, indices, distances; ``method`` and ``attrs`` as attributes), atomically."""
    index_type = np.int32 if table.ids.shape[0] < np.iinfo(np.int32).max else np.int64
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        file.create_dataset("ids", data=table.ids, dtype=_STRING)
        file.create_dataset("indices", data=table.indices.astype(index_type, copy=False))
        file.create_dataset("distances", data=table.distances)
        file.attrs["method"] = table.method
        for key, value in attrs.items():
            file.attrs[key] = value


def load_neighbours(path: str | os.PathLike[str], ids: ArrayLike | None = None) -> NeighbourTable:
    """The table written by :func:`save_neighbours`; with ``ids``, checked to describe the
    same objects in the same order (else an error naming the file and the rule to rerun)."""
    try:
        with h5py.File(path, "r") as file:
            table = NeighbourTable(
                file["ids"].asstr()[:].astype(object),
                file["indices"][:].astype(np.int64, copy=False),
                file["distances"][:],
                str(file.attrs["method"]),
            )
    except (OSError, KeyError) as error:
        raise ValueError(f"{path}: not a neighbours file ({error}); rerun the neighbours rule") from error
    if ids is not None and not np.array_equal(table.ids, np.asarray(ids, dtype=object)):
        raise ValueError(f"{path} describes other objects than the features; rerun the neighbours rule")
    return table


def recall_at_k(found: ArrayLike, truth: ArrayLike) -> float:
    """Mean share of each row's true k nearest neighbours (``truth``) that ``found`` holds."""
    found, truth = np.asarray(found), np.asarray(truth)
    if found.shape != truth.shape:
        raise ValueError(f"neighbour tables of shapes {found.shape} and {truth.shape}")
    if truth.size == 0:
        return float("nan")
    hits = sum(np.intersect1d(a, b, assume_unique=True).size for a, b in zip(found, truth, strict=True))
    return hits / truth.size


def lof_from_neighbours(indices: ArrayLike, distances: ArrayLike, n_neighbors: int) -> np.ndarray:
    """Local outlier factor (about 1 for inliers, larger for outliers) from a neighbour table.

    The first ``n_neighbors`` columns are used, with scikit-learn's definitions: reach
    distance max(d(a, b), k-distance(b)), local reachability density 1 / (mean reach
    distance + 1e-10), LOF the mean density of the neighbours over the object's own. On an
    exact table this is LocalOutlierFactor's ``-negative_outlier_factor_``, to the last bit.
    """
    indices = np.asarray(indices)
    distances = np.asarray(distances)
    if not 1 <= n_neighbors <= indices.shape[1]:
        raise ValueError(f"n_neighbors must be from 1 to the table's {indices.shape[1]}, got {n_neighbors}; "
                         "raise neighbours.k and rerun the neighbours rule")
    k_distance = distances[:, n_neighbors - 1].astype(np.float64)
    n = indices.shape[0]
    density = np.empty(n, dtype=np.float64)
    for start in range(0, n, _BLOCK):
        near = indices[start : start + _BLOCK, :n_neighbors]
        reach = np.maximum(distances[start : start + _BLOCK, :n_neighbors].astype(np.float64), k_distance[near])
        density[start : start + _BLOCK] = 1.0 / (np.mean(reach, axis=1) + 1e-10)
    lof = np.empty(n, dtype=np.float64)
    for start in range(0, n, _BLOCK):
        near = indices[start : start + _BLOCK, :n_neighbors]
        lof[start : start + _BLOCK] = np.mean(density[near] / density[start : start + _BLOCK, None], axis=1)
    return lof

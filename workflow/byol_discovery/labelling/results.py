"""One dataset's results folder as the labelling page reads it: the objects with their
ranks, scores, clusters, map position and catalogue columns; paging, sorting and search."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from byol_discovery.io.catalogue import missing_markers

CLUSTER_METHODS = ("hdbscan", "gmm")
MAP_POINTS = 20_000  # points the map draws at most (a seeded sample beyond that)


@dataclass(frozen=True)
class ResultPaths:
    """Where a dataset's outputs are, relative to the folder the server runs in."""

    results: Path
    dataset: str
    labels: Path
    catalogue: Path

    @property
    def folder(self) -> Path:
        return self.results / self.dataset

    @property
    def active_ranking(self) -> Path:
        return self.folder / "active_learning" / "ranking.csv"

    @property
    def anomaly_ranking(self) -> Path:
        return self.folder / "anomaly" / "ranking.csv"

    @property
    def assignments(self) -> Path:
        return self.folder / "cluster" / "assignments.csv"

    @property
    def store(self) -> Path:
        return self.folder / "preprocess" / "store.h5"

    @property
    def pca_features(self) -> Path:
        return self.folder / "features" / "features_pca.h5"

    @property
    def neighbours(self) -> Path:
        return self.folder / "neighbours" / "neighbours.h5"


def _read(path: Path) -> pd.DataFrame:
    """A results table; names stay text (an object may be called "NA")."""
    names = ("id", "catalogue_id")
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={name: str for name in names if name in header}, keep_default_na=False,
                       na_values=missing_markers(header, names))


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


class Objects:
    """The dataset's objects in active-learning rank order, read again whenever the ranking
    file is replaced (a retrain). Columns: the active ranking's, the other anomaly scores, and
    the cluster assignments with the 2-D map position, joined on ``id``; not the ``hidden``
    ones (the anomaly target: the catalogue's answer would be the person's label)."""

    def __init__(self, paths: ResultPaths, hidden: Sequence[str] = (), ranked_by: str = "neighbour_score") -> None:
        for path in (paths.active_ranking, paths.store):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: run the pipeline for dataset {paths.dataset!r} first (bash run.sh demo), "
                    "from the folder that holds the results"
                )
        self.paths = paths
        self.hidden = list(hidden)
        self.ranked_by = ranked_by  # the score the rank follows: what the list shows beside each object
        self._lock = threading.Lock()
        self._stamp = -1
        self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            stamp = _mtime(self.paths.active_ranking)
            if stamp == self._stamp:
                return
            table = _read(self.paths.active_ranking).drop(columns=["label"], errors="ignore")
            for extra in (self.paths.anomaly_ranking, self.paths.assignments):
                if extra.is_file():
                    more = _read(extra)
                    new = ["id", *(c for c in more.columns if c not in table.columns and c != "rank")]
                    table = table.merge(more[new], on="id", how="left")
            table = table.drop(columns=[c for c in self.hidden if c != "id"], errors="ignore")
            # A catalogue column called "label" (a class) is not the person's label.
            table = table.rename(columns={"label": "catalogue_label"})
            if "rank" not in table.columns:
                table["rank"] = np.arange(1, len(table) + 1)
            table = table.sort_values("rank", kind="stable").reset_index(drop=True)
            # One assignment: a request never sees a new table with the old positions.
            self._view = (table, {object_id: i for i, object_id in enumerate(table["id"])})
            self._stamp = stamp

    def _current_view(self) -> tuple[pd.DataFrame, dict[str, int]]:
        if _mtime(self.paths.active_ranking) != self._stamp:
            self._refresh()
        return self._view

    def current(self) -> pd.DataFrame:
        """The table, read again first if the ranking file changed."""
        return self._current_view()[0]

    def score_columns(self) -> list[str]:
        table = self.current()
        not_scores = ("ra", "dec", "map_x", "map_y", *CLUSTER_METHODS)
        return [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) and c not in not_scores]

    def clusters(self) -> dict[str, list[int]]:
        table = self.current()
        return {m: sorted(int(c) for c in table[m].dropna().unique()) for m in CLUSTER_METHODS if m in table.columns}

    def page(self, labels: dict[str, int], sort: str, descending: bool, offset: int, limit: int,
             unlabelled_first: bool = False, cluster: tuple[str, int] | None = None,
             search: str = "") -> dict[str, Any]:
        """One page of objects: ``sort`` column, filtered by ``cluster`` (method, number) and
        by ``search`` (part of an id or catalogue_id, exact matches first)."""
        table = self.current()
        if sort not in table.columns or not pd.api.types.is_numeric_dtype(table[sort]):
            raise ValueError(f"cannot sort by {sort!r}: choose one of {self.score_columns()}")
        values = table[sort].to_numpy(dtype=np.float64)
        keys = [np.where(np.isnan(values), np.inf, -values if descending else values)]  # missing last
        mask = np.ones(len(table), dtype=bool)
        if cluster is not None:
            method, number = cluster
            if method not in CLUSTER_METHODS or method not in table.columns:
                raise ValueError(f"no cluster method {method!r}: choose one of {list(self.clusters())}")
            mask &= table[method].to_numpy() == number
        if search:
            needle = search.strip().lower()
            names = [table["id"].str.lower()] + ([table["catalogue_id"].str.lower()]
                                                 if "catalogue_id" in table.columns else [])
            mask &= np.logical_or.reduce([name.str.contains(needle, regex=False).to_numpy() for name in names])
            keys.insert(0, ~np.logical_or.reduce([(name == needle).to_numpy() for name in names]))
        if unlabelled_first:
            keys.insert(0, table["id"].isin(list(labels)).to_numpy())
        order = np.lexsort(keys[::-1])
        order = order[mask[order]]
        rows = table.iloc[order[offset: offset + limit]]
        return {"total": int(len(order)), "offset": offset, "items": [self.summary(row, labels) for _, row in
                                                                      rows.iterrows()]}

    def summary(self, row: pd.Series, labels: dict[str, int]) -> dict[str, Any]:
        keep = ("id", "catalogue_id", "rank", self.ranked_by, "neighbour_score", "expected_improvement",
                "isolation_forest", "lof", "hdbscan", "gmm")
        item = {key: _plain(row[key]) for key in keep if key in row.index}
        item["label"] = labels.get(row["id"])
        return item

    def detail(self, object_id: str, labels: dict[str, int]) -> dict[str, Any]:
        table, position = self._current_view()
        if object_id not in position:
            raise KeyError(object_id)
        row = table.iloc[position[object_id]]
        return {"fields": {key: _plain(value) for key, value in row.items()}, "label": labels.get(object_id)}

    def map_points(self) -> dict[str, Any]:
        """Up to MAP_POINTS map positions (a seeded sample beyond that) with their cluster."""
        table = self.current()
        if "map_x" not in table.columns:
            return {"method": None, "ids": [], "x": [], "y": [], "cluster": []}
        points = table[table["map_x"].notna()]
        if len(points) > MAP_POINTS:
            points = points.iloc[np.sort(np.random.default_rng(0).choice(len(points), MAP_POINTS, replace=False))]
        # HDBSCAN's clusters, or the mixture's where HDBSCAN called everything noise.
        method = next((m for m in CLUSTER_METHODS if m in points.columns and (points[m] >= 0).any()), None)
        cluster = points[method] if method else pd.Series(-1, index=points.index)
        return {"method": method, "ids": points["id"].tolist(), "x": np.round(points["map_x"], 4).tolist(),
                "y": np.round(points["map_y"], 4).tolist(), "cluster": cluster.fillna(-1).astype(int).tolist()}

    def nearest_on_map(self, x: float, y: float) -> str:
        table = self.current()
        if "map_x" not in table.columns:
            raise KeyError("no map: cluster/assignments.csv is missing")
        distance = (table["map_x"].to_numpy() - x) ** 2 + (table["map_y"].to_numpy() - y) ** 2
        return str(table["id"].iloc[int(np.nanargmin(distance))])


def _plain(value: Any) -> Any:
    """A JSON value: numpy scalars as Python ones, NaN as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value

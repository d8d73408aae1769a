"""Stage ``neighbours``: the k nearest neighbours of every object in the PCA features, found once."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from byol_discovery.io.store import load_features
from byol_discovery.settings import NeighboursSettings, stage_settings_of
from byol_discovery.stages.common import LOG, Settings


def neighbour_count(settings: NeighboursSettings | Settings, lof_neighbors: int) -> int:
    """Neighbours to keep per object: the settings' ``k``, and at least what LOF reads."""
    return max(stage_settings_of(NeighboursSettings, settings, "neighbours").k, int(lof_neighbors))


def neighbours(
    pca_features: str | Path,
    output: str | Path,
    settings: NeighboursSettings | Settings,
    lof_neighbors: int,
    threads: int | None = None,
    log: logging.Logger = LOG,
) -> None:
    """Every object's nearest neighbours (exact or approximate: the settings' ``method``,
    ``auto`` exact below ``exact_below`` objects) to ``output``, neighbours/neighbours.h5."""
    from byol_discovery import neighbour_search

    options = stage_settings_of(NeighboursSettings, settings, "neighbours")
    ids, x, _ = load_features(pca_features)
    k = neighbour_count(options, lof_neighbors)
    clock = time.perf_counter()
    table = neighbour_search.neighbour_table(
        ids, x, k, options.method, options.exact_below, dataclasses.asdict(options.hnsw), threads=threads
    )
    log.info(
        "%s nearest-neighbour search (method %s, exact below %d objects): %d neighbours of %d objects in %d "
        "dimensions, %.1f s",
        table.method, options.method, options.exact_below, table.k, x.shape[0], x.shape[1],
        time.perf_counter() - clock,
    )
    neighbour_search.save_neighbours(output, table, {"features": str(pca_features), "dimensions": int(x.shape[1])})

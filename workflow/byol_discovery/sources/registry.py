"""The source types a dataset's ``source.type`` names, each a module with the same entry points.

Every source module provides

* ``check_settings(source, seed) -> config``: the ``source`` mapping parsed and checked,
  reading and fetching nothing (a misspelt, mistyped or missing key is a ValueError naming
  it), so the workflow checks every dataset before anything runs;
* ``shards(config) -> int``: how many parallel download jobs its cutouts are fetched in
  (0: it is acquired in one job);
* ``acquire(config, out_dir, seed, log)``: the whole acquisition in this process, writing
  ``out_dir/catalogue.csv`` (and the images it names).

A source with shards also provides the three steps those jobs run:
``select(config, out_dir, seed, log) -> selection path``,
``download_shard(config, selection, shard, out_dir, ledger_out, seed, log, running_together)``
and ``gather(config, selection, ledgers, out_dir, log) -> catalogue path``.

A new source type is one module with these functions and one line here. Modules are
imported only when their type is used, so each stage's environment needs only its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

SOURCE_TYPES: dict[str, str] = {
    "legacy_survey": "byol_discovery.sources.legacy_survey",
    "gz_decals": "byol_discovery.sources.gz_decals",
    "firstgalaxydata": "byol_discovery.sources.first",
    "simulated_optical": "byol_discovery.sources.simulated.dataset",
    "local": "byol_discovery.sources.local",
    "mirabest": "byol_discovery.sources.mirabest",
}


def source_type(source: Mapping[str, Any]) -> ModuleType:
    """The module of ``source``'s type (``source.type``)."""
    kind = source.get("type")
    if not isinstance(kind, str) or kind not in SOURCE_TYPES:
        raise ValueError(f"source.type: unknown source type {kind!r}; known: {', '.join(SOURCE_TYPES)}")
    return importlib.import_module(SOURCE_TYPES[kind])


def source_options(source: Mapping[str, Any]) -> dict[str, Any]:
    """A source's settings less its ``type`` (what a source type's own parser reads)."""
    return {key: value for key, value in source.items() if key != "type"}

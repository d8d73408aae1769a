"""Stage ``acquire``: a dataset's cutouts and catalogue, fetched, copied or generated.

Each ``source.type`` is a module of :mod:`byol_discovery.sources.registry`. Sources that
download one cutout per object from a service (``legacy_survey``, and ``gz_decals`` with
``images.type: legacy_survey``) run in three steps so that the download can be split into
``source.shards`` parallel jobs: :func:`acquire_select` (the selection),
:func:`acquire_download` (one shard), and :func:`acquire` (gathers the shards). Called
without shard ledgers, :func:`acquire` runs all three itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from byol_discovery.sources.registry import source_type
from byol_discovery.stages.common import LOG, Settings

DOWNLOAD_ONLY_KEYS = ("download", "shards")  # settings that do not change which objects are chosen


def shard_count(source: Mapping[str, Any]) -> int:
    """Number of download shards of a source: 0 when it is not a per-object download."""
    kind = source_type(source)
    return kind.shards(kind.check_settings(source, 0))


def shard_paths(source: Mapping[str, Any], data_dir: str) -> tuple[list[str], list[str]]:
    """The selection file and the shard ledgers the gather step waits for (none without shards)."""
    count = shard_count(source)
    if not count:
        return [], []
    return [f"{data_dir}/selection.csv"], [f"{data_dir}/shards/ledger-{k}.csv" for k in range(count)]


# Download settings that change how fast and how persistently files are fetched, not which
# ones are kept: a Snakemake job receives them apart (as JSON text in a resource), so tuning
# them reruns nothing. The others (max_bad_fraction, max_failed_fraction, retry_rejected)
# decide what the dataset holds and stay in the rule's params.
DOWNLOAD_SPEED_KEYS = ("connections", "rate", "timeout", "max_attempts", "backoff_base", "backoff_max",
                       "retry_after_max", "progress_every", "user_agent")


def without_speed_settings(source: Mapping[str, Any]) -> dict[str, Any]:
    """``source`` less its download speed settings (what a rule's params hold)."""
    download = {key: value for key, value in (source.get("download") or {}).items()
                if key not in DOWNLOAD_SPEED_KEYS}
    rest = {key: value for key, value in source.items() if key != "download"}
    return {**rest, "download": download} if download else rest


def speed_settings_json(source: Mapping[str, Any]) -> str:
    """The download speed settings of ``source``, as JSON text (what the rule's resource holds)."""
    download = source.get("download") or {}
    return json.dumps({key: download[key] for key in DOWNLOAD_SPEED_KEYS if key in download}, sort_keys=True)


def with_download_settings(source: Mapping[str, Any], speed_json: str) -> dict[str, Any]:
    """``source`` (from params) with the speed settings of its ``download`` (from the resource)
    joined back in."""
    speed = json.loads(speed_json)
    if not isinstance(speed, dict):
        raise ValueError(f"source.download must be a mapping, got {speed_json!r}")
    download = {**(source.get("download") or {}), **speed}
    return {**source, "download": download} if download else dict(source)


def selection_settings(source: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a source that decides the selection (what the select step's params hold)."""
    return {key: value for key, value in source.items() if key not in DOWNLOAD_ONLY_KEYS}


def acquire_select(source: Settings, out_dir: str | Path, seed: int, log: logging.Logger = LOG) -> Path:
    """Choose the objects and their cutout URLs; write and return ``out_dir/selection.csv``."""
    kind = source_type(source)
    return kind.select(kind.check_settings(source, seed), out_dir, seed, log)


def acquire_download(source: Settings, selection: str | Path, shard: int, out_dir: str | Path,
                     ledger_out: str | Path | None = None, seed: int | None = None, log: logging.Logger = LOG,
                     running_together: int | None = None) -> Any:
    """Download shard ``shard`` of the selection's cutouts; return the download summary.

    Each shard gets 1/``running_together`` (default: 1/shards) of the configured rate and
    connections, so parallel shard jobs together stay within them.
    """
    kind = source_type(source)
    config = kind.check_settings(source, 0 if seed is None else seed)
    return kind.download_shard(config, selection, int(shard), out_dir, ledger_out, seed, log, running_together)


def check_source(source: Settings, seed: int = 0) -> Any:
    """Parse ``source`` by its type, reading and fetching nothing; return what its step needs.

    A misspelt, mistyped or missing key is a ValueError naming it, so the workflow calls this
    for every dataset before anything runs.
    """
    return source_type(source).check_settings(source, seed)


def check_sources(config: Mapping[str, Any]) -> None:
    """:func:`check_source` for every dataset of a workflow config; the error names the dataset."""
    for name, dataset in config.get("datasets", {}).items():
        try:
            check_source(dataset["source"], int(config.get("seed", 0)))
        except ValueError as error:
            raise ValueError(f"config: datasets.{name}.{error}") from None


def acquire(source: Settings, out_dir: str | Path, seed: int, log: logging.Logger = LOG,
            selection: str | Path | None = None, shard_ledgers: Sequence[str | Path] = ()) -> Path:
    """Fetch or make a dataset's cutouts and ``catalogue.csv`` in ``out_dir``; return its path.

    With ``shard_ledgers`` (the download jobs' ledgers) only the gather step is left to do.
    """
    kind = source_type(source)
    config = kind.check_settings(source, seed)
    if shard_ledgers and kind.shards(config):
        selection = Path(out_dir) / "selection.csv" if selection is None else selection
        return kind.gather(config, selection, shard_ledgers, out_dir, log)
    kind.acquire(config, out_dir, seed, log)
    return Path(out_dir) / "catalogue.csv"

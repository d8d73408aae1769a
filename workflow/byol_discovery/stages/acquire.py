"""Stage ``acquire``: a dataset's cutouts and catalogue, fetched, copied or generated.

Sources that download one cutout per object from a service (``legacy_survey``, and
``gz_decals`` with ``images.type: legacy_survey``) run in three steps so that the download
can be split into ``source.shards`` parallel jobs: :func:`select_objects` (the selection),
:func:`download_shard` (one shard), and :func:`acquire` (gathers the shards). Called
without shard ledgers, :func:`acquire` runs all three itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from byol_discovery.config import check_known, from_mapping
from byol_discovery.stages.common import LOG, Settings

DOWNLOAD_ONLY_KEYS = ("download", "shards")  # settings that do not change which objects are chosen


def shard_count(source: Mapping[str, Any]) -> int:
    """Number of download shards of a source: 0 when it is not a per-object download."""
    kind = source.get("type")
    images = source.get("images") or {}
    if kind == "legacy_survey" or (kind == "gz_decals" and images.get("type", "legacy_survey") == "legacy_survey"):
        return int(source.get("shards", 1))
    return 0


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


def _survey(source: Settings, out_dir: str | Path, log: logging.Logger) -> tuple[Any, Path]:
    """The parsed survey config and its catalogue CSV (downloaded for Galaxy Zoo DECaLS)."""
    if source.get("type") == "gz_decals":
        from byol_discovery.sources.gz_decals import fetch_catalogue, parse_gz_decals

        config = parse_gz_decals(source)
        return config.survey, fetch_catalogue(config, out_dir, log)
    from byol_discovery.sources.legacy_survey import parse_survey_source

    config = parse_survey_source(source)
    if not config.catalogue:
        raise ValueError("a legacy_survey source needs 'catalogue': a CSV with id, ra and dec columns")
    return config, Path(config.catalogue)


def select_objects(source: Settings, out_dir: str | Path, seed: int, log: logging.Logger = LOG) -> Path:
    """Choose the objects and their cutout URLs; write and return ``out_dir/selection.csv``."""
    from byol_discovery.sources.legacy_survey import select_objects as plan

    config, catalogue = _survey(source, out_dir, log)
    return plan(config, catalogue, out_dir, seed, log)


def _parsed(source: Settings) -> Any:
    if source.get("type") == "gz_decals":
        from byol_discovery.sources.gz_decals import parse_gz_decals

        return parse_gz_decals(source).survey
    from byol_discovery.sources.legacy_survey import parse_survey_source

    return parse_survey_source(source)


def download_shard(source: Settings, selection: str | Path, shard: int, out_dir: str | Path,
                   ledger_out: str | Path | None = None, seed: int | None = None, log: logging.Logger = LOG,
                   running_together: int | None = None) -> Any:
    """Download shard ``shard`` of the selection's cutouts; return the download summary.

    Each shard gets 1/``running_together`` (default: 1/shards) of the configured rate and
    connections, so parallel shard jobs together stay within them.
    """
    from byol_discovery.sources.legacy_survey import download_shard as fetch

    return fetch(_parsed(source), selection, int(shard), out_dir, ledger_out, seed, log, running_together)


def _gather(source: Settings, out_dir: str | Path, seed: int, log: logging.Logger,
            selection: str | Path | None, shard_ledgers: Sequence[str | Path]) -> Path:
    from byol_discovery.sources.legacy_survey import gather

    config = _parsed(source)
    if not shard_ledgers:  # outside Snakemake: every step here, one shard after the other
        selection = select_objects(source, out_dir, seed, log)
        shard_ledgers = []
        for shard in range(config.shards):
            ledger = Path(out_dir) / "shards" / f"ledger-{shard}.csv"
            download_shard(source, selection, shard, out_dir, ledger, seed, log, running_together=1)
            shard_ledgers.append(ledger)
    if selection is None:
        selection = Path(out_dir) / "selection.csv"
    return gather(selection, shard_ledgers, out_dir, config.download.max_failed_fraction, log)


FIRST_KEYS = ("splits", "limit")


def _options(source: Settings) -> dict[str, Any]:
    return {key: value for key, value in source.items() if key != "type"}


def check_source(source: Settings, seed: int = 0) -> Any:
    """Parse ``source`` by its type, reading and fetching nothing; return what its step needs.

    A misspelt, mistyped or missing key is a ValueError naming it, so the workflow calls this
    for every dataset before anything runs.
    """
    kind = source.get("type")
    options = _options(source)
    if shard_count(source) or kind == "gz_decals":
        return _parsed(source)
    if kind == "firstgalaxydata":
        check_known(options, FIRST_KEYS, "source (firstgalaxydata)")
        return options
    if kind == "simulated_optical":
        from byol_discovery.sources.simulated import SimulationConfig

        return from_mapping(SimulationConfig, {"seed": seed, **options}, "source")
    if kind == "local":
        check_known(options, ("catalogue",), "source (local)")
        if not options.get("catalogue"):
            raise ValueError("source (local): needs 'catalogue', a CSV with id and file columns")
        return options
    if kind == "mirabest":
        from byol_discovery.sources.mirabest import MiraBestSource

        return from_mapping(MiraBestSource, options, "source")
    raise ValueError(f"source.type: unknown source type {kind!r}")


def check_sources(config: Mapping[str, Any]) -> None:
    """:func:`check_source` for every dataset of a workflow config; the error names the dataset."""
    for name, dataset in config.get("datasets", {}).items():
        try:
            check_source(dataset["source"], int(config.get("seed", 0)))
        except ValueError as error:
            raise ValueError(f"config: datasets.{name}.{error}") from None


def acquire(source: Settings, out_dir: str | Path, seed: int, log: logging.Logger = LOG,
            selection: str | Path | None = None, shard_ledgers: Sequence[str | Path] = ()) -> Path:
    """Fetch or make a dataset's cutouts and ``catalogue.csv`` in ``out_dir``; return its path."""
    kind = source.get("type")
    parsed = check_source(source, seed)
    if shard_count(source):
        return _gather(source, out_dir, seed, log, selection, shard_ledgers)
    if kind == "firstgalaxydata":
        from byol_discovery.sources.first import extract_first

        extract_first(
            out_dir,
            splits=tuple(parsed.get("splits", ("train", "valid", "test"))),
            limit=parsed.get("limit"),
            log=log,
        )
    elif kind == "simulated_optical":
        from byol_discovery.sources.simulated import simulate_dataset

        catalogue = simulate_dataset(out_dir, parsed)
        log.info(
            "simulated %d optical cutouts (%d planted rarities) in %s",
            len(catalogue),
            int(catalogue["is_rare"].sum()),
            out_dir,
        )
    elif kind == "local":
        from byol_discovery.sources.local import index_local_folder

        index_local_folder(parsed["catalogue"], out_dir, log=log)
    elif kind == "mirabest":
        from byol_discovery.sources.mirabest import extract_mirabest

        extract_mirabest(_options(source), out_dir, log=log)
    else:  # gz_decals from the PNG zips
        from byol_discovery.sources.gz_decals import acquire_gz_png, parse_gz_decals

        acquire_gz_png(parse_gz_decals(source), out_dir, seed, log)
    return Path(out_dir) / "catalogue.csv"

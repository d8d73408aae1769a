"""Stage ``acquire``: a dataset's cutouts and catalogue, fetched, copied or generated."""

from __future__ import annotations

import logging
from pathlib import Path

from byol_discovery.config import from_mapping
from byol_discovery.stages.common import LOG, Settings


def acquire(source: Settings, out_dir: str | Path, seed: int, log: logging.Logger = LOG) -> Path:
    """Fetch or make a dataset's cutouts and ``catalogue.csv`` in ``out_dir``; return its path."""
    kind = source.get("type")
    options = {key: value for key, value in source.items() if key != "type"}
    if kind == "firstgalaxydata":
        from byol_discovery.sources.first import extract_first

        extract_first(
            out_dir,
            splits=tuple(options.get("splits", ("train", "valid", "test"))),
            limit=options.get("limit"),
            log=log,
        )
    elif kind == "simulated_optical":
        from byol_discovery.sources.simulated import SimulationConfig, simulate_dataset

        config = from_mapping(SimulationConfig, {"seed": seed, **options}, "source")
        catalogue = simulate_dataset(out_dir, config)
        log.info(
            "simulated %d optical cutouts (%d planted rarities) in %s",
            len(catalogue),
            int(catalogue["is_rare"].sum()),
            out_dir,
        )
    elif kind == "local":
        from byol_discovery.sources.local import index_local_folder

        index_local_folder(options["catalogue"], out_dir, log=log)
    else:
        raise ValueError(f"unknown source type {kind!r}")
    return Path(out_dir) / "catalogue.csv"

"""Every source type is a module with the same entry points, found by its name."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from byol_discovery.sources.registry import SOURCE_TYPES, source_type

ENTRY_POINTS = {"check_settings": ["source", "seed"], "shards": ["config"],
                "acquire": ["config", "out_dir", "seed", "log"]}
DOWNLOAD_STEPS = {"select": ["config", "out_dir", "seed", "log"],
                  "download_shard": ["config", "selection", "shard", "out_dir", "ledger_out", "seed", "log",
                                     "running_together"],
                  "gather": ["config", "selection", "ledgers", "out_dir", "log"]}


@pytest.mark.parametrize("kind", sorted(SOURCE_TYPES))
def test_every_source_type_has_the_entry_points(kind: str) -> None:
    module = source_type({"type": kind})
    steps = {**ENTRY_POINTS, **(DOWNLOAD_STEPS if kind in ("legacy_survey", "gz_decals") else {})}
    for name, parameters in steps.items():
        assert list(inspect.signature(getattr(module, name)).parameters) == parameters, f"{kind}.{name}"


@pytest.mark.parametrize(("source", "shards"), [
    ({"type": "simulated_optical", "n_objects": 10}, 0),
    ({"type": "legacy_survey", "catalogue": "c.csv", "shards": 3}, 3),
    ({"type": "gz_decals", "shards": 2}, 2),
    ({"type": "gz_decals", "shards": 2, "images": {"type": "gz_png"}}, 0),
    ({"type": "local", "catalogue": "c.csv"}, 0),
])
def test_a_source_parses_its_own_settings_and_says_how_it_is_downloaded(source: dict, shards: int) -> None:
    module = source_type(source)
    assert module.shards(module.check_settings(source, 7)) == shards


def test_an_unknown_type_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"source.type: unknown source type 'sdss'; known: legacy_survey, gz_decals"):
        source_type({"type": "sdss"})


def test_the_config_schema_offers_exactly_the_registered_types() -> None:
    schema = yaml.safe_load((Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml")
                            .read_text())
    source = schema["properties"]["datasets"]["additionalProperties"]["properties"]["source"]
    assert sorted(source["properties"]["type"]["enum"]) == sorted(SOURCE_TYPES)

"""Every stage's settings dataclass against the config schema: one set of defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from byol_discovery import settings
from byol_discovery.config import STAGES
from byol_discovery.preprocessing import PreprocessConfig
from byol_discovery.training import TrainConfig

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml").read_text()
)
DATACLASSES = {
    "preprocess": PreprocessConfig,
    "train": TrainConfig,
    "features": settings.FeaturesSettings,
    "validate": settings.ValidateSettings,
    "neighbours": settings.NeighboursSettings,
    "cluster": settings.ClusterSettings,
    "anomaly": settings.AnomalySettings,
    "active_learning": settings.ActiveLearningSettings,
}
# Keys the stage function takes out of its section before building the dataclass.
STAGE_OPTIONS = {"preprocess": {"columns", "workers"}, "train": {"resume", "probe_label"}}
# What the workflow adds to every section (common.smk's settings()): the global seed and device.
WORKFLOW_ADDED = {"seed", "device"}


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def disagreements(section: dict[str, Any], cls: Any, where: str, options: set[str] = frozenset()) -> list[str]:
    """Where the schema ``section`` and dataclass ``cls`` differ: a key one has and the other
    lacks, or a default that is not the same."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    properties = section.get("properties", {})
    found = [f"{where}.{name}: a field the schema lacks" for name in fields
             if name not in properties and name not in WORKFLOW_ADDED]
    for key, prop in properties.items():
        if key in options:
            continue
        if key not in fields:
            found.append(f"{where}.{key}: in the schema, not a field of {cls.__name__}")
            continue
        default = _default(fields[key])
        if dataclasses.is_dataclass(default):
            found += disagreements(prop, type(default), f"{where}.{key}")
        elif "default" in prop and (list(default) if isinstance(default, tuple) else default) != prop["default"]:
            found.append(f"{where}.{key}: schema default {prop['default']!r}, {cls.__name__} default {default!r}")
    return found


def test_every_stage_has_a_settings_dataclass() -> None:
    assert set(DATACLASSES) == set(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_the_schema_and_the_dataclass_agree_on_keys_and_defaults(stage: str) -> None:
    assert disagreements(SCHEMA["properties"][stage], DATACLASSES[stage], stage, STAGE_OPTIONS.get(stage, set())) == []


def test_the_check_finds_a_default_that_drifted() -> None:
    drifted = dataclasses.make_dataclass("Drifted", [("k", int, dataclasses.field(default=6))])
    section = {"properties": {"k": {"type": "integer", "default": 5}, "extra": {"type": "integer"}}}
    assert disagreements(section, drifted, "validate") == [
        "validate.k: schema default 5, Drifted default 6",
        "validate.extra: in the schema, not a field of Drifted",
    ]


def test_a_partial_section_takes_the_schema_defaults_for_the_rest() -> None:
    parsed = settings.stage_settings_of(settings.ClusterSettings, {"hdbscan": {"min_samples": 5}}, "cluster")
    assert parsed.hdbscan.min_samples == 5
    assert parsed.hdbscan.min_cluster_fraction == 0.02 and parsed.gmm.merge_threshold == 0.5


def test_a_misspelt_setting_is_named_with_its_section() -> None:
    with pytest.raises(ValueError, match=r"cluster\.hdbscan: unknown setting\(s\) \['min_cluster_sise'\]"):
        settings.stage_settings_of(settings.ClusterSettings, {"hdbscan": {"min_cluster_sise": 5}}, "cluster")


def test_a_target_is_read_as_column_and_values() -> None:
    parsed = settings.stage_settings_of(
        settings.AnomalySettings, {"target": {"column": "morphology", "values": ["ring", "merger"]}}, "anomaly"
    )
    assert parsed.target == settings.TargetSettings("morphology", ("ring", "merger"))
    assert settings.stage_settings_of(settings.AnomalySettings, parsed, "anomaly") is parsed

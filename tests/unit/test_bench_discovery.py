"""benchmarks/bench_discovery.py measures what the pipeline runs: the schema's defaults, the
rules' threads, and the survey settings docs/scale.md gives."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_discovery", REPO / "benchmarks" / "bench_discovery.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def _dotted(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    return {name: value for key, child in node.items()
            for name, value in (_dotted(child, f"{prefix}{key}.") if isinstance(child, dict) and child
                                else {prefix + key: child}).items()}


def test_the_survey_settings_of_docs_scale_md_are_those_the_benchmark_measures():
    text = (REPO / "docs" / "scale.md").read_text()
    section = text[text.index("## What to set at this scale"):]
    block = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert block == bench.SCALE_SETTINGS


def test_every_stage_setting_is_the_schemas_default_unless_the_dataset_section_sets_it():
    args = argparse.Namespace(path="scale", defaults=False, fit_samples=20_000, rounds=None)
    settings = bench._settings(args)
    section = bench._dataset_section(args)
    defaults = bench._settings(argparse.Namespace(path="scale", defaults=True, fit_samples=50_000, rounds=None))
    for stage, values in settings.items():
        overridden = _dotted(section.get(stage, {}))
        for name, value in _dotted(values).items():
            expected = overridden[name] if name in overridden else _dotted(defaults[stage])[name]
            assert value == expected, f"{stage}.{name}"
    assert settings["cluster"]["gmm"]["n_init"] == 1 and defaults["cluster"]["gmm"]["n_init"] == 10
    assert bench._settings(argparse.Namespace(**{**vars(args), "path": "exact"}))["cluster"]["hdbscan"][
        "max_fit_samples"] is None


def test_each_stage_step_finds_its_rules_threads():
    """A renamed rule fails here, not silently in the benchmark."""
    threads = {step: bench.rule_threads(rule) for step, rule in bench.STEP_RULES.items()}
    assert set(threads) == set(bench.STAGE_STEPS)
    assert all(count >= 1 for count in threads.values())

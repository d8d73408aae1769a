"""The paper's two configs: dry runs only (no network), as docs/experiments.md tells to run them."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def dry_run(config: str, workdir: Path, *more: str) -> str:
    """``snakemake -n --configfile config/<config> [more] --replace-workflow-config`` in ``workdir``."""
    files = [str(REPO / "config" / name) for name in (config, *more)]
    result = subprocess.run(
        [*SNAKEMAKE, "-n", "--directory", str(workdir), "--configfile", *files, "--replace-workflow-config"],
        capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


@pytest.mark.parametrize("config", ["gz_decals.yaml", "mirabest.yaml"])
def test_real_config_dry_runs_one_dataset(config: str, tmp_path: Path) -> None:
    settings = yaml.safe_load((REPO / "config" / config).read_text())
    (dataset,) = settings["datasets"]
    output = dry_run(config, tmp_path)
    counts = job_counts(output)
    datasets = set(re.findall(r"dataset=(\w+)", output))
    assert datasets == {dataset}, f"the demo datasets leaked in: {datasets}"
    source = settings["datasets"][dataset]["source"]
    if source["type"] == "gz_decals":
        assert counts["acquire_select"] == 1 and counts["acquire_download"] == source["shards"]
    else:
        assert "acquire_download" not in counts
    for rule in ("acquire", "preprocess", "train", "features", "validate", "cluster", "anomaly"):
        assert counts.get(rule) == 1, f"{rule}: {counts}"


def test_real_configs_keep_the_download_polite() -> None:
    settings = yaml.safe_load((REPO / "config" / "gz_decals.yaml").read_text())
    download = settings["datasets"]["gz_decals"]["source"]["download"]
    assert download["connections"] <= 4 and 0 < download["rate"] <= 5


def test_paper_preset_merges_over_a_real_config(tmp_path: Path) -> None:
    output = dry_run("mirabest.yaml", tmp_path, "presets/paper.yaml")  # schema-valid once merged
    assert job_counts(output)["train"] == 1


def test_paper_preset_replaces_the_radio_recipe() -> None:
    """config/mirabest.yaml trains the radio recipe; merged with the paper preset (as
    Snakemake merges config files) it trains exactly the paper's configuration."""
    from byol_discovery.config import deep_merge, from_mapping, stage_settings
    from byol_discovery.training import TrainConfig

    mirabest = yaml.safe_load((REPO / "config" / "mirabest.yaml").read_text())
    paper = yaml.safe_load((REPO / "config" / "presets" / "paper.yaml").read_text())
    radio = stage_settings(mirabest, "mirabest", "train")
    assert radio["fixed_batchnorm"] and radio["augmentation"]["power_p"] == 1.0
    merged = stage_settings(deep_merge(mirabest, paper), "mirabest", "train")
    assert not merged["fixed_batchnorm"] and merged["augmentation"]["power_p"] == 0.0
    merged.pop("probe_label")  # monitoring, not the recipe
    # Every setting, padding and ranges included: nothing of the radio recipe is left over.
    assert from_mapping(TrainConfig, merged) == from_mapping(TrainConfig, paper["train"])


def _train_config(config_file: str, dataset: str):  # noqa: ANN202 (TrainConfig is imported late)
    from byol_discovery.config import from_mapping, stage_settings
    from byol_discovery.training import TrainConfig

    settings = stage_settings(yaml.safe_load((REPO / "config" / config_file).read_text()), dataset, "train")
    settings.pop("probe_label")
    return from_mapping(TrainConfig, settings, config_file)


def test_the_first_demo_trains_the_radio_recipe_of_mirabest_yaml() -> None:
    """docs/recipes.md: the `first` demo dataset trains the radio recipe of config/mirabest.yaml at
    the demo's budget, without rotations since its images are aligned. The recipe is written
    out in both files (each must stand alone); this keeps the two copies one recipe."""
    radio = _train_config("mirabest.yaml", "mirabest")
    first = _train_config("config.yaml", "first")
    assert not first.augmentation.rotate and radio.augmentation.rotate
    unrotated = dataclasses.replace(radio.augmentation, rotate=False)
    same_budget = {"epochs": first.epochs, "num_threads": first.num_threads}
    assert dataclasses.replace(radio, augmentation=unrotated, **same_budget) == first

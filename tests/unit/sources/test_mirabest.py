"""MiraBest: checksum before unpickling, a restricted unpickler, the real basic release."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from byol_discovery import stages
from byol_discovery.sources.download.settings import ChecksumError
from byol_discovery.sources.mirabest import describe, load_batches, restricted_loads

from tests.cutouts import SHARED_DATA  # ../shared/data beside the checkout (read-only)
from tests.fake_services import FakeServices

TARBALL = SHARED_DATA / "mirabest" / "MiraBest_basic_batches.tar.gz"
TARBALL_MD5 = "fa9d6ad8fdde95b0a19df11433e8bca3"


class _Exploit:
    """Unpickling this with the standard loader would run a shell command."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.sentinel}",))


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_restricted_unpickler_builds_arrays_and_containers() -> None:
    batch = {"batch_label": "b", "labels": [0, 1], "data": [np.zeros((150, 150), np.uint8)] * 2,
             "filenames": [np.str_("x/100_1.0_+2.0.png"), np.str_("y")], "extra": (1.5, None, True, b"raw")}
    for protocol in (2, 4):
        loaded = restricted_loads(pickle.dumps(batch, protocol=protocol))
        assert loaded["labels"] == [0, 1] and loaded["data"][0].shape == (150, 150)
        assert loaded["extra"] == (1.5, None, True, b"raw") and str(loaded["filenames"][0]) == "x/100_1.0_+2.0.png"


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "subprocess.call", "codecs"])
def test_the_restricted_unpickler_refuses_code(tmp_path: Path, payload: str) -> None:
    sentinel = tmp_path / "pwned"
    if payload == "os.system":
        data = pickle.dumps(_Exploit(sentinel))
    elif payload == "builtins.eval":
        data = b"cbuiltins\neval\n(S'open(\"" + str(sentinel).encode() + b"\", \"w\")'\ntR."
    elif payload == "subprocess.call":
        data = b"csubprocess\ncall\n((S'touch'\nS'" + str(sentinel).encode() + b"'\nltR."
    else:  # _codecs.encode is allowed only as the latin-1 bytes helper of protocol 2
        data = b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR."
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        restricted_loads(data)
    assert not sentinel.exists()


def test_a_wrong_checksum_is_refused_before_anything_is_unpickled(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    evil = _tarball(tmp_path / "evil.tar.gz", {"batches/data_batch_1": pickle.dumps(_Exploit(sentinel))})
    with pytest.raises(ChecksumError, match="not unpickling"):
        list(load_batches(evil, "0" * 32))
    with pytest.raises(ChecksumError):
        stages.acquire({"type": "mirabest", "path": str(evil), "md5": "0" * 32}, tmp_path / "out", seed=0)
    # Even with the right checksum (an attacker's own archive), the loader builds no code.
    with pytest.raises(pickle.UnpicklingError):
        list(load_batches(evil, hashlib.md5(evil.read_bytes()).hexdigest()))
    assert not sentinel.exists()
    with pytest.raises(ValueError, match="32 hex"):
        stages.acquire({"type": "mirabest", "path": str(evil), "md5": "none"}, tmp_path / "out", seed=0)


def test_codes_become_class_confidence_and_morphology() -> None:
    assert describe("BestCat_proc/Cropped/100_159.613_+041.815.png", 0) == {
        "ra": 159.613, "dec": 41.815, "label": "FRI", "confidence": "confident", "morphology": "standard",
        "code": 100, "label_confident": "FRI"}
    row = describe("212_10.0_-05.5.png", 1)
    assert (row["label"], row["confidence"], row["morphology"], row["dec"]) == ("FRII", "uncertain",
                                                                               "wide-angle tail", -5.5)
    assert describe("", 9)["code"] == 310 and describe("", 9)["label"] == "hybrid"
    assert describe("", 8)["label_confident"] == ""  # hybrids are not in the FRI/FRII validation set


@pytest.fixture(scope="module")
def tarball() -> Path:
    if not TARBALL.is_file():
        pytest.skip(f"{TARBALL} is not there")
    return TARBALL


def test_the_real_basic_release_downloads_and_unpacks(tarball: Path, tmp_path: Path) -> None:
    with FakeServices() as server:
        url = server.add_file("/research/MiraBest/basic/MiraBest_basic_batches.tar.gz", tarball.read_bytes())
        source = {"type": "mirabest", "url": url, "md5": TARBALL_MD5, "download": {"timeout": 10}}
        catalogue = pd.read_csv(stages.acquire(source, tmp_path, seed=0), keep_default_na=False)
        assert len(catalogue) == 792
        assert catalogue["label"].value_counts().to_dict() == {"FRII": 441, "FRI": 351}
        assert set(catalogue["confidence"]) == {"confident"}
        assert (catalogue["label_confident"] == catalogue["label"]).all()
        assert catalogue["split"].value_counts().to_dict() == {"train": 704, "test": 88}
        assert catalogue["id"].is_unique and catalogue["ra"].between(0, 360).all()
        from byol_discovery.io.images import read_image

        assert read_image(tmp_path / catalogue["file"].iloc[0]).shape == (1, 150, 150)
        requests = sum(server.requests.values())
        stages.acquire(source, tmp_path, seed=0)
        assert sum(server.requests.values()) == requests, "the verified tarball is not fetched again"


def test_a_local_copy_is_checked_too_and_classes_filter(tarball: Path, tmp_path: Path) -> None:
    source = {"type": "mirabest", "path": str(tarball), "md5": TARBALL_MD5, "classes": ["FRI"], "limit": 50}
    catalogue = pd.read_csv(stages.acquire(source, tmp_path, seed=0))
    assert len(catalogue) == 50 and set(catalogue["label"]) == {"FRI"}
    with pytest.raises(ChecksumError):
        stages.acquire({**source, "md5": "f" * 32}, tmp_path / "other", seed=0)


def test_a_source_without_url_or_path_is_refused_naming_both() -> None:
    from byol_discovery.config import from_mapping
    from byol_discovery.sources.mirabest import MiraBestSource

    with pytest.raises(ValueError, match="give a url to download the tarball from, or a local path"):
        from_mapping(MiraBestSource, {"url": None}, "source")

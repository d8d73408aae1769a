"""One large file: resumed with Range, checked against its checksum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from byol_discovery.sources.download.large_file import download_file
from byol_discovery.sources.download.settings import ChecksumError

from tests.fake_services import FAST, FakeServices


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

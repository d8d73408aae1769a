"""Where downloaded files go: never outside the output folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from byol_discovery.sources.download.many_files import download_all
from byol_discovery.sources.download.paths import cutout_relpath, resolve_inside
from byol_discovery.sources.download.settings import Task

from tests.fake_services import FAST


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

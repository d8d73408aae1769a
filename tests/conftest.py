"""Shared fixtures."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tests.cutouts import galaxy, write_fits


@pytest.fixture
def bad_cutouts(tmp_path: Path) -> dict[str, Path]:
    """One file for each way a downloaded cutout goes wrong."""
    files = {
        "html_page": tmp_path / "html_page.fits",
        "corrupt": tmp_path / "corrupt.fits",
        "empty": tmp_path / "empty.fits",
        "all_nan": tmp_path / "all_nan.fits",
        "truncated": tmp_path / "truncated.fits",
        "not_png": tmp_path / "not_png.png",
        "table_only": tmp_path / "table_only.fits",
        "damaged_header": tmp_path / "damaged_header.fits",
        "damaged_gzip": tmp_path / "damaged_gzip.fits.gz",
    }
    files["html_page"].write_text("<!DOCTYPE html><html><body>no such layer</body></html>")
    files["corrupt"].write_bytes(b"SIMPLE  =" + bytes(2871))
    files["empty"].write_bytes(b"")
    write_fits(files["all_nan"], np.full((3, 32, 32), np.nan, dtype=np.float32))
    good = write_fits(tmp_path / "good_for_truncation.fits", galaxy(32)).read_bytes()
    files["truncated"].write_bytes(good[:-1000])
    files["not_png"].write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    # A catalogue saved where a cutout should be: the first HDU with data is a table.
    table = fits.BinTableHDU.from_columns([fits.Column(name="ra", format="E", array=np.ones(4)),
                                           fits.Column(name="dec", format="E", array=np.ones(4))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(files["table_only"])
    # NAXIS2 blanked out of the header (same length, so the 2880-byte records still add up).
    files["damaged_header"].write_bytes(good.replace(b"NAXIS2  =", b"NAXISQ  =", 1))
    packed = gzip.compress(good)
    files["damaged_gzip"].write_bytes(packed[:40] + bytes(len(packed) - 80) + packed[-40:])
    return files


@pytest.fixture(scope="session")
def imagenet_like_weights(tmp_path_factory):
    """A torchvision resnet18 state_dict (random numbers standing in for ImageNet's)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return path, state

"""The one writer of Legacy Surveys FITS cutouts: astropy's file, any bands."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from byol_discovery.sources.legacy_fits import legacy_fits_bytes, legacy_header


@pytest.mark.parametrize("bands", ["grz", "r", "gr"])
def test_the_fast_writer_gives_astropys_file_for_any_bands(bands: str) -> None:
    cube = np.random.default_rng(1).normal(0.0, 0.01, (len(bands), 12, 20)).astype(np.float32)
    reference = io.BytesIO()
    fits.PrimaryHDU(cube, legacy_header(12, 20, 181.25, -3.5, 0.262, bands)).writeto(reference)
    written = legacy_fits_bytes(cube, 181.25, -3.5, 0.262, bands)
    assert written == reference.getvalue()
    with fits.open(io.BytesIO(written)) as hdul:
        assert hdul[0].header["BANDS"] == bands
        assert hdul[0].header["CRPIX1"] == 10.5 and hdul[0].header["CRVAL2"] == -3.5
        np.testing.assert_array_equal(hdul[0].data, cube)

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from byol_discovery.io.images import ImageReadError, read_image

from tests.cutouts import galaxy, write_fits, write_png


def test_reads_fits_cube_in_physical_units(tmp_path: Path) -> None:
    data = galaxy(40, channels=3)
    image = read_image(write_fits(tmp_path / "g.fits", data))
    assert image.dtype == np.float32 and image.shape == (3, 40, 40)
    np.testing.assert_allclose(image, data)


def test_a_grz_cube_reads_reddest_band_first_as_rgb(tmp_path: Path) -> None:
    """Legacy Survey cubes come g, r, z; shown as R, G, B unchanged, red galaxies look blue."""
    from astropy.io import fits

    data = np.stack([np.full((8, 8), value, np.float32) for value in (1.0, 2.0, 3.0)])  # g, r, z
    fits.PrimaryHDU(data, header=fits.Header([("BANDS", "grz")])).writeto(tmp_path / "grz.fits")
    assert read_image(tmp_path / "grz.fits")[:, 0, 0].tolist() == [3.0, 2.0, 1.0]
    fits.PrimaryHDU(data, header=fits.Header([("BANDS", "abc")])).writeto(tmp_path / "odd.fits")
    assert read_image(tmp_path / "odd.fits")[:, 0, 0].tolist() == [1.0, 2.0, 3.0], "unknown bands: as stored"


def test_reads_a_tile_compressed_fits_fz(tmp_path: Path) -> None:
    data = galaxy(32, 1)[0]
    path = tmp_path / "cutout.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]).writeto(path)
    image = read_image(path)
    assert image.shape == (1, 32, 32)
    assert np.abs(image[0] - data).max() < 0.01 * np.abs(data).max(), "lossy only to the quantisation"


def test_reads_2d_fits_as_one_channel(tmp_path: Path) -> None:
    assert read_image(write_fits(tmp_path / "g.fits", galaxy(40, 1)[0])).shape == (1, 40, 40)


def test_reads_grey_and_rgb_png(tmp_path: Path) -> None:
    grey = galaxy(32, 1)[0].clip(0, 1) * 255
    rgb = np.moveaxis(galaxy(32, 3).clip(0, 1) * 255, 0, -1)
    assert read_image(write_png(tmp_path / "g.png", grey)).shape == (1, 32, 32)
    assert read_image(write_png(tmp_path / "c.png", rgb)).shape == (3, 32, 32)


def test_reads_a_16_bit_png_at_its_own_depth(tmp_path: Path) -> None:
    from PIL import Image

    ramp = np.linspace(1000, 3000, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (1, 32, 32)
    np.testing.assert_array_equal(image[0], ramp.astype(np.float32))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("html_page", "not a FITS file"),
        ("corrupt", "unreadable FITS"),
        ("empty", "empty file"),
        ("all_nan", "all pixels are NaN"),
        ("truncated", "truncated FITS"),
        ("not_png", "unreadable image"),
        ("table_only", "no image data"),
        ("damaged_header", "unreadable FITS"),
        ("damaged_gzip", "unreadable FITS"),
    ],
)
def test_bad_files_raise_an_error_naming_file_and_reason(bad_cutouts: dict[str, Path], kind: str, reason: str) -> None:
    with pytest.raises(ImageReadError) as caught:
        read_image(bad_cutouts[kind])
    assert reason in caught.value.reason
    assert str(bad_cutouts[kind]) in str(caught.value)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nothing.fits")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ImageReadError, match="unsupported file type"):
        read_image(tmp_path / "table.csv")


def test_blank_image_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="blank image"):
        read_image(write_png(tmp_path / "black.png", np.zeros((32, 32))))

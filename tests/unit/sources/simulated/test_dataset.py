"""The simulated Legacy-Survey-like galaxy set: file format, determinism, catalogue, physics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from byol_discovery.sources.legacy_fits import legacy_header
from byol_discovery.sources.simulated.dataset import simulate_dataset, simulate_galaxy, write_legacy_fits
from byol_discovery.sources.simulated.settings import CATALOGUE_COLUMNS, CLASSES, RARE_CLASSES, SimulationConfig

SIZE = 64


@pytest.fixture(scope="module")
def dataset(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, pd.DataFrame, SimulationConfig]:
    config = SimulationConfig(n_objects=200, image_size=SIZE, seed=11)
    out = tmp_path_factory.mktemp("sim")
    return out, simulate_dataset(out, config), config


def _images(out: Path, catalogue: pd.DataFrame) -> np.ndarray:
    return np.stack([fits.getdata(out / f) for f in catalogue["file"]]).astype(np.float64)


def _draw(kind: str, n: int, seed: int) -> tuple[np.ndarray, list[dict]]:
    pairs = [simulate_galaxy(kind, np.random.default_rng([seed, i]), SIZE) for i in range(n)]
    return np.stack([p[0] for p in pairs]).astype(np.float64), [p[1] for p in pairs]


# --- File format ------------------------------------------------------------------------

def test_cutout_reads_back_like_a_service_cutout(dataset):
    out, catalogue, config = dataset
    for _, row in catalogue.head(5).iterrows():
        path = out / row["file"]
        raw = path.read_bytes()
        assert raw.startswith(b"SIMPLE  =")
        assert len(raw) % 2880 == 0
        with fits.open(path) as hdul:
            assert len(hdul) == 1
            data, header = hdul[0].data, hdul[0].header
        assert data.dtype.kind == "f" and data.dtype.itemsize == 4
        assert data.shape == (3, SIZE, SIZE)
        assert header["BANDS"].strip() == "grz"
        assert [header[f"BAND{i}"].strip() for i in range(3)] == ["g", "r", "z"]
        assert header["BUNIT"] == "nanomaggies"
        assert (header["CTYPE1"], header["CTYPE2"]) == ("RA---TAN", "DEC--TAN")
        assert "CTYPE3" in header
        wcs = WCS(header).celestial
        centre = (SIZE - 1) / 2.0  # 0-based pixel coordinates of the frame's centre
        ra, dec = wcs.pixel_to_world_values(centre, centre)
        assert abs((ra - row["ra"]) * np.cos(np.radians(row["dec"]))) * 3600 < 0.01
        assert abs(dec - row["dec"]) * 3600 < 0.01
        # 0.262"/pixel, north up and east to the left, as the service's cutouts.
        scales = wcs.proj_plane_pixel_scales()
        assert np.allclose([s.to_value("arcsec") for s in scales], config.pixscale)
        ra_right, _ = wcs.pixel_to_world_values(centre + 10, centre)
        _, dec_up = wcs.pixel_to_world_values(centre, centre + 10)
        assert ra_right < ra and dec_up > dec


def test_writer_matches_astropy_byte_for_byte(tmp_path):
    # The fast writer must produce exactly what astropy would write for the same header.
    image = np.random.default_rng(0).normal(size=(3, 40, 56)).astype(np.float32)
    ra, dec = 187.70593076, 12.39112324
    write_legacy_fits(tmp_path / "fast.fits", image, ra, dec, 0.262)
    fits.PrimaryHDU(image, legacy_header(40, 56, ra, dec, 0.262)).writeto(tmp_path / "ref.fits")
    assert (tmp_path / "fast.fits").read_bytes() == (tmp_path / "ref.fits").read_bytes()
    assert np.array_equal(fits.getdata(tmp_path / "fast.fits"), image)
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_writer_rejects_a_cube_that_is_not_three_bands(tmp_path):
    with pytest.raises(ValueError, match="image must be"):
        write_legacy_fits(tmp_path / "bad.fits", np.zeros((32, 32)), 180.0, 10.0, 0.262)
    assert not list(tmp_path.iterdir())


# --- Determinism ------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    config = SimulationConfig(n_objects=24, image_size=32, seed=5)
    first = simulate_dataset(tmp_path / "a", config)
    second = simulate_dataset(tmp_path / "b", config)
    other = simulate_dataset(tmp_path / "c", SimulationConfig(n_objects=24, image_size=32, seed=6))
    pd.testing.assert_frame_equal(first, second)
    assert (tmp_path / "a" / "catalogue.csv").read_bytes() == \
        (tmp_path / "b" / "catalogue.csv").read_bytes()
    for rel in first["file"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert not np.allclose(_images(tmp_path / "a", first), _images(tmp_path / "c", other))
    assert not np.allclose(first["ra"], other["ra"])


def test_an_object_does_not_depend_on_how_many_follow(tmp_path):
    small = simulate_dataset(tmp_path / "s", SimulationConfig(n_objects=12, image_size=32))
    large = simulate_dataset(tmp_path / "l", SimulationConfig(n_objects=30, image_size=32))
    same_class = small["morphology"].to_numpy() == large["morphology"].to_numpy()[:12]
    assert same_class.sum() >= 3
    for i in np.flatnonzero(same_class):
        rel = small["file"][i]
        assert (tmp_path / "s" / rel).read_bytes() == (tmp_path / "l" / rel).read_bytes()


# --- Catalogue --------------------------------------------------------------------------

def test_catalogue_lists_every_file_with_the_requested_classes(dataset):
    out, catalogue, config = dataset
    assert list(catalogue.columns) == list(CATALOGUE_COLUMNS)
    assert len(catalogue) == config.n_objects
    assert catalogue["id"].is_unique
    assert catalogue["id"].str.fullmatch(r"sim\d{6}").all()
    assert (catalogue["file"] == "cutouts/" + catalogue["id"] + ".fits").all()
    assert all((out / f).is_file() for f in catalogue["file"])
    assert not [p for p in (out / "cutouts").iterdir() if p.name.startswith(".")]
    assert set(catalogue["morphology"]) == set(CLASSES + RARE_CLASSES)
    assert (catalogue["is_rare"] == catalogue["morphology"].isin(RARE_CLASSES)).all()
    assert abs(catalogue["is_rare"].mean() - config.rare_fraction) <= 1.0 / config.n_objects
    assert catalogue["ra"].between(150, 200).all() and catalogue["dec"].between(0, 30).all()
    assert catalogue["r_mag"].between(14.5, 18.5).all()
    on_disk = pd.read_csv(out / "catalogue.csv")
    pd.testing.assert_frame_equal(on_disk, catalogue, check_dtype=False)


def test_no_rare_objects_when_rare_fraction_is_zero(tmp_path):
    catalogue = simulate_dataset(tmp_path, SimulationConfig(n_objects=9, image_size=16,
                                                            rare_fraction=0.0))
    assert catalogue["is_rare"].sum() == 0
    assert set(catalogue["morphology"]) == set(CLASSES)


# --- Physics ----------------------------------------------------------------------------

def test_images_are_finite_with_sky_noise_as_catalogued(dataset):
    out, catalogue, _ = dataset
    images = _images(out, catalogue)
    assert np.isfinite(images).all()
    # Robust noise in the r-band frame edge (galaxies sit in the middle).
    edge = np.concatenate([images[:, 1, :6, :].reshape(len(images), -1),
                           images[:, 1, -6:, :].reshape(len(images), -1)], axis=1)
    mad_sigma = 1.4826 * np.median(np.abs(edge - np.median(edge, axis=1, keepdims=True)), axis=1)
    assert (mad_sigma > 0).all()
    ratio = mad_sigma / catalogue["sky_sigma_nmgy"].to_numpy()
    assert 0.8 < np.median(ratio) < 1.3


def test_brighter_magnitude_means_more_flux(dataset):
    out, catalogue, _ = dataset
    common = catalogue[~catalogue["is_rare"].astype(bool)]
    images = _images(out, common)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2.0
    aperture = np.hypot(xx, yy) < 20
    flux = images[:, 1][:, aperture].sum(axis=1)
    rank_flux = np.argsort(np.argsort(-flux))
    rank_mag = np.argsort(np.argsort(common["r_mag"].to_numpy()))
    assert np.corrcoef(rank_flux, rank_mag)[0, 1] > 0.8


def test_ellipticals_are_redder_than_spirals():
    def z_over_g(kind: str) -> np.ndarray:
        images, _ = _draw(kind, 25, seed=1)
        centre = images[:, :, SIZE // 2 - 6:SIZE // 2 + 6, SIZE // 2 - 6:SIZE // 2 + 6]
        return centre[:, 2].sum(axis=(1, 2)) / centre[:, 0].sum(axis=(1, 2))

    red, blue = z_over_g("elliptical"), z_over_g("spiral")
    assert np.median(red) > 1.2 * np.median(blue)
    assert np.median(red) > 2.0  # z brighter than g: a red population


def _elongation(image: np.ndarray) -> float:
    """1 - b/a from the second moments of the pixels above 5 sigma near the centre."""
    r = image[1]
    sigma = 1.4826 * np.median(np.abs(r - np.median(r)))
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2.0
    w = np.where((r > 5 * sigma) & (np.hypot(xx, yy) < SIZE / 3), r, 0.0)
    mx, my = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
    cxx = (w * (xx - mx) ** 2).sum() / w.sum()
    cyy = (w * (yy - my) ** 2).sum() / w.sum()
    cxy = (w * (xx - mx) * (yy - my)).sum() / w.sum()
    lo, hi = np.linalg.eigvalsh([[cxx, cxy], [cxy, cyy]])
    return 1.0 - np.sqrt(lo / hi)


def test_edge_on_discs_are_more_elongated_than_ellipticals():
    edge_on, _ = _draw("edge_on", 20, seed=2)
    ellipticals, _ = _draw("elliptical", 20, seed=2)
    e_disc = np.mean([_elongation(im) for im in edge_on])
    e_ell = np.mean([_elongation(im) for im in ellipticals])
    assert e_disc > 0.45 and e_disc > e_ell + 0.25


def test_bright_star_artefacts_saturate():
    found = 0
    for i in range(40):
        image, params = simulate_galaxy("artefact", np.random.default_rng([3, i]), SIZE)
        assert params["artefact_type"] in ("bright_star", "satellite_trail")
        assert params["host_morphology"] in CLASSES
        if params["artefact_type"] == "bright_star":
            found += 1
            r_band = image[1]
            assert (r_band == r_band.max()).sum() >= 9  # a flat, saturated core
    assert found >= 5


def test_simulate_galaxy_returns_an_image_and_the_catalogue_parameters():
    image, params = simulate_galaxy("merger", np.random.default_rng(0), 48)
    assert image.shape == (3, 48, 48) and image.dtype == np.float32
    assert list(params) == list(CATALOGUE_COLUMNS[6:])
    assert params["n_tidal_tails"] in (1, 2) and params["companion_sep_arcsec"] > 0
    with pytest.raises(ValueError, match="kind"):
        simulate_galaxy("irregular", np.random.default_rng(0), 48)


# --- Configuration ----------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("n_objects", 0), ("n_objects", -3), ("n_objects", 2.5),
    ("image_size", 15), ("image_size", 0),
    ("rare_fraction", 1.0), ("rare_fraction", -0.01), ("rare_fraction", float("nan")),
    ("pixscale", 0.0), ("seed", -1),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SimulationConfig(**{field: value})

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from byol_discovery.io.store import ImageStore
from byol_discovery.preprocessing import PreprocessConfig, PreprocessError, build_store, preprocess_image

from tests.cutouts import galaxy, write_fits, write_png


def test_output_is_uint8_at_model_size_with_requested_channels() -> None:
    for channels in (1, 3):
        image = preprocess_image(galaxy(80, 3), PreprocessConfig(image_size=32, channels=channels, stretch="asinh"))
        assert image.dtype == np.uint8 and image.shape == (channels, 32, 32)
        assert image.max() > 200, "the galaxy should reach near-white after the stretch"


def test_radio_stretch_zeroes_the_noise_and_keeps_the_source() -> None:
    raw = galaxy(64, 1, sigma_px=3.0)
    image = preprocess_image(raw, PreprocessConfig(image_size=64, stretch="radio", clip_sigma=3.0))[0]
    assert image[:10, :10].max() == 0, "background noise must be clipped to zero"
    assert image[32, 32] > 200


def test_power_lifts_faint_emission_as_a_root_of_the_stretch() -> None:
    raw = galaxy(64, 1, sigma_px=3.0)
    linear = preprocess_image(raw, PreprocessConfig(image_size=64, stretch="radio"))[0] / 255.0
    root = preprocess_image(raw, PreprocessConfig(image_size=64, stretch="radio", power=0.5))[0] / 255.0
    faint = (linear > 0.02) & (linear < 0.1)
    assert faint.any()
    np.testing.assert_allclose(root[faint], np.sqrt(linear[faint]), atol=2.5 / 255)
    assert root[:10, :10].max() == 0 and root.max() == 1.0, "zero stays zero and the peak stays the peak"


def test_source_crop_zooms_on_a_small_galaxy() -> None:
    raw = galaxy(128, 3, sigma_px=3.0)
    centre = PreprocessConfig(image_size=32, channels=1, stretch="asinh", crop="centre")
    zoomed = PreprocessConfig(image_size=32, channels=1, stretch="asinh", crop="source", source_enlarge=2.0)
    bright = lambda img: int((img > 128).sum())  # noqa: E731
    assert bright(preprocess_image(raw, zoomed)) > 4 * bright(preprocess_image(raw, centre))


def test_centre_crop_pads_when_the_crop_is_larger_than_needed() -> None:
    image = preprocess_image(galaxy(40, 1), PreprocessConfig(image_size=16, crop="centre", crop_size=30))
    assert image.shape == (1, 16, 16)


def test_wrong_band_count_and_mostly_nan_images_are_rejected() -> None:
    with pytest.raises(PreprocessError, match="expected 3 channel"):
        preprocess_image(galaxy(32, 2), PreprocessConfig(input_channels=3))
    raw = galaxy(32, 3)
    raw[1, :20] = np.nan
    with pytest.raises(PreprocessError, match="band 1"):
        preprocess_image(raw, PreprocessConfig(stretch="asinh"))


def test_zeros_count_as_missing_only_in_flux_images() -> None:
    raw = galaxy(32, 1).clip(0, None)
    raw[0, :16] = 0.0  # half the frame exactly zero: off-footprint in a flux cutout, dark sky in a PNG
    with pytest.raises(PreprocessError, match="NaN or zero"):
        preprocess_image(raw, PreprocessConfig(stretch="asinh"))
    assert preprocess_image(raw, PreprocessConfig(stretch="linear")).shape == (1, 64, 64)


def test_black_sky_of_a_png_is_not_missing_data_but_zeros_of_a_fits_are(tmp_path: Path) -> None:
    """One folder may mix FITS and PNG cutouts under the asinh stretch: only the FITS file's
    exact zeros are pixels off the survey's footprint."""
    flux = galaxy(48, 3).clip(0, None)
    flux[:, :, :30] = 0.0
    display = np.moveaxis(flux / flux.max() * 255, 0, -1)
    rows = [{"id": "as_fits", "file": write_fits(tmp_path / "a.fits", flux).name},
            {"id": "as_png", "file": write_png(tmp_path / "a.png", display).name}]
    pd.DataFrame(rows).to_csv(tmp_path / "catalogue.csv", index=False)
    config = PreprocessConfig(image_size=24, channels=3, stretch="asinh", input_channels=3)
    quarantine = build_store(tmp_path / "catalogue.csv", tmp_path / "store.h5", tmp_path / "q.csv", config)
    assert quarantine["id"].tolist() == ["as_fits"] and "NaN or zero" in quarantine["reason"].iloc[0]
    with ImageStore(tmp_path / "store.h5") as store:
        assert list(store.ids) == ["as_png"]


def test_a_file_listed_twice_is_stored_once_and_the_repeat_quarantined(tmp_path: Path) -> None:
    write_fits(tmp_path / "g.fits", galaxy(32))
    write_fits(tmp_path / "h.fits", galaxy(32, seed=1))
    pd.DataFrame({"id": ["first", "other", "again"], "file": ["g.fits", "h.fits", "./g.fits"]}).to_csv(
        tmp_path / "catalogue.csv", index=False
    )
    quarantine = build_store(tmp_path / "catalogue.csv", tmp_path / "store.h5", tmp_path / "q.csv", PreprocessConfig())
    assert quarantine[["id", "reason"]].values.tolist() == [["again", "same file as first"]]
    with ImageStore(tmp_path / "store.h5") as store:
        assert list(store.ids) == ["first", "other"]


def test_a_few_nan_pixels_are_filled_not_fatal() -> None:
    raw = galaxy(32, 3)
    raw[0, 0, :5] = np.nan
    assert preprocess_image(raw, PreprocessConfig(image_size=16, stretch="asinh")).shape == (1, 16, 16)


def test_bad_config_values_are_named() -> None:
    with pytest.raises(ValueError, match="stretch 'log'"):
        PreprocessConfig(stretch="log")
    with pytest.raises(ValueError, match="channels"):
        PreprocessConfig(channels=2)
    with pytest.raises(ValueError, match="power must be positive, not 0"):
        PreprocessConfig(power=0)


def _catalogue(tmp_path: Path, bad_cutouts: dict[str, Path]) -> Path:
    rows = []
    for i in range(6):
        rows.append(
            {
                "id": f"good{i}",
                "file": write_fits(tmp_path / f"good{i}.fits", galaxy(48, 3, seed=i)).name,
                "label": "a" if i % 2 else "b",
            }
        )
    rows.append({"id": "twoband", "file": write_fits(tmp_path / "twoband.fits", galaxy(48, 2)).name, "label": "a"})
    for kind, path in bad_cutouts.items():
        rows.append({"id": kind, "file": path.name, "label": "a"})
    rows.append({"id": "missing", "file": "missing.fits", "label": "a"})
    path = tmp_path / "catalogue.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_build_store_quarantines_bad_files_and_keeps_the_rest(
    tmp_path: Path, bad_cutouts: dict[str, Path], workers: int
) -> None:
    catalogue = _catalogue(tmp_path, bad_cutouts)
    config = PreprocessConfig(image_size=24, channels=3, stretch="asinh", input_channels=3)
    quarantine = build_store(
        catalogue, tmp_path / "store.h5", tmp_path / "quarantine.csv", config, columns=["label"], workers=workers
    )
    expected_bad = {*bad_cutouts, "twoband", "missing"}
    assert set(quarantine["id"]) == expected_bad
    assert (quarantine["reason"].str.len() > 0).all()
    assert pd.read_csv(tmp_path / "quarantine.csv")["id"].tolist() == quarantine["id"].tolist()
    with ImageStore(tmp_path / "store.h5") as store:
        assert list(store.ids) == [f"good{i}" for i in range(6)]
        assert store.images.shape == (6, 3, 24, 24) and store.images.chunks == (1, 3, 24, 24)
        table = store.catalogue()
        assert table["label"].tolist() == ["b", "a", "b", "a", "b", "a"]
        assert '"stretch": "asinh"' in store.attrs["preprocess"]


def test_build_store_fails_clearly_when_nothing_is_usable(tmp_path: Path, bad_cutouts: dict[str, Path]) -> None:
    path = tmp_path / "catalogue.csv"
    pd.DataFrame({"id": list(bad_cutouts), "file": [p.name for p in bad_cutouts.values()]}).to_csv(path, index=False)
    n_bad = len(bad_cutouts)
    message = rf"none of the {n_bad} cutouts could be used; see .*q.csv \(the first: .+: .+\)"
    with pytest.raises(ValueError, match=message):
        build_store(path, tmp_path / "store.h5", tmp_path / "q.csv", PreprocessConfig())
    assert len(pd.read_csv(tmp_path / "q.csv")) == n_bad, "the quarantine the error points to is there"
    assert not (tmp_path / "store.h5").exists(), "a failed stage must not leave a store behind"
    assert not list(tmp_path.glob(".store*")), "nor its temporary file"


def test_build_store_names_missing_label_columns(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    pd.DataFrame({"id": ["a"], "file": [write_fits(tmp_path / "a.fits", galaxy(32)).name]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"columns \['label'\]"):
        build_store(path, tmp_path / "store.h5", tmp_path / "q.csv", PreprocessConfig(), columns=["label"])


def _double_source(angle_deg: float, bright_first: bool = True, size: int = 48) -> np.ndarray:
    """Two lobes along ``angle_deg`` (rows down), one brighter: an FRII-like radio source."""
    rows, cols = np.indices((size, size)) - (size - 1) / 2
    t = np.radians(angle_deg)
    along = cols * np.cos(t) + rows * np.sin(t)
    across = -cols * np.sin(t) + rows * np.cos(t)
    lobe = lambda at, peak: peak * np.exp(-((along - at) ** 2 + across**2) / 8.0)  # noqa: E731
    bright, faint = (-12, 12) if bright_first else (12, -12)
    return (lobe(bright, 1.0) + lobe(faint, 0.5))[None].astype(np.float32)


def test_align_turns_a_source_of_any_orientation_into_one_image() -> None:
    config = PreprocessConfig(image_size=32, stretch="linear", align=True)
    images = [preprocess_image(_double_source(angle, bright), config)[0].astype(float)
              for angle in (0, 35, 90, 160) for bright in (True, False)]
    for image in images[1:]:
        assert np.abs(image - images[0]).mean() < 0.005 * 255, "the same source at another angle or mirrored"
    left, right = images[0][:, :16].sum(), images[0][:, 16:].sum()
    assert images[0][:8].sum() < 0.05 * images[0].sum() and left > right, "lobes on a horizontal line, bright left"
    unaligned = preprocess_image(_double_source(90), PreprocessConfig(image_size=32, stretch="linear"))[0]
    assert np.abs(unaligned.astype(float) - images[0]).mean() > 0.02 * 255, "without align the angle stays"

"""The real FIRST images shipped in the firstgalaxydata package."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("firstgalaxydata")

from byol_discovery.io.images import read_image  # noqa: E402
from byol_discovery.sources.first import CLASS_NAMES, extract_first  # noqa: E402


def test_extracts_real_labelled_images_with_coordinates(tmp_path: Path) -> None:
    catalogue = extract_first(tmp_path, limit=40)
    assert len(catalogue) == 40 and catalogue["id"].is_unique
    assert set(catalogue["label"]) <= set(CLASS_NAMES.values())
    assert catalogue["ra"].between(0, 360).all() and catalogue["dec"].between(-90, 90).all()
    assert pd.read_csv(tmp_path / "catalogue.csv")["id"].tolist() == catalogue["id"].tolist()
    image = read_image(tmp_path / catalogue["file"].iloc[0])
    assert image.shape == (1, 300, 300) and image.max() > 0
    assert not list(tmp_path.glob("**/*.h5")), "the scratch copy of the archive is removed"


def test_split_selection(tmp_path: Path) -> None:
    catalogue = extract_first(tmp_path, splits=("test",), limit=10)
    assert set(catalogue["split"]) == {"test"}
    assert np.all(catalogue["label_code"].isin(list(CLASS_NAMES)))


def test_a_misspelt_split_is_an_error_naming_the_splits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"source.splits \['tset'\] selects no FIRST image; the splits are "):
        extract_first(tmp_path, splits=("tset",))
    assert not (tmp_path / "catalogue.csv").exists()


def test_a_small_limit_keeps_every_class(tmp_path: Path) -> None:
    # The archive is ordered by class: a limit must not mean "the first N", all FRI.
    catalogue = extract_first(tmp_path, limit=24)
    assert len(catalogue) == 24
    assert set(catalogue["label"]) == set(CLASS_NAMES.values())


def test_a_misspelt_source_setting_is_named_before_any_work(tmp_path: Path) -> None:
    from byol_discovery.stages.acquire import acquire

    with pytest.raises(ValueError, match=r"source \(firstgalaxydata\): unknown setting\(s\) \['limt'\]"):
        acquire({"type": "firstgalaxydata", "limt": 10}, tmp_path, seed=0)
    assert not list(tmp_path.iterdir()), "nothing extracted"

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from byol_discovery.io.store import ImageStore, create_store, load_features, save_features


def test_store_round_trip_keeps_images_ids_and_catalogue(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 1, 16, 16), dtype=np.uint8)
    catalogue = pd.DataFrame(
        {
            "id": [f"o{i}" for i in range(5)],
            "label": list("abcab"),
            "redshift": [0.1, np.nan, 0.3, 0.4, 0.5],
            "flag": [True, False, True, True, False],
        }
    )
    with create_store(tmp_path / "s.h5", channels=1, size=16) as writer:
        for i in (4, 0, 2):  # out of catalogue order, as when some are quarantined
            writer.append(f"o{i}", images[i])
        writer.finish(catalogue, {"dataset": "demo"})
    with ImageStore(tmp_path / "s.h5") as store:
        assert list(store.ids) == ["o4", "o0", "o2"]
        np.testing.assert_array_equal(store.load_images(), images[[4, 0, 2]])
        table = store.catalogue()
        assert table["label"].tolist() == ["b", "a", "c"]
        assert table["flag"].tolist() == [0, 1, 1]
        assert store.attrs["dataset"] == "demo"


def test_writer_rejects_images_of_the_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'x' is uint8 \\(1, 8, 8\\)"), create_store(tmp_path / "s.h5", 1, 16) as w:
        w.append("x", np.zeros((1, 8, 8), np.uint8))
    assert not (tmp_path / "s.h5").exists()


def test_interrupted_store_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), create_store(tmp_path / "s.h5", 1, 8) as writer:
        writer.append("a", np.zeros((1, 8, 8), np.uint8))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_reading_something_that_is_not_a_store_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="x.h5: not a readable HDF5 image store"):
        ImageStore(tmp_path / "x.h5")


def test_features_round_trip(tmp_path: Path) -> None:
    ids = np.array(["a", "b"], dtype=object)
    features = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_features(tmp_path / "f.h5", ids, features, {"arch": "resnet18", "extra": {"k": 1}})
    read_ids, read_features, attrs = load_features(tmp_path / "f.h5")
    assert list(read_ids) == ["a", "b"]
    np.testing.assert_array_equal(read_features, features)
    assert attrs["arch"] == "resnet18"
    # What load_features returns (numpy scalars among the attrs) saves again unchanged.
    save_features(tmp_path / "again.h5", read_ids, read_features, {**attrs, "in_channels": np.int64(1)})
    again = load_features(tmp_path / "again.h5")[2]
    assert again["in_channels"] == 1 and again["arch"] == "resnet18" and again["extra"] == attrs["extra"]
    with pytest.raises(ValueError, match="3 ids but 2 feature rows"):
        save_features(tmp_path / "g.h5", np.array(["a", "b", "c"]), features, {})


def test_features_with_nan_are_named_by_file_count_and_first_id(tmp_path: Path) -> None:
    ids = np.array(["a", "b", "c"], dtype=object)
    features = np.ones((3, 4), dtype=np.float32)
    features[1, 2] = np.nan
    features[2, 0] = np.inf
    save_features(tmp_path / "f.h5", ids, features, {})
    message = r"f\.h5: 2 of 3 feature vectors hold NaN or infinite values \(first: id 'b'\)"
    with pytest.raises(ValueError, match=message):
        load_features(tmp_path / "f.h5")

"""kNN validation, pixel-PCA baseline and confusion matrix on data with known structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from byol_discovery.evaluation import (
    TABLE_COLUMNS,
    clean_labels,
    confusion_matrix_knn,
    knn_accuracy,
    linear_probe_accuracy,
    pixel_pca_features,
    shortfalls,
    validation_table,
)
from sklearn.datasets import make_blobs


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=400, centers=4, n_features=10, cluster_std=0.5,
                      center_box=(-20, 20), random_state=1)
    return x, y


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_separated_blobs_are_classified_perfectly(blobs, metric):
    x, y = blobs
    mean, sem = knn_accuracy(x, y, n_splits=10, metric=metric)
    assert mean > 0.98
    assert 0.0 <= sem < 0.02


def test_shuffled_labels_give_chance_accuracy(blobs):
    x, y = blobs
    shuffled = np.random.default_rng(0).permutation(y)
    mean, sem = knn_accuracy(x, shuffled, n_splits=30)
    assert abs(mean - 0.25) < 0.08
    assert sem > 0


def test_cosine_differs_from_euclidean_on_scaled_rows():
    # Two directions with wildly varying norms: cosine sees two clean classes, Euclidean
    # distance is dominated by the norm and does much worse.
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 2, n)
    direction = np.where(y[:, None] == 0, [1.0, 0.0], [0.0, 1.0]) + 0.05 * rng.normal(size=(n, 2))
    x = direction * rng.uniform(0.1, 100.0, size=(n, 1))
    cos, _ = knn_accuracy(x, y, n_splits=10, metric="cosine")
    euc, _ = knn_accuracy(x, y, n_splits=10, metric="euclidean")
    assert cos > 0.97
    assert cos > euc


def test_seed_determinism(blobs):
    x, y = blobs
    shuffled = np.random.default_rng(1).permutation(y)
    assert knn_accuracy(x, shuffled, n_splits=5, seed=4) == knn_accuracy(x, shuffled, n_splits=5, seed=4)
    assert knn_accuracy(x, shuffled, n_splits=5, seed=4) != knn_accuracy(x, shuffled, n_splits=5, seed=5)


def test_missing_labels_are_dropped(blobs):
    x, y = blobs
    labels = y.astype(float)
    labels[::3] = np.nan
    kept = ~np.isnan(labels)
    assert knn_accuracy(x, labels, n_splits=5) == knn_accuracy(x[kept], y[kept], n_splits=5)
    strings = np.array([f"c{v}" for v in y], dtype=object)
    strings[::3] = ""
    strings[1::7] = None
    keep = np.array([bool(s) for s in strings])
    assert knn_accuracy(x, strings, n_splits=5) == knn_accuracy(x[keep], y[keep], n_splits=5)


def test_clean_labels_handles_float_integers_and_strings():
    keep, codes, names = clean_labels([2.0, np.nan, 1.0, 2.0])
    assert keep.tolist() == [True, False, True, True]
    assert names == [1, 2]
    assert codes.tolist() == [1, 0, 1]
    keep, codes, names = clean_labels(["b", " ", "a", None, "b"])
    assert keep.tolist() == [True, False, True, False, True]
    assert names == ["a", "b"]


def test_errors_are_clear(blobs):
    x, y = blobs
    with pytest.raises(ValueError, match="at least 2 classes"):
        knn_accuracy(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        knn_accuracy(x, np.full(len(x), np.nan))
    with pytest.raises(ValueError, match="too few labelled objects"):
        knn_accuracy(x[:5], [0, 1, 0, 1, 0], k=5)
    with pytest.raises(ValueError, match="labels"):
        knn_accuracy(x, y[:-1])
    with pytest.raises(ValueError, match="metric"):
        knn_accuracy(x, y, metric="manhattan")
    with pytest.raises(ValueError, match="NaN"):
        bad = x.copy()
        bad[0, 0] = np.nan
        knn_accuracy(bad, y)


def test_validation_table_columns_and_values(blobs):
    x, y = blobs
    rng = np.random.default_rng(0)
    half = np.where(y < 2, "low", "high").astype(object)
    half[::4] = None
    table = validation_table(
        {"features": x, "noise": rng.normal(size=x.shape)},
        {"blob": y, "half": half},
        k=5, n_splits=5, test_fraction=0.2, seed=0,
    )
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 2 * 2 * 2
    assert set(table["method"]) == {"knn"}
    row = table.query("representation == 'features' and label_set == 'blob' and metric == 'euclidean'")
    assert row["accuracy_mean"].item() > 0.98
    assert row["n_classes"].item() == 4
    assert row["chance"].item() == pytest.approx(np.bincount(y).max() / len(y))
    noise = table.query("representation == 'noise' and label_set == 'blob'")
    assert (noise["accuracy_mean"] < 0.5).all()
    half_row = table.query("representation == 'features' and label_set == 'half'")
    assert (half_row["n_objects"] == len(y) - len(y[::4])).all()
    assert (half_row["n_classes"] == 2).all()


def test_validation_table_rejects_single_class_label_set_naming_it(blobs):
    x, y = blobs
    with pytest.raises(ValueError, match=r"label set 'one', representation 'f': .*at least 2 classes"):
        validation_table({"f": x}, {"blob": y, "one": np.where(y < 2, "low", None)}, n_splits=2)


def _striped_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Greyscale 16x16 images: class 0 horizontal stripes, class 1 vertical, plus noise."""
    y = rng.integers(0, 2, n)
    stripes = (np.arange(16) % 4 < 2).astype(float)
    horizontal = np.repeat(stripes[:, None], 16, axis=1)
    base = np.where(y[:, None, None] == 0, horizontal, horizontal.T)
    pixels = 200 * base + rng.normal(0, 20, size=(n, 16, 16)) + 20
    return np.clip(pixels, 0, 255).astype(np.uint8)[:, None], y


def test_pixel_pca_features_shape_determinism_and_signal():
    rng = np.random.default_rng(0)
    images, y = _striped_images(300, rng)
    features = pixel_pca_features(images, n_components=10, seed=0)
    assert features.shape == (300, 10)
    assert features.dtype == np.float32
    np.testing.assert_array_equal(features, pixel_pca_features(images, n_components=10, seed=0))
    mean, _ = knn_accuracy(features, y, n_splits=5)
    assert mean > 0.95


def test_pixel_pca_subsampled_fit_and_batched_transform_match_shapes():
    rng = np.random.default_rng(1)
    images, _ = _striped_images(250, rng)
    rgb = np.repeat(images, 3, axis=1)
    features = pixel_pca_features(rgb, n_components=5, seed=2, max_fit_samples=100, batch_size=64)
    assert features.shape == (250, 5)
    np.testing.assert_array_equal(
        features, pixel_pca_features(rgb, n_components=5, seed=2, max_fit_samples=100, batch_size=64)
    )
    # n_components is clamped to what the data can support
    assert pixel_pca_features(rgb[:4], n_components=50).shape == (4, 4)


def test_confusion_matrix_knn(blobs):
    x, y = blobs
    labels = np.array(["a", "b", "c", "d"])[y]
    matrix, names = confusion_matrix_knn(x, labels, k=5, seed=0, metric="euclidean")
    assert names == ["a", "b", "c", "d"]
    assert matrix.shape == (4, 4)
    assert matrix.sum() == 80  # 20 % of 400
    assert np.trace(matrix) >= 79
    again, _ = confusion_matrix_knn(x, labels, k=5, seed=0, metric="euclidean")
    np.testing.assert_array_equal(matrix, again)


def _reference_knn_accuracy(x, y, k, n_splits, test_fraction, seed):
    """Plain scikit-learn: fit a classifier on each training split."""
    from sklearn.model_selection import ShuffleSplit
    from sklearn.neighbors import KNeighborsClassifier

    scores = []
    for train, test in ShuffleSplit(n_splits, test_size=test_fraction, random_state=seed).split(x):
        model = KNeighborsClassifier(n_neighbors=k).fit(x[train], y[train])
        scores.append(np.mean(model.predict(x[test]) == y[test]))
    return np.mean(scores), np.std(scores, ddof=1) / np.sqrt(n_splits)


@pytest.mark.parametrize(("k", "test_fraction"), [(1, 0.2), (5, 0.2), (7, 0.5), (3, 0.9)])
def test_shared_neighbour_search_matches_refitting_per_split(k, test_fraction):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + 0.8 * rng.normal(size=300) > 0).astype(int) + (x[:, 1] > 1)
    ours = knn_accuracy(x, y, k=k, n_splits=8, test_fraction=test_fraction, seed=2)
    np.testing.assert_allclose(ours, _reference_knn_accuracy(x, y, k, 8, test_fraction, 2))


def test_duplicate_points_are_handled():
    # Many exact duplicates: a point's own index need not come first among its neighbours.
    x = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 50, axis=0)
    y = np.repeat([0, 1], 50)
    assert knn_accuracy(x, y, k=5, n_splits=5) == (1.0, 0.0)


def test_fallback_when_candidates_run_short(monkeypatch):
    # With only k candidates most test points lack k training candidates: the exact
    # fallback must then give the same answer as refitting.
    import byol_discovery.evaluation as evaluation

    monkeypatch.setattr(evaluation, "_n_candidates", lambda n, k, f: k)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] > 0).astype(int)
    ours = evaluation.knn_accuracy(x, y, k=5, n_splits=4, seed=1)
    np.testing.assert_allclose(ours, _reference_knn_accuracy(x, y, 5, 4, 0.2, 1))


def test_linear_probe_separates_blobs_and_not_noise(blobs):
    x, y = blobs
    mean, sem = linear_probe_accuracy(x, y, n_folds=5, seed=0)
    assert mean > 0.98 and 0 <= sem < 0.02
    shuffled = np.random.default_rng(0).permutation(y)
    noise_mean, _ = linear_probe_accuracy(x, shuffled, n_folds=5, seed=0)
    assert abs(noise_mean - 0.25) < 0.1
    assert linear_probe_accuracy(x, shuffled, seed=3) == linear_probe_accuracy(x, shuffled, seed=3)


def test_linear_probe_sees_linear_structure_knn_misses():
    # The class depends on one of 40 noisy dimensions: a linear model finds it, kNN drowns.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 40))
    y = (x[:, 0] > 0).astype(int)
    x[:, 0] *= 0.3
    probe, _ = linear_probe_accuracy(x, y, seed=0)
    knn, _ = knn_accuracy(x, y, n_splits=5)
    assert probe > 0.9 and probe > knn + 0.2


def test_linear_probe_handles_missing_labels_rare_classes_and_errors(blobs):
    x, y = blobs
    labels = y.astype(object)
    labels[::5] = None
    labels[1] = "rare"  # a class with fewer members than folds: plain shuffled folds
    mean, _ = linear_probe_accuracy(x, labels, n_folds=5)
    assert mean > 0.9
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe_accuracy(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="n_folds"):
        linear_probe_accuracy(x, y, n_folds=1)


def test_validation_table_adds_probe_rows(blobs):
    x, y = blobs
    table = validation_table({"f": x}, {"blob": y}, n_splits=3, probe_folds=4)
    probe = table[table["method"] == "linear_probe"]
    assert len(table) == 3 and len(probe) == 1
    assert probe["metric"].item() == "linear" and probe["n_splits"].item() == 4
    assert pd.isna(probe["k"].item()) and table["k"].dtype == "Int64"
    assert probe["accuracy_mean"].item() > 0.98


def test_shortfalls_name_the_baseline_that_matches_or_beats_byol(blobs):
    x, y = blobs
    noise = np.random.default_rng(0).normal(size=x.shape)
    worse = validation_table({"byol": noise, "pixel_pca": x, "random_init": noise * 2}, {"blob": y},
                             n_splits=3, probe_folds=3)
    found = shortfalls(worse)
    assert len(found) == 3  # kNN on both metrics and the probe
    assert set(found["baseline"]) == {"pixel_pca"} and set(found["label_set"]) == {"blob"}
    assert (found["accuracy"] < 0.5).all() and (found["baseline_accuracy"] > 0.98).all()
    better = validation_table({"byol": x, "random_init": noise}, {"blob": y}, n_splits=3)
    assert shortfalls(better).empty
    tied = validation_table({"byol": x, "pixel_pca": x.copy()}, {"blob": y}, n_splits=3)
    assert len(shortfalls(tied)) == 2  # equal is no better
    assert shortfalls(validation_table({"byol": x}, {"blob": y}, n_splits=3)).empty


def _tiny_store_and_features(root, n: int = 60):
    from byol_discovery.io.store import create_store, save_features

    rng = np.random.default_rng(0)
    images, y = _striped_images(n, rng)
    ids = np.array([f"o{i}" for i in range(n)], dtype=object)
    with create_store(root / "store.h5", channels=1, size=16) as writer:
        for object_id, image in zip(ids, images, strict=True):
            writer.append(object_id, image)
        writer.finish(pd.DataFrame({"id": ids, "stripes": np.where(y == 0, "h", "v")}), {})
    features = images.reshape(n, -1).astype(np.float32)
    save_features(root / "features.h5", ids, features,
                  {"arch": "resnet18", "in_channels": 1, "small_stem": False})
    return root / "store.h5", root / "features.h5"


def test_validate_stage_with_every_baseline(tmp_path, imagenet_like_weights):
    from byol_discovery.stages import validate

    store, features = _tiny_store_and_features(tmp_path)
    settings = {"label_columns": ["stripes"], "k": 5, "n_splits": 3, "test_fraction": 0.2,
                "pixel_pca_components": 5, "random_backbone": True, "probe_folds": 3, "probe_c": 1.0,
                "imagenet_weights": str(imagenet_like_weights[0]), "seed": 0, "device": "cpu"}
    table = validate(store, features, tmp_path / "t.csv", tmp_path / "a.png", tmp_path / "c.png", settings)
    assert set(table["representation"]) == {"byol", "pixel_pca", "random_init", "imagenet_init"}
    assert len(table) == 4 * 3  # kNN on two metrics and the probe, per representation
    assert pd.read_csv(tmp_path / "t.csv")["method"].tolist().count("linear_probe") == 4
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "a.png").stat().st_size > 0
    empty = validate(store, features, tmp_path / "e.csv", tmp_path / "ea.png", tmp_path / "ec.png",
                     {**settings, "label_columns": [], "random_backbone": False, "imagenet_weights": None})
    assert empty.empty and (tmp_path / "ec.png").is_file()


def test_validate_stage_splits_the_confusion_matrix_as_the_table(tmp_path):
    """Six labelled objects and k=5: a 10 % test split leaves the neighbours enough, a 20 %
    one would not, so the confusion matrix must use the configured fraction too."""
    from byol_discovery.stages import validate

    store, features = _tiny_store_and_features(tmp_path, n=6)
    settings = {"label_columns": ["stripes"], "k": 5, "n_splits": 3, "test_fraction": 0.1,
                "pixel_pca_components": 0, "random_backbone": False, "probe_folds": 0, "seed": 0}
    validate(store, features, tmp_path / "t.csv", tmp_path / "a.png", tmp_path / "c.png", settings)
    assert (tmp_path / "c.png").stat().st_size > 0


def test_validate_stage_warns_when_byol_is_no_better_than_a_baseline(tmp_path, caplog):
    from byol_discovery.io.store import load_features, save_features
    from byol_discovery.stages import validate

    store, features = _tiny_store_and_features(tmp_path)
    ids, pixels, attrs = load_features(features)
    noise = tmp_path / "noise.h5"
    save_features(noise, ids, np.random.default_rng(1).normal(size=pixels.shape).astype(np.float32), attrs)
    settings = {"label_columns": ["stripes"], "k": 5, "n_splits": 3, "test_fraction": 0.2,
                "pixel_pca_components": 5, "random_backbone": False, "probe_folds": 0, "seed": 0}
    with caplog.at_level("WARNING"):
        validate(store, noise, tmp_path / "t.csv", tmp_path / "a.png", tmp_path / "c.png", settings)
    warnings = [r.getMessage() for r in caplog.records if "no better than" in r.getMessage()]
    assert len(warnings) == 2 and all("pixel_pca on stripes (knn" in w for w in warnings)


def test_validate_extracts_the_random_baseline_as_the_features_were(tmp_path):
    """Stripes across and along differ only by a quarter turn: a baseline averaged over the
    turns, as dihedral-averaged BYOL features are, cannot tell them apart."""
    from byol_discovery.io.store import load_features, save_features
    from byol_discovery.stages import validate

    store, features = _tiny_store_and_features(tmp_path)
    ids, matrix, attrs = load_features(features)
    averaged = tmp_path / "averaged.h5"
    save_features(averaged, ids, matrix, {**attrs, "dihedral_average": True})
    settings = {"label_columns": ["stripes"], "k": 5, "n_splits": 3, "test_fraction": 0.2,
                "pixel_pca_components": 0, "random_backbone": True, "probe_folds": 0, "seed": 0, "device": "cpu"}

    def random_init_accuracy(path):
        table = validate(store, path, tmp_path / "t.csv", tmp_path / "a.png", tmp_path / "c.png", settings)
        return table.set_index(["representation", "metric"]).loc[("random_init", "euclidean"), "accuracy_mean"]

    assert random_init_accuracy(features) > 0.9
    assert random_init_accuracy(averaged) < 0.75


def test_cluster_stage_names_a_label_column_the_store_lacks_before_fitting(tmp_path, monkeypatch):
    from byol_discovery import clustering
    from byol_discovery.stages import cluster

    def no_fit(*args, **kwargs):
        raise AssertionError("the check comes before the fits")

    monkeypatch.setattr(clustering, "hdbscan_clusters", no_fit)
    store, features = _tiny_store_and_features(tmp_path)
    outputs = {name: tmp_path / name for name in ("assignments", "summary", "scores")}
    with pytest.raises(ValueError, match=r"cluster.label_column: columns \['morphology'\] are not in the store"):
        cluster(store, features, outputs, {"label_column": "morphology", "seed": 0})
    with pytest.raises(ValueError, match=r"cluster.label_column 'gmm' is the name of a column assignments"):
        cluster(store, features, outputs, {"label_column": "gmm", "seed": 0})
    assert not any(path.exists() for path in outputs.values())

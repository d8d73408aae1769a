"""Clustering at scale: fits on a seeded subsample, the rest assigned; refits on subsamples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from byol_discovery import clustering
from byol_discovery.io.store import create_store, save_features
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """6,000 points in 6 blobs of unequal spread in 10 dimensions."""
    x, truth = make_blobs(n_samples=6000, centers=6, n_features=10, cluster_std=[1.0, 1.5, 1.0, 2.0, 1.2, 1.0],
                          center_box=(-15, 15), random_state=3)
    return x, truth


def test_hdbscan_fitted_on_a_subsample_agrees_with_the_full_fit(blobs):
    x, _ = blobs
    full, _ = clustering.hdbscan_clusters(x, 30, 5)
    assigned, probability = clustering.hdbscan_clusters(x, 30, 5, max_fit_samples=1500, seed=0)
    assert assigned.shape == probability.shape == (len(x),)
    assert adjusted_rand_score(full, assigned) >= 0.9
    assert np.all((probability >= 0) & (probability <= 1))
    np.testing.assert_array_equal(assigned, clustering.hdbscan_clusters(x, 30, 5, max_fit_samples=1500, seed=0)[0])


def test_hdbscan_below_the_threshold_is_the_plain_fit(blobs):
    x, _ = blobs
    plain = clustering.hdbscan_clusters(x[:2000], 30, 5)
    capped = clustering.hdbscan_clusters(x[:2000], 30, 5, max_fit_samples=2000)
    np.testing.assert_array_equal(plain[0], capped[0])
    np.testing.assert_array_equal(plain[1], capped[1])


def test_soft_membership_above_the_threshold_gives_every_noise_point_a_cluster(blobs):
    blob_points, truth = blobs
    scattered = np.random.default_rng(0).uniform(-20, 20, size=(300, blob_points.shape[1]))  # noise to place
    x = np.vstack([blob_points, scattered])
    core, probability, soft, soft_probability = clustering.hdbscan_soft_clusters(
        x, 30, 5, max_fit_samples=1500, seed=0)
    same_fit = clustering.hdbscan_clusters(x, 30, 5, max_fit_samples=1500, seed=0)
    np.testing.assert_array_equal(core, same_fit[0])
    np.testing.assert_array_equal(probability, same_fit[1])
    assert (core == -1).any(), "the test needs noise points to place"
    assert (soft >= 0).all() and set(soft) == set(core[core >= 0])
    np.testing.assert_array_equal(soft[core >= 0], core[core >= 0])
    assert np.all((soft_probability >= 0) & (soft_probability <= 1))
    assert adjusted_rand_score(truth, soft[: len(truth)]) >= 0.9, "blob points called noise placed in their blob"


def test_the_mixture_fitted_on_a_subsample_agrees_with_the_full_fit(blobs):
    x, _ = blobs
    full = clustering.gaussian_mixture_clusters(x, max_components=8, n_init=1, seed=0)
    sub = clustering.gaussian_mixture_clusters(x, max_components=8, n_init=1, seed=0, max_fit_samples=1500)
    assert adjusted_rand_score(full, sub) >= 0.9


def test_stability_refits_see_at_most_max_points(blobs, monkeypatch):
    x, _ = blobs
    reference, _ = clustering.hdbscan_clusters(x, 30, 5)
    seen = []
    real = clustering.hdbscan_clusters
    monkeypatch.setattr(clustering, "hdbscan_clusters", lambda data, *a, **k: seen.append(len(data)) or real(data, *a))
    stability = clustering.hdbscan_subsample_stability(x, reference, 30, 5, n_subsamples=2, max_points=1000)
    mean, _, runs = stability["hdbscan"]
    assert seen == [1000, 1000] and runs == 2
    assert mean >= 0.9
    assert clustering.stability_subsample_size(6000, 0.8, None) == 4800


def _store(root, x, truth):
    ids = np.array([f"g{i:05d}" for i in range(len(x))], dtype=object)
    with create_store(root / "store.h5", channels=1, size=8) as writer:
        for object_id in ids:
            writer.append(object_id, np.zeros((1, 8, 8), np.uint8))
        writer.finish(pd.DataFrame({"id": ids, "family": truth}), {})
    save_features(root / "pca.h5", ids, x.astype(np.float32), {})


@pytest.mark.parametrize(("max_fit", "fitted", "refit"), [(None, 3000, 2400), (1000, 1000, 1000)])
def test_scores_say_how_many_points_each_fit_saw(tmp_path, blobs, monkeypatch, max_fit, fitted, refit):
    from byol_discovery import plotting, stages

    for name in ("cluster_galleries", "scatter_map"):  # the figures are not what this test is about
        monkeypatch.setattr(plotting, name, lambda *a, **k: None)
    x, truth = blobs
    _store(tmp_path, x[:3000], truth[:3000])
    names = ("assignments", "assignments_ecsv", "summary", "scores", "map_clusters", "map_labels", "map_gmm_merged",
             "gallery_hdbscan", "gallery_gmm", "gallery_gmm_merged")
    outputs = {name: tmp_path / f"{name}.csv" for name in names}
    settings = {
        "label_column": "family", "max_dims": None, "seed": 0, "gallery_per_cluster": 4,
        "hdbscan": {"min_cluster_size": 30, "min_samples": 5, "max_fit_samples": max_fit},
        "gmm": {"max_components": 8, "weight_concentration_prior": 0.5, "n_init": 1, "max_fit_samples": max_fit,
                "merge_threshold": 0.5},
        "stability": {"n_seeds": 2, "n_subsamples": 1, "subsample_fraction": 0.8},
    }
    stages.cluster(tmp_path / "store.h5", tmp_path / "pca.h5", outputs, settings)
    scores = pd.read_csv(outputs["scores"]).set_index("method")
    assert scores.loc["hdbscan", "fit_samples"] == fitted == scores.loc["gmm", "fit_samples"]
    assert scores.loc["hdbscan", "stability_fit_samples"] == refit
    assert scores.loc["hdbscan", "adjusted_rand"] >= 0.9
    # Every labelling has its refits, the soft and merged ones included.
    assert (scores["stability_runs"] > 0).all() and scores["stability_ari"].notna().all()
    assert len(pd.read_csv(outputs["assignments"])) == 3000


@pytest.mark.parametrize("min_samples", [5, None])
def test_assignment_is_hdbscans_own_given_the_same_neighbours(blobs, min_samples):
    """The vectorised assignment gives hdbscan.approximate_predict's labels and probabilities
    to the last bit, noise and border points included."""
    import hdbscan

    x, _ = blobs
    model = clustering.fit_hdbscan(x[:1500], 30, min_samples, prediction_data=True)
    # The other blob points, and points scattered between and beyond the blobs (noise).
    new = np.vstack([x[1500:], np.random.default_rng(0).uniform(-25, 25, size=(500, x.shape[1]))])
    distances, indices = model.prediction_data_.tree.query(new, k=2 * (min_samples or 30))
    labels, probabilities, _ = clustering.approximate_predict(model, indices, distances)
    expected_labels, expected_probabilities = hdbscan.approximate_predict(model, new)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(probabilities, expected_probabilities)
    assert (expected_labels == -1).any() and (expected_labels >= 0).any()


def test_mixture_stability_above_the_threshold_predicts_only_the_subsample(blobs, monkeypatch):
    from byol_discovery import merging
    from sklearn.mixture import BayesianGaussianMixture

    x, _ = blobs
    mixture = {"max_components": 6, "n_init": 1, "max_fit_samples": 1000}
    components, merged, _ = merging.merged_labels(clustering.fit_gaussian_mixture(x, seed=0, **mixture), x, 0.5)
    predicted = []
    real_predict = BayesianGaussianMixture.predict
    monkeypatch.setattr(BayesianGaussianMixture, "predict",
                        lambda model, data: predicted.append(len(data)) or real_predict(model, data))
    stability = merging.mixture_seed_stability(x, {"gmm": components, "gmm_merged": merged}, 0.5, 3, 0, **mixture)
    assert predicted == [1000, 1000]
    assert stability["gmm"][2] == stability["gmm_merged"][2] == 2
    assert stability["gmm"][0] >= 0.9 and stability["gmm_merged"][0] >= 0.9

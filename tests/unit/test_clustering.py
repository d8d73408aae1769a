"""PCA reduction, HDBSCAN, Bayesian Gaussian mixture and cluster scores on Gaussian blobs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from byol_discovery.clustering import (
    MAP_KINDS,
    central_members,
    cluster_summary,
    clustering_scores,
    embed_2d,
    gaussian_mixture_clusters,
    hdbscan_clusters,
    hdbscan_soft_clusters,
    hdbscan_space,
    hdbscan_subsample_stability,
    leading_components,
    map_2d,
    reduce_pca,
    relabel_by_size,
    scaled_min_cluster_size,
    umap_embedding,
)
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    # Unequal sizes so that "relabel by decreasing size" is testable.
    x, y = make_blobs(n_samples=[300, 200, 100], n_features=5, cluster_std=0.6,
                      center_box=(-15, 15), random_state=7)
    return x, y


def test_reduce_pca_keeps_requested_variance():
    rng = np.random.default_rng(0)
    # Variance concentrated in 3 of 20 directions.
    x = rng.normal(size=(500, 20)) * np.r_[10.0, 8.0, 6.0, np.full(17, 0.1)]
    reduced, pca = reduce_pca(x, variance=0.95, seed=0)
    assert reduced.shape == (500, 3)
    assert reduced.dtype == np.float32
    assert pca.explained_variance_ratio_.sum() >= 0.95
    full, _ = reduce_pca(x, variance=1.0)
    assert full.shape == (500, 20)
    np.testing.assert_array_equal(reduced, reduce_pca(x, variance=0.95, seed=0)[0])


def test_relabel_by_size_orders_clusters_and_keeps_noise():
    labels = np.array([5, 5, -1, 2, 2, 2, 9, -1])
    assert relabel_by_size(labels).tolist() == [1, 1, -1, 0, 0, 0, 2, -1]


def test_hdbscan_recovers_blobs(blobs):
    x, y = blobs
    labels, probabilities = hdbscan_clusters(x, min_cluster_size=20, min_samples=5)
    assert adjusted_rand_score(y, labels) > 0.9
    assert set(labels[labels >= 0]) == {0, 1, 2}
    assert np.mean(labels == -1) < 0.1
    assert np.bincount(labels[labels >= 0]).tolist() == sorted(
        np.bincount(labels[labels >= 0]).tolist(), reverse=True)
    assert probabilities.shape == (len(x),)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert np.all(probabilities[labels == -1] == 0)
    again, _ = hdbscan_clusters(x, min_cluster_size=20, min_samples=5)
    np.testing.assert_array_equal(labels, again)


def test_hdbscan_marks_uniform_background_as_noise(blobs):
    x, _ = blobs
    rng = np.random.default_rng(0)
    background = rng.uniform(-40, 40, size=(60, x.shape[1]))
    labels, _ = hdbscan_clusters(np.vstack([x, background]), min_cluster_size=20, min_samples=5)
    assert np.mean(labels[-60:] == -1) > 0.8
    assert np.mean(labels[:-60] == -1) < 0.15


def test_hdbscan_soft_membership_gives_noise_its_nearest_cluster():
    x, _ = make_blobs(n_samples=[300, 200, 100], centers=[[0, 0], [20, 0], [0, 20]], cluster_std=1.5,
                      random_state=0)
    background = np.random.default_rng(0).uniform(-10, 30, size=(200, 2))
    data = np.vstack([x, background])
    labels, probabilities, soft, soft_probability = hdbscan_soft_clusters(data, 20, 5)
    core_labels, core_probabilities = hdbscan_clusters(data, 20, 5)
    np.testing.assert_array_equal(labels, core_labels)
    np.testing.assert_array_equal(probabilities, core_probabilities)
    assert (labels == -1).sum() >= 20
    assert (soft >= 0).all()
    np.testing.assert_array_equal(soft[labels >= 0], labels[labels >= 0])
    assert np.all((soft_probability > 0) & (soft_probability <= 1))
    # Noise near one blob (closer to its centre than to the others by far) gets that blob's cluster.
    centres = np.array([data[labels == k].mean(axis=0) for k in range(3)])
    distance = np.linalg.norm(data[:, None, :] - centres[None], axis=2)
    nearest = np.sort(distance, axis=1)
    clear = (labels == -1) & (nearest[:, 0] < 0.5 * nearest[:, 1])
    assert clear.sum() >= 5
    np.testing.assert_array_equal(soft[clear], np.argmin(distance[clear], axis=1))


def test_hdbscan_soft_membership_without_any_cluster():
    x = np.random.default_rng(0).uniform(size=(30, 3))
    labels, _, soft, soft_probability = hdbscan_soft_clusters(x, 25, 20)
    assert (labels == -1).all() and (soft == -1).all() and (soft_probability == 0).all()


def test_scaled_min_cluster_size():
    assert scaled_min_cluster_size(1000, 25, 0.01) == 25  # given explicitly
    assert scaled_min_cluster_size(100_000, None, 0.01) == 1000
    assert scaled_min_cluster_size(100, None, 0.01) == 5  # floor
    assert scaled_min_cluster_size(3, None, 0.01) == 3
    with pytest.raises(ValueError, match="min_cluster_fraction"):
        scaled_min_cluster_size(100, None, 1.5)


def test_gaussian_mixture_recovers_blobs_by_size(blobs):
    x, y = blobs
    labels = gaussian_mixture_clusters(x, max_components=8, n_init=2, seed=0)
    assert adjusted_rand_score(y, labels) > 0.9
    assert labels.min() == 0
    counts = np.bincount(labels)
    assert counts.tolist() == sorted(counts.tolist(), reverse=True)
    # the largest true blob (index 0, 300 points) becomes cluster 0
    assert np.mean(labels[y == 0] == 0) > 0.95
    np.testing.assert_array_equal(labels, gaussian_mixture_clusters(x, max_components=8, n_init=2, seed=0))


def test_cluster_summary_with_and_without_truth():
    labels = np.array([0, 0, 0, 1, 1, -1])
    truth = np.array(["a", "a", "b", "b", None, "a"], dtype=object)
    plain = cluster_summary(labels)
    assert list(plain.columns) == ["cluster", "size", "fraction"]
    assert plain["cluster"].tolist() == [-1, 0, 1]
    assert plain["size"].tolist() == [1, 3, 2]
    assert plain["fraction"].sum() == pytest.approx(1.0)
    full = cluster_summary(labels, truth).set_index("cluster")
    assert full.loc[0, "majority_label"] == "a"
    assert full.loc[0, "purity"] == pytest.approx(2 / 3)
    assert full.loc[1, "purity"] == pytest.approx(1.0)  # the unlabelled member does not count
    assert full.loc[1, "n_labelled"] == 1


def test_clustering_scores_on_blobs(blobs):
    x, y = blobs
    labels = y.copy()
    labels[:30] = -1
    scores = clustering_scores(x, labels, truth=y, seed=0)
    assert scores["n_clusters"] == 3
    assert scores["noise_fraction"] == pytest.approx(30 / 600)
    assert scores["silhouette"] > 0.7
    assert scores["purity"] == pytest.approx(1.0)
    assert 0.8 < scores["adjusted_rand"] <= 1.0
    assert 0.8 < scores["nmi"] <= 1.0
    subsampled = clustering_scores(x, labels, seed=0, max_silhouette_points=100)
    assert subsampled == clustering_scores(x, labels, seed=0, max_silhouette_points=100)
    assert "adjusted_rand" not in subsampled


def test_clustering_scores_single_cluster_has_nan_silhouette(blobs):
    x, _ = blobs
    scores = clustering_scores(x, np.zeros(len(x), dtype=int))
    assert scores["n_clusters"] == 1
    assert math.isnan(scores["silhouette"])
    all_noise = clustering_scores(x, np.full(len(x), -1))
    assert all_noise["n_clusters"] == 0 and all_noise["noise_fraction"] == 1.0


def test_central_members_are_nearest_the_centroid():
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [30.0]])
    labels = np.array([0, 0, 0, 1, 1, -1])
    members = central_members(x, labels, n_per_cluster=2)
    assert sorted(members) == [0, 1]
    assert members[0].tolist() == [1, 0]  # centroid 1.0: index 1 first, then the tie 0 before 2
    assert members[1].tolist() == [3, 4]


def test_embed_2d(blobs):
    x, _ = blobs
    xy = embed_2d(x, seed=0)
    assert xy.shape == (len(x), 2) and xy.dtype == np.float32
    np.testing.assert_array_equal(xy, embed_2d(x, seed=0))
    assert embed_2d(x[:, :1]).shape == (len(x), 2)


def test_gaussian_mixture_subsampled_fit_labels_everything(blobs):
    x, y = blobs
    labels = gaussian_mixture_clusters(x, max_components=6, n_init=1, seed=1, max_fit_samples=150)
    assert labels.shape == (len(x),)
    assert adjusted_rand_score(y, labels) > 0.9
    np.testing.assert_array_equal(
        labels, gaussian_mixture_clusters(x, max_components=6, n_init=1, seed=1, max_fit_samples=150))


def test_hdbscan_subsample_stability_separates_structure_from_noise(blobs):
    x, _ = blobs
    reference, _ = hdbscan_clusters(x, 20, 5)
    mean, sd, runs = hdbscan_subsample_stability(x, reference, 20, 5, n_subsamples=3, fraction=0.8, seed=0)["hdbscan"]
    assert runs == 3 and mean > 0.9
    assert (mean, sd, runs) == hdbscan_subsample_stability(x, reference, 20, 5, 3, 0.8, seed=0)["hdbscan"]
    rng = np.random.default_rng(0)
    noise = rng.uniform(size=(400, 5))
    noise_reference, _ = hdbscan_clusters(noise, 10, 3)
    noise_mean, _, _ = hdbscan_subsample_stability(noise, noise_reference, 10, 3, 3, 0.8, seed=0)["hdbscan"]
    assert noise_mean < mean
    with pytest.raises(ValueError, match="fraction"):
        hdbscan_subsample_stability(x, reference, 20, 5, fraction=1.5)
    all_noise = np.full(len(x), -1)
    stability = hdbscan_subsample_stability(x, all_noise, 20, 5, 3, 0.8, seed=0, soft_reference=all_noise)
    assert set(stability) == {"hdbscan", "hdbscan_soft"}
    assert all(np.isnan(mean) and fits == 0 for mean, _, fits in stability.values()), \
        "no clusters: stability is undefined, not a perfect 1"


def test_hdbscan_subsample_stability_also_scores_the_soft_labels(blobs):
    x, _ = blobs
    core, _, soft, _ = hdbscan_soft_clusters(x, 20, 5)
    stability = hdbscan_subsample_stability(x, core, 20, 5, n_subsamples=2, seed=0, soft_reference=soft)
    assert stability["hdbscan_soft"][2] == 2 and stability["hdbscan_soft"][0] > 0.9
    assert "hdbscan_soft" not in hdbscan_subsample_stability(x, core, 20, 5, n_subsamples=1, seed=0)


def test_leading_components():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(leading_components(x, None), x)
    np.testing.assert_array_equal(leading_components(x, 2), x[:, :2])
    np.testing.assert_array_equal(leading_components(x, 10), x)
    with pytest.raises(ValueError):
        leading_components(x, 0)


@pytest.fixture(scope="module")
def heavy_tailed_groups() -> tuple[np.ndarray, np.ndarray]:
    # Three groups in 20 dimensions whose members scatter with Student-t (3) tails: groups that
    # grade into each other, as morphologies do in the features.
    rng = np.random.default_rng(0)
    sizes, centres = [400, 300, 200], rng.normal(0.0, 1.5, (3, 20))
    x = np.concatenate([centre + rng.standard_t(3, (n, 20)) for centre, n in zip(centres, sizes, strict=True)])
    return x, np.repeat([0, 1, 2], sizes)


def test_hdbscan_in_the_umap_space_finds_graded_groups_that_the_pca_space_calls_noise(heavy_tailed_groups):
    x, truth = heavy_tailed_groups
    found = {}
    for space in ("pca", "umap"):
        labels, _ = hdbscan_clusters(hdbscan_space(x, space, {"n_components": 5, "n_neighbors": 30}, seed=0), 18, 2)
        found[space] = (float(np.mean(labels == -1)), adjusted_rand_score(truth, labels))
    assert found["pca"][0] > 0.3 and found["pca"][1] < 0.5  # measured 37 % noise, ARI 0.21
    assert found["umap"][0] < 0.1 and found["umap"][1] > 0.9  # measured no noise, ARI 0.96


def test_umap_embedding_is_seeded_and_places_the_points_a_subsample_fit_left_out(blobs):
    x, truth = blobs
    first = umap_embedding(x, n_components=3, n_neighbors=15, seed=1)
    assert first.shape == (len(x), 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first, umap_embedding(x, n_components=3, n_neighbors=15, seed=1))
    subsampled = umap_embedding(x, n_components=3, n_neighbors=15, seed=1, max_fit_samples=200)
    labels, _ = hdbscan_clusters(subsampled, 20, 5)
    assert adjusted_rand_score(truth, labels) > 0.95
    with pytest.raises(ValueError, match="needs more than 4 points"):
        umap_embedding(x[:4], n_components=3)
    with pytest.raises(ValueError, match="cluster.hdbscan.space must be one of"):
        hdbscan_space(x, "tsne")


def test_the_umap_map_keeps_groups_apart_where_the_pca_map_overlaps_them():
    """Three groups that differ in ten dimensions, with a larger spread that all share (as
    brightness or size is in images) in two more: the first two principal components show
    that spread and overlap the groups; the UMAP map keeps them apart."""
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 3.0, (3, 10))
    truth = np.repeat([0, 1, 2], 200)
    x = np.hstack([rng.normal(0.0, 8.0, (600, 2)), centres[truth] + rng.normal(size=(600, 10))])
    apart = {kind: silhouette_score(map_2d(x, kind, seed=0), truth) for kind in MAP_KINDS}
    assert apart["umap"] > 0.5 and apart["pca"] < 0.1, apart  # measured 0.84 and -0.02
    xy = map_2d(x, "umap", seed=0)
    assert xy.shape == (len(x), 2) and xy.dtype == np.float32
    np.testing.assert_array_equal(xy, map_2d(x, "umap", seed=0))
    with pytest.raises(ValueError, match="cluster.map must be one of"):
        map_2d(x, "tsne")

"""Hellinger distance between Gaussians and merging of mixture components."""

from __future__ import annotations

import numpy as np
import pytest
from byol_discovery.clustering import fit_gaussian_mixture
from byol_discovery.merging import (
    hellinger_distance,
    hellinger_matrix,
    merge_components,
    merged_labels,
    mixture_seed_stability,
)
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture


def test_hellinger_distance_closed_form_in_one_dimension():
    # 1-D: H^2 = 1 - sqrt(2 s1 s2 / (s1^2 + s2^2)) exp(-(m1 - m2)^2 / (4 (s1^2 + s2^2)))
    m1, s1, m2, s2 = 0.3, 1.2, -0.8, 0.7
    expected = np.sqrt(1 - np.sqrt(2 * s1 * s2 / (s1**2 + s2**2)) * np.exp(-((m1 - m2) ** 2) / (4 * (s1**2 + s2**2))))
    got = hellinger_distance([m1], [[s1**2]], [m2], [[s2**2]])
    assert got == pytest.approx(expected, rel=1e-12)


def test_hellinger_distance_limits_and_stability_in_many_dimensions():
    d = 50
    eye = np.eye(d)
    assert hellinger_distance(np.zeros(d), eye, np.zeros(d), eye) == 0.0
    assert hellinger_distance(np.zeros(d), eye, np.full(d, 100.0), eye) == pytest.approx(1.0)
    # Tiny variances: the plain determinants underflow to 0 (0/0 in the naive formula).
    tiny = 1e-8 * eye
    assert np.linalg.det(tiny) == 0.0
    same = hellinger_distance(np.zeros(d), tiny, np.zeros(d), tiny)
    assert same == 0.0
    # Per dimension: 50 independent copies of a 1-D pair give the 1-D distance back.
    one_d = hellinger_distance([0.0], [[1.0]], [1.0], [[1.0]])
    many = hellinger_distance(np.zeros(d), eye, np.ones(d), eye, per_dimension=True)
    assert many == pytest.approx(one_d, rel=1e-9)
    assert one_d < 0.4 and hellinger_distance(np.zeros(d), eye, np.ones(d), eye) > 0.99


def test_hellinger_distance_rejects_bad_covariance():
    with pytest.raises(ValueError, match="positive definite"):
        hellinger_distance([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]], [0.0, 0.0], np.eye(2))
    with pytest.raises(ValueError, match="means must be"):
        hellinger_distance([0.0], np.eye(2), [0.0, 0.0], np.eye(2))


def test_merge_components_threshold():
    means = np.array([[0.0], [0.2], [10.0]])
    covariances = np.ones((3, 1, 1))
    distances = hellinger_matrix(means, covariances)
    assert merge_components(distances, 0.0).tolist() == [0, 1, 2]
    groups = merge_components(distances, 0.5)
    assert groups[0] == groups[1] != groups[2]
    assert len(set(merge_components(distances, 1.0))) == 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        merge_components(distances, 1.5)


def test_merged_labels_join_the_overlapping_components_of_one_group():
    """A group made of two overlapping Gaussians and a distant one: three components, two groups."""
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + 1.0, rng.normal(size=(300, 5)) + 12.0])
    truth = np.repeat([0, 0, 1], 300)
    model = GaussianMixture(n_components=3, random_state=0).fit(x)
    components, merged, occupied = merged_labels(model, x, threshold=0.5)
    assert occupied == 3 and components.max() + 1 == 3
    assert merged.max() + 1 == 2
    assert adjusted_rand_score(truth, merged) == pytest.approx(1.0)
    assert merged_labels(model, x, threshold=0.0)[1].max() + 1 == 3  # 0 merges nothing
    # The plain distance in 5 dimensions reads the same pair as nearly disjoint.
    assert merged_labels(model, x, threshold=0.5, per_dimension=False)[1].max() + 1 == 3


def test_merged_labels_need_full_covariances():
    x = np.random.default_rng(1).normal(size=(100, 2))
    with pytest.raises(ValueError, match="full covariances"):
        merged_labels(GaussianMixture(2, covariance_type="diag", random_state=0).fit(x), x, 0.5)


def test_mixture_seed_stability_scores_components_and_merged_groups():
    """One group of two overlapping Gaussians and a distant one, a mixture of up to 6 components:
    refits with other seeds cut the first group into components differently, but the merged
    groups are the same two every time."""
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) + 1.0, rng.normal(size=(300, 3)) + 12.0])
    options = {"max_components": 6, "n_init": 1}
    _, merged, _ = merged_labels(fit_gaussian_mixture(x, seed=0, **options), x, 0.5)
    components, _, _ = merged_labels(fit_gaussian_mixture(x, seed=0, **options), x, 0.0)
    stability = mixture_seed_stability(x, {"gmm": components, "gmm_merged": merged}, 0.5, n_seeds=3, seed=0,
                                       **options)
    assert stability["gmm"][2] == stability["gmm_merged"][2] == 2
    assert stability["gmm_merged"][0] > 0.95 and stability["gmm_merged"][0] > stability["gmm"][0]
    off = mixture_seed_stability(x, {"gmm": components, "gmm_merged": merged}, 0.5, n_seeds=1, **options)
    assert all(np.isnan(mean) and runs == 0 for mean, _, runs in off.values())

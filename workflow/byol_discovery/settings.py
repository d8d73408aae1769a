"""Typed settings of the stages after training: one frozen dataclass per config section.

The workflow hands each stage its merged config section as a plain dict (``params``, so a
changed value reruns exactly that stage); the stage turns it into its dataclass with
:func:`stage_settings_of`, which fills what the dict leaves out from the defaults below and
rejects unknown keys by name. These defaults are the config schema's
(``workflow/schemas/config.schema.yaml``), and ``tests/unit/test_settings.py`` fails when
the two disagree. Preprocessing and training keep their own dataclasses
(:class:`~byol_discovery.preprocessing.PreprocessConfig`,
:class:`~byol_discovery.training.TrainConfig`), checked against the schema the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from byol_discovery.config import from_mapping

T = TypeVar("T")


@dataclass(frozen=True)
class FeaturesSettings:
    """``features``: backbone features of every image and their PCA."""

    batch_size: int = 256
    pca_variance: float = 0.95
    pca_fit_samples: int | None = 100_000
    dihedral_average: bool = False
    seed: int = 0  # the workflow's global seed and device, added by the rule
    device: str = "auto"


@dataclass(frozen=True)
class ValidateSettings:
    """``validate``: kNN accuracy and a linear probe of the features against baselines."""

    label_columns: tuple[str, ...] = ()
    k: int = 5
    n_splits: int = 50
    test_fraction: float = 0.2
    pixel_pca_components: int = 50
    random_backbone: bool = True
    probe_folds: int = 5
    probe_c: float = 1.0
    imagenet_weights: str | None = None
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class HnswSettings:
    m: int = 32
    ef_construction: int = 100
    ef_search: int = 128


@dataclass(frozen=True)
class NeighboursSettings:
    """``neighbours``: every object's nearest neighbours, exact or approximate."""

    method: str = "auto"
    exact_below: int = 100_000
    k: int = 50
    hnsw: HnswSettings = field(default_factory=HnswSettings)
    seed: int = 0


@dataclass(frozen=True)
class UmapSettings:
    n_components: int = 5
    n_neighbors: int = 30
    min_dist: float = 0.0


@dataclass(frozen=True)
class HdbscanSettings:
    min_cluster_size: int | None = None
    min_cluster_fraction: float = 0.02
    space: str = "umap"
    umap: UmapSettings = field(default_factory=UmapSettings)
    min_samples: int | None = 2
    max_fit_samples: int | None = 50_000


@dataclass(frozen=True)
class GmmSettings:
    max_components: int = 20
    weight_concentration_prior: float = 0.5
    merge_threshold: float = 0.5
    n_init: int = 10
    max_fit_samples: int | None = 50_000


@dataclass(frozen=True)
class StabilitySettings:
    n_seeds: int = 3
    n_subsamples: int = 3
    subsample_fraction: float = 0.8


@dataclass(frozen=True)
class ClusterSettings:
    """``cluster``: HDBSCAN and the Bayesian mixture with merged components."""

    label_column: str | None = None
    max_dims: int | None = None
    hdbscan: HdbscanSettings = field(default_factory=HdbscanSettings)
    gmm: GmmSettings = field(default_factory=GmmSettings)
    stability: StabilitySettings = field(default_factory=StabilitySettings)
    gallery_per_cluster: int = 8
    map: str = "umap"
    seed: int = 0


@dataclass(frozen=True)
class TargetSettings:
    """The catalogue column and values that mark the objects a scientist hopes to find."""

    column: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class AnomalySettings:
    """``anomaly``: isolation forest, LOF and kNN-distance scores, ranked."""

    n_estimators: int = 200
    lof_neighbors: int = 50
    knn_neighbors: int = 10
    rank_by: str = "isolation_forest"
    top_n: int = 40
    target: TargetSettings | None = None
    seed: int = 0


@dataclass(frozen=True)
class SimulateSettings:
    rounds: int = 10
    batch: int = 20
    target_label: int = 5
    other_label: int = 0


@dataclass(frozen=True)
class ActiveLearningSettings:
    """``active_learning``: the anomaly ranking re-ranked by a person's labels."""

    method: str = "classifier"
    classifier_c: float = 0.1
    score: str = "isolation_forest"
    interest_label: float = 3
    explore: float = 0.1
    max_dims: int | None = None
    n_estimators: int = 200
    alpha: float = 1.0
    xi: float = 0.01
    top_n: int = 40
    simulate: SimulateSettings = field(default_factory=SimulateSettings)
    seed: int = 0


def stage_settings_of(cls: type[T], settings: T | Mapping[str, Any], section: str) -> T:
    """``settings`` as ``cls``: a mapping (a config section) is converted, missing keys
    taking the defaults, an unknown key an error naming ``section``; an instance passes."""
    return settings if isinstance(settings, cls) else from_mapping(cls, settings, section)

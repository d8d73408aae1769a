"""One function per pipeline stage: paths and plain settings in, files out.

The Snakemake scripts only unpack the ``snakemake`` object into these calls, so every stage
also runs (and is tested) from Python without Snakemake. Each stage imports only what it
uses, so it runs in its own small conda environment (``envs/<stage>.yaml``). ``settings``
are the merged per-dataset stage settings of the workflow config (see
:mod:`byol_discovery.config`).
"""

from byol_discovery.stages.acquire import acquire
from byol_discovery.stages.active_learning import active_learning
from byol_discovery.stages.anomaly import anomaly
from byol_discovery.stages.cluster import cluster
from byol_discovery.stages.features import features
from byol_discovery.stages.key_figures import key_figures
from byol_discovery.stages.neighbours import neighbours
from byol_discovery.stages.preprocess import preprocess
from byol_discovery.stages.train import train
from byol_discovery.stages.validate import validate

__all__ = [
    "acquire",
    "active_learning",
    "anomaly",
    "cluster",
    "features",
    "key_figures",
    "neighbours",
    "preprocess",
    "train",
    "validate",
]

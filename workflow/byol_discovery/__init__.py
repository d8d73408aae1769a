"""Self-supervised representations for unsupervised discovery in astronomical images.

A re-implementation, as a tested library behind a Snakemake workflow, of Mohale & Lochner
(2024, MNRAS 530, 1274): BYOL features of galaxy cutouts, validated with kNN, clustered,
and ranked for anomalies with isolation forest and active learning.
"""

__version__ = "0.1.0"

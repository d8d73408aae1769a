"""Stage ``train_byol``: BYOL training on the image store."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from byol_discovery.config import from_mapping
from byol_discovery.io.store import ImageStore
from byol_discovery.stages.common import LOG, Settings, store_columns


def train(
    store: str | Path,
    checkpoint: str | Path,
    history: str | Path,
    loss_plot: str | Path,
    settings: Settings,
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """Train BYOL on the store's images; write checkpoint, loss history and its plot.

    ``settings`` are TrainConfig's fields plus ``resume`` (continue an interrupted run,
    default true) and ``probe_label`` (a catalogue column for the per-epoch kNN probe).
    """
    from byol_discovery import plotting
    from byol_discovery.training import TrainConfig, train_byol

    options = dict(settings)
    resume = bool(options.pop("resume", True))
    probe_label = options.pop("probe_label", None)
    config = from_mapping(TrainConfig, options, "train")
    with ImageStore(store) as images:
        labels = None
        if probe_label:
            labels = store_columns(images.catalogue(), [probe_label], "train.probe_label")[probe_label]
        frame = train_byol(images.load_images(), config, checkpoint, history, log=log, labels=labels, resume=resume)
    plotting.loss_curves(frame, loss_plot)
    return frame

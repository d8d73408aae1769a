"""Stage ``train_byol``: BYOL training on the image store."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from byol_discovery.config import from_mapping
from byol_discovery.io.store import ImageStore
from byol_discovery.stages.common import LOG, Settings


def train(
    store: str | Path,
    checkpoint: str | Path,
    history: str | Path,
    loss_plot: str | Path,
    settings: Settings,
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """Train BYOL on the store's images; write checkpoint, loss history and its plot."""
    from byol_discovery import plotting
    from byol_discovery.training import TrainConfig, train_byol

    config = from_mapping(TrainConfig, settings, "train")
    with ImageStore(store) as images:
        frame = train_byol(images.load_images(), config, checkpoint, history, log=log)
    plotting.loss_curves(frame, loss_plot)
    return frame

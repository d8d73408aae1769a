"""Stage ``train``: BYOL training on the image store.

Also a command line, which is what torchrun runs in each process of a multi-GPU job::

    python -m byol_discovery.stages.train STORE CHECKPOINT HISTORY LOSS_PLOT SETTINGS_JSON
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
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
    processes: int | None = None,
    gpus: int = 1,
) -> pd.DataFrame:
    """Train BYOL on the store's images; write checkpoint, loss history and its plot.

    ``settings`` are TrainConfig's fields plus ``resume`` (continue an interrupted run,
    default true) and ``probe_label`` (a catalogue column for the per-epoch kNN probe).
    ``processes`` > 1 trains data-parallel in that many processes under torchrun (one per
    GPU; gloo on the CPU), with ``settings["batch_size"]`` as the global batch; without it,
    one process per GPU of the ``gpus`` the job was given that this machine shows.
    """
    if processes is None:
        from byol_discovery.distributed import processes_for

        processes = processes_for(gpus, log)
    if processes > 1:
        return _train_distributed(store, checkpoint, history, loss_plot, settings, log, processes)
    from byol_discovery import plotting
    from byol_discovery.distributed import environment_rank
    from byol_discovery.resume import default_state_path
    from byol_discovery.training import TrainConfig, train_byol

    options = dict(settings)
    resume = bool(options.pop("resume", True))
    probe_label = options.pop("probe_label", None)
    config = from_mapping(TrainConfig, options, "train")
    with ImageStore(store) as images:
        labels = None
        if probe_label:
            labels = store_columns(images.catalogue(), [probe_label], "train.probe_label")[probe_label]
        # The resume state goes last: a job killed before the plot is written loses its
        # outputs to Snakemake, and its rerun then finishes from the state, not from scratch.
        frame = train_byol(images.load_images(), config, checkpoint, history, log=log, labels=labels, resume=resume,
                           remove_state=False)
    if environment_rank() == 0:
        plotting.loss_curves(frame, loss_plot)
        default_state_path(checkpoint).unlink(missing_ok=True)
    return frame


def _train_distributed(
    store: str | Path,
    checkpoint: str | Path,
    history: str | Path,
    loss_plot: str | Path,
    settings: Settings,
    log: logging.Logger,
    processes: int,
) -> pd.DataFrame:
    """:func:`train` in ``processes`` processes under torchrun (this module's command line)."""
    from byol_discovery.distributed import launch

    with tempfile.TemporaryDirectory(prefix="train_") as tmp:
        settings_file = Path(tmp) / "settings.json"
        settings_file.write_text(json.dumps(dict(settings)))
        paths = [str(path) for path in (store, checkpoint, history, loss_plot, settings_file)]
        launch("byol_discovery.stages.train", paths, processes, log)
    return pd.read_csv(history)


def main(argv: list[str] | None = None) -> None:
    from byol_discovery.distributed import environment_rank
    from byol_discovery.logs import stage_logger

    parser = argparse.ArgumentParser(description="Train BYOL on an image store (one process of a torchrun job).")
    for name in ("store", "checkpoint", "history", "loss_plot"):
        parser.add_argument(name, type=Path)
    parser.add_argument("settings", type=Path, help="JSON file of the train settings")
    args = parser.parse_args(argv)
    log = stage_logger(f"train.rank{environment_rank()}")
    settings = json.loads(args.settings.read_text())
    train(args.store, args.checkpoint, args.history, args.loss_plot, settings, log=log, processes=1)  # already one of N


if __name__ == "__main__":
    main()

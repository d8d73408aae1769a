"""The resume state: continued only on the same config, images, device and code."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from byol_discovery.model import BYOL, build_backbone
from byol_discovery.resume import TrainingRun, data_fingerprint, read_state, resume_key
from byol_discovery.tensors import save_atomic
from byol_discovery.training import TrainConfig


def _run() -> TrainingRun:
    torch.manual_seed(0)
    model = BYOL(build_backbone("resnet18", 1, small_stem=True), 512, 16, 8)
    return TrainingRun(model, torch.optim.Adam(model.parameters()), seed=1, device=torch.device("cpu"))


def test_a_fingerprint_tells_other_images_apart() -> None:
    images = np.zeros((10, 1, 8, 8), np.uint8)
    other = images.copy()
    other[0, 0, 0, 0] = 1
    assert data_fingerprint(images) == data_fingerprint(images.copy())
    assert data_fingerprint(images) != data_fingerprint(other)
    assert data_fingerprint(images) != data_fingerprint(images[:9])


def test_a_state_is_read_back_only_for_its_own_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = resume_key(TrainConfig(epochs=3), "images", torch.device("cpu"), "code")
    run = _run()
    run.epoch = 2
    save_atomic(run.state(key), tmp_path / "state")
    log = logging.getLogger("test")
    state = read_state(tmp_path / "state", key, log)
    assert state is not None and state["epoch"] == 2
    other = resume_key(TrainConfig(epochs=4), "images", torch.device("cpu"), "code")
    with caplog.at_level(logging.WARNING):
        assert read_state(tmp_path / "state", other, log) is None
    assert any("written for another config" in message for message in caplog.messages)
    assert read_state(tmp_path / "missing", key, log) is None


def test_a_restored_run_continues_where_the_saved_one_was(tmp_path: Path) -> None:
    run = _run()
    run.epoch, run.rows = 2, [{"epoch": 1.0}, {"epoch": 2.0}]
    run.order_generator.manual_seed(99)
    state = run.state({})
    again = _run()
    again.restore(state)
    assert again.epoch == 2 and again.rows == run.rows
    assert torch.equal(again.order_generator.get_state(), run.order_generator.get_state())


def test_best_val_keeps_the_lowest_finite_loss_and_last_keeps_every_epoch() -> None:
    run = _run()
    kept = []
    for epoch, loss in enumerate([math.nan, 2.0, 3.0, math.nan, 1.5], start=1):
        run.epoch = epoch
        kept.append(run.keep_if_better("best_val", loss, loss))
    # The first epoch is kept even as NaN (a model must exist); a NaN never replaces a finite loss.
    assert kept == [True, True, False, False, True] and run.best_epoch == 5 and run.best == 1.5
    run.epoch = 6
    assert run.keep_if_better("last", 9.0, 9.0) and run.best_epoch == 6

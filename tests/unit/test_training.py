"""BYOL training: outputs written, reproducible on CPU, clear errors for bad input."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from byol_discovery import training
from byol_discovery.augmentation import AugmentationConfig
from byol_discovery.checkpoint import Checkpoint
from byol_discovery.optim import learning_rate_at
from byol_discovery.tensors import normalise, to_unit_range
from byol_discovery.training import HISTORY_COLUMNS, TrainConfig, split_indices, train_byol

# Tiny and fast: ImageNet stem at 32 px leaves 1x1 maps after layer4, small heads.
TINY = TrainConfig(
    arch="resnet18",
    epochs=2,
    batch_size=8,
    learning_rate=1e-3,
    seed=3,
    device="cpu",
    num_threads=1,
    hidden_dim=64,
    projection_dim=32,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _store(n: int = 20, channels: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)


def _train(
    tmp_path: Path, images: np.ndarray, config: TrainConfig = TINY, name: str = "run"
) -> tuple[pd.DataFrame, Path, Path]:
    checkpoint, history = tmp_path / name / "model.pt", tmp_path / name / "history.csv"
    frame = train_byol(images, config, checkpoint, history)
    return frame, checkpoint, history


def test_training_writes_checkpoint_and_history(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        frame, checkpoint, history = _train(tmp_path, _store(), dataclasses.replace(TINY, select="best_val"))
    assert list(frame.columns) == list(HISTORY_COLUMNS)
    assert list(frame["epoch"]) == [1, 2]
    on_disk = pd.read_csv(history)
    assert len(on_disk) == 2
    np.testing.assert_allclose(on_disk["train_loss"], frame["train_loss"])
    assert np.isfinite(frame[["train_loss", "val_loss", "images_per_second"]].to_numpy()).all()
    assert (frame["learning_rate"] == TINY.learning_rate).all()

    saved = Checkpoint.load(checkpoint)
    assert saved.arch == "resnet18" and saved.in_channels == 3 and saved.feature_dim == 512
    assert saved.small_stem is False
    # The saved backbone is the one with the lowest validation loss.
    assert saved.epoch == int(frame["val_loss"].idxmin()) + 1
    assert saved.val_loss == pytest.approx(frame["val_loss"].min())
    assert saved.config["batch_size"] == 8
    assert saved.config["augmentation"]["crop_scale"] == (0.7, 1.0)
    assert "conv1.weight" in saved.backbone_state
    assert not list(checkpoint.parent.glob(".*partial*"))
    assert sum("epoch 2/2" in message for message in caplog.messages) == 1


def test_same_seed_gives_identical_history(tmp_path: Path) -> None:
    images = _store()
    first, _, _ = _train(tmp_path, images, name="a")
    second, _, _ = _train(tmp_path, images, name="b")
    columns = ["train_loss", "val_loss"]
    pd.testing.assert_frame_equal(first[columns], second[columns], check_exact=True)


def test_different_seed_gives_different_history(tmp_path: Path) -> None:
    images = _store()
    config = dataclasses.replace(TINY, epochs=1)
    first, _, _ = _train(tmp_path, images, config, name="a")
    other, _, _ = _train(tmp_path, images, dataclasses.replace(config, seed=4), name="b")
    assert first["train_loss"].iloc[0] != other["train_loss"].iloc[0]


def test_single_channel_small_stem_without_validation_or_augmentation(tmp_path: Path) -> None:
    config = dataclasses.replace(
        TINY,
        epochs=1,
        small_stem=True,
        validation_fraction=0.0,
        augmentation=AugmentationConfig.disabled(),
    )
    frame, checkpoint, _ = _train(tmp_path, _store(n=8, channels=1, size=8), config)
    assert np.isnan(frame["val_loss"].iloc[0])
    saved = Checkpoint.load(checkpoint)
    assert saved.in_channels == 1 and saved.small_stem is True


def test_batch_larger_than_training_split_is_rejected(tmp_path: Path) -> None:
    # 20 images, 10 % held out -> 18 training images.
    with pytest.raises(ValueError, match="batch_size 19 is larger than the training split \\(18 images"):
        _train(tmp_path, _store(), dataclasses.replace(TINY, batch_size=19))


def test_empty_store_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        _train(tmp_path, np.zeros((0, 3, 32, 32), dtype=np.uint8))


@pytest.mark.parametrize(
    ("images", "message"),
    [(np.zeros((4, 32, 32), dtype=np.uint8), "4-D"), (np.zeros((4, 3, 32, 32), dtype=np.float32), "uint8")],
)
def test_wrong_shape_or_dtype_is_rejected(tmp_path: Path, images: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _train(tmp_path, images)


@pytest.mark.parametrize("kwargs", [{"batch_size": 1}, {"epochs": 0}, {"validation_fraction": 1.0}, {"arch": "vit"}])
def test_invalid_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(TINY, **kwargs)


def test_split_is_seeded_disjoint_and_complete() -> None:
    train, val = split_indices(100, 0.1, seed=1)
    assert len(val) == 10 and len(train) == 90
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    again, _ = split_indices(100, 0.1, seed=1)
    assert torch.equal(train, again)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("radio", [False, True], ids=["batch_statistics", "fixed_batchnorm_layer4"])
def test_training_on_the_gpu(tmp_path: Path, radio: bool) -> None:
    """The radio recipe's fixed batch norm (eval-mode batch norm with gradients, on bf16
    channels_last inputs) and layer4-only training run on CUDA too, deterministically."""
    config = dataclasses.replace(TINY, device="cuda", batch_size=16, epochs=2)
    if radio:
        config = dataclasses.replace(config, fixed_batchnorm=True, train_from="layer4")
    frame, checkpoint, _ = _train(tmp_path, _store(n=40, size=64), config)
    assert np.isfinite(frame["train_loss"]).all()
    again, _, _ = _train(tmp_path, _store(n=40, size=64), config, name="again")
    assert again["train_loss"].tolist() == frame["train_loss"].tolist(), "deterministic: a rerun is identical"
    saved = Checkpoint.load(checkpoint)
    assert all(t.device.type == "cpu" for t in saved.backbone_state.values())


class _Killed(Exception):
    """Stands in for the job being killed at the end of an epoch."""


def _kill_after_epochs(monkeypatch: pytest.MonkeyPatch, epochs: int) -> None:
    """Let the run write ``epochs`` resume states, then stop it as a kill would."""
    real_save = training.save_atomic
    saved: list[int] = []

    def save(payload: dict, path) -> None:
        real_save(payload, path)
        if "optimizer" in payload:  # a resume state, not the final model
            saved.append(payload["epoch"])
            if len(saved) == epochs:
                raise _Killed

    monkeypatch.setattr(training, "save_atomic", save)


def test_resume_after_a_kill_gives_the_same_model_as_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = dataclasses.replace(TINY, epochs=3, lr_schedule="cosine", warmup_epochs=1)
    images = _store()
    whole, whole_checkpoint, _ = _train(tmp_path, images, config, name="whole")
    assert not Path(f"{whole_checkpoint}.resume").exists(), "the resume state is removed when done"

    with monkeypatch.context() as patch:
        _kill_after_epochs(patch, 2)
        with pytest.raises(_Killed):
            _train(tmp_path, images, config, name="killed")
    checkpoint = tmp_path / "killed" / "model.pt"
    assert not checkpoint.exists(), "no model file until training has finished"
    assert not (tmp_path / "killed" / "history.csv").exists(), "nor a history that looks complete"
    assert Path(f"{checkpoint}.resume").is_file()

    resumed, checkpoint, _ = _train(tmp_path, images, config, name="killed")
    pd.testing.assert_frame_equal(resumed.drop(columns=["images_per_second", "seconds"]),
                                  whole.drop(columns=["images_per_second", "seconds"]), check_exact=True)
    ours, theirs = Checkpoint.load(checkpoint), Checkpoint.load(whole_checkpoint)
    assert ours.epoch == theirs.epoch
    for name, tensor in theirs.backbone_state.items():
        assert torch.equal(ours.backbone_state[name], tensor), name


def test_a_resume_state_of_another_config_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    images = _store()
    with monkeypatch.context() as patch:
        _kill_after_epochs(patch, 1)
        with pytest.raises(_Killed):
            _train(tmp_path, images, TINY)
    with caplog.at_level(logging.WARNING):
        frame, _, _ = _train(tmp_path, images, dataclasses.replace(TINY, learning_rate=2e-3))
    assert any("written for another config;" in message for message in caplog.messages)
    assert frame["epoch"].tolist() == [1, 2]


@pytest.mark.parametrize("changed", ["device", "code"])
def test_a_resume_state_of_another_device_or_code_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, changed: str
) -> None:
    """A state written on a GPU cannot restore its generators on the CPU; one written by
    other code (Snakemake reruns training after an edit) would mix two versions' weights."""
    images = _store()
    with monkeypatch.context() as patch:
        _kill_after_epochs(patch, 1)
        with pytest.raises(_Killed):
            _train(tmp_path, images, TINY)
    state_path = tmp_path / "run" / "model.pt.resume"
    if changed == "device":
        state = torch.load(state_path, weights_only=True)
        state["device"] = "cuda"
        torch.save(state, state_path)
    else:
        monkeypatch.setattr(training, "code_digest", lambda *roots: "edited")
    with caplog.at_level(logging.WARNING):
        frame, _, _ = _train(tmp_path, images, TINY)
    assert any(f"written for another {changed};" in message for message in caplog.messages)
    assert frame["epoch"].tolist() == [1, 2]


def test_best_val_without_a_validation_batch_is_refused(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, select="best_val", validation_fraction=0.05)
    with pytest.raises(ValueError, match="best_val needs at least 2 validation images.*holds out 1"):
        _train(tmp_path, _store(), config)


def test_resume_false_starts_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = _store()
    with monkeypatch.context() as patch:
        _kill_after_epochs(patch, 1)
        with pytest.raises(_Killed):
            _train(tmp_path, images, TINY)
    checkpoint, history = tmp_path / "run" / "model.pt", tmp_path / "run" / "history.csv"
    fresh = train_byol(images, dataclasses.replace(TINY, epochs=1), checkpoint, history, resume=False)
    assert fresh["epoch"].tolist() == [1]


def test_learning_rate_warms_up_then_follows_a_cosine(tmp_path: Path) -> None:
    assert learning_rate_at(0, 100, 10, 1.0, "cosine") == pytest.approx(0.1)
    assert learning_rate_at(9, 100, 10, 1.0, "cosine") == pytest.approx(1.0)
    assert learning_rate_at(55, 100, 10, 1.0, "cosine") == pytest.approx(0.5)
    assert learning_rate_at(99, 100, 10, 1.0, "cosine") < 0.01
    assert learning_rate_at(99, 100, 10, 1.0, "constant") == 1.0
    config = dataclasses.replace(TINY, epochs=3, lr_schedule="cosine", warmup_epochs=1)
    frame, _, _ = _train(tmp_path, _store(), config)
    lr = frame["learning_rate"].to_numpy()
    assert lr[0] == pytest.approx(config.learning_rate) and lr[2] < lr[1] < lr[0]


@pytest.mark.parametrize("name", ["adamw", "lars"])
def test_other_optimizers_train(tmp_path: Path, name: str) -> None:
    config = dataclasses.replace(TINY, epochs=1, optimizer=name, weight_decay=1e-4, learning_rate=0.05)
    frame, checkpoint, _ = _train(tmp_path, _store(), config)
    assert np.isfinite(frame["train_loss"]).all()
    assert Checkpoint.load(checkpoint).config["optimizer"] == name


def test_select_last_keeps_the_final_epoch(tmp_path: Path) -> None:
    frame, checkpoint, _ = _train(tmp_path, _store(), dataclasses.replace(TINY, epochs=3, select="last"))
    assert Checkpoint.load(checkpoint).epoch == 3


def test_fixed_batchnorm_trains_the_affine_but_keeps_the_statistics(tmp_path: Path) -> None:
    from byol_discovery.feature_extraction import extract_features, load_backbone, random_backbone

    images = _store(channels=1)
    _, checkpoint, _ = _train(tmp_path, images, dataclasses.replace(TINY, epochs=1, fixed_batchnorm=True))
    state = Checkpoint.load(checkpoint).backbone_state
    assert torch.equal(state["bn1.running_mean"], torch.zeros(64))
    assert torch.equal(state["bn1.running_var"], torch.ones(64))
    assert not torch.equal(state["bn1.weight"], torch.ones(64)), "the scale is still learnt"
    trained = extract_features(load_backbone(checkpoint, device="cpu"), images, device="cpu")
    untrained = extract_features(random_backbone("resnet18", 1, False, seed=0), images, device="cpu")
    assert np.isfinite(trained).all() and not np.allclose(trained, untrained)


def test_progress_line_counts_images_so_the_eta_is_the_rest_of_the_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training.Throttle, "due", lambda self: True)
    with caplog.at_level(logging.INFO):
        _train(tmp_path, _store(n=40), dataclasses.replace(TINY, epochs=1, validation_fraction=0.0))
    lines = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert "8/40 (20.0%)" in lines[0] and "40/40 (100.0%)" in lines[-1]
    rate = float(lines[0].split(" img/s")[0].split()[-1])
    minutes, seconds = re.search(r"ETA (\d+)m(\d+)s", lines[0]).groups()
    assert 60 * int(minutes) + int(seconds) == pytest.approx(32 / rate, abs=1.5)


def test_knn_probe_is_recorded_when_labels_are_given(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.where(np.arange(40) % 2 == 0, "bright", "dark").astype(object)
    images = np.where(labels[:, None, None, None] == "bright", 200, 20).astype(np.uint8)
    images = np.clip(images + rng.integers(0, 30, size=(40, 3, 32, 32)), 0, 255).astype(np.uint8)
    labels[:4] = None  # unlabelled objects stay out of the probe
    frame, _, _ = _train(tmp_path, images, dataclasses.replace(TINY, epochs=1), name="probe")
    assert frame["knn_probe"].isna().all(), "no labels, no probe"
    checkpoint, history = tmp_path / "p" / "model.pt", tmp_path / "p" / "history.csv"
    frame = train_byol(images, dataclasses.replace(TINY, epochs=1), checkpoint, history, labels=labels)
    assert frame["knn_probe"].iloc[0] > 0.9
    small = train_byol(images, dataclasses.replace(TINY, epochs=1, probe_size=7), checkpoint, history, labels=labels)
    assert small["knn_probe"].isna().all(), "a probe too small for a kNN split is left out, not fatal"


def test_imagenet_weights_initialise_the_backbone(tmp_path: Path, imagenet_like_weights) -> None:
    path, state = imagenet_like_weights
    config = dataclasses.replace(TINY, epochs=1, imagenet_weights=str(path), learning_rate=1e-12, optimizer="adam")
    _, checkpoint, _ = _train(tmp_path, _store(), config)
    saved = Checkpoint.load(checkpoint).backbone_state
    torch.testing.assert_close(saved["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="standard stem"):
        dataclasses.replace(TINY, imagenet_weights=str(path), small_stem=True)


@pytest.mark.parametrize(
    "kwargs",
    [{"optimizer": "sgd"}, {"lr_schedule": "step"}, {"warmup_epochs": 2}, {"select": "best"}, {"probe_size": -1}],
)
def test_invalid_schedule_settings_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        dataclasses.replace(TINY, **kwargs)


def test_a_corrupt_resume_state_is_reported_and_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "run" / "model.pt.resume"
    state.parent.mkdir()
    state.write_bytes(b"half a file")
    with caplog.at_level(logging.WARNING):
        frame, _, _ = _train(tmp_path, _store(), dataclasses.replace(TINY, epochs=1))
    assert any("not a readable resume state" in message for message in caplog.messages)
    assert frame["epoch"].tolist() == [1] and not state.exists()


def test_train_stage_names_a_probe_label_the_store_lacks(tmp_path: Path) -> None:
    from byol_discovery.io.store import create_store
    from byol_discovery.stages.train import train as train_stage

    images = _store(n=12)
    with create_store(tmp_path / "store.h5", channels=3, size=32) as writer:
        for number, image in enumerate(images):
            writer.append(f"o{number}", image)
        writer.finish(pd.DataFrame({"id": [f"o{n}" for n in range(12)], "label": ["a", "b"] * 6}), {})
    settings = {**dataclasses.asdict(dataclasses.replace(TINY, epochs=1)), "probe_label": "morphology"}
    settings["augmentation"] = dataclasses.asdict(TINY.augmentation)
    with pytest.raises(ValueError, match=r"train.probe_label: columns \['morphology'\] are not in the store .*'label'"):
        train_stage(tmp_path / "store.h5", tmp_path / "model.pt", tmp_path / "history.csv", tmp_path / "loss.png",
                    settings)
    assert not (tmp_path / "model.pt").exists()


def test_validation_loss_is_the_training_objective_and_leaves_the_running_statistics() -> None:
    # Eval mode would normalise the heads by running statistics (here a fresh layer's),
    # a different function whose loss looks like heavy overfitting.
    from byol_discovery.augmentation import BatchAugmenter

    cpu = torch.device("cpu")
    model, _ = training.build_model(TINY, 3, cpu)
    model.eval()  # whatever mode the model is in
    data = torch.from_numpy(_store(n=17))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    unchanged = BatchAugmenter(AugmentationConfig.disabled())
    loss = training._validation_loss(model, data, torch.arange(17), TINY, unchanged, cpu, False)
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before), "running statistics moved"
    assert not model.training, "the mode is restored"
    model.train()
    with torch.no_grad():
        # Two batches of 8; the 17th image alone cannot be a batch-norm batch and is left out.
        views = [normalise(to_unit_range(data[start : start + 8])) for start in (0, 8)]
        expected = np.mean([model.loss(view, view).item() for view in views])
        model.eval()
        eval_mode = np.mean([model.loss(view, view).item() for view in views])
    model.load_state_dict(before)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert abs(eval_mode - expected) > 1e-3


def test_train_from_leaves_the_earlier_layers_as_they_were(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, epochs=1, fixed_batchnorm=True, train_from="layer4")
    images = _store()
    _, checkpoint, _ = _train(tmp_path, images, config)
    trained = Checkpoint.load(checkpoint).backbone_state
    training.seed_everything(config.seed)  # the initial weights, drawn as train_byol draws them
    backbone = training.build_model(config, images.shape[1], torch.device("cpu"))[0].backbone
    for name, weights in backbone.named_parameters():  # (fixed batch norm statistics never move)
        same = torch.equal(trained[name], weights)
        assert same == (not name.startswith("layer4")), f"{name}: {'unchanged' if same else 'trained'}"


@pytest.mark.parametrize(("changes", "message"), [
    ({"train_from": "layer4"}, "train_from needs fixed_batchnorm"),
    ({"train_from": "layer5", "fixed_batchnorm": True}, "train_from must be one of"),
])
def test_train_from_is_checked(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **changes)

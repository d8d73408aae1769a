"""Every plot writes a non-empty, readable PNG and leaves no figure or temporary file behind."""

from __future__ import annotations

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from byol_discovery import plotting


def _read(path, min_bytes: int = 1000) -> np.ndarray:
    assert path.exists() and path.stat().st_size > min_bytes
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image


@pytest.fixture(autouse=True)
def no_leaks(tmp_path):
    before = len(plt.get_fignums())
    yield
    assert len(plt.get_fignums()) == before
    assert not list(tmp_path.rglob(".*partial*"))


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(10, 1, 24, 24), dtype=np.uint8)


def test_image_gallery_grey_and_rgb(tmp_path, grey):
    path = tmp_path / "grey.png"
    plotting.image_gallery(grey, path, titles=[f"#{i}" for i in range(10)], ncols=5,
                           title="grey", dpi=50)
    image = _read(path)
    assert image.shape[1] > image.shape[0]  # 5 columns x 2 rows: wider than tall
    rgb = np.repeat(grey, 3, axis=1)
    plotting.image_gallery(rgb, tmp_path / "sub" / "rgb.png", dpi=50)
    _read(tmp_path / "sub" / "rgb.png")


def test_image_gallery_errors_and_empty(tmp_path, grey):
    with pytest.raises(ValueError, match="C in"):
        plotting.image_gallery(np.zeros((2, 2, 8, 8), np.uint8), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    plotting.image_gallery(grey[:0], tmp_path / "empty.png", dpi=50)
    _read(tmp_path / "empty.png", min_bytes=100)


def test_cluster_galleries(tmp_path, grey):
    path = tmp_path / "clusters.png"
    plotting.cluster_galleries(grey, {0: np.array([0, 1, 2]), 1: [3, 4], 2: [5]}, path,
                               n_per_cluster=3, sizes={0: 40, 1: 20, 2: 3}, dpi=50)
    image = _read(path)
    assert image.shape[0] > 100


def test_cluster_galleries_of_a_survey_show_the_largest_clusters_only(tmp_path, grey):
    """Hundreds of small clusters would make a figure too tall to draw; the largest are shown."""
    members = {cluster: [cluster % len(grey)] for cluster in range(700)}
    sizes = {cluster: 1000 - cluster for cluster in range(700)}
    plotting.cluster_galleries(grey, members, tmp_path / "many.png", n_per_cluster=2, sizes=sizes, dpi=20,
                               max_clusters=10)
    plotting.cluster_galleries(grey, dict(list(members.items())[:10]), tmp_path / "ten.png", n_per_cluster=2,
                               sizes=sizes, dpi=20)
    assert abs(_read(tmp_path / "many.png").shape[0] - _read(tmp_path / "ten.png").shape[0]) < 30


def test_scatter_map_categorical_and_continuous(tmp_path):
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(500, 2))
    clusters = rng.integers(-1, 4, 500)
    plotting.scatter_map(xy, clusters, tmp_path / "clusters.png", "clusters", dpi=50,
                         label_names={0: "smooth", 1: "disk"})
    labels = np.array(["a", "b", None], dtype=object)[rng.integers(0, 3, 500)]
    plotting.scatter_map(xy, labels, tmp_path / "labels.png", "labels", dpi=50)
    plotting.scatter_map(xy, rng.uniform(0, 5, 500), tmp_path / "scores.png", "score",
                         categorical=False, dpi=50)
    for name in ("clusters", "labels", "scores"):
        _read(tmp_path / f"{name}.png")
    with pytest.raises(ValueError):
        plotting.scatter_map(xy[:, :1], clusters, tmp_path / "bad.png", "bad")


def test_blank_labels_are_drawn_as_unlabelled():
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots()
    values = np.array(["smooth", "", "featured", " ", None], dtype=object)
    plotting._categorical_scatter(ax, np.zeros((5, 2)), values, 4.0, None)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    plt.close(figure)
    assert legend == ["noise / unlabelled", "featured", "smooth"]


def test_loss_curves(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.6, 0.4],
                            "val_loss": [1.1, 0.7, 0.5], "lr": [1e-4] * 3})
    plotting.loss_curves(history, tmp_path / "loss.png", dpi=50)
    _read(tmp_path / "loss.png")
    with pytest.raises(ValueError, match="loss"):
        plotting.loss_curves(history[["epoch"]], tmp_path / "none.png")


def test_confusion_matrix_plot(tmp_path):
    matrix = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    plotting.confusion_matrix_plot(matrix, ["FRI", "FRII", "other"], tmp_path / "cm.png",
                                   "kNN", dpi=50)
    _read(tmp_path / "cm.png")
    with pytest.raises(ValueError):
        plotting.confusion_matrix_plot(matrix, ["a", "b"], tmp_path / "bad.png", "bad")


def test_accuracy_bars(tmp_path):
    rows = []
    for rep in ("byol", "pixels"):
        for label_set in ("morphology", "merger"):
            for metric in ("euclidean", "cosine"):
                rows.append({"representation": rep, "label_set": label_set, "metric": metric,
                             "k": 5, "n_objects": 100, "n_classes": 2, "chance": 0.6,
                             "accuracy_mean": 0.8 if rep == "byol" else 0.65,
                             "accuracy_sem": 0.01})
    plotting.accuracy_bars(pd.DataFrame(rows), tmp_path / "acc.png", dpi=50)
    image = _read(tmp_path / "acc.png")
    assert image.shape[1] > image.shape[0]


def test_accuracy_bars_with_linear_probe_rows(tmp_path):
    rows = [{"representation": rep, "label_set": "morphology", "method": method, "metric": metric,
             "chance": 0.5, "accuracy_mean": 0.7, "accuracy_sem": 0.02}
            for rep in ("byol", "pixel_pca")
            for method, metric in (("knn", "euclidean"), ("knn", "cosine"), ("linear_probe", "linear"))]
    plotting.accuracy_bars(pd.DataFrame(rows), tmp_path / "acc.png", dpi=50)
    _read(tmp_path / "acc.png")
    names = plotting._test_names(pd.DataFrame(rows)).unique().tolist()
    assert names == ["kNN euclidean", "kNN cosine", "linear probe"]


def test_discovery_curves_and_empty(tmp_path):
    rows = []
    for strategy, hits in (("random", [0, 0, 1, 0]), ("neighbour_score", [1, 1, 0, 1])):
        found = np.cumsum(hits)
        rows += [{"strategy": strategy, "inspected": i + 1, "found": f} for i, f in enumerate(found)]
    plotting.discovery_curves(pd.DataFrame(rows), tmp_path / "curve.png", n_targets=5, title="t",
                              batch=2, dpi=50)
    _read(tmp_path / "curve.png")
    plotting.discovery_curves(pd.DataFrame(columns=["strategy", "inspected", "found"]),
                              tmp_path / "empty.png", n_targets=0, title="none", dpi=50)
    _read(tmp_path / "empty.png", min_bytes=100)
    with pytest.raises(ValueError, match="found"):
        plotting.discovery_curves(pd.DataFrame({"strategy": [], "inspected": []}), tmp_path / "bad.png", 1, "b")


def test_message_figure(tmp_path):
    plotting.message_figure(tmp_path / "msg.png", "nothing to show")
    _read(tmp_path / "msg.png", min_bytes=100)

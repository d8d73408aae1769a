"""Figures for the report. Each function writes one PNG atomically and closes its figure.

The Agg backend is selected here so that plotting works on headless cluster nodes.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402

from byol_discovery.io.atomic import atomic_path  # noqa: E402

NOISE_COLOUR = "#b0b0b0"
TILE_INCHES = 1.3


@contextlib.contextmanager
def _saved(figure: Figure, path: str | os.PathLike[str], dpi: int) -> Iterator[Figure]:
    """Yield the figure, then save it atomically to ``path``; always close it."""
    try:
        yield figure
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)


def _to_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) uint8 -> array for imshow and its colormap (grey for one channel)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) image with C in {{1, 3}}, got shape {image.shape}")
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.transpose(image, (1, 2, 0)), None


def _show(ax: Any, image: np.ndarray) -> None:
    pixels, cmap = _to_display(image)
    ax.imshow(pixels, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")


def _blank(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# Characters of a 7-point title that fit across one gallery tile.
TITLE_WIDTH = 16


def fit_title(text: str, width: int = TITLE_WIDTH) -> str:
    """``text`` with each line cut into lines of at most ``width`` characters, two at most:
    a longer one keeps its start and end around an ellipsis (survey names differ at both ends),
    so that long ids (MiraBest, SDSS-style names) do not run into the next tile's title."""
    lines = []
    for line in text.split("\n"):
        if len(line) > 2 * width:
            keep = 2 * width - 1
            line = f"{line[: keep - keep // 2]}\u2026{line[-(keep // 2):]}"
        lines += [line[i : i + width] for i in range(0, len(line), width)] or [""]
    return "\n".join(lines)


def image_gallery(
    images: Any,
    path: str | os.PathLike[str],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    title: str | None = None,
    dpi: int = 100,
) -> None:
    """A compact grid of uint8 (N, C, H, W) images, C = 1 (grey) or 3 (RGB as stored)."""
    n = int(images.shape[0]) if hasattr(images, "shape") else len(images)
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images")
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    figure, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * TILE_INCHES, nrows * TILE_INCHES), squeeze=False
    )
    with _saved(figure, path, dpi):
        for i, ax in enumerate(axes.flat):
            _blank(ax)
            if i >= n:
                ax.set_visible(False)
                continue
            _show(ax, images[i])
            if titles is not None:
                ax.set_title(fit_title(str(titles[i])), fontsize=7, pad=2)
        if n == 0:  # still write a figure so a stage with nothing to show completes
            axes[0, 0].set_visible(True)
            axes[0, 0].text(0.5, 0.5, "no images", ha="center", va="center")
        if title:
            figure.suptitle(title, fontsize=10)
        lines = max((fit_title(str(t)).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
        # Room above each row for its titles, and above the first for the figure's title.
        top = 1 - (0.15 * lines + (0.3 if title else 0.05)) / (nrows * TILE_INCHES)
        figure.subplots_adjust(wspace=0.04, hspace=0.05 + 0.17 * lines, top=max(0.3, top))


def cluster_galleries(
    images: Any,
    members: Mapping[int, Sequence[int] | np.ndarray],
    path: str | os.PathLike[str],
    n_per_cluster: int,
    sizes: Mapping[int, int] | None = None,
    title: str | None = None,
    dpi: int = 100,
    max_clusters: int = 60,
) -> None:
    """One row of example images per cluster, labelled "cluster k (n=size)".

    ``sizes`` gives each cluster's full size; without it n is the number of members shown.
    ``images`` may be a numpy array or an h5py dataset (read one image at a time). Beyond
    ``max_clusters`` only the largest are shown (a survey can give hundreds of small clusters,
    and a figure taller than 2^16 pixels cannot be drawn); the title says so.
    """
    size_of = {cluster: sizes[cluster] if sizes is not None else len(members[cluster]) for cluster in members}
    clusters = sorted(members)
    if len(clusters) > max_clusters:
        largest = sorted(clusters, key=lambda cluster: (-size_of[cluster], cluster))[:max_clusters]
        note = f"the {max_clusters} largest of {len(clusters)} clusters"
        title = f"{title}: {note}" if title else note
        clusters = sorted(largest)
    ncols = max(1, n_per_cluster)
    rows = [[images[int(i)] for i in list(np.asarray(members[cluster]).ravel()[:n_per_cluster])]
            for cluster in clusters]
    # One picture of all the tiles in one axes: an axes per tile took 4.7 s of a survey's cluster stage.
    mosaic, tile_height = _mosaic(rows, ncols)
    height = max(1, len(clusters)) * TILE_INCHES
    figure, ax = plt.subplots(figsize=(ncols * TILE_INCHES, height + (0.3 if title else 0)))
    with _saved(figure, path, dpi):
        _blank(ax)
        if mosaic is None:
            ax.text(0.5, 0.5, "no clusters", ha="center", va="center")
        else:
            ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            for row, cluster in enumerate(clusters):
                ax.text(-tile_height * 0.08, (row + 0.5) * tile_height, f"cluster {cluster} (n={size_of[cluster]})",
                        fontsize=8, ha="right", va="center")
        if title:
            ax.set_title(title, fontsize=10)
        figure.subplots_adjust(left=0, right=1, bottom=0, top=1 - (0.3 / (height + 0.3) if title else 0))


def _mosaic(rows: Sequence[Sequence[np.ndarray]], ncols: int) -> tuple[np.ndarray | None, int]:
    """Rows of (C, H, W) uint8 images tiled on white, ``ncols`` tiles wide, with a thin white
    gap after each tile; (the picture for imshow, the height of one tile with its gap), or
    (None, 0) without any image."""
    first = next((image for row in rows for image in row), None)
    if first is None:
        return None, 0
    pixels, _ = _to_display(first)
    gap = max(1, pixels.shape[0] // 20)
    step_y, step_x = pixels.shape[0] + gap, pixels.shape[1] + gap
    mosaic = np.full((len(rows) * step_y, ncols * step_x, *pixels.shape[2:]), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            tile, _ = _to_display(image)
            mosaic[r * step_y : r * step_y + tile.shape[0], c * step_x : c * step_x + tile.shape[1]] = tile
    return mosaic, step_y


def _category_name(value: Any, label_names: Mapping[Any, str] | Sequence[str] | None) -> str:
    if label_names is None:
        return str(value)
    if isinstance(label_names, Mapping):
        return str(label_names.get(value, value))
    try:
        return str(label_names[int(value)])
    except (IndexError, TypeError, ValueError):
        return str(value)


def _point_size(n: int) -> float:
    # Fewer, larger points for small samples; tiny ones when there are hundreds of thousands.
    return float(np.clip(3e4 / max(n, 1), 0.3, 20.0))


def scatter_map(
    xy: np.ndarray,
    values: ArrayLike,
    path: str | os.PathLike[str],
    title: str,
    categorical: bool = True,
    label_names: Mapping[Any, str] | Sequence[str] | None = None,
    dpi: int = 120,
) -> None:
    """2-D map coloured by category (noise -1 and missing labels in grey) or by a value."""
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (N, 2), got {xy.shape}")
    values = np.asarray(values, dtype=object if categorical else np.float64).ravel()
    if values.shape[0] != xy.shape[0]:
        raise ValueError(f"{values.shape[0]} values for {xy.shape[0]} points")
    figure, ax = plt.subplots(figsize=(7, 6))
    size = _point_size(xy.shape[0])
    with _saved(figure, path, dpi):
        if categorical:
            _categorical_scatter(ax, xy, values, size, label_names)
        else:
            points = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=size, cmap="viridis",
                                linewidths=0, rasterized=True)
            figure.colorbar(points, ax=ax)
        ax.set_title(title)
        ax.set_xlabel("component 1")
        ax.set_ylabel("component 2")


def _categorical_scatter(
    ax: Any, xy: np.ndarray, values: np.ndarray, size: float,
    label_names: Mapping[Any, str] | Sequence[str] | None,
) -> None:
    """Grey for noise/missing first (underneath), then each category in its own colour."""
    series = pd.Series(values, dtype=object)
    # Blank text is a missing label, as the store writes one and kNN validation reads it.
    missing = (series.isna() | series.map(lambda v: isinstance(v, str) and not v.strip())).to_numpy(dtype=bool)
    noise = missing | np.array([_is_noise(v) for v in values], dtype=bool)
    if noise.any():
        ax.scatter(xy[noise, 0], xy[noise, 1], s=size, c=NOISE_COLOUR, linewidths=0,
                   rasterized=True, label="noise / unlabelled")
    categories = _sorted_unique(values[~noise])
    colours = plt.get_cmap("tab20" if len(categories) > 10 else "tab10")
    for i, category in enumerate(categories):
        mask = ~noise & (values == category)
        ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=colours(i % colours.N),
                   linewidths=0, rasterized=True, label=_category_name(category, label_names))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, markerscale=max(
        1.0, 6.0 / math.sqrt(size)), frameon=False, ncol=1 if len(categories) <= 25 else 2)


def _is_noise(value: Any) -> bool:
    try:
        return int(value) == -1 and float(value) == -1.0
    except (TypeError, ValueError):
        return False


def _sorted_unique(values: np.ndarray) -> list[Any]:
    unique = list(dict.fromkeys(values.tolist()))
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


def loss_curves(
    history: pd.DataFrame, path: str | os.PathLike[str], title: str = "BYOL loss",
    dpi: int = 120,
) -> None:
    """Every '*loss*' column of a training history against its 'epoch' column (or row number),
    and the kNN probe accuracy ('knn_probe') on a second axis when it was measured."""
    loss_columns = [c for c in history.columns if "loss" in str(c)]
    if not loss_columns:
        raise ValueError(f"history has no loss columns: {list(history.columns)}")
    epoch = history["epoch"] if "epoch" in history.columns else np.arange(1, len(history) + 1)
    figure, ax = plt.subplots(figsize=(6, 4))
    with _saved(figure, path, dpi):
        for column in loss_columns:
            ax.plot(epoch, history[column], marker="o", markersize=3, label=str(column))
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if "knn_probe" in history.columns and history["knn_probe"].notna().any():
            probe_ax = ax.twinx()
            probe_ax.plot(epoch, history["knn_probe"], color="black", linestyle="--", marker="s",
                          markersize=3, label="kNN probe accuracy")
            probe_ax.set_ylabel("kNN probe accuracy (k=5, cosine)")
            more_handles, more_labels = probe_ax.get_legend_handles_labels()
            handles, labels = handles + more_handles, labels + more_labels
        ax.legend(handles, labels)


def confusion_matrix_plot(
    matrix: np.ndarray, class_names: Sequence[Any], path: str | os.PathLike[str],
    title: str, dpi: int = 120,
) -> None:
    """Row-normalised confusion matrix (colour), annotated with counts."""
    matrix = np.asarray(matrix, dtype=np.float64)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix shape {matrix.shape} does not match {n} classes")
    row_sums = matrix.sum(axis=1, keepdims=True)
    fraction = np.divide(matrix, row_sums, out=np.zeros_like(matrix), where=row_sums > 0)
    side = max(3.5, 0.6 * n + 2)
    figure, ax = plt.subplots(figsize=(side + 1, side))
    with _saved(figure, path, dpi):
        image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
        figure.colorbar(image, ax=ax, label="fraction of true class")
        names = [str(c) for c in class_names]
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=8,
                    color="white" if fraction[i, j] > 0.5 else "black")
        ax.set_title(title)


def accuracy_bars(
    validation_table: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 120
) -> None:
    """Accuracy +- s.e. per representation; one panel per label set, one group per test
    (kNN with each metric, and the linear probe when the table has a ``method`` column).

    The dashed line is the majority-class (chance) accuracy of the label set.
    """
    table = validation_table.assign(test=_test_names(validation_table))
    label_sets = list(dict.fromkeys(table["label_set"]))
    representations = list(dict.fromkeys(table["representation"]))
    metrics = list(dict.fromkeys(table["test"]))
    figure, axes = plt.subplots(
        1, max(1, len(label_sets)), figsize=(4.5 * max(1, len(label_sets)), 4), squeeze=False
    )
    width = 0.8 / max(1, len(representations))
    colours = plt.get_cmap("tab10")
    with _saved(figure, path, dpi):
        for ax, label_set in zip(axes[0], label_sets, strict=False):
            subset = table[table["label_set"] == label_set]
            for r, representation in enumerate(representations):
                rows = subset[subset["representation"] == representation].set_index("test")
                rows = rows.reindex(metrics)
                positions = np.arange(len(metrics)) + (r - (len(representations) - 1) / 2) * width
                ax.bar(positions, rows["accuracy_mean"], width, color=colours(r % 10),
                       yerr=rows["accuracy_sem"].fillna(0), capsize=3, label=representation)
            chance = subset["chance"].mean()
            if np.isfinite(chance):
                ax.axhline(chance, color="black", linestyle="--", linewidth=1, label="chance")
            ax.set_xticks(range(len(metrics)), metrics)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("test accuracy")
            ax.set_title(str(label_set))
        if not label_sets:
            axes[0, 0].text(0.5, 0.5, "no labels to validate against\n(validate.label_columns)",
                            ha="center", va="center")
            return
        axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                           frameon=False)


def _test_names(table: pd.DataFrame) -> pd.Series:
    """'kNN euclidean', 'kNN cosine', 'linear probe': one name per (method, metric)."""
    if "method" not in table.columns:
        return table["metric"].astype(str)
    knn = table["method"] == "knn"
    return ("kNN " + table["metric"].astype(str)).where(knn, table["method"].astype(str).str.replace("_", " "))


def message_figure(path: str | os.PathLike[str], message: str, dpi: int = 80) -> None:
    """A small figure holding only ``message``: the output of a plot with nothing to show."""
    figure, ax = plt.subplots(figsize=(4, 1.5))
    with _saved(figure, path, dpi):
        _blank(ax)
        ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)


STRATEGY_STYLES = {
    "random": {"color": "#7f7f7f", "linestyle": ":"},
    "unsupervised": {"color": "#1f77b4", "linestyle": "--"},
    "neighbour_score": {"color": "#d62728", "linestyle": "-"},
    "gp_ei": {"color": "#2ca02c", "linestyle": "-"},
    "classifier": {"color": "#9467bd", "linestyle": "-"},
}


def discovery_curves(
    curves: pd.DataFrame, path: str | os.PathLike[str], n_targets: int, title: str,
    batch: int | None = None, dpi: int = 120,
) -> None:
    """Targets found against objects inspected, one line per strategy.

    ``curves`` has columns strategy, inspected, found (cumulative). The dotted black line is
    the best any order could do (every inspected object a target); ``batch`` marks the
    labelling rounds with faint vertical lines.
    """
    missing = {"strategy", "inspected", "found"} - set(curves.columns)
    if missing:
        raise ValueError(f"curves lack columns {sorted(missing)}")
    figure, ax = plt.subplots(figsize=(6.5, 4.5))
    with _saved(figure, path, dpi):
        n_inspected = int(curves["inspected"].max()) if len(curves) else 0
        for strategy, rows in curves.groupby("strategy", sort=False):
            style = STRATEGY_STYLES.get(str(strategy), {})
            ax.step(np.r_[0, rows["inspected"]], np.r_[0, rows["found"]], where="post",
                    label=f"{strategy} ({int(rows['found'].iloc[-1])})", linewidth=1.8, **style)
        if n_inspected:
            ideal = np.minimum(np.arange(n_inspected + 1), n_targets)
            ax.plot(np.arange(n_inspected + 1), ideal, color="black", linestyle=(0, (1, 3)),
                    linewidth=1, label=f"ideal ({int(ideal[-1])})")
        if batch:
            for edge in range(batch, n_inspected, batch):
                ax.axvline(edge, color="black", alpha=0.08, linewidth=0.8)
        if not len(curves):
            ax.text(0.5, 0.5, "no simulated person: no anomaly.target set,\nor none of its objects in the catalogue",
                    ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel("objects inspected")
        ax.set_ylabel(f"targets found (of {n_targets})")
        ax.set_title(title)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if len(curves):
            ax.legend(loc="upper left", fontsize=8, frameon=False)

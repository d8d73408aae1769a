"""From a raw cutout to the uint8 image the network sees, and from a catalogue to the store.

One function, :func:`preprocess_image`, makes every image that training and feature
extraction use, so the two stages can never see differently prepared pixels.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

from byol_discovery.io.atomic import write_csv_atomic
from byol_discovery.io.catalogue import read_catalogue
from byol_discovery.io.images import ImageReadError, is_fits, read_image
from byol_discovery.io.store import create_store

STRETCHES = ("radio", "asinh", "linear")
CROPS = ("centre", "source")
QUARANTINE_COLUMNS = ["id", "file", "reason"]


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw cutouts become store images.

    stretch: ``radio`` (pixels under ``clip_sigma`` background sigma set to zero, then
    scaled by the peak: the MiraBest recipe), ``asinh`` (per-band noise-normalised asinh,
    for optical flux images) or ``linear`` (min-max; for PNG/JPEG already stretched).
    power: the stretched and resized values (0 to 1) are raised to it; 0.5, a square root,
    lifts the faint extended emission of radio sources, most of it under 10 % of the peak.
    crop: ``centre`` takes the central ``crop_size`` pixels (or the whole image if 0);
    ``source`` finds the source containing the centre above ``clip_sigma`` and crops a
    square ``source_enlarge`` times its bounding box (the paper's optical zoom).
    align: rotate the final image so its major axis (intensity second moments) is
    horizontal, and mirror it so the brighter half lies left and top: a source's
    orientation on the sky says nothing of its morphology, and without it neighbours in
    pixel or feature space are sources of one shape rather than of one position angle.
    """

    image_size: int = 64
    channels: int = 1
    stretch: str = "linear"
    crop: str = "centre"
    crop_size: int = 0
    clip_sigma: float = 3.0
    source_enlarge: float = 2.0
    asinh_softening: float = 3.0
    power: float = 1.0
    align: bool = False
    input_channels: int | None = None
    max_bad_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.stretch not in STRETCHES:
            raise ValueError(f"preprocess stretch {self.stretch!r} is not one of {STRETCHES}")
        if self.crop not in CROPS:
            raise ValueError(f"preprocess crop {self.crop!r} is not one of {CROPS}")
        if self.channels not in (1, 3):
            raise ValueError(f"preprocess channels must be 1 or 3, not {self.channels}")
        if self.image_size < 8:
            raise ValueError(f"preprocess image_size must be at least 8, not {self.image_size}")
        if not self.power > 0:
            raise ValueError(f"preprocess power must be positive, not {self.power}")


class PreprocessError(ValueError):
    """An image that was readable but cannot be used (wrong shape, too many bad pixels)."""


def preprocess_image(raw: np.ndarray, config: PreprocessConfig, flux: bool = True) -> np.ndarray:
    """Turn a float (C, H, W) cutout into uint8 (channels, image_size, image_size).

    ``flux``: the values are flux (a FITS file), not display values (PNG, JPEG), where an
    exact zero is black sky, never a pixel missing from the survey.
    """
    image = _check_shape(raw, config)
    image = _fill_bad_pixels(image, config.max_bad_fraction, zeros_are_missing=flux and config.stretch == "asinh")
    image = _crop(image, config)
    image = _stretch(image, config)
    image = _match_channels(image, config.channels)
    # The power comes after the resize, which then averages flux, not its root.
    image = np.clip(resize(image, config.image_size), 0.0, 1.0) ** config.power
    if config.align:
        image = align_major_axis(image)
    return np.round(image * 255.0).astype(np.uint8)


def align_major_axis(image: np.ndarray) -> np.ndarray:
    """``image`` (C, H, W, values 0 to 1) rotated about its centre so the intensity-weighted
    major axis of the band mean is horizontal, then mirrored so the brighter half of the
    band mean lies left and top (a blank image comes back as it is)."""
    weight = image.mean(axis=0, dtype=np.float64)
    total = weight.sum()
    if total <= 0:
        return image
    rows, cols = np.indices(weight.shape, dtype=np.float64)
    d_row = rows - (weight * rows).sum() / total
    d_col = cols - (weight * cols).sum() / total
    row_row, col_col, row_col = ((weight * a * b).sum() / total for a, b in
                                 ((d_row, d_row), (d_col, d_col), (d_row, d_col)))
    angle = 0.5 * np.degrees(np.arctan2(2.0 * row_col, col_col - row_row))
    # The pivot is the cutout centre (the catalogue position): the centroid moves with the
    # source's orientation (towards its brighter lobe), so turning about it is not invariant.
    # Linear interpolation stays within [0, 1]; corners take the nearest edge (sky).
    aligned = np.clip(ndimage.rotate(image, angle, axes=(1, 2), reshape=False, order=1, mode="nearest"), 0.0, 1.0)
    mean = aligned.mean(axis=0)
    height, width = mean.shape
    if mean[:, : width // 2].sum() < mean[:, width - width // 2 :].sum():
        aligned = aligned[:, :, ::-1]
    if mean[: height // 2].sum() < mean[height - height // 2 :].sum():
        aligned = aligned[:, ::-1]
    return np.ascontiguousarray(aligned)


def _check_shape(raw: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    if raw.ndim != 3:
        raise PreprocessError(f"wrong shape {raw.shape}: expected (channels, height, width)")
    if config.input_channels is not None and raw.shape[0] != config.input_channels:
        raise PreprocessError(f"wrong shape {raw.shape}: expected {config.input_channels} channel(s)")
    if min(raw.shape[1:]) < max(8, config.crop_size // 4):
        raise PreprocessError(f"wrong shape {raw.shape}: image smaller than {max(8, config.crop_size // 4)} px")
    return raw.astype(np.float32, copy=False)


def _fill_bad_pixels(image: np.ndarray, max_bad_fraction: float, zeros_are_missing: bool) -> np.ndarray:
    """Reject bands with too many missing pixels, fill the few others with the band median.

    NaN is always missing. Exact zeros are missing only in flux images (off the survey
    footprint the cutout service returns zeros); in clipped radio maps and in PNG/JPEG
    cutouts a zero is simply dark sky.
    """
    nan = ~np.isfinite(image)
    missing = nan | (image == 0) if zeros_are_missing else nan
    fractions = missing.reshape(image.shape[0], -1).mean(axis=1)
    if (fractions > max_bad_fraction).any():
        worst = int(np.argmax(fractions))
        what = "NaN or zero" if zeros_are_missing else "NaN"
        raise PreprocessError(
            f"{fractions[worst]:.0%} of pixels in band {worst} are {what} (limit {max_bad_fraction:.0%})"
        )
    if nan.any():
        image = image.copy()
        for band in range(image.shape[0]):
            image[band][nan[band]] = np.nanmedian(np.where(nan[band], np.nan, image[band]))
    return image


def _crop(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    if config.crop == "source":
        box = _source_box(image, config.clip_sigma, config.source_enlarge)
    else:
        size = min(config.crop_size or min(image.shape[1:]), *image.shape[1:])
        box = _centred_box(image.shape[1] / 2, image.shape[2] / 2, size)
    return _cut(image, box)


def _centred_box(row: float, col: float, size: int) -> tuple[int, int, int]:
    size = max(int(round(size)), 8)
    return int(round(row - size / 2)), int(round(col - size / 2)), size


def _source_box(image: np.ndarray, clip_sigma: float, enlarge: float) -> tuple[int, int, int]:
    """Square box ``enlarge`` times the extent of the source that contains the centre."""
    detection = image.mean(axis=0)
    _, median, std = sigma_clipped_stats(detection, sigma=clip_sigma, maxiters=5)
    mask = detection > median + clip_sigma * max(float(std), 1e-12)
    labels, count = ndimage.label(mask)
    height, width = detection.shape
    centre = (height // 2, width // 2)
    if count == 0:
        return _centred_box(height / 2, width / 2, min(height, width))
    label = labels[centre]
    if label == 0:
        # No source on the central pixel: take the component nearest to it.
        rows, cols = np.nonzero(labels)
        nearest = np.argmin((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2)
        label = labels[rows[nearest], cols[nearest]]
    rows, cols = np.nonzero(labels == label)
    extent = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    size = min(max(int(extent * enlarge), 16), max(height, width))
    return _centred_box((rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2, size)


def _cut(image: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """Crop a square, padding with the image's median where it leaves the frame."""
    top, left, size = box
    _, height, width = image.shape
    if top >= 0 and left >= 0 and top + size <= height and left + size <= width:
        return image[:, top : top + size, left : left + size]
    fill = np.median(image, axis=(1, 2), keepdims=True)
    out = np.broadcast_to(fill, (image.shape[0], size, size)).copy()
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(top + size, height), min(left + size, width)
    out[:, src_top - top : src_bottom - top, src_left - left : src_right - left] = image[
        :, src_top:src_bottom, src_left:src_right
    ]
    return out


def _stretch(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    if config.stretch == "radio":
        return _radio_stretch(image, config.clip_sigma)
    if config.stretch == "asinh":
        return _asinh_stretch(image, config.asinh_softening)
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _radio_stretch(image: np.ndarray, clip_sigma: float) -> np.ndarray:
    """Zero everything under ``clip_sigma`` background sigma, scale the rest by the peak."""
    out = np.empty_like(image)
    for band in range(image.shape[0]):
        _, median, std = sigma_clipped_stats(image[band], sigma=3.0, maxiters=5)
        clipped = np.where(image[band] > median + clip_sigma * std, image[band] - median, 0.0)
        peak = clipped.max()
        out[band] = clipped / peak if peak > 0 else 0.0
    return out


def _asinh_stretch(image: np.ndarray, softening: float) -> np.ndarray:
    """Per-band noise-normalised asinh with one shared white point, so colours survive."""
    normalised = np.empty_like(image)
    for band in range(image.shape[0]):
        _, median, std = sigma_clipped_stats(image[band], sigma=3.0, maxiters=5)
        normalised[band] = (image[band] - median) / max(float(std), 1e-12)
    white = max(float(np.percentile(normalised, 99.8)), softening)
    return np.arcsinh(np.clip(normalised, 0.0, None) / softening) / np.arcsinh(white / softening)


def _match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[0] == channels:
        return image
    if channels == 1:
        return image.mean(axis=0, keepdims=True)
    return np.repeat(image.mean(axis=0, keepdims=True), channels, axis=0)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize of a float (C, H, W) image to (C, size, size)."""
    if image.shape[1:] == (size, size):
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].numpy()


def _prepare(task: tuple[str, str, PreprocessConfig]) -> tuple[str, str, np.ndarray | None, str]:
    object_id, file, config = task
    try:
        return object_id, file, preprocess_image(read_image(file), config, flux=is_fits(file)), ""
    except (ImageReadError, PreprocessError) as error:
        return object_id, file, None, getattr(error, "reason", str(error))
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - one odd file is quarantined, never the end of a survey's run
        return object_id, file, None, f"unexpected {type(error).__name__}: {error}"


def prepared_images(
    tasks: Sequence[tuple[str, str]], config: PreprocessConfig, workers: int = 1
) -> Iterator[tuple[str, str, np.ndarray | None, str]]:
    """Yield (id, file, image or None, reason) in catalogue order, in parallel if asked."""
    jobs: Iterable[tuple[str, str, PreprocessConfig]] = ((i, f, config) for i, f in tasks)
    if workers <= 1:
        yield from map(_prepare, jobs)
        return
    with Pool(workers) as pool:
        yield from pool.imap(_prepare, jobs, chunksize=16)


def _drop_repeated_files(
    tasks: Sequence[tuple[str, str]], quarantine: Callable[[str, str, str], None]
) -> list[tuple[str, str]]:
    """The tasks whose file no earlier task names; each repeat goes to ``quarantine``. One
    image under two ids would be trained on twice and be its own nearest neighbour in kNN."""
    first_id: dict[str, str] = {}
    kept = []
    for object_id, file in tasks:
        key = os.path.normpath(os.path.abspath(file))
        if key in first_id:
            quarantine(object_id, file, f"same file as {first_id[key]}")
        else:
            first_id[key] = object_id
            kept.append((object_id, file))
    return kept


def build_store(
    catalogue_path: str | Path,
    store_path: str | Path,
    quarantine_path: str | Path,
    config: PreprocessConfig,
    columns: Sequence[str] = (),
    workers: int = 1,
    dataset: str = "",
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Preprocess every catalogued cutout into the HDF5 store; quarantine the bad ones.

    ``columns`` are the catalogue columns carried into the store (labels, coordinates).
    Returns the quarantine table (id, file, reason). Fails only if no image is usable.
    """
    log = log or logging.getLogger(__name__)
    catalogue_path = Path(catalogue_path)
    catalogue = read_catalogue(catalogue_path)
    missing = [column for column in columns if column not in catalogue.columns]
    if missing:
        raise ValueError(f"{catalogue_path}: columns {missing} asked for in the config are not in the catalogue")
    tasks = [(str(i), str(catalogue_path.parent / f)) for i, f in zip(catalogue["id"], catalogue["file"], strict=True)]
    rejected: list[dict[str, str]] = []

    def quarantine_row(object_id: str, file: str, reason: str) -> None:
        log.warning("quarantined %s (%s): %s", object_id, file, reason)
        rejected.append({"id": object_id, "file": file, "reason": reason})

    tasks = _drop_repeated_files(tasks, quarantine_row)
    with create_store(store_path, config.channels, config.image_size) as store:
        for count, (object_id, file, image, reason) in enumerate(prepared_images(tasks, config, workers), 1):
            if image is None:
                quarantine_row(object_id, file, reason)
            else:
                store.append(object_id, image)
            if count % 1000 == 0 or count == len(tasks):
                log.info("preprocessed %d/%d cutouts, %d quarantined", count, len(tasks), len(rejected))
        quarantine = pd.DataFrame(rejected, columns=QUARANTINE_COLUMNS)
        write_csv_atomic(quarantine_path, quarantine)  # first, so a failure below can point to it
        if not store.ids:
            first = f" (the first: {rejected[0]['file']}: {rejected[0]['reason']})" if rejected else ""
            raise ValueError(
                f"{catalogue_path}: none of the {len(tasks)} cutouts could be used; see {quarantine_path}{first}"
            )
        store.finish(
            catalogue[["id", *columns]],
            {"dataset": dataset, "preprocess": asdict(config), "source_catalogue": str(catalogue_path)},
        )
    return quarantine

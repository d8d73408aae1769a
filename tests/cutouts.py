"""Small real-format cutouts written on the fly, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def galaxy(size: int = 64, channels: int = 3, seed: int = 0, sigma_px: float = 5.0) -> np.ndarray:
    """A Gaussian blob on a noisy sky, float32 (channels, size, size), like a flux cutout."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(xx**2 + yy**2) / (2 * sigma_px**2))
    return np.stack([blob * (1 + c) + rng.normal(0, 0.02, (size, size)) for c in range(channels)]).astype(np.float32)


def write_fits(path: Path, data: np.ndarray) -> Path:
    fits.PrimaryHDU(data).writeto(path, overwrite=True)
    return path


def write_png(path: Path, data: np.ndarray) -> Path:
    Image.fromarray(data.astype(np.uint8)).save(path)
    return path

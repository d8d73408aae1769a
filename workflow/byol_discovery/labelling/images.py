"""Cutouts as PNG: the store's image as the network saw it, or the original FITS file with
an astronomical stretch. Objects are found by id in the store or the catalogue, never by
joining a requested name into a path."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from byol_discovery.io.catalogue import read_catalogue
from byol_discovery.io.store import ImageStore

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fz")
MAX_FITS_BYTES = 64 * 2**20  # a cutout, not a survey tile


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 (C, H, W), C = 1 or 3, as PNG."""
    image = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels[:3], 0, -1)
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="PNG")
    return out.getvalue()


def stretched(data: np.ndarray, bands: str = "") -> np.ndarray:
    """A FITS image (H, W) or cube (C, H, W) as uint8 (1 or 3, H, W): each band clipped at
    its 0.5 and 99.8 percentiles and asinh-stretched; grz cubes shown as RGB = z, r, g."""
    from astropy.visualization import AsinhStretch, AsymmetricPercentileInterval, ImageNormalize

    cube = np.asarray(data, dtype=np.float64)
    cube = cube[None] if cube.ndim == 2 else cube.reshape(-1, *cube.shape[-2:])
    if cube.shape[0] >= 3:
        order = [bands.index(b) for b in "zrg"] if sorted(bands[:3]) == ["g", "r", "z"] else [0, 1, 2]
        cube = cube[order]
    else:
        cube = cube[:1]
    out = np.empty(cube.shape, dtype=np.uint8)
    for i, band in enumerate(cube):
        finite = np.isfinite(band)
        if not finite.any():
            out[i] = 0
            continue
        norm = ImageNormalize(band[finite], interval=AsymmetricPercentileInterval(0.5, 99.8), stretch=AsinhStretch(0.1))
        scaled = np.nan_to_num(np.asarray(norm(np.where(finite, band, np.nanmin(band[finite])))), nan=0.0)
        out[i] = np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    return out


class Cutouts:
    """PNG images of a dataset's objects, by id."""

    def __init__(self, store: Path, catalogue: Path | None) -> None:
        self._store = ImageStore(store)
        self._lock = threading.Lock()  # one h5py handle, read from the server's threads
        self.index = {str(object_id): i for i, object_id in enumerate(self._store.ids)}
        self._files: dict[str, str] = {}
        self._folder = catalogue.parent.resolve() if catalogue is not None else None
        if catalogue is not None and catalogue.is_file():
            table = read_catalogue(catalogue)
            fits_rows = table[table["file"].str.lower().str.endswith(FITS_SUFFIXES)]
            self._files = dict(zip(fits_rows["id"].tolist(), fits_rows["file"].tolist(), strict=True))

    def close(self) -> None:
        self._store.close()

    def store_png(self, object_id: str) -> bytes:
        position = self.index[object_id]  # KeyError: not an object of this dataset
        with self._lock:
            pixels = self._store.images[position]
        return png_bytes(pixels)

    def _fits_path(self, object_id: str) -> Path | None:
        """The object's FITS file as the catalogue names it, when it is at hand and inside the
        catalogue's folder (a row naming ../../etc/x is not shown)."""
        name = self._files.get(object_id)
        if name is None or self._folder is None:
            return None
        path = (self._folder / name).resolve()
        return path if path.is_relative_to(self._folder) and path.is_file() else None

    def has_fits(self, object_id: str) -> bool:
        return self._fits_path(object_id) is not None

    def fits_png(self, object_id: str) -> bytes:
        """The original FITS file stretched; KeyError when the object has none at hand."""
        from astropy.io import fits

        path = self._fits_path(object_id) if object_id in self.index else None
        if path is None:
            raise KeyError(object_id)
        if path.stat().st_size > MAX_FITS_BYTES:
            raise ValueError(f"{path.name} is over {MAX_FITS_BYTES // 2**20} MiB: not a cutout")
        with fits.open(path, memmap=False) as hdus:
            hdu = next((h for h in hdus if h.is_image and h.data is not None and h.data.ndim >= 2), None)
            if hdu is None:
                raise ValueError(f"{path.name} holds no image")
            return png_bytes(stretched(hdu.data, str(hdu.header.get("BANDS", "")).lower()))

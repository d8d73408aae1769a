"""Reading one cutout file (FITS, PNG or JPEG) into a float array, with validation.

Every failure is an :class:`ImageReadError` naming the file and what is wrong with it, so
the preprocessing stage can quarantine the file and carry on with the rest of the survey.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from PIL import Image, UnidentifiedImageError

# .fz: tile-compressed by fpack (DES, HSC cutouts), read through astropy's CompImageHDU.
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fit.fz")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
FITS_MAGIC = b"SIMPLE  ="
FITS_BLOCK = 2880
IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)


class ImageReadError(ValueError):
    """A cutout that cannot be used; ``reason`` is short enough for a quarantine table."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def read_image(path: str | Path) -> np.ndarray:
    """Read a cutout as float32 (C, H, W); FITS keeps physical units, PNG/JPEG give 0-255."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file")
    name = path.name.lower()
    if is_fits(path):
        image = _read_fits(path)
    elif name.endswith(RASTER_SUFFIXES):
        image = _read_raster(path)
    else:
        raise ImageReadError(path, f"unsupported file type {path.suffix!r} (FITS, PNG or JPEG)")
    _check_values(path, image)
    return image


def is_fits(path: str | Path) -> bool:
    """Whether ``path`` names a FITS file (flux values), not a PNG or JPEG (display values)."""
    return Path(path).name.lower().endswith(FITS_SUFFIXES)


def _describe_start(head: bytes) -> str:
    text = head[:40].decode("ascii", errors="replace").strip()
    return repr(text[:30])


def _read_fits(path: Path) -> np.ndarray:
    if not path.name.lower().endswith(".gz"):
        # Services answer errors with HTTP 200 and a text page: check the bytes, not the name.
        with path.open("rb") as handle:
            head = handle.read(len(FITS_MAGIC))
        if head != FITS_MAGIC:
            raise ImageReadError(path, f"not a FITS file (starts with {_describe_start(head)})")
        if path.stat().st_size % FITS_BLOCK:
            raise ImageReadError(path, "truncated FITS file (length not a multiple of 2880)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdus:
                # Image HDUs only: a table's records are not pixels.
                hdu = next((hdu for hdu in hdus if isinstance(hdu, IMAGE_HDUS) and hdu.data is not None), None)
                if hdu is None:
                    raise ImageReadError(path, "FITS file holds no image data")
                data = np.asarray(hdu.data, dtype=np.float32)
                bands = str(hdu.header.get("BANDS", ""))
    except ImageReadError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file fails in astropy, numpy or zlib, in many ways
        raise ImageReadError(path, f"unreadable FITS: {type(error).__name__}: {error}") from error
    data = np.squeeze(data)
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ImageReadError(path, f"FITS image has {data.ndim} dimensions, expected 2 or 3")
    return data[reddest_first(bands, len(data))]


# Optical bands from blue to red, as survey headers name them (BANDS = 'grz').
_BAND_ORDER = "ugrizy"


def reddest_first(bands: str, n_planes: int) -> list[int]:
    """Plane order putting the reddest band first: a cube with ``BANDS='grz'`` reads as
    (z, r, g), the red, green, blue of an RGB image, as the same survey's JPEG and PNG
    cutouts come. Galleries then show colours the right way round, and ImageNet weights see
    the reddest band through their red filters. Planes stay as they are when the header
    does not name one known band per plane."""
    names = bands.strip().lower()
    if len(names) != n_planes or not names or any(band not in _BAND_ORDER for band in names):
        return list(range(n_planes))
    return sorted(range(n_planes), key=lambda plane: -_BAND_ORDER.index(names[plane]))


# Modes whose values go beyond 8 bits: read as they are (converting to "L" clips at 255).
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def raster_array(img: Image.Image) -> np.ndarray:
    """A decoded image's values as float32: (H, W) for grey ones, at their own depth (16-bit
    and float PNG/TIFF too), else (H, W, 3) RGB."""
    if img.mode in HIGH_DEPTH_MODES:
        return np.asarray(img, dtype=np.float32)
    mode = "L" if img.mode in ("L", "1", "LA", "P") and _is_grey(img) else "RGB"
    return np.asarray(img.convert(mode), dtype=np.float32)


def _read_raster(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            array = raster_array(img)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(path, f"unreadable image: {error}") from error
    except Exception as error:  # noqa: BLE001 - PIL's decoders fail in other ways too (SyntaxError, zlib)
        raise ImageReadError(path, f"unreadable image: {type(error).__name__}: {error}") from error
    return array[np.newaxis] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def _is_grey(img: Image.Image) -> bool:
    if img.mode != "P":
        return True
    palette = np.asarray(img.convert("RGB"))
    return bool(np.all(palette[..., 0] == palette[..., 1]) and np.all(palette[..., 1] == palette[..., 2]))


def _check_values(path: Path, image: np.ndarray) -> None:
    if image.size == 0 or min(image.shape[1:]) < 2:
        raise ImageReadError(path, f"image too small: shape {tuple(image.shape)}")
    finite = np.isfinite(image)
    if not finite.any():
        raise ImageReadError(path, "all pixels are NaN or infinite")
    if np.ptp(image[finite]) == 0:
        raise ImageReadError(path, "blank image (every pixel has the same value)")

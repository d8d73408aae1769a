"""Validation of bodies: services answer some errors with HTTP 200 and a text page, so every
body is checked (FITS shape and bad pixels, raster decodes) before it is kept."""

from __future__ import annotations

import io
import warnings

import numpy as np

from byol_discovery.io.images import FITS_BLOCK, FITS_MAGIC
from byol_discovery.sources.download.settings import InvalidResponse, Task


def validate_payload(body: bytes, task: Task, max_bad_fraction: float = 0.2) -> None:
    """Raise :class:`InvalidResponse` unless ``body`` is a usable file of ``task.kind``."""
    if not body:
        raise InvalidResponse("empty body", permanent=False)
    if task.kind == "fits":
        _validate_fits(body, task, max_bad_fraction)
    elif task.kind in ("jpeg", "png"):
        _validate_raster(body, task)
    else:
        raise ValueError(f"unknown file kind {task.kind!r}")


def text_snippet(body: bytes) -> str:
    return body[:60].decode("utf-8", errors="replace").strip().replace("\n", " ")


def _validate_fits(body: bytes, task: Task, max_bad_fraction: float) -> None:
    from astropy.io import fits

    if not body.startswith(FITS_MAGIC):
        # The cutout service answers a bad layer with HTTP 200 and a short text page.
        raise InvalidResponse(f"not FITS: service said {text_snippet(body)!r}", permanent=True)
    if len(body) % FITS_BLOCK:
        raise InvalidResponse(f"truncated FITS ({len(body)} bytes, not a multiple of {FITS_BLOCK})", permanent=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(body), memmap=False) as hdus:
                header = hdus[0].header
                data = next((np.asarray(hdu.data) for hdu in hdus if hdu.data is not None), None)
    except Exception as error:  # astropy raises many types for a corrupt file
        raise InvalidResponse(f"unreadable FITS: {error}", permanent=False) from error
    if data is None:
        raise InvalidResponse("FITS holds no image", permanent=True)
    _check_fits_shape(data, header, task)
    _check_bad_pixels(data, max_bad_fraction)


def _check_fits_shape(data: np.ndarray, header: object, task: Task) -> None:
    planes = data[np.newaxis] if data.ndim == 2 else data
    if planes.ndim != 3:
        raise InvalidResponse(f"FITS image has shape {data.shape}", permanent=True)
    if task.bands is not None:
        declared = str(header.get("BANDS", task.bands)).strip()  # type: ignore[attr-defined]
        if declared != task.bands or planes.shape[0] != len(task.bands):
            raise InvalidResponse(
                f"bands {declared!r} x{planes.shape[0]}, expected {task.bands!r} (band not covered here?)",
                permanent=True,
            )
    if task.size is not None and planes.shape[1:] != (task.size, task.size):
        raise InvalidResponse(f"FITS image is {planes.shape[1:]}, expected {task.size}x{task.size}", permanent=True)


def _check_bad_pixels(data: np.ndarray, max_bad_fraction: float) -> None:
    planes = data[np.newaxis] if data.ndim == 2 else data
    bad = ~np.isfinite(planes) | (planes == 0)
    fractions = bad.reshape(planes.shape[0], -1).mean(axis=1)
    worst = int(np.argmax(fractions))
    if fractions[worst] > max_bad_fraction:
        # Off the footprint the service returns zeros: asking again will not help.
        raise InvalidResponse(
            f"{fractions[worst]:.0%} zero/NaN pixels in plane {worst} "
            f"(limit {max_bad_fraction:.0%}; off the footprint?)",
            permanent=True,
        )


def _validate_raster(body: bytes, task: Task) -> None:
    from PIL import Image, UnidentifiedImageError

    from byol_discovery.io.images import HIGH_DEPTH_MODES, raster_array

    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
            array = raster_array(image)
            eight_bit = image.mode not in HIGH_DEPTH_MODES
    except Image.DecompressionBombError as error:  # not an OSError: PIL's guard against huge headers
        raise InvalidResponse(f"image too large to decode safely: {error}", permanent=True) from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        if body.lstrip()[:1] in (b"<", b"{") or body[:20].isascii() and b"\x00" not in body[:200]:
            raise InvalidResponse(f"not an image: service said {text_snippet(body)!r}", permanent=True) from error
        raise InvalidResponse(f"undecodable image: {error}", permanent=False) from error
    if task.size is not None and array.shape[:2] != (task.size, task.size):
        raise InvalidResponse(f"image is {array.shape[1]}x{array.shape[0]}, expected {task.size}x{task.size}", True)
    low, high = float(array.min()), float(array.max())
    # A JPEG of a position outside the footprint is black; JPEG noise may leave a few levels.
    if (high - low <= 2 or high <= 3) if eight_bit else high == low:
        raise InvalidResponse("blank image (outside the footprint?)", permanent=True)

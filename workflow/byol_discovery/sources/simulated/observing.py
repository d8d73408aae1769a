"""Observing conditions (seeing, depth, sky) and noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from byol_discovery.sources.simulated.constants import SKY_MAG, SKY_SIGMA
from byol_discovery.sources.simulated.settings import DECALS_PIXSCALE


@dataclass(frozen=True)
class Observing:
    """Per-object seeing and depth (arrays are g, r, z)."""

    fwhm_arcsec: np.ndarray
    sky_sigma: np.ndarray  # nanomaggies per pixel
    gain: np.ndarray  # electrons per nanomaggy
    pedestal: np.ndarray  # residual sky after subtraction, nanomaggies per pixel


def observing(rng: np.random.Generator, pixscale: float) -> Observing:
    """Draw one object's seeing and depth."""
    fwhm_r = rng.uniform(1.0, 1.5)
    # Seeing improves slowly with wavelength (about lambda^-0.2): g broader, z narrower.
    fwhm = fwhm_r * np.array([rng.uniform(1.03, 1.12), 1.0, rng.uniform(0.88, 0.98)])
    depth = rng.uniform(0.8, 1.35) * rng.uniform(0.9, 1.1, size=3)
    sigma = SKY_SIGMA * (pixscale / DECALS_PIXSCALE) * depth
    sky = 10.0 ** (-0.4 * (SKY_MAG - 22.5)) * pixscale**2
    return Observing(fwhm_arcsec=fwhm, sky_sigma=sigma, gain=sky / sigma**2,
                      pedestal=rng.normal(0.0, 0.3 * sigma))


def add_noise(image: np.ndarray, obs: Observing, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sky noise plus the sources' Poisson photon noise.

    Every pixel holds over a thousand sky electrons before sky subtraction (sky * gain),
    so the total Poisson noise is Gaussian to better than 0.1 %: one normal draw with
    variance sigma_sky^2 + flux / gain is exact enough and three times faster.
    """
    sky_var = obs.sky_sigma[:, None, None] ** 2
    variance = sky_var + np.clip(image, 0.0, None) / obs.gain[:, None, None]
    return image + np.sqrt(variance) * rng.standard_normal(size=image.shape)

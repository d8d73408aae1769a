"""Photometry and distances: magnitudes, colours, sizes and orientations of the drawn galaxies."""

from __future__ import annotations

import math

import numpy as np

from byol_discovery.sources.simulated.constants import ARCSEC_PER_RAD, C_KMS, H0


def mag_to_flux(mag: float) -> float:
    """AB magnitude to nanomaggies."""
    return 10.0 ** (-0.4 * (mag - 22.5))


def flux_to_mag(flux: float) -> float:
    """Nanomaggies to AB magnitude."""
    return 22.5 - 2.5 * math.log10(flux)


def colour_fluxes(r_flux: float, g_r: float, r_z: float) -> np.ndarray:
    """grz fluxes of a component with r-band flux ``r_flux`` and colours g-r, r-z."""
    return r_flux * np.array([10.0 ** (-0.4 * g_r), 1.0, 10.0 ** (0.4 * r_z)])


def distance(rng: np.random.Generator, r_mag: float, abs_mean: float,
              abs_sigma: float) -> tuple[float, float, float]:
    """(redshift, kpc per arcsec, absolute magnitude) for an object seen at ``r_mag``."""
    m_abs = float(rng.normal(abs_mean, abs_sigma))
    d_lum = 10.0 ** ((r_mag - m_abs + 5.0) / 5.0) / 1e6  # Mpc
    z = d_lum * H0 / C_KMS
    d_ang = d_lum / (1.0 + z) ** 2
    return z, d_ang * 1e3 / ARCSEC_PER_RAD, m_abs


def size_arcsec(rng: np.random.Generator, kpc_per_arcsec: float, r0_kpc: float,
                 slope: float, m_abs: float, m0: float, lo: float, hi: float) -> float:
    """Half-light radius from a luminosity-size relation R = R0 * 10^(slope (M0 - M))."""
    r_kpc = r0_kpc * 10.0 ** (slope * (m0 - m_abs) + rng.normal(0.0, 0.1))
    return float(np.clip(r_kpc / kpc_per_arcsec, lo, hi))


def pa_to_theta(pa_deg: float) -> float:
    """Position angle east of north to the pixel-frame angle from +x (north up, east left)."""
    return math.radians(pa_deg + 90.0)


def inclined_q(rng: np.random.Generator, q0: float, cos_min: float) -> float:
    """Apparent axis ratio of a disc of intrinsic thickness q0 at random inclination."""
    cos_i = rng.uniform(cos_min, 1.0)
    return math.sqrt(cos_i**2 * (1.0 - q0**2) + q0**2)

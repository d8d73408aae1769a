"""Physical and rendering constants of the simulator (the module docstring of
:mod:`byol_discovery.sources.simulated` gives the numbers' origin)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# --- Observing conditions (see the package docstring for the numbers' origin) ---
SKY_MAG = np.array([22.0, 20.9, 19.9])  # sky before subtraction, mag/arcsec^2, g r z
SKY_SIGMA = np.array([0.0045, 0.0075, 0.018])  # coadd noise, nanomaggies/pixel at 0.262"
PSF_BETA = 3.5  # Moffat index typical of ground-based seeing cores
PSF_HALF = 15  # kernel half-width in pixels: >98 % of the flux of the widest PSF

# --- Rendering ---
MARGIN = 8  # pixels (at least) rendered beyond each edge, for light blurred into the frame
OS = 2  # sub-pixels per pixel (per axis) for extended profiles
CORE_OS = 10  # sub-pixels per pixel in the refined core
CORE_HALF = 2  # the core box is (2 * 2 + 1)^2 pixels around a steep profile's centre

# --- Cosmology for the distance proxy (Hubble law is enough below z ~ 0.2) ---
H0 = 70.0  # km/s/Mpc
C_KMS = 299792.458
ARCSEC_PER_RAD = 206264.806

Profile = Callable[[np.ndarray, np.ndarray], np.ndarray]
Transmission = Callable[[np.ndarray, np.ndarray], np.ndarray]

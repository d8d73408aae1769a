"""Profiles: callables of broadcastable pixel coordinates returning surface brightness."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from byol_discovery.sources.simulated.constants import Profile


def _disc_plane(x: np.ndarray, y: np.ndarray, cx: float, cy: float, theta: float,
                q: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along the major axis and along the (deprojected) minor axis."""
    dx, dy = x - cx, y - cy
    c, s = math.cos(theta), math.sin(theta)
    return dx * c + dy * s, (-dx * s + dy * c) / q


def _sersic_b(n: float) -> float:
    """b_n such that R_e encloses half the light (Ciotti & Bertin 1999 expansion)."""
    return 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2) + 131 / (1148175 * n**3)


def sersic(cx: float, cy: float, re: float, n: float, q: float, theta: float) -> Profile:
    """Unit-flux elliptical Sersic profile (re: semi-major half-light radius in pixels)."""
    b = _sersic_b(n)
    # Analytic total flux of the profile with I_e = 1, so no numerical normalisation.
    log_total = (math.log(2 * math.pi * q * re**2 * n) + b - 2 * n * math.log(b)
                 + math.lgamma(2 * n))
    log_ie = -log_total

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, w = _disc_plane(x, y, cx, cy, theta, q)
        # (r/re)^(1/n) as exp(log(r^2) / 2n): several times faster than sqrt and pow.
        r2 = np.maximum(u * u + w * w, 1e-12) / re**2
        return np.exp(log_ie + b - b * np.exp(np.log(r2) * (0.5 / n)))

    return profile


@dataclass(frozen=True)
class Arms:
    """Geometry of a spiral pattern (lengths in pixels, in the disc plane)."""

    m: int
    tan_pitch: float
    hand: int
    phase0: float
    sharpness: float
    r_ref: float
    r_in: float


def arm_pattern(rho: np.ndarray, phi: np.ndarray, arms: Arms) -> np.ndarray:
    """Logarithmic-spiral arm modulation in [0, 1] at deprojected radius/azimuth."""
    lnr = np.log(np.maximum(rho, 1e-3) / arms.r_ref)
    phase = arms.m * (phi - arms.hand * lnr / arms.tan_pitch) + arms.phase0
    pattern = (0.5 * (1.0 + np.cos(phase))) ** arms.sharpness
    # Arms start outside the bulge/bar: a smooth inner taper instead of a hard edge.
    return pattern * (1.0 - np.exp(-((rho / arms.r_in) ** 2)))


def spiral_arms(cx: float, cy: float, re: float, n: float, q: float, theta: float,
                 arms: Arms) -> Profile:
    """Disc light concentrated into arms (normalise numerically)."""
    disc = sersic(cx, cy, re, n, q, theta)

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, w = _disc_plane(x, y, cx, cy, theta, q)
        return disc(x, y) * arm_pattern(np.hypot(u, w), np.arctan2(w, u), arms)

    return profile


def bar(cx: float, cy: float, length: float, q_bar: float, phi_bar: float, q: float,
         theta: float) -> Profile:
    """A flat (Sersic n=0.5) bar lying in an inclined disc plane (normalise numerically)."""
    c, s = math.cos(phi_bar), math.sin(phi_bar)

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, w = _disc_plane(x, y, cx, cy, theta, q)
        a, b = u * c + w * s, (-u * s + w * c) / q_bar
        return np.exp(-((a * a + b * b) / length**2))

    return profile


def ring(cx: float, cy: float, radius: float, width: float, q: float, theta: float,
          asym: float, asym_angle: float) -> Profile:
    """A lopsided Gaussian ring in an inclined disc (normalise numerically)."""

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, w = _disc_plane(x, y, cx, cy, theta, q)
        rho = np.hypot(u, w)
        lopsided = 1.0 + asym * np.cos(np.arctan2(w, u) - asym_angle)
        return lopsided * np.exp(-0.5 * ((rho - radius) / width) ** 2)

    return profile


def arc_tail(sx: float, sy: float, direction: float, sense: int, radius: float,
              span: float, width0: float) -> Profile:
    """A tidal tail: light along a circular arc launched from (sx, sy), fading and widening.

    The arc's centre lies to the left (sense=+1) or right (sense=-1) of the launch
    direction, so the tail curls the way a rotating disc's tidal debris does.
    """
    cxa = sx - sense * radius * math.sin(direction)
    cya = sy + sense * radius * math.cos(direction)
    phi0 = math.atan2(sy - cya, sx - cxa)

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = x - cxa, y - cya
        t = np.mod(sense * (np.arctan2(dy, dx) - phi0), 2 * math.pi) / span
        width = width0 * (1.0 + 1.5 * t)
        along = np.exp(-2.0 * t) * np.clip((1.0 - t) / 0.25, 0.0, 1.0)
        across = np.exp(-0.5 * ((np.hypot(dx, dy) - radius) / width) ** 2) / width
        return np.where(t <= 1.0, along * across, 0.0)

    return profile


def line(cx: float, cy: float, angle: float, offset: float, sigma: float) -> Profile:
    """A straight line across the frame, unit flux per pixel of length, Gaussian across."""
    s, c = math.sin(angle), math.cos(angle)
    norm = 1.0 / (math.sqrt(2 * math.pi) * sigma)

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = -(x - cx) * s + (y - cy) * c - offset
        return norm * np.exp(-0.5 * (d / sigma) ** 2)

    return profile

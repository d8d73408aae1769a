"""What to simulate (:class:`SimulationConfig`), the classes and the catalogue's columns."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CLASSES: tuple[str, ...] = ("elliptical", "spiral", "edge_on")
RARE_CLASSES: tuple[str, ...] = ("merger", "ring", "artefact")


DECALS_PIXSCALE = 0.262  # arcsec per pixel, the native DECam/Legacy Surveys coadd scale


# Catalogue columns after id/file/ra/dec/morphology/is_rare, with their "not applicable"
# values, so every row has the same columns whatever its class.
PARAM_DEFAULTS: dict[str, object] = {
    "host_morphology": "",
    "r_mag": math.nan,
    "g_mag": math.nan,
    "z_mag": math.nan,
    "half_light_radius_arcsec": math.nan,
    "axis_ratio": math.nan,
    "position_angle_deg": math.nan,
    "sersic_n": math.nan,
    "redshift": math.nan,
    "bulge_fraction": math.nan,
    "n_arms": 0,
    "arm_pitch_deg": math.nan,
    "has_bar": 0,
    "dust_lane": 0,
    "ring_radius_arcsec": math.nan,
    "companion_sep_arcsec": math.nan,
    "companion_flux_ratio": math.nan,
    "n_tidal_tails": 0,
    "artefact_type": "none",
    "x_offset_px": math.nan,
    "y_offset_px": math.nan,
    "psf_fwhm_arcsec": math.nan,
    "sky_sigma_nmgy": math.nan,
    "n_field_stars": 0,
    "n_field_galaxies": 0,
}
CATALOGUE_COLUMNS: tuple[str, ...] = (
    "id", "file", "ra", "dec", "morphology", "is_rare", *PARAM_DEFAULTS,
)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate: how many objects, the cutout size and scale, the rare share, the seed."""

    n_objects: int = 1200
    image_size: int = 96  # pixels, square
    pixscale: float = DECALS_PIXSCALE  # arcsec/pixel
    rare_fraction: float = 0.04  # fraction of objects drawn from RARE_CLASSES
    seed: int = 0

    def __post_init__(self) -> None:
        _require(is_int(self.n_objects) and self.n_objects > 0,
                 "n_objects", "must be a positive integer", self.n_objects)
        _require(is_int(self.image_size) and self.image_size >= 16,
                 "image_size", "must be an integer >= 16 pixels", self.image_size)
        _require(is_real(self.pixscale) and 0 < self.pixscale < 60,
                 "pixscale", "must be a positive number of arcsec per pixel", self.pixscale)
        _require(is_real(self.rare_fraction) and 0 <= self.rare_fraction < 1,
                 "rare_fraction", "must be in [0, 1)", self.rare_fraction)
        _require(is_int(self.seed) and self.seed >= 0,
                 "seed", "must be a non-negative integer", self.seed)


def is_int(value: object) -> bool:
    """True for integers but not booleans (True is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: object) -> bool:
    """True for finite real numbers (not booleans)."""
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))


def _require(ok: bool, field: str, message: str, value: object) -> None:
    """Raise a ValueError that names the offending configuration field."""
    if not ok:
        raise ValueError(f"SimulationConfig.{field} {message} (got {value!r})")

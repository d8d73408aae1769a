"""One simulated galaxy, and a whole data set written as the cutout service would."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from byol_discovery.config import from_mapping
from byol_discovery.io.atomic import atomic_path, write_csv_atomic
from byol_discovery.sources.legacy_fits import BANDS, legacy_fits_bytes
from byol_discovery.sources.registry import source_options
from byol_discovery.sources.simulated.canvas import Canvas, moffat_kernel
from byol_discovery.sources.simulated.constants import MARGIN, PSF_HALF
from byol_discovery.sources.simulated.galaxies import (
    BUILDERS,
    BrightStar,
    bright_star_model,
    draw_bright_star,
    field_objects,
    satellite_trail,
    saturate,
)
from byol_discovery.sources.simulated.observing import Observing, add_noise, observing
from byol_discovery.sources.simulated.photometry import flux_to_mag
from byol_discovery.sources.simulated.settings import (
    CATALOGUE_COLUMNS,
    CLASSES,
    DECALS_PIXSCALE,
    PARAM_DEFAULTS,
    RARE_CLASSES,
    SimulationConfig,
    is_int,
    is_real,
)


def simulate_galaxy(kind: str, rng: np.random.Generator, image_size: int, *,
                    pixscale: float = DECALS_PIXSCALE) -> tuple[np.ndarray, dict]:
    """One object's (3, H, W) float32 grz image in nanomaggies, plus its true parameters.

    ``kind`` is one of CLASSES or RARE_CLASSES. The parameters are the catalogue columns
    after id/file/ra/dec/morphology/is_rare (see ``CATALOGUE_COLUMNS``); magnitudes are
    the main object's model magnitudes after any dust, position angles are east of north.
    """
    if kind not in CLASSES + RARE_CLASSES:
        raise ValueError(f"kind {kind!r} is not one of {CLASSES + RARE_CLASSES}")
    if not is_int(image_size) or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16 (got {image_size!r})")
    if not is_real(pixscale) or pixscale <= 0:
        raise ValueError(f"pixscale must be positive (got {pixscale!r})")
    obs = observing(rng, pixscale)
    mid = (image_size - 1) / 2.0
    off_r, off_ang = rng.uniform(0.5, 2.0), rng.uniform(0.0, 2 * math.pi)
    cx, cy = mid + off_r * math.cos(off_ang), mid + off_r * math.sin(off_ang)
    host = CLASSES[int(rng.integers(len(CLASSES)))] if kind == "artefact" else kind

    fwhm_px = obs.fwhm_arcsec / pixscale
    # The margin grows with the PSF in pixels (only matters for fine pixel scales).
    canvas = Canvas(image_size, max(MARGIN, math.ceil(1.5 * fwhm_px.max())))
    built = BUILDERS[host](canvas, rng, cx, cy, pixscale)
    n_stars, n_gals = field_objects(canvas, rng, cx, cy, pixscale)
    artefact, star = _draw_artefact(kind, canvas, rng, cx, cy)
    image = _observe(canvas, obs, fwhm_px, star, rng)

    params = dict(PARAM_DEFAULTS)
    params.update(built.params)
    g, r, z = (flux_to_mag(float(f)) for f in built.fluxes)
    params.update(host_morphology=host, g_mag=g, r_mag=r, z_mag=z, artefact_type=artefact,
                  x_offset_px=cx - mid, y_offset_px=cy - mid,
                  psf_fwhm_arcsec=obs.fwhm_arcsec[1], sky_sigma_nmgy=obs.sky_sigma[1],
                  n_field_stars=n_stars, n_field_galaxies=n_gals)
    return image.astype(np.float32), {k: _plain(v) for k, v in params.items()}


def _draw_artefact(kind: str, canvas: Canvas, rng: np.random.Generator, cx: float,
                   cy: float) -> tuple[str, BrightStar | None]:
    """For an artefact: draw a trail onto the canvas, or the bright star to add after the PSF."""
    if kind != "artefact":
        return "none", None
    if rng.random() < 0.5:
        satellite_trail(canvas, rng)
        return "satellite_trail", None
    return "bright_star", draw_bright_star(rng, canvas.size, cx, cy)


def _observe(canvas: Canvas, obs: Observing, fwhm_px: np.ndarray, star: BrightStar | None,
             rng: np.random.Generator) -> np.ndarray:
    """Seeing, the (already blurred) bright star, noise, saturation and residual sky."""
    half = max(PSF_HALF, math.ceil(3.0 * fwhm_px.max()))
    image = canvas.observed(np.stack([moffat_kernel(f, half) for f in fwhm_px]))
    star_model = None if star is None else bright_star_model(star, canvas.size, fwhm_px)
    if star_model is not None:
        image = image + star_model
    image = add_noise(image, obs, rng)
    if star is not None and star_model is not None:
        saturate(image, star_model, star)  # after the noise: saturated pixels are flat
    return image + obs.pedestal[:, None, None]


def _plain(value: object) -> object:
    """numpy scalars to Python ones, so the catalogue has clean dtypes."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return value


def write_legacy_fits(path: str | os.PathLike[str], image: np.ndarray, ra: float, dec: float,
                      pixscale: float) -> None:
    """Write like the Legacy Survey fits-cutout service: primary HDU float32 cube (3,H,W),
    header BANDS='grz', TAN WCS centred on (ra, dec) (CRPIX at the centre, CD matrix from pixscale,
    CTYPE1/2 'RA---TAN'/'DEC--TAN', CTYPE3 for bands), BUNIT nanomaggies; atomic write."""
    cube = np.asarray(image, dtype=np.float32)
    if cube.ndim != 3 or cube.shape[0] != len(BANDS):
        raise ValueError(f"image must be ({len(BANDS)}, H, W), got shape {cube.shape}")
    if not (is_real(ra) and is_real(dec) and -90 <= dec <= 90):
        raise ValueError(f"bad position ra={ra!r}, dec={dec!r}")
    if not is_real(pixscale) or pixscale <= 0:
        raise ValueError(f"pixscale must be positive (got {pixscale!r})")
    payload = legacy_fits_bytes(cube, float(ra), float(dec), float(pixscale), BANDS)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def _assign_classes(config: SimulationConfig) -> list[str]:
    """Exact class counts (rare ones evenly split), shuffled by a dedicated stream."""
    n = config.n_objects
    n_rare = min(n, int(math.floor(config.rare_fraction * n + 0.5)))

    def split(total: int, names: tuple[str, ...]) -> list[str]:
        base, extra = divmod(total, len(names))
        return [name for i, name in enumerate(names) for _ in range(base + (i < extra))]

    labels = split(n - n_rare, CLASSES) + split(n_rare, RARE_CLASSES)
    order = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0,)))
    return [labels[j] for j in order.permutation(n)]


def _sky_position(rng: np.random.Generator) -> tuple[float, float]:
    """A position uniform on the sphere in RA 150-200, Dec 0-30 (inside DECaLS)."""
    ra = rng.uniform(150.0, 200.0)
    dec = math.degrees(math.asin(rng.uniform(0.0, math.sin(math.radians(30.0)))))
    return float(ra), dec


def simulate_dataset(out_dir: str | os.PathLike[str], config: SimulationConfig) -> pd.DataFrame:
    """Write out_dir/cutouts/<id>.fits for every object and return the catalogue
    (also written atomically to out_dir/catalogue.csv) with columns:
    id, file (path relative to out_dir, e.g. 'cutouts/sim000123.fits'), ra, dec,
    morphology (one of CLASSES or RARE_CLASSES), is_rare (0/1), plus the true parameters
    (see ``CATALOGUE_COLUMNS``)."""
    out = Path(out_dir)
    rows = []
    for i, kind in enumerate(_assign_classes(config)):
        # Object i's own stream: its pixels do not depend on the objects before it.
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1, i)))
        ra, dec = _sky_position(rng)
        image, params = simulate_galaxy(kind, rng, config.image_size, pixscale=config.pixscale)
        obj_id = f"sim{i:06d}"
        rel = f"cutouts/{obj_id}.fits"
        write_legacy_fits(out / rel, image, ra, dec, config.pixscale)
        rows.append({"id": obj_id, "file": rel, "ra": ra, "dec": dec, "morphology": kind,
                     "is_rare": int(kind in RARE_CLASSES), **params})
    catalogue = pd.DataFrame(rows, columns=list(CATALOGUE_COLUMNS))
    write_csv_atomic(out / "catalogue.csv", catalogue)
    return catalogue


# ----------------------------------------------------------------------------------------
# The source type's entry points (see :mod:`byol_discovery.sources.registry`)
# ----------------------------------------------------------------------------------------


def check_settings(source: Mapping[str, Any], seed: int) -> SimulationConfig:
    """The source's settings as a :class:`SimulationConfig` (the workflow's seed unless it names one)."""
    return from_mapping(SimulationConfig, {"seed": seed, **source_options(source)}, "source")


def shards(config: SimulationConfig) -> int:
    return 0


def acquire(config: SimulationConfig, out_dir: str | Path, seed: int, log: logging.Logger) -> None:
    catalogue = simulate_dataset(out_dir, config)
    log.info("simulated %d optical cutouts (%d planted rarities) in %s", len(catalogue),
             int(catalogue["is_rare"].sum()), out_dir)

"""The classes: how each kind of galaxy and artefact is drawn on the canvas."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from byol_discovery.sources.simulated.canvas import Canvas
from byol_discovery.sources.simulated.constants import PSF_BETA, Transmission
from byol_discovery.sources.simulated.photometry import (
    colour_fluxes,
    distance,
    inclined_q,
    mag_to_flux,
    pa_to_theta,
    size_arcsec,
)
from byol_discovery.sources.simulated.profiles import Arms, arc_tail, arm_pattern, bar, line, ring, sersic, spiral_arms


@dataclass
class _Built:
    """What a class builder drew: catalogue parameters and the main object's grz flux."""

    params: dict[str, object]
    fluxes: np.ndarray


def _elliptical(cv: Canvas, rng: np.random.Generator, cx: float, cy: float,
                ps: float) -> _Built:
    """A smooth, red, de Vaucouleurs-like spheroid."""
    r_mag = rng.uniform(15.5, 18.0)
    z, kpc, m_abs = distance(rng, r_mag, -21.6, 0.5)
    re_as = size_arcsec(rng, kpc, 4.0, 0.24, m_abs, -21.6, 1.2, 5.0)  # R ~ L^0.6
    n, q, pa = rng.uniform(3.0, 5.5), rng.uniform(0.55, 1.0), rng.uniform(0.0, 180.0)
    fl = colour_fluxes(mag_to_flux(r_mag), rng.normal(0.78, 0.04), rng.normal(0.46, 0.04))
    cv.add(sersic(cx, cy, re_as / ps, n, q, pa_to_theta(pa)), fl, centre=(cx, cy), core=True)
    return _Built(dict(half_light_radius_arcsec=re_as, axis_ratio=q, position_angle_deg=pa,
                       sersic_n=n, redshift=z, bulge_fraction=1.0), fl)


def _spiral(cv: Canvas, rng: np.random.Generator, cx: float, cy: float,
            ps: float) -> _Built:
    """Exponential disc with bulge, optional bar, logarithmic arms and blue knots."""
    r_mag = rng.uniform(15.5, 18.0)
    z, kpc, m_abs = distance(rng, r_mag, -21.3, 0.5)
    re = size_arcsec(rng, kpc, 5.5, 0.12, m_abs, -21.3, 1.5, 5.0) / ps  # R ~ L^0.3
    n, q, pa = rng.uniform(0.8, 1.3), inclined_q(rng, 0.15, 0.35), rng.uniform(0.0, 180.0)
    theta = pa_to_theta(pa)
    bt = rng.uniform(0.05, 0.35)
    has_bar = bool(rng.random() < 0.3)
    f_bar = rng.uniform(0.06, 0.12) if has_bar else 0.0
    f_arm, f_knot = rng.uniform(0.3, 0.6), rng.uniform(0.04, 0.1)
    total = mag_to_flux(r_mag)
    f_disc = total * (1.0 - bt - f_bar)
    c_disc = colour_fluxes(1.0, rng.normal(0.52, 0.05), rng.normal(0.33, 0.04))
    c_bulge = colour_fluxes(1.0, rng.normal(0.74, 0.04), rng.normal(0.44, 0.04))
    c_arm = colour_fluxes(1.0, rng.normal(0.25, 0.06), rng.normal(0.14, 0.05))
    c_knot = colour_fluxes(1.0, rng.normal(0.12, 0.06), rng.normal(0.05, 0.05))

    parts = [c_disc * f_disc * (1.0 - f_arm - f_knot), c_bulge * total * bt,
             c_arm * f_disc * f_arm, c_knot * f_disc * f_knot]
    cv.add(sersic(cx, cy, re, n, q, theta), parts[0])
    re_b = max(rng.uniform(0.12, 0.3) * re, 0.35 / ps)
    cv.add(sersic(cx, cy, re_b, rng.uniform(1.5, 4.0), rng.uniform(0.7, 1.0),
                   theta + rng.normal(0.0, 0.2)), parts[1], centre=(cx, cy), core=True)
    r_in = max(2.0 * re_b, 0.3 * re)
    phi_bar = rng.uniform(0.0, math.pi)
    if has_bar:
        length = rng.uniform(0.35, 0.55) * re
        bar_flux = c_bulge * total * f_bar
        cv.add(bar(cx, cy, length, rng.uniform(0.25, 0.35), phi_bar, q, theta), bar_flux,
               normalise=True)
        parts.append(bar_flux)
        r_in = max(r_in, length)
    m = int(rng.choice([2, 2, 2, 3, 4]))
    pitch = rng.uniform(10.0, 30.0)
    hand = int(rng.choice([-1, 1]))
    sharp = rng.uniform(2.0, 4.0)
    tan_p = math.tan(math.radians(pitch))
    # Start an arm at the bar's end (or anywhere when there is no bar).
    phase0 = (m * (hand * math.log(r_in / re) / tan_p - phi_bar)) if has_bar \
        else rng.uniform(0.0, 2 * math.pi)
    arms = Arms(m=m, tan_pitch=tan_p, hand=hand, phase0=phase0, sharpness=sharp,
                 r_ref=re, r_in=r_in)
    cv.add(spiral_arms(cx, cy, re, n, q, theta, arms), parts[2], normalise=True)
    _add_knots(cv, rng, cx, cy, re, q, theta, arms, parts[3])
    return _Built(dict(half_light_radius_arcsec=re * ps, axis_ratio=q, position_angle_deg=pa,
                       sersic_n=n, redshift=z, bulge_fraction=bt, n_arms=m,
                       arm_pitch_deg=pitch, has_bar=int(has_bar)), np.sum(parts, axis=0))


def _add_knots(cv: Canvas, rng: np.random.Generator, cx: float, cy: float, re: float,
               q: float, theta: float, arms: Arms, flux: np.ndarray) -> None:
    """Star-forming clumps scattered along the arm crests of an exponential disc."""
    k = int(rng.integers(8, 31))
    rho = rng.gamma(2.0, re / 1.678, size=6 * k)  # radii of an exponential disc's light
    phi = rng.uniform(0.0, 2 * math.pi, size=6 * k)
    # On the arms and within the visible disc (outlying knots would pass for satellites).
    keep = (rng.random(6 * k) < arm_pattern(rho, phi, arms)) & (rho < 2.5 * re)
    rho, phi = rho[keep][:k], phi[keep][:k]
    if rho.size == 0:
        return
    weights = rng.lognormal(0.0, 0.6, size=rho.size)
    u, v = rho * np.cos(phi), q * rho * np.sin(phi)
    c, s = math.cos(theta), math.sin(theta)
    cv.add_points(cx + u * c - v * s, cy + u * s + v * c,
                  flux[:, None] * (weights / weights.sum())[None, :])


def _edge_on(cv: Canvas, rng: np.random.Generator, cx: float, cy: float,
             ps: float) -> _Built:
    """A thin + thick disc seen edge-on, a small bulge and often a dust lane."""
    r_mag = rng.uniform(15.5, 18.0)
    z, kpc, m_abs = distance(rng, r_mag, -21.0, 0.5)
    re = size_arcsec(rng, kpc, 5.5, 0.12, m_abs, -21.0, 1.8, 5.0) / ps
    n, q, pa = rng.uniform(0.8, 1.2), rng.uniform(0.08, 0.2), rng.uniform(0.0, 180.0)
    theta = pa_to_theta(pa)
    bt, f_thick = rng.uniform(0.05, 0.3), rng.uniform(0.2, 0.35)
    total = mag_to_flux(r_mag)
    c_disc = colour_fluxes(1.0, rng.normal(0.6, 0.05), rng.normal(0.37, 0.04))
    c_bulge = colour_fluxes(1.0, rng.normal(0.76, 0.04), rng.normal(0.45, 0.04))
    has_dust = bool(rng.random() < 0.65)
    transmission = _dust_lane(rng, cx, cy, re, q, theta) if has_dust else None
    comps = [
        (sersic(cx, cy, re, n, q, theta), c_disc * total * (1 - bt) * (1 - f_thick), False),
        (sersic(cx, cy, 1.1 * re, 1.0, rng.uniform(0.3, 0.45), theta),
         c_disc * total * (1 - bt) * f_thick, False),
        (sersic(cx, cy, rng.uniform(0.2, 0.35) * re, rng.uniform(1.0, 3.0),
                 rng.uniform(0.6, 0.9), theta), c_bulge * total * bt, True),
    ]
    # Drawn on a canvas of its own, then scaled so that r_mag is the magnitude seen through
    # the dust (the sample's magnitude range is an observed one); colours keep the reddening.
    own = Canvas(cv.size, cv.margin)
    seen = np.zeros(3)
    for profile, fl, core in comps:
        seen += fl * own.add(profile, fl, centre=(cx, cy), core=core, transmission=transmission)
    scale = total / seen[1]
    cv.data += scale * own.data
    seen *= scale
    return _Built(dict(half_light_radius_arcsec=re * ps, axis_ratio=q, position_angle_deg=pa,
                       sersic_n=n, redshift=z, bulge_fraction=bt, dust_lane=int(has_dust)), seen)


def _dust_lane(rng: np.random.Generator, cx: float, cy: float, re: float, q: float,
               theta: float) -> Transmission:
    """Midplane dust: optical depth ~ 1/wavelength (g most opaque), fading past the disc."""
    # Edge-on midplane optical depths are large (several in g), and the lane must be
    # at least ~a PSF sigma wide to survive the seeing, as the visible ones in DECaLS are.
    tau = rng.uniform(1.5, 4.0) * np.array([1.0, 0.75, 0.5])[:, None, None]
    thickness = q * re
    width = max(1.2, rng.uniform(0.5, 0.9) * thickness)
    # Not exactly edge-on: the lane sits a little to the near side of the midplane.
    offset = rng.uniform(-0.3, 0.3) * thickness
    extent = rng.uniform(1.3, 2.0) * re
    c, s = math.cos(theta), math.sin(theta)
    cache: dict[tuple, np.ndarray] = {}

    def transmission(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # Every component of the galaxy asks for the same grid: compute it once.
        key = (x.shape, y.shape, float(x.flat[0]), float(y.flat[0]))
        if key not in cache:
            dx, dy = x - cx, y - cy
            along2 = ((dx * c + dy * s) / extent) ** 2
            across = (-dx * s + dy * c - offset) / width
            depth = np.exp(-0.5 * (across * across + along2 * along2))
            cache[key] = np.exp(-tau * depth[None])
        return cache[key]

    return transmission


def _merger(cv: Canvas, rng: np.random.Generator, cx: float, cy: float,
            ps: float) -> _Built:
    """Two overlapping galaxies with curved tidal tails (an S or a single plume)."""
    r_mag = rng.uniform(15.5, 17.5)
    z, kpc, m_abs = distance(rng, r_mag, -21.6, 0.5)
    re1 = size_arcsec(rng, kpc, 4.5, 0.15, m_abs, -21.6, 1.2, 3.5) / ps
    ratio = rng.uniform(0.3, 1.0)  # secondary / primary r flux
    f_tail = rng.uniform(0.1, 0.25)
    total = mag_to_flux(r_mag)
    f1 = total * (1.0 - f_tail) / (1.0 + ratio)
    re2 = max(re1 * math.sqrt(ratio) * rng.uniform(0.8, 1.2), 0.8 / ps)
    sep = rng.uniform(1.0, 2.5) * re1
    ang = rng.uniform(0.0, 2 * math.pi)
    x2, y2 = cx + sep * math.cos(ang), cy + sep * math.sin(ang)
    n1, q1, pa = rng.uniform(0.8, 4.5), rng.uniform(0.45, 1.0), rng.uniform(0.0, 180.0)
    parts = []
    for (gx, gy, re_k, n_k, q_k, th_k, f_k) in (
            (cx, cy, re1, n1, q1, pa_to_theta(pa), f1),
            (x2, y2, re2, rng.uniform(0.8, 4.5), rng.uniform(0.4, 1.0),
             rng.uniform(0.0, math.pi), f1 * ratio)):
        fl = colour_fluxes(f_k, rng.normal(0.62, 0.1), rng.normal(0.4, 0.05))
        cv.add(sersic(gx, gy, re_k, n_k, q_k, th_k), fl, centre=(gx, gy), core=True)
        parts.append(fl)
    n_tails = 1 if rng.random() < 0.35 else 2
    sense = int(rng.choice([-1, 1]))  # both tails curl the same way: an S shape
    for k in range(n_tails):
        gx, gy, ox, oy, re_k = ((cx, cy, x2, y2, re1) if k == 0 else (x2, y2, cx, cy, re2))
        away = math.atan2(gy - oy, gx - ox) + rng.normal(0.0, 0.6)
        start = (gx + 0.8 * re_k * math.cos(away), gy + 0.8 * re_k * math.sin(away))
        launch = away + sense * rng.uniform(0.2, 0.6)
        tail = arc_tail(*start, launch, sense, rng.uniform(1.5, 3.5) * re1,
                         rng.uniform(0.8, 1.6), max(1.2, rng.uniform(0.2, 0.4) * re1))
        fl = colour_fluxes(total * f_tail / n_tails, rng.normal(0.45, 0.06),
                            rng.normal(0.28, 0.05))
        cv.add(tail, fl, normalise=True)
        parts.append(fl)
    return _Built(dict(half_light_radius_arcsec=re1 * ps, axis_ratio=q1, position_angle_deg=pa,
                       sersic_n=n1, redshift=z, companion_sep_arcsec=sep * ps,
                       companion_flux_ratio=ratio, n_tidal_tails=n_tails),
                  np.sum(parts, axis=0))


def _ring_galaxy(cv: Canvas, rng: np.random.Generator, cx: float, cy: float,
                 ps: float) -> _Built:
    """A collisional ring: bright clumpy blue ring, faint off-centre nucleus, maybe an intruder."""
    r_mag = rng.uniform(15.5, 17.8)
    z, kpc, _ = distance(rng, r_mag, -21.0, 0.5)
    radius = float(np.clip(rng.uniform(4.0, 10.0) / kpc, 2.5, 5.5)) / ps
    q, pa = inclined_q(rng, 0.1, 0.55), rng.uniform(0.0, 180.0)
    theta = pa_to_theta(pa)
    f_nuc, f_inner, f_knot = rng.uniform(0.04, 0.2), rng.uniform(0.0, 0.1), rng.uniform(0.1, 0.25)
    total = mag_to_flux(r_mag)
    parts = [colour_fluxes(total * (1 - f_nuc - f_inner - f_knot), rng.normal(0.3, 0.06),
                            rng.normal(0.18, 0.05))]
    width = rng.uniform(0.08, 0.18) * radius
    asym, asym_angle = rng.uniform(0.2, 0.7), rng.uniform(0.0, 2 * math.pi)
    cv.add(ring(cx, cy, radius, width, q, theta, asym, asym_angle), parts[0], normalise=True)
    # Knots along the ring, more on its bright side.
    k = int(rng.integers(6, 21))
    phi = rng.uniform(0.0, 2 * math.pi, size=4 * k)
    keep = rng.random(4 * k) * (1 + asym) < 1 + asym * np.cos(phi - asym_angle)
    phi = phi[keep][:k]
    rho = radius + rng.normal(0.0, 0.5 * width, size=phi.size)
    weights = rng.lognormal(0.0, 0.5, size=phi.size)
    u, v = rho * np.cos(phi), q * rho * np.sin(phi)
    c, s = math.cos(theta), math.sin(theta)
    knot_flux = colour_fluxes(total * f_knot, rng.normal(0.15, 0.06), rng.normal(0.08, 0.05))
    cv.add_points(cx + u * c - v * s, cy + u * s + v * c,
                  knot_flux[:, None] * (weights / max(weights.sum(), 1e-12))[None, :])
    parts.append(knot_flux)
    # The nucleus: small, red and displaced from the ring's centre.
    off, off_ang = rng.uniform(0.0, 0.35) * radius, rng.uniform(0.0, 2 * math.pi)
    nx, ny = cx + off * math.cos(off_ang), cy + off * math.sin(off_ang)
    nuc = colour_fluxes(total * f_nuc, rng.normal(0.7, 0.05), rng.normal(0.42, 0.04))
    cv.add(sersic(nx, ny, rng.uniform(0.3, 0.8) / ps, rng.uniform(1.0, 2.5),
                   rng.uniform(0.6, 1.0), theta), nuc, centre=(nx, ny), core=True)
    inner = colour_fluxes(total * f_inner, rng.normal(0.55, 0.05), rng.normal(0.33, 0.04))
    cv.add(sersic(cx, cy, 0.6 * radius, 1.0, q, theta), inner)
    parts += [nuc, inner]
    params: dict[str, object] = dict(half_light_radius_arcsec=radius * ps, axis_ratio=q,
                                     position_angle_deg=pa, redshift=z,
                                     ring_radius_arcsec=radius * ps, bulge_fraction=f_nuc)
    if rng.random() < 0.35:  # the intruder that punched through the disc
        dist, d_ang = rng.uniform(1.4, 2.2) * radius, rng.uniform(0.0, 2 * math.pi)
        ratio = rng.uniform(0.1, 0.3)
        ix, iy = cx + dist * math.cos(d_ang), cy + dist * math.sin(d_ang)
        fl = colour_fluxes(total * ratio, rng.normal(0.75, 0.04), rng.normal(0.45, 0.04))
        re_i = rng.uniform(0.5, 1.2) / ps
        cv.add(sersic(ix, iy, re_i, rng.uniform(2.0, 4.0), rng.uniform(0.6, 1.0),
                       rng.uniform(0.0, math.pi)), fl, centre=(ix, iy), half=8 * re_i + 4,
               core=True)
        params.update(companion_sep_arcsec=dist * ps, companion_flux_ratio=ratio)
    return _Built(params, np.sum(parts, axis=0))


BUILDERS: dict[str, Callable[[Canvas, np.random.Generator, float, float, float], _Built]] = {
    "elliptical": _elliptical,
    "spiral": _spiral,
    "edge_on": _edge_on,
    "merger": _merger,
    "ring": _ring_galaxy,
}


def field_objects(cv: Canvas, rng: np.random.Generator, cx: float, cy: float,
                   ps: float) -> tuple[int, int]:
    """Unrelated stars and small background galaxies anywhere in the frame (not on the centre)."""
    n_stars, n_gals = int(rng.poisson(1.0)), int(rng.poisson(1.5))
    pos = rng.uniform(cv.lo, cv.hi - 1, size=(4 * (n_stars + n_gals) + 4, 2))
    pos = pos[np.hypot(pos[:, 0] - cx, pos[:, 1] - cy) > 10.0]
    pos = pos[: n_stars + n_gals]
    n_stars = min(n_stars, len(pos))
    stars, gals = pos[:n_stars], pos[n_stars:]
    if n_stars:
        mags = 17.0 + 6.0 * np.sqrt(rng.random(n_stars))  # counts rise towards faint stars
        g_r = rng.uniform(0.3, 1.5, size=n_stars)
        r_z = 0.15 + 0.5 * g_r + rng.normal(0.0, 0.05, size=n_stars)
        fl = np.stack([colour_fluxes(mag_to_flux(m), a, b) for m, a, b in zip(mags, g_r, r_z, strict=True)])
        cv.add_points(stars[:, 0], stars[:, 1], fl.T)
    for gx, gy in gals:
        mag = 19.0 + 4.5 * rng.random() ** 0.6
        re = rng.uniform(0.3, 1.2) / ps
        fl = colour_fluxes(mag_to_flux(mag), rng.uniform(0.6, 1.6), rng.uniform(0.35, 0.9))
        cv.add(sersic(gx, gy, re, rng.uniform(0.8, 3.0), rng.uniform(0.3, 1.0),
                       rng.uniform(0.0, math.pi)), fl, centre=(gx, gy), half=6 * re + 4,
               core=True)
    return n_stars, len(gals)


def satellite_trail(cv: Canvas, rng: np.random.Generator) -> None:
    """A straight, slightly defocused streak across the whole frame, usually in one band."""
    mid = (cv.size - 1) / 2.0
    angle = rng.uniform(0.0, math.pi)
    offset = rng.uniform(-0.3, 0.3) * cv.size
    u = rng.random()
    n_bands = 1 if u < 0.6 else (2 if u < 0.8 else 3)
    bands = rng.choice(3, size=n_bands, replace=False)
    per_length = np.zeros(3)
    # nanomaggies per pixel of length: peak 0.05-1 nmgy/px after the PSF, log-uniform
    per_length[bands] = np.exp(rng.uniform(math.log(0.3), math.log(6.0), size=n_bands))
    cv.add(line(mid, mid, angle, offset, rng.uniform(0.8, 1.5)), per_length)


@dataclass(frozen=True)
class BrightStar:
    """A saturated foreground star near the galaxy."""

    x: float
    y: float
    fluxes: np.ndarray
    spike_angle: float
    spike_fraction: float
    spike_scale: float
    saturation: np.ndarray
    bleed_width: int


def draw_bright_star(rng: np.random.Generator, size: int, cx: float, cy: float) -> BrightStar:
    """Where and how bright the saturated star is."""
    dist = rng.uniform(0.22, 0.4) * size
    ang = rng.uniform(0.0, 2 * math.pi)
    x = float(np.clip(cx + dist * math.cos(ang), 4, size - 5))
    y = float(np.clip(cy + dist * math.sin(ang), 4, size - 5))
    g_r = rng.uniform(0.3, 1.2)
    fl = colour_fluxes(mag_to_flux(rng.uniform(10.0, 13.0)), g_r, 0.15 + 0.5 * g_r)
    return BrightStar(x=x, y=y, fluxes=fl, spike_angle=rng.uniform(0.0, math.pi / 2),
                       spike_fraction=rng.uniform(0.004, 0.01), spike_scale=rng.uniform(3.0, 6.0),
                       saturation=rng.uniform(25.0, 80.0, size=3),
                       bleed_width=int(rng.integers(1, 3)))


def bright_star_model(star: BrightStar, size: int, fwhm_px: np.ndarray) -> np.ndarray:
    """PSF core, broad halo and four diffraction spikes of the star (already blurred)."""
    x = np.arange(size, dtype=float)
    dx, dy = x[None, :] - star.x, x[:, None] - star.y
    r2 = dx * dx + dy * dy
    model = np.empty((3, size, size))
    for b in range(3):
        alpha = fwhm_px[b] / (2.0 * math.sqrt(2.0 ** (1.0 / PSF_BETA) - 1.0))
        core = (PSF_BETA - 1) / (math.pi * alpha**2) * (1 + r2 / alpha**2) ** (-PSF_BETA)
        a_halo, b_halo = 3.0 * fwhm_px[b], 2.2
        halo = (b_halo - 1) / (math.pi * a_halo**2) * (1 + r2 / a_halo**2) ** (-b_halo)
        spikes = np.zeros_like(r2)
        sigma_t = max(0.7, 0.15 * fwhm_px[b])
        for k in range(2):  # two full lines = four spikes
            ang = star.spike_angle + k * math.pi / 2
            along = dx * math.cos(ang) + dy * math.sin(ang)
            across = -dx * math.sin(ang) + dy * math.cos(ang)
            spikes += (np.exp(-0.5 * (across / sigma_t) ** 2) / (math.sqrt(2 * math.pi) * sigma_t)
                       / (1 + (along / star.spike_scale) ** 2) / (math.pi * star.spike_scale))
        frac = star.spike_fraction
        model[b] = star.fluxes[b] * ((0.9 - 2 * frac) * core + 0.1 * halo + frac * spikes)
    return model


def saturate(image: np.ndarray, model: np.ndarray, star: BrightStar) -> None:
    """Flat-topped saturated core and a bleed trail along the columns (in place)."""
    size = image.shape[-1]
    col = round(star.x)
    row = round(star.y)
    for b in range(3):
        level = star.saturation[b]
        hot = model[b] > level
        n_hot = int(hot.sum())
        image[b][hot] = level
        if n_hot:
            half = min(size, int(0.5 * n_hot ** 0.75) + 2)  # more excess charge, longer bleed
            c0, c1 = max(0, col - star.bleed_width // 2), min(size, col + star.bleed_width // 2 + 1)
            image[b, max(0, row - half):min(size, row + half + 1), c0:c1] = level

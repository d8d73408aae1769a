"""The canvas: the pre-PSF scene on the frame plus a margin, and the PSF convolution."""

from __future__ import annotations

import math

import numpy as np

from byol_discovery.sources.simulated.constants import CORE_HALF, CORE_OS, MARGIN, OS, PSF_BETA, Profile, Transmission


def _subsamples(lo: int, hi: int, factor: int) -> np.ndarray:
    """Sub-pixel centres for pixels lo..hi-1 (pixel i covers [i - 0.5, i + 0.5])."""
    return lo + (np.arange((hi - lo) * factor) + 0.5) / factor - 0.5


def _bin(a: np.ndarray, factor: int) -> np.ndarray:
    """Average factor x factor blocks over the last two axes."""
    # Strided slices are ~10x faster than reshape(...).mean over two non-adjacent axes.
    total = np.zeros(a.shape[:-2] + (a.shape[-2] // factor, a.shape[-1] // factor))
    for i in range(factor):
        for j in range(factor):
            total += a[..., i::factor, j::factor]
    return total / (factor * factor)


class Canvas:
    """grz flux per pixel before the PSF, on the frame plus ``MARGIN`` pixels each side."""

    def __init__(self, size: int, margin: int = MARGIN) -> None:
        self.size, self.margin = size, margin
        self.lo, self.hi = -margin, size + margin
        self.data = np.zeros((3, size + 2 * margin, size + 2 * margin))

    def _box(self, centre: tuple[float, float] | None,
             half: float | None) -> tuple[int, int, int, int] | None:
        """Pixel box [x0, x1) x [y0, y1) in frame coordinates, clipped to the canvas."""
        if centre is None or half is None:
            return self.lo, self.hi, self.lo, self.hi
        cx, cy = centre
        x0, x1 = max(self.lo, math.floor(cx - half)), min(self.hi, math.ceil(cx + half) + 1)
        y0, y1 = max(self.lo, math.floor(cy - half)), min(self.hi, math.ceil(cy + half) + 1)
        return None if x0 >= x1 or y0 >= y1 else (x0, x1, y0, y1)

    def add(self, profile: Profile, fluxes: np.ndarray, *,
            centre: tuple[float, float] | None = None, half: float | None = None,
            core: bool = False, normalise: bool = False,
            transmission: Transmission | None = None) -> np.ndarray:
        """Add ``fluxes[band]`` times the pixel-averaged profile; return the transmitted share.

        centre/half restrict the work to a box (small objects); ``core`` re-renders the
        pixels round ``centre`` finely; ``normalise`` scales a non-analytic profile to unit
        sum on the canvas; ``transmission`` (3 bands) dims the light, e.g. a dust lane.
        """
        box = self._box(centre, half)
        if box is None:
            return np.zeros(3)
        x0, x1, y0, y1 = box
        xs, ys = _subsamples(x0, x1, OS)[None, :], _subsamples(y0, y1, OS)[:, None]
        fine = profile(xs, ys)
        unit = _bin(fine, OS)
        if core and centre is not None:
            self._refine_core(unit, profile, centre, box)
        if normalise:
            total = unit.sum()
            unit = unit / total if total > 0 else unit
        sl = (slice(None), slice(y0 - self.lo, y1 - self.lo), slice(x0 - self.lo, x1 - self.lo))
        if transmission is None:
            self.data[sl] += fluxes[:, None, None] * unit
            return np.ones(3)
        # Light-weighted transmission per pixel, from the same sub-pixels as the light.
        kept = _bin(fine[None] * transmission(xs, ys), OS)
        binned = _bin(fine, OS)
        factor = np.divide(kept, binned, out=np.ones_like(kept), where=binned > 0)
        dimmed = unit[None] * factor
        self.data[sl] += fluxes[:, None, None] * dimmed
        total = unit.sum()
        return dimmed.sum(axis=(1, 2)) / total if total > 0 else np.ones(3)

    @staticmethod
    def _refine_core(unit: np.ndarray, profile: Profile, centre: tuple[float, float],
                     box: tuple[int, int, int, int]) -> None:
        """Replace the pixels round a cusp by a 10x10 sub-pixel average (in place)."""
        x0, x1, y0, y1 = box
        ix, iy = round(centre[0]), round(centre[1])
        cx0, cx1 = max(x0, ix - CORE_HALF), min(x1, ix + CORE_HALF + 1)
        cy0, cy1 = max(y0, iy - CORE_HALF), min(y1, iy + CORE_HALF + 1)
        if cx0 >= cx1 or cy0 >= cy1:
            return
        fine = profile(_subsamples(cx0, cx1, CORE_OS)[None, :],
                       _subsamples(cy0, cy1, CORE_OS)[:, None])
        unit[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = _bin(fine, CORE_OS)

    def add_points(self, x: np.ndarray, y: np.ndarray, fluxes: np.ndarray) -> None:
        """Add point sources (fluxes: (3, K)), shared bilinearly among 4 pixels."""
        i0, j0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = x - i0, y - j0
        side = self.data.shape[-1]
        for di, dj, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                            (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            col, row = i0 + di - self.lo, j0 + dj - self.lo
            ok = (col >= 0) & (col < side) & (row >= 0) & (row < side)
            for band in range(3):
                np.add.at(self.data[band], (row[ok], col[ok]), (fluxes[band] * wgt)[ok])

    def observed(self, kernels: np.ndarray) -> np.ndarray:
        """The frame after PSF convolution: (3, size, size)."""
        blurred = _convolve(self.data, kernels)
        m = self.margin
        return blurred[:, m:m + self.size, m:m + self.size]


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast FFT length)."""
    best = 2 ** math.ceil(math.log2(n))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


def _convolve(data: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Per-band linear ('same' size) convolution by FFT with zero padding."""
    side, k = data.shape[-1], kernels.shape[-1]
    length = _fast_len(side + k - 1)
    spectrum = np.fft.rfft2(data, s=(length, length)) * np.fft.rfft2(kernels, s=(length, length))
    full = np.fft.irfft2(spectrum, s=(length, length))
    h = k // 2
    return full[:, h:h + side, h:h + side]


def moffat_kernel(fwhm_px: float, half: int, beta: float = PSF_BETA) -> np.ndarray:
    """Pixel-integrated (4x4 sub-pixels) Moffat PSF, unit sum."""
    alpha = fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    s = _subsamples(-half, half + 1, 4)
    kernel = _bin((1.0 + (s[None, :] ** 2 + s[:, None] ** 2) / alpha**2) ** (-beta), 4)
    return kernel / kernel.sum()

"""Batch augmentations for BYOL views, run on whatever device the batch lives on.

The published setup augmented with kornia: random rotation 0-360 deg followed by a centre
crop that removes the rotated corners, horizontal and vertical flips, a random resized
crop and a Gaussian blur. An intensity power (off in that setup) changes each view's
brightness distribution, which rotations and flips leave exactly as it was. Here every
geometric step of one sample is folded into a single 2x3 affine matrix, so a whole batch
is warped by one ``affine_grid``/``grid_sample`` call (one interpolation, no per-sample
Python loop), and the blur is one grouped separable convolution with a per-sample kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Columns of the per-sample uniform draws. The layout is fixed whatever the config, so a
# given generator state always maps to the same random numbers for every operation.
_ANGLE, _ROT_ON, _HFLIP, _VFLIP, _CROP_ON, _CROP_SCALE, _CROP_RATIO, _CROP_X, _CROP_Y = range(9)
_BLUR_ON, _BLUR_SIGMA = 9, 10
_POWER_ON, _POWER = 11, 12
_N_DRAWS = 13

_PADDING_MODES = ("zeros", "border", "reflection")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _check_range(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(f"{name} must be an ordered pair within [{low}, {high}], got {pair}")


@dataclass(frozen=True)
class AugmentationConfig:
    """Which augmentations to apply, and their probabilities and ranges.

    Defaults follow the paper author's code (Mohale & Lochner 2024, Koketsoc137/Feature_extraction).
    ``rotation_crop`` zooms each rotated sample by the largest factor that keeps the
    rotated image's corners out of the frame (1 at 0 deg, sqrt(2) at 45 deg for squares).
    ``blur_kernel_size`` None means 2 * ceil(3 * max sigma) + 1 (the reference notebook
    used a 3-pixel kernel, which truncates a sigma of 1-2 to a much weaker blur).
    ``power_p``: the probability that a view's values (0 to 1) are raised to a power drawn
    log-uniformly from ``power_range``, so the network cannot match two views by their
    brightness distribution alone (on radio images, the shortcut it otherwise takes).
    """

    rotate: bool = True
    rotation_degrees: tuple[float, float] = (0.0, 360.0)
    rotation_p: float = 1.0
    rotation_crop: bool = True
    flip: bool = True
    horizontal_flip_p: float = 0.5
    vertical_flip_p: float = 0.5
    crop_p: float = 0.7
    crop_scale: tuple[float, float] = (0.7, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (1.0, 2.0)
    blur_kernel_size: int | None = None
    padding_mode: str = "reflection"
    power_p: float = 0.0
    power_range: tuple[float, float] = (2.0 / 3.0, 1.5)

    def __post_init__(self) -> None:
        for name in ("rotation_p", "horizontal_flip_p", "vertical_flip_p", "crop_p", "blur_p", "power_p"):
            _check_probability(name, getattr(self, name))
        _check_range("rotation_degrees", self.rotation_degrees, -3600.0, 3600.0)
        _check_range("crop_scale", self.crop_scale, 1e-3, 1.0)
        _check_range("crop_ratio", self.crop_ratio, 1e-3, 1e3)
        _check_range("blur_sigma", self.blur_sigma, 1e-3, 1e3)
        _check_range("power_range", self.power_range, 1e-2, 1e2)
        if self.blur_kernel_size is not None and (
            self.blur_kernel_size < 1 or self.blur_kernel_size % 2 == 0
        ):
            raise ValueError(f"blur_kernel_size must be odd and >= 1, got {self.blur_kernel_size}")
        if self.padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {self.padding_mode!r}")

    @classmethod
    def disabled(cls) -> AugmentationConfig:
        """A configuration that returns every batch unchanged."""
        return cls(rotate=False, flip=False, crop_p=0.0, blur_p=0.0, power_p=0.0)

    @property
    def geometric(self) -> bool:
        """Whether any warp (rotation, flip, crop) can happen."""
        rotation = self.rotate and self.rotation_p > 0
        flips = self.flip and (self.horizontal_flip_p > 0 or self.vertical_flip_p > 0)
        return rotation or flips or self.crop_p > 0

    def kernel_size(self) -> int:
        """Blur kernel length in pixels (odd)."""
        if self.blur_kernel_size is not None:
            return self.blur_kernel_size
        return 2 * math.ceil(3.0 * self.blur_sigma[1]) + 1


def _uniform(u: Tensor, low: float, high: float) -> Tensor:
    return low + (high - low) * u


def _rotation_matrices(cfg: AugmentationConfig, u: Tensor, height: int, width: int) -> Tensor:
    """(B, 2, 2) rotation (plus corner-removing zoom) in normalised grid coordinates."""
    batch = u.shape[0]
    eye = torch.eye(2, dtype=u.dtype, device=u.device).expand(batch, 2, 2)
    if not (cfg.rotate and cfg.rotation_p > 0):
        return eye
    on = u[:, _ROT_ON] < cfg.rotation_p
    angle = torch.deg2rad(_uniform(u[:, _ANGLE], *cfg.rotation_degrees))
    angle = torch.where(on, angle, torch.zeros_like(angle))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Rotate in pixel units (normalised x and y have different scales when H != W).
    half_w, half_h = width / 2.0, height / 2.0
    rot = torch.stack(
        [
            torch.stack([cos, -sin * half_h / half_w], dim=-1),
            torch.stack([sin * half_w / half_h, cos], dim=-1),
        ],
        dim=-2,
    )
    if cfg.rotation_crop:
        # Largest zoom-out factor k such that the k-scaled frame fits inside the rotated
        # image: both rotated half-extents of the frame must stay within the image.
        c, s = cos.abs(), sin.abs()
        k = torch.minimum(width / (width * c + height * s), height / (width * s + height * c))
        rot = rot * k[:, None, None]
    return rot


def _flip_diagonal(cfg: AugmentationConfig, u: Tensor) -> Tensor:
    """(B, 2) signs of the x and y axes after the random flips."""
    ones = torch.ones(u.shape[0], 2, dtype=u.dtype, device=u.device)
    if not cfg.flip:
        return ones
    hflip = u[:, _HFLIP] < cfg.horizontal_flip_p
    vflip = u[:, _VFLIP] < cfg.vertical_flip_p
    return torch.stack([torch.where(hflip, -1.0, 1.0), torch.where(vflip, -1.0, 1.0)], dim=-1).to(u.dtype)


def _crop_window(cfg: AugmentationConfig, u: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample crop half-size fractions (B, 2) and centres (B, 2) in [-1, 1] units."""
    batch = u.shape[0]
    size = torch.ones(batch, 2, dtype=u.dtype, device=u.device)
    centre = torch.zeros(batch, 2, dtype=u.dtype, device=u.device)
    if cfg.crop_p <= 0:
        return size, centre
    on = u[:, _CROP_ON] < cfg.crop_p
    area = _uniform(u[:, _CROP_SCALE], *cfg.crop_scale)
    # Aspect ratio is drawn log-uniformly, as in torchvision/kornia RandomResizedCrop.
    log_ratio = _uniform(u[:, _CROP_RATIO], math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
    ratio = torch.exp(log_ratio)
    crop_w = torch.sqrt(area * ratio).clamp(max=1.0)
    crop_h = torch.sqrt(area / ratio).clamp(max=1.0)
    crop = torch.stack([crop_w, crop_h], dim=-1)
    # The window must stay inside the image: its centre may move by at most 1 - size.
    shift = (2.0 * u[:, [_CROP_X, _CROP_Y]] - 1.0) * (1.0 - crop)
    size = torch.where(on[:, None], crop, size)
    centre = torch.where(on[:, None], shift, centre)
    return size, centre


def affine_matrices(cfg: AugmentationConfig, u: Tensor, height: int, width: int) -> Tensor:
    """Compose crop -> flip -> rotation into one (B, 2, 3) output-to-input sampling matrix.

    ``grid_sample`` maps output coordinates to input ones, so the operations applied to
    the image in the order rotate, flip, crop appear here in reverse: an output point o
    is first placed in the crop window (size * o + centre), then flipped, then rotated.
    """
    rot = _rotation_matrices(cfg, u, height, width)
    signs = _flip_diagonal(cfg, u)
    size, centre = _crop_window(cfg, u)
    linear = rot * (signs * size)[:, None, :]
    translation = torch.einsum("bij,bj->bi", rot, signs * centre)
    return torch.cat([linear, translation[:, :, None]], dim=-1)


def _gaussian_kernels(sigma: Tensor, size: int) -> Tensor:
    """(B, size) normalised 1-D Gaussian kernels, one per sigma."""
    taps = torch.arange(size, dtype=sigma.dtype, device=sigma.device) - (size - 1) / 2.0
    kernels = torch.exp(-(taps[None, :] ** 2) / (2.0 * sigma[:, None] ** 2))
    return kernels / kernels.sum(dim=1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blur each sample of ``x`` (B, C, H, W) with its own sigma, reflect-padded.

    One grouped convolution per axis handles the whole batch: the batch and channel axes
    are merged into the channel axis and every (sample, channel) gets its own kernel.
    """
    batch, channels, height, width = x.shape
    # Reflection padding needs pad < size; tiny images get a truncated kernel.
    radius = min((kernel_size - 1) // 2, height - 1, width - 1)
    if radius <= 0:
        return x
    kernels = _gaussian_kernels(sigma.to(x.dtype), 2 * radius + 1)
    kernels = kernels.repeat_interleave(channels, dim=0)  # (B*C, K)
    flat = x.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    groups = batch * channels
    flat = F.conv2d(flat, kernels[:, None, None, :], groups=groups)
    flat = F.conv2d(flat, kernels[:, None, :, None], groups=groups)
    return flat.reshape(batch, channels, height, width)


def intensity_power(x: Tensor, cfg: AugmentationConfig, u: Tensor) -> Tensor:
    """Each sample of ``x`` (values 0 to 1) raised to its own power where its draw says so."""
    log_low, log_high = math.log(cfg.power_range[0]), math.log(cfg.power_range[1])
    exponent = torch.exp(_uniform(u[:, _POWER], log_low, log_high))
    exponent = torch.where(u[:, _POWER_ON] < cfg.power_p, exponent, torch.ones_like(exponent))
    return x.clamp(0.0, 1.0) ** exponent[:, None, None, None].to(x.dtype)


class BatchAugmenter(nn.Module):
    """Random BYOL augmentations of a float batch (B, C, H, W) of values 0 to 1 (stored
    images / 255, before the model's normalisation), per-sample parameters."""

    def __init__(self, config: AugmentationConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else AugmentationConfig()

    @staticmethod
    def draws(batch: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """The random numbers that decide the augmentation of ``batch`` samples: uniform
        (batch, 13) float32 on ``device``, from ``generator`` if given."""
        source = generator.device if generator is not None else device
        u = torch.rand(batch, _N_DRAWS, generator=generator, device=source, dtype=torch.float32)
        return u.to(device, non_blocking=True)

    def forward(self, x: Tensor, generator: torch.Generator | None = None, draws: Tensor | None = None) -> Tensor:
        """Augmented ``x``: same shape, dtype and device (``x`` itself if nothing is enabled).

        ``draws`` (from :meth:`draws`, one row per sample) replaces drawing from ``generator``,
        so data-parallel processes can each apply their rows of one global batch's draws.
        """
        if x.ndim != 4:
            raise ValueError(f"expected a batch (B, C, H, W), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point batch, got {x.dtype}")
        cfg = self.config
        batch, _, height, width = x.shape
        if draws is None:
            u = self.draws(batch, x.device, generator)
        elif draws.shape != (batch, _N_DRAWS):
            raise ValueError(f"draws must have shape ({batch}, {_N_DRAWS}), got {tuple(draws.shape)}")
        else:
            u = draws.to(x.device)
        # Interpolate in float32 (or float64) whatever the input precision.
        work_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        out = x.to(work_dtype).contiguous()
        if cfg.geometric:
            theta = affine_matrices(cfg, u, height, width).to(work_dtype)
            grid = F.affine_grid(theta, list(out.shape), align_corners=False)
            out = F.grid_sample(
                out, grid, mode="bilinear", padding_mode=cfg.padding_mode, align_corners=False
            )
        if cfg.blur_p > 0:
            sigma = _uniform(u[:, _BLUR_SIGMA], *cfg.blur_sigma)
            blurred = gaussian_blur(out, sigma, cfg.kernel_size())
            on = (u[:, _BLUR_ON] < cfg.blur_p)[:, None, None, None]
            out = torch.where(on, blurred, out)
        if cfg.power_p > 0:
            out = intensity_power(out, cfg, u)
        return out.to(x.dtype)

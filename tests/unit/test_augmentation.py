"""Batch augmentations: shape/dtype/device kept, seeded, and each operation does what it says."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from byol_discovery.augmentation import AugmentationConfig, BatchAugmenter, affine_matrices

NOTHING = AugmentationConfig.disabled()


pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(n: int = 6, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_default_augmentation_keeps_shape_dtype_and_device(dtype: torch.dtype) -> None:
    x = _batch().to(dtype)
    out = BatchAugmenter()(x, _gen(1))
    assert out.shape == x.shape
    assert out.dtype == dtype
    assert out.device == x.device
    assert torch.isfinite(out.float()).all()


def test_non_square_and_single_channel_batches_work() -> None:
    x = torch.rand(4, 1, 24, 40)
    assert BatchAugmenter()(x, _gen(0)).shape == x.shape


def test_same_generator_seed_gives_same_views_and_another_seed_differs() -> None:
    x = _batch()
    augment = BatchAugmenter()
    first = augment(x, _gen(7))
    again = augment(x, _gen(7))
    other = augment(x, _gen(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_samples_get_different_parameters() -> None:
    # The same image repeated must come out differently: parameters are per sample.
    x = _batch(1).expand(8, -1, -1, -1).contiguous()
    out = BatchAugmenter()(x, _gen(3))
    assert not torch.allclose(out[0], out[1])


def test_disabled_config_returns_the_input_unchanged() -> None:
    x = _batch()
    assert torch.equal(BatchAugmenter(NOTHING)(x, _gen(0)), x)


def test_rotation_by_zero_degrees_is_identity() -> None:
    cfg = dataclasses.replace(NOTHING, rotate=True, rotation_degrees=(0.0, 0.0))
    x = _batch()
    torch.testing.assert_close(BatchAugmenter(cfg)(x, _gen(0)), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("horizontal", "vertical", "dims"),
    [(1.0, 0.0, [3]), (0.0, 1.0, [2]), (1.0, 1.0, [2, 3])],
)
def test_forced_flips_are_exact_flips(horizontal: float, vertical: float, dims: list[int]) -> None:
    cfg = dataclasses.replace(NOTHING, flip=True, horizontal_flip_p=horizontal, vertical_flip_p=vertical)
    x = _batch()
    torch.testing.assert_close(BatchAugmenter(cfg)(x, _gen(0)), torch.flip(x, dims), atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_matches_rot90() -> None:
    cfg = dataclasses.replace(NOTHING, rotate=True, rotation_degrees=(90.0, 90.0))
    x = _batch()
    out = BatchAugmenter(cfg)(x, _gen(0))
    # Either sense of rotation is a valid 90 deg turn; the crop factor is 1 at 90 deg.
    candidates = [torch.rot90(x, k, dims=(2, 3)) for k in (1, -1)]
    assert min((out - c).abs().max().item() for c in candidates) < 1e-4


def test_rotation_crop_keeps_the_rotated_corners_out() -> None:
    # A constant image: any sample taken outside it would show the zero padding.
    cfg = dataclasses.replace(NOTHING, rotate=True, rotation_degrees=(0.0, 360.0), padding_mode="zeros")
    x = torch.ones(16, 1, 32, 32)
    out = BatchAugmenter(cfg)(x, _gen(5))
    assert out.min().item() > 0.99


def test_rotation_without_crop_shows_the_corners() -> None:
    cfg = dataclasses.replace(
        NOTHING, rotate=True, rotation_degrees=(45.0, 45.0), rotation_crop=False, padding_mode="zeros"
    )
    out = BatchAugmenter(cfg)(torch.ones(2, 1, 32, 32), _gen(0))
    assert out[..., 0, 0].max().item() < 0.5


def test_resized_crop_zooms_in_within_scale_range() -> None:
    cfg = dataclasses.replace(NOTHING, crop_p=1.0, crop_scale=(0.7, 1.0))
    u = torch.rand(1000, 11, generator=_gen(0))
    theta = affine_matrices(cfg, u, 32, 32)
    area = theta[:, 0, 0] * theta[:, 1, 1]
    assert area.min().item() >= 0.7 * 0.999 - 1e-6
    assert area.max().item() <= 1.0 + 1e-6
    # The window stays inside the image: |centre| + half-size <= 1 on both axes.
    reach = theta[:, :, 2].abs() + torch.stack([theta[:, 0, 0], theta[:, 1, 1]], dim=1).abs()
    assert reach.max().item() <= 1.0 + 1e-6


def test_crop_probability_is_respected() -> None:
    cfg = dataclasses.replace(NOTHING, crop_p=0.7)
    u = torch.rand(4000, 11, generator=_gen(1))
    theta = affine_matrices(cfg, u, 32, 32)
    cropped = (theta[:, 0, 0] < 1.0 - 1e-6) | (theta[:, 1, 1] < 1.0 - 1e-6)
    assert math.isclose(cropped.float().mean().item(), 0.7, abs_tol=0.03)


def _high_frequency_power(x: torch.Tensor) -> float:
    spectrum = torch.fft.rfft2(x).abs() ** 2
    h = x.shape[-2]
    return spectrum[..., h // 4 : 3 * h // 4, x.shape[-1] // 4 :].sum().item()


def test_blur_reduces_high_frequency_power() -> None:
    cfg = dataclasses.replace(NOTHING, blur_p=1.0, blur_sigma=(1.0, 2.0))
    x = _batch()
    out = BatchAugmenter(cfg)(x, _gen(0))
    assert _high_frequency_power(out) < 0.05 * _high_frequency_power(x)
    # The mean brightness is preserved (normalised kernel, reflect padding).
    torch.testing.assert_close(out.mean(), x.mean(), atol=1e-2, rtol=0)


def test_blur_with_probability_zero_on_some_samples_leaves_them_alone() -> None:
    cfg = dataclasses.replace(NOTHING, blur_p=0.5)
    x = _batch(32)
    out = BatchAugmenter(cfg)(x, _gen(2))
    unchanged = (out == x).flatten(1).all(dim=1)
    assert 0 < unchanged.sum().item() < 32


@pytest.mark.parametrize(
    "kwargs",
    [{"crop_p": 1.5}, {"crop_scale": (0.9, 0.7)}, {"blur_sigma": (0.0, 1.0)}, {"blur_kernel_size": 4},
     {"padding_mode": "wrap"}],
)
def test_invalid_configuration_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        AugmentationConfig(**kwargs)


def test_rejects_integer_or_wrongly_shaped_batches() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        BatchAugmenter()(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="B, C, H, W"):
        BatchAugmenter()(torch.zeros(3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_gpu_with_a_cpu_or_gpu_generator() -> None:
    x = _batch().cuda()
    augment = BatchAugmenter()
    for generator in (_gen(0), torch.Generator(device="cuda").manual_seed(0)):
        out = augment(x, generator)
        assert out.device == x.device and out.shape == x.shape
    cpu = augment(_batch(), _gen(4))
    gpu = augment(x, _gen(4)).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)


def test_intensity_power_changes_the_brightness_distribution_not_the_geometry() -> None:
    cfg = dataclasses.replace(NOTHING, power_p=1.0, power_range=(0.5, 2.0))
    x = _batch(n=64, channels=1)
    out = BatchAugmenter(cfg)(x, _gen(0))
    # Each sample is x ** e for one exponent e of its own, within the range.
    measurable = ((x > 0.05) & (x < 0.95)).flatten(1)  # log x near 0 turns rounding into noise
    exponents = (out.clamp_min(1e-6).log() / x.clamp_min(1e-6).log()).flatten(1)
    per_sample = exponents.median(dim=1).values
    spread = (exponents - per_sample[:, None]).abs()[measurable]
    assert spread.max() < 1e-3
    assert per_sample.min() >= 0.5 - 1e-4 and per_sample.max() <= 2.0 + 1e-4
    assert (per_sample < 1).any() and (per_sample > 1).any(), "darker and brighter views both occur"
    assert torch.equal(out == 0, x == 0), "blank sky stays blank"
    assert torch.equal(BatchAugmenter(dataclasses.replace(cfg, power_p=0.0))(x, _gen(0)), x)


def test_intensity_power_range_is_checked() -> None:
    with pytest.raises(ValueError, match="power_range"):
        AugmentationConfig(power_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="power_p"):
        AugmentationConfig(power_p=1.5)

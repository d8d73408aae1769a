"""Backbones and the BYOL learner: output sizes, loss range, EMA target behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from byol_discovery.model import BYOL, build_backbone, feature_dim, freeze_before, imagenet_backbone, regression_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("arch", "dim"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_feature_dim(arch: str, dim: int) -> None:
    assert feature_dim(arch) == dim


def test_unknown_architecture_is_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported architecture"):
        build_backbone("vgg16")


@pytest.mark.parametrize(
    ("arch", "in_channels", "small_stem", "size"),
    [("resnet18", 3, False, 64), ("resnet18", 1, False, 64), ("resnet18", 1, True, 16), ("resnet50", 3, True, 16)],
)
def test_backbone_returns_pooled_features(arch: str, in_channels: int, small_stem: bool, size: int) -> None:
    net = build_backbone(arch, in_channels=in_channels, small_stem=small_stem).eval()
    with torch.no_grad():
        out = net(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, feature_dim(arch))


def test_small_stem_keeps_resolution() -> None:
    net = build_backbone("resnet18", small_stem=True)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)


def _tiny_byol() -> BYOL:
    torch.manual_seed(0)
    return BYOL(build_backbone("resnet18", small_stem=True), feature_dim("resnet18"), hidden_dim=32, projection_dim=16)


def test_regression_loss_is_zero_for_aligned_and_four_for_opposite_vectors() -> None:
    p = torch.randn(5, 16)
    assert regression_loss(p, 3.0 * p).item() == pytest.approx(0.0, abs=1e-6)
    assert regression_loss(p, -p).item() == pytest.approx(4.0, abs=1e-6)
    values = regression_loss(torch.randn(100, 16), torch.randn(100, 16)).item()
    assert 0.0 <= values <= 4.0


def test_byol_loss_is_symmetric_sum_within_range() -> None:
    model = _tiny_byol()
    v1, v2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    loss = model.loss(v1, v2)
    assert loss.ndim == 0
    # Sum of the two directions, each in [0, 4].
    assert 0.0 <= loss.item() <= 8.0


def test_target_gets_no_gradient_and_online_does() -> None:
    model = _tiny_byol()
    model.loss(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.target_backbone.parameters())
    assert all(p.grad is None for p in model.target_projector.parameters())
    assert model.backbone.conv1.weight.grad is not None
    assert model.predictor[0].weight.grad is not None


def _perturb_online(model: BYOL) -> None:
    with torch.no_grad():
        for p in [*model.backbone.parameters(), *model.projector.parameters()]:
            p.add_(torch.randn_like(p))


def test_ema_with_tau_one_leaves_target_unchanged() -> None:
    model = _tiny_byol()
    _perturb_online(model)
    before = [p.clone() for p in model.target_backbone.parameters()]
    model.update_target(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.target_backbone.parameters(), strict=True))


def test_ema_with_tau_zero_copies_online() -> None:
    model = _tiny_byol()
    _perturb_online(model)
    model.update_target(0.0)
    pairs = [
        *zip(model.backbone.parameters(), model.target_backbone.parameters(), strict=True),
        *zip(model.projector.parameters(), model.target_projector.parameters(), strict=True),
    ]
    assert all(torch.equal(online, target) for online, target in pairs)


def test_ema_interpolates() -> None:
    model = _tiny_byol()
    _perturb_online(model)
    online = model.backbone.conv1.weight.detach().clone()
    target = model.target_backbone.conv1.weight.detach().clone()
    model.update_target(0.75)
    torch.testing.assert_close(model.target_backbone.conv1.weight, 0.75 * target + 0.25 * online)


def test_ema_rejects_tau_outside_unit_interval() -> None:
    with pytest.raises(ValueError):
        _tiny_byol().update_target(1.5)


def test_configurable_head_sizes() -> None:
    model = _tiny_byol()
    assert model.projector[0].out_features == 32 and model.projector[-1].out_features == 16
    assert model.predictor[0].in_features == 16 and model.predictor[-1].out_features == 16


def test_imagenet_backbone_loads_local_weights_rgb_and_grey(imagenet_like_weights):
    import torch
    from byol_discovery.feature_extraction import extract_features

    path, state = imagenet_like_weights
    rgb = imagenet_backbone(path, "resnet18", in_channels=3)
    torch.testing.assert_close(rgb.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(rgb.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert not rgb.training
    grey = imagenet_backbone(path, "resnet18", in_channels=1)
    torch.testing.assert_close(grey.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    # Summed weights on a grey image == RGB weights on that image replicated to 3 channels.
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 32, 32), dtype=np.uint8)
    grey_features = extract_features(grey, images, device="cpu")
    rgb_features = extract_features(rgb, np.repeat(images, 3, axis=1), device="cpu")
    assert grey_features.shape == (3, 512)
    np.testing.assert_allclose(grey_features, rgb_features, rtol=1e-4, atol=1e-5)


def test_imagenet_backbone_errors(tmp_path, imagenet_like_weights):
    import torch

    path, state = imagenet_like_weights
    with pytest.raises(ValueError, match="does not fit|do not fit"):
        imagenet_backbone(path, "resnet34", 3)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable state_dict"):
        imagenet_backbone(junk)
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="conv1.weight"):
        imagenet_backbone(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="1- or 3-channel"):
        imagenet_backbone(path, in_channels=4)
    with pytest.raises(FileNotFoundError):
        imagenet_backbone(tmp_path / "missing.pth")


def test_fixed_batchnorm_backbone_starts_as_the_random_baseline_and_loads_as_a_standard_one() -> None:
    torch.manual_seed(0)
    fixed = build_backbone("resnet18", in_channels=1, fixed_batchnorm=True).train()
    torch.manual_seed(0)
    baseline = build_backbone("resnet18", in_channels=1).eval()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        trained_mode = fixed(x)
        torch.testing.assert_close(trained_mode, baseline(x))
    bn = fixed.layer1[0].bn1
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean)), "statistics must never update"
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    # Trained affine parameters travel in a plain BatchNorm2d state_dict.
    with torch.no_grad():
        bn.weight.mul_(2.0)
    standard = build_backbone("resnet18", in_channels=1)
    standard.load_state_dict(fixed.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(standard.eval()(x), fixed.eval()(x))


def test_freeze_before_names_a_stage_the_backbone_lacks() -> None:
    backbone = build_backbone("resnet18", in_channels=1)
    with pytest.raises(ValueError, match=r"no stage 'layer5'; it has \['conv1'"):
        freeze_before(backbone, "layer5")
    assert all(p.requires_grad for p in backbone.parameters()), "nothing frozen by a failed call"

"""ResNet backbones and the BYOL learner (online network, predictor, EMA target).

Written from the BYOL paper (Grill et al. 2020), in the configuration of Mohale & Lochner
(2024) (the byol-pytorch defaults): projector feature_dim -> 4096 -> 256, predictor 256 -> 4096 -> 256,
both Linear-BatchNorm-ReLU-Linear; loss 2 - 2 cos(p, z') summed over both view orders.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

_FEATURE_DIMS: dict[str, int] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
SUPPORTED_ARCHS: tuple[str, ...] = tuple(_FEATURE_DIMS)


def feature_dim(arch: str) -> int:
    """Length of the pooled feature vector of ``arch``."""
    try:
        return _FEATURE_DIMS[arch]
    except KeyError:
        raise ValueError(f"unsupported architecture {arch!r}; choose one of {SUPPORTED_ARCHS}") from None


def _stem_conv(in_channels: int, small_stem: bool) -> nn.Conv2d:
    """First convolution: torchvision's 7x7/2, or 3x3/1 for small images."""
    if small_stem:
        conv = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    else:
        conv = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    # Same initialisation torchvision gives its own convolutions.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class FixedStatisticsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that normalises with its running statistics in training as in eval, and
    never updates them: a learnable per-channel scale and shift on a fixed normalisation.

    Its state_dict is a plain BatchNorm2d's, so a backbone trained with it loads into a
    standard ResNet and extracts the very same features. With the statistics a fresh layer
    has (mean 0, variance 1) the backbone starts as exactly the function of the
    randomly initialised baseline; with ImageNet weights it keeps the ImageNet statistics,
    as detection backbones are fine-tuned.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


@contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Inside, ``module`` runs in training mode, so batch norm normalises by each batch's
    statistics as in training; on exit its mode and every batch norm layer's running
    statistics (and batch count) are as they were: to score the training objective."""
    was_training = module.training
    buffers = [
        (buffer, buffer.clone())
        for layer in module.modules()
        if isinstance(layer, nn.modules.batchnorm._BatchNorm)
        for buffer in layer.buffers(recurse=False)
    ]
    module.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        module.train(was_training)


def build_backbone(
    arch: str = "resnet18", in_channels: int = 3, small_stem: bool = False, fixed_batchnorm: bool = False
) -> nn.Module:
    """Randomly initialised torchvision ResNet whose output is the pooled feature (B, D).

    ``small_stem`` swaps the 7x7 stride-2 stem and max-pool for a 3x3 stride-1 stem, which
    keeps 4x more spatial resolution for cutouts of a few tens of pixels.
    ``fixed_batchnorm`` builds it with :class:`FixedStatisticsBatchNorm2d` (for training;
    the trained weights load into the standard layers).
    """
    feature_dim(arch)  # validates the name
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    norm_layer = FixedStatisticsBatchNorm2d if fixed_batchnorm else nn.BatchNorm2d
    net = getattr(torchvision.models, arch)(weights=None, norm_layer=norm_layer)
    if small_stem or in_channels != 3:
        net.conv1 = _stem_conv(in_channels, small_stem)
    if small_stem:
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


def load_weights_file(path: str | os.PathLike[str], what: str) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU: a file that is not plain tensors
    and containers cannot run code. A missing file raises FileNotFoundError; any other
    failure a ValueError naming the file and ``what`` it should have been."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # unpickling errors come in many types
        raise ValueError(f"{path}: not a readable {what} ({error})") from error


def imagenet_backbone(
    weights_path: str | os.PathLike[str], arch: str = "resnet18", in_channels: int = 3, fixed_batchnorm: bool = False
) -> nn.Module:
    """A torchvision ResNet with ImageNet weights from a local file, in eval mode (no BYOL).

    ``weights_path`` holds a torchvision state_dict (e.g. ``resnet18-f37072fd.pth``), read
    with ``torch.load(weights_only=True)``; nothing is downloaded. The ``fc`` head is
    dropped (features are the pooled output). For one-channel images the first
    convolution's weights are summed over R, G and B: since every channel gets the same
    normalisation here, that equals feeding the grey image replicated to three channels,
    which is what the paper did. The standard 7x7 stem is always used, as the weights
    require. ``fixed_batchnorm`` as in :func:`build_backbone`.
    """
    if in_channels not in (1, 3):
        raise ValueError(f"ImageNet weights need 1- or 3-channel images, got {in_channels}")
    state = load_weights_file(weights_path, "state_dict")
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or "conv1.weight" not in state:
        raise ValueError(f"{weights_path}: not a torchvision ResNet state_dict (no conv1.weight)")
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    if in_channels == 1:
        state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    backbone = build_backbone(arch, in_channels=in_channels, small_stem=False, fixed_batchnorm=fixed_batchnorm)
    try:
        backbone.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{weights_path}: weights do not fit {arch} ({error})") from error
    return backbone.eval()


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


def regression_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of 2 - 2 cos(prediction, target); 0 when aligned, 4 when opposite."""
    p = F.normalize(prediction.float(), dim=-1)
    z = F.normalize(target.float(), dim=-1)
    return (2.0 - 2.0 * (p * z).sum(dim=-1)).mean()


RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


def freeze_before(backbone: nn.Module, stage: str) -> None:
    """Keep every layer of a ResNet ``backbone`` before residual ``stage`` (the stem and the
    earlier stages) at the weights it has: only ``stage`` and those after it train."""
    children = dict(backbone.named_children())
    if stage not in children:
        raise ValueError(f"the backbone has no stage {stage!r}; it has {list(children)}")
    for name, child in children.items():
        if name == stage:
            return
        child.requires_grad_(False)


class BYOL(nn.Module):
    """BYOL learner around a backbone; ``forward`` returns the online backbone's features."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        hidden_dim: int = 4096,
        projection_dim: int = 256,
    ) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.projection_dim = projection_dim
        self.backbone = backbone
        self.projector = _mlp(feature_dim, hidden_dim, projection_dim)
        self.predictor = _mlp(projection_dim, hidden_dim, projection_dim)
        self.target_backbone = copy.deepcopy(backbone)
        self.target_projector = copy.deepcopy(self.projector)
        for param in self._target_parameters():
            param.requires_grad_(False)

    def _online_parameters(self) -> list[nn.Parameter]:
        """Online parameters that have a target counterpart, in matching order."""
        return [*self.backbone.parameters(), *self.projector.parameters()]

    def _target_parameters(self) -> list[nn.Parameter]:
        return [*self.target_backbone.parameters(), *self.target_projector.parameters()]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything the optimiser updates: backbone (but for its frozen layers, see
        :func:`freeze_before`), projector and predictor."""
        return [p for p in (*self._online_parameters(), *self.predictor.parameters()) if p.requires_grad]

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        """Symmetric BYOL loss: each view's prediction regresses the other view's target.

        Both views go through each network as one concatenated batch (one pass instead of
        two), so BatchNorm sees the statistics of both views together.
        """
        if view1.shape != view2.shape:
            raise ValueError(f"views differ in shape: {tuple(view1.shape)} vs {tuple(view2.shape)}")
        both = torch.cat([view1, view2])
        p1, p2 = self.predictor(self.projector(self.backbone(both))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_backbone(both)).chunk(2)
        return regression_loss(p1, z2) + regression_loss(p2, z1)

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """target <- tau * target + (1 - tau) * online, for all parameters, in place.

        Buffers (BatchNorm running statistics) are not averaged: the target network keeps
        its own, updated by its forward passes in training mode.
        """
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {tau}")
        # One fused multi-tensor kernel instead of a Python loop over ~100 tensors.
        torch._foreach_lerp_(self._target_parameters(), self._online_parameters(), 1.0 - tau)

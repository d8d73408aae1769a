"""Backbone loading and batched feature extraction (the 'features' stage).

Inference runs on whole batches read slice by slice from a NumPy array or an h5py dataset,
so a store larger than memory is never loaded at once, and every image goes through the
same ``to_model_input`` conversion the backbone was trained with.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from byol_discovery.checkpoint import Checkpoint
from byol_discovery.model import build_backbone
from byol_discovery.tensors import check_image_array, resolve_device, to_model_input


def load_backbone(
    checkpoint_path: str | os.PathLike[str],
    device: str | torch.device = "auto",
    arch: str | None = None,
) -> nn.Module:
    """The trained backbone from a ``train`` checkpoint, in eval mode on ``device``.

    ``arch``, when given, is the architecture the caller expects; a checkpoint of another
    architecture (or whose weights do not fit its declared one) raises ValueError.
    """
    path = Path(checkpoint_path)
    return backbone_from_checkpoint(Checkpoint.load(path), path, device, arch)


def backbone_from_checkpoint(
    checkpoint: Checkpoint, path: str | os.PathLike[str], device: str | torch.device = "auto",
    arch: str | None = None,
) -> nn.Module:
    """:func:`load_backbone` on a checkpoint already read (``path`` names it in errors)."""
    spec = checkpoint.spec
    if arch is not None and spec.arch != arch:
        raise ValueError(f"{path}: checkpoint is for architecture {spec.arch!r}, expected {arch!r}")
    try:
        backbone = build_backbone(spec.arch, in_channels=spec.in_channels, small_stem=spec.small_stem)
        backbone.load_state_dict(checkpoint.backbone_state)
    except (ValueError, RuntimeError, TypeError) as error:
        raise ValueError(f"{path}: weights do not fit architecture {spec.arch!r} ({error})") from error
    return backbone.to(resolve_device(device)).eval()


def random_backbone(arch: str = "resnet18", in_channels: int = 3, small_stem: bool = False, seed: int = 0) -> nn.Module:
    """A randomly initialised backbone (the untrained baseline), reproducible from ``seed``.

    The global torch RNG is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(arch, in_channels=in_channels, small_stem=small_stem)
    return backbone.eval()


def _input_channels(backbone: nn.Module) -> int | None:
    conv = getattr(backbone, "conv1", None)
    return conv.in_channels if isinstance(conv, nn.Conv2d) else None


def _check_images(images: np.ndarray | h5py.Dataset, backbone: nn.Module) -> None:
    check_image_array(images)
    expected = _input_channels(backbone)
    if expected is not None and images.shape[1] != expected:
        raise ValueError(f"images have {images.shape[1]} channels, the backbone expects {expected}")


def dihedral_views(x: torch.Tensor) -> Iterator[torch.Tensor]:
    """The 8 images of square images ``x`` (B, C, H, W) under the symmetries of the square:
    each of the 4 quarter turns, as it is and mirrored."""
    for quarter_turns in range(4):
        turned = torch.rot90(x, quarter_turns, dims=(2, 3))
        yield turned
        yield turned.flip(3)


def feature_batches(
    backbone: nn.Module,
    images: np.ndarray | h5py.Dataset,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    dihedral: bool = False,
) -> Iterator[np.ndarray]:
    """The pooled features (B, D) float32 of ``images``, one batch of ``batch_size`` at a time,
    in order: :func:`extract_features` without holding more than one batch. Bad input is an
    error at the call, not at the first batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_images(images, backbone)
    if dihedral and images.shape[2] != images.shape[3]:
        raise ValueError(f"dihedral averaging needs square images, got {images.shape[2]} x {images.shape[3]}")
    return _batches(backbone, images, batch_size, resolve_device(device), dihedral)


def _batches(
    backbone: nn.Module, images: np.ndarray | h5py.Dataset, batch_size: int, target: torch.device, dihedral: bool
) -> Iterator[np.ndarray]:
    channels_last = target.type == "cuda"
    backbone = backbone.to(target).eval()
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            chunk = np.ascontiguousarray(images[start : start + batch_size])
            x = to_model_input(torch.from_numpy(chunk).to(target, non_blocking=True))
            views = dihedral_views(x) if dihedral else iter([x])
            pooled = torch.stack([backbone(view.contiguous(memory_format=memory_format)) for view in views])
            yield pooled.mean(dim=0).float().cpu().numpy()


def extract_features(
    backbone: nn.Module,
    images: np.ndarray | h5py.Dataset,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    dihedral: bool = False,
) -> np.ndarray:
    """Pooled backbone features (N, D) float32 of uint8 images (N, C, H, W).

    ``dihedral`` averages each image's features over its 8 quarter turns and mirror images
    (:func:`dihedral_views`; 8 times the work): features that do not depend on the
    orientation of the source on the sky, exactly, whatever the backbone learnt.

    Reads ``images`` one slice of ``batch_size`` at a time (:func:`feature_batches`). No
    autocast, even on CUDA: inference is cheap next to training, and bf16 would round the
    features far more coarsely (cuDNN's default TF32 convolutions on recent GPUs still round
    more than the CPU does; a rerun on the same device gives the same features either way).
    The backbone is moved to ``device`` and left in eval mode.
    """
    chunks = list(feature_batches(backbone, images, batch_size, device, dihedral))
    if not chunks:
        return np.zeros((0, feature_dim(backbone, images, device)), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def feature_dim(backbone: nn.Module, images: np.ndarray | h5py.Dataset, device: str | torch.device = "auto") -> int:
    """The length of the backbone's features for images of this shape (one dummy batch)."""
    target = resolve_device(device)
    dummy = torch.zeros((2, *images.shape[1:]), dtype=torch.uint8, device=target)
    with torch.inference_mode():
        return int(backbone.to(target).eval()(to_model_input(dummy)).shape[1])


"""Image tensors and the device they live on: the one uint8-to-model conversion, the choice
of device, where the image array is placed, and how tensors are copied and saved."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from byol_discovery.io.atomic import atomic_path

# Fixed normalisation: uint8 / 255 then (x - 0.5) / 0.5, i.e. [-1, 1], for every channel.
INPUT_MEAN = 0.5
INPUT_STD = 0.5


def to_unit_range(batch_uint8: Tensor) -> Tensor:
    """uint8 images (B, C, H, W) -> float32 in [0, 1], on the same device."""
    if batch_uint8.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {batch_uint8.dtype}")
    return batch_uint8.to(torch.float32) / 255.0


def normalise(x: Tensor) -> Tensor:
    """Values in [0, 1] -> (x - 0.5) / 0.5, what the model sees."""
    return (x - INPUT_MEAN) / INPUT_STD


def to_model_input(batch_uint8: Tensor) -> Tensor:
    """uint8 images (B, C, H, W) -> float32 in [0, 1] -> (x - 0.5) / 0.5, on the same device.

    The one conversion used for training (where augmentation comes between the two steps)
    and for feature extraction alike.
    """
    return normalise(to_unit_range(batch_uint8))


def check_image_array(images: Any) -> None:
    """Raise ValueError unless ``images`` (array or HDF5 dataset) is uint8 (N, C, H, W)."""
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D (N, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch.device."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return resolved


def device_description(device: torch.device) -> str:
    """The device as a person would name it in a provenance table."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def cuda_convolutions(deterministic: bool) -> None:
    """cuDNN's choice of convolution algorithms: autotuned ones are faster but may differ
    from run to run; fixed ones give a rerun the same numbers (the CPU is deterministic)."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA; plain fp32 elsewhere (CPU bf16 is slow and changes results)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def place_images(images: np.ndarray, device: torch.device, max_fraction: float = 0.5) -> Tensor:
    """The uint8 images as one tensor: on the GPU when they take under ``max_fraction`` of its
    free memory, else the host array itself (batches then travel one at a time). Not a pinned
    copy: that would double host memory, and a batch indexed out of it is pageable anyway."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if device.type != "cuda":
        return tensor
    free, _ = torch.cuda.mem_get_info(device)
    if tensor.nbytes < max_fraction * free:
        return tensor.to(device)
    return tensor


def gather(data: Tensor, batch: Tensor, device: torch.device) -> Tensor:
    """Images of ``batch`` (indices on ``data``'s device) on ``device``, wherever ``data`` lives."""
    return data[batch].to(device, non_blocking=True)


def cpu_copy(module: torch.nn.Module) -> dict[str, Tensor]:
    """A copy of ``module``'s state on the CPU, unaffected by further training."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def save_atomic(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` of plain types and tensors, appearing under ``path`` only once complete."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)

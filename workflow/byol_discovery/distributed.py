"""Data-parallel BYOL training over several processes (one per GPU), launched by torchrun.

Every process holds the whole image store and draws the same global batch order and the
same augmentation parameters from identically seeded generators, then keeps its own rows
of each global batch. Batch norm statistics are reduced over all processes
(:class:`GlobalBatchNorm`), gradients are averaged by DistributedDataParallel, so a run on
N processes follows the loss trajectory of one process with the same global batch. The
gloo backend runs the same code on the CPU, which is how it is tested.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from byol_discovery.logs import FAILURE_MARK
from byol_discovery.model import BYOL, FixedStatisticsBatchNorm2d


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world_size`` data-parallel processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def rows(self, global_size: int) -> slice:
        """This process's rows of a global batch of ``global_size`` (a multiple of world_size)."""
        if global_size % self.world_size:
            raise ValueError(f"a batch of {global_size} does not split over {self.world_size} processes")
        local = global_size // self.world_size
        return slice(self.rank * local, (self.rank + 1) * local)

    def mean(self, value: Tensor) -> Tensor:
        """The mean of ``value`` over all processes (``value`` itself in one process)."""
        if not self.distributed:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size


SINGLE = Shard()


def environment_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def environment_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_device(device: torch.device) -> torch.device:
    """Under torchrun on CUDA, this process's GPU (LOCAL_RANK); ``device`` otherwise."""
    if device.type != "cuda" or environment_world_size() == 1:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"process {local_rank} has no GPU: {torch.cuda.device_count()} visible for "
            f"{environment_world_size()} processes"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Shard]:
    """This process's :class:`Shard`, with the process group open when run under torchrun
    (NCCL on CUDA, gloo on the CPU) and closed afterwards."""
    world_size = environment_world_size()
    if world_size == 1:
        yield SINGLE
        return
    if dist.is_initialized():  # opened by the caller, who also closes it
        yield Shard(dist.get_rank(), dist.get_world_size())
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Shard(dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()


class _SumOverProcesses(torch.autograd.Function):
    """Sum of a tensor over all processes; the gradient is summed over them too, since every
    process's loss depends on every process's contribution."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover the global batch of all processes.

    torch's SyncBatchNorm runs only on CUDA; this one all-reduces per-channel sums, with
    gradients flowing back through the reduction, on any backend.
    Evaluation uses the running statistics, like any batch norm, with no communication.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not self.training or not dist.is_initialized():
            return super().forward(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)
        x = input if input.dtype == torch.float64 else input.float()
        # Accumulate as torch's own batch norm does: in float64 on the CPU, float32 on CUDA.
        accumulate = torch.float64 if x.device.type == "cpu" else x.dtype
        # new_full, not torch.tensor: building a tensor from a Python list on CUDA synchronises.
        count = x.new_full((1,), x.numel() / channels, dtype=accumulate)
        # Two reductions, mean then squared deviations: E[x^2] - E[x]^2 in one would lose
        # digits to cancellation wherever a channel's mean is large against its spread.
        sums = _SumOverProcesses.apply(torch.cat([x.sum(dims, dtype=accumulate), count]))
        n = sums[-1]
        mean = (sums[:channels] / n).to(x.dtype)
        centred = x - mean.view(shape)
        var = (_SumOverProcesses.apply((centred * centred).sum(dims, dtype=accumulate)) / n).to(x.dtype)
        self._update_running_stats(mean.detach(), var.detach(), n.detach().to(x.dtype))
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        if not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * n / (n - 1.0).clamp_min(1.0)  # a tensor: no host sync per layer
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def globalise_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm1d/2d replaced in place by a :class:`GlobalBatchNorm`
    holding the very same parameter and buffer tensors, so an optimiser built before the
    swap still updates them and state_dict keys are unchanged."""
    for name, child in module.named_children():
        if isinstance(child, FixedStatisticsBatchNorm2d):
            continue  # uses no batch statistics, so there is nothing to reduce
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            replacement = GlobalBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            for key, tensor in [*child.named_parameters(recurse=False), *child.named_buffers(recurse=False)]:
                setattr(replacement, key, tensor)
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            globalise_batchnorm(child)
    return module


# Running statistics are equal on every process already, so DDP need not broadcast them
# before each forward (the keyword was renamed in torch 2.1x; envs allow torch >= 2.2).
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


class _Objective(nn.Module):
    """BYOL's loss as a module's forward, which is what DistributedDataParallel wraps."""

    def __init__(self, model: BYOL) -> None:
        super().__init__()
        self.model = model

    def forward(self, view1: Tensor, view2: Tensor) -> Tensor:
        return self.model.loss(view1, view2)


def data_parallel_loss(model: BYOL, device: torch.device) -> Callable[..., Tensor]:
    """``model.loss`` with gradients averaged over the processes (DDP) and batch norm
    statistics over the global batch."""
    globalise_batchnorm(model)
    return DistributedDataParallel(
        _Objective(model), device_ids=[device.index] if device.type == "cuda" else None, **_NO_BUFFER_SYNC
    )


def processes_for(gpus_requested: int, log: logging.Logger) -> int:
    """How many training processes a job given ``gpus_requested`` GPUs runs: one per GPU
    that is both requested and visible (a single process on a machine without GPUs)."""
    visible = torch.cuda.device_count()
    if gpus_requested > 1 and visible < gpus_requested:
        log.warning("%d GPUs requested but %d visible; training on %d", gpus_requested, visible, max(visible, 1))
    return max(1, min(gpus_requested, visible))


def launch(module: str, arguments: Sequence[str], processes: int, log: logging.Logger) -> None:
    """Run ``python -m module arguments`` in ``processes`` processes under torchrun on this
    machine, forwarding their output to ``log``; raise RuntimeError if any fails."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "-m", module, *arguments,
    ]
    log.info("launching %d training processes: %s", processes, " ".join(command))
    failures: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as child:
        assert child.stdout is not None
        for line in child.stdout:
            log.info("%s", line.rstrip())
            # What a process's stage logger (logs.log_uncaught) says when it fails.
            if FAILURE_MARK in line:
                failures.append(line.split(FAILURE_MARK, 1)[1].strip())
    if child.returncode != 0:
        reasons = "; ".join(dict.fromkeys(failures)) or "see the log for the processes' output"
        raise RuntimeError(
            f"distributed training ({processes} processes) failed with exit code {child.returncode}: {reasons}"
        )

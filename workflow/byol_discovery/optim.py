"""Optimisers and the schedules of BYOL training: the learning rate and the target's decay.

Adam is what the paper used (lr 1e-4, batch 32); AdamW and LARS (You et al. 2017, the
optimiser of the BYOL paper) are there for the large batches a GPU wants.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "lars")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
TAU_SCHEDULES: tuple[str, ...] = ("cosine", "constant")


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling.

    Each weight tensor's step is scaled by ``trust * ||w|| / ||g + wd w||`` so that every
    layer moves by a similar fraction of its norm whatever the batch size. One-dimensional
    parameters (biases, BatchNorm) get neither the scaling nor weight decay, as in BYOL.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        if lr <= 0 or weight_decay < 0 or not 0 <= momentum < 1 or trust_coefficient <= 0:
            raise ValueError("LARS needs lr > 0, weight_decay >= 0, 0 <= momentum < 1, trust_coefficient > 0")
        defaults = {
            "lr": lr, "weight_decay": weight_decay, "momentum": momentum, "trust_coefficient": trust_coefficient
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if param.ndim > 1:
                    update = update.add(param, alpha=group["weight_decay"])
                    weight_norm, update_norm = torch.linalg.vector_norm(param), torch.linalg.vector_norm(update)
                    trust = torch.where(
                        (weight_norm > 0) & (update_norm > 0),
                        group["trust_coefficient"] * weight_norm / update_norm,
                        torch.ones_like(weight_norm),
                    )
                    update = update * trust
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                param.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(
    name: str, params: Iterable[nn.Parameter], learning_rate: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``adam`` (the paper's), ``adamw`` or ``lars``.

    As in BYOL, weight decay applies to weight matrices and kernels only: biases and batch
    norm scales and shifts (1-D parameters) are not decayed (LARS also leaves them unscaled).
    """
    params = list(params)
    if name in ("adam", "adamw"):
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
        groups = [group for group in groups if group["params"]]
        optimizer = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return optimizer(groups, lr=learning_rate)
    if name == "lars":
        if learning_rate < 0.01:
            # The trust ratio (0.001) scales each step to a thousandth of the weights' norm
            # times the rate: at Adam's rates the weight matrices barely move.
            logging.getLogger(__name__).warning(
                "optimizer lars with learning_rate %g: LARS wants about 0.2 x batch_size / 256 "
                "(BYOL's rule); at this rate the weights hardly train", learning_rate)
        return LARS(params, lr=learning_rate, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, base: float, schedule: str) -> float:
    """Linear warm-up over ``warmup_steps`` to ``base``, then constant or cosine decay to 0."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}; choose one of {LR_SCHEDULES}")
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if schedule == "constant":
        return base
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def ema_tau(base: float, step: int, total_steps: int, schedule: str = "cosine") -> float:
    """BYOL's target decay schedule: cosine increase from ``base`` to 1 over training (or
    ``base`` throughout with ``constant``, as byol-pytorch and the paper's code did)."""
    if schedule == "constant" or total_steps <= 1:
        return base
    progress = min(step / (total_steps - 1), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0

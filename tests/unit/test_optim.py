"""Optimisers and the schedules of the learning rate and the target's decay."""

from __future__ import annotations

import pytest
import torch
from byol_discovery.optim import LARS, build_optimizer, ema_tau


def test_ema_schedule_rises_from_base_to_one() -> None:
    assert ema_tau(0.99, 0, 100) == pytest.approx(0.99)
    assert ema_tau(0.99, 99, 100) == pytest.approx(1.0)
    assert 0.99 < ema_tau(0.99, 50, 100) < 1.0
    assert ema_tau(0.99, 99, 100, "constant") == 0.99


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_weight_decay_leaves_biases_and_batch_norm_alone(name: str) -> None:
    layer, norm = torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)
    params = [*layer.parameters(), *norm.parameters()]
    before = [p.detach().clone() for p in params]
    optimizer = build_optimizer(name, params, learning_rate=0.1, weight_decay=0.5)
    for p in params:
        p.grad = torch.zeros_like(p)  # no gradient: only weight decay can move a parameter
    optimizer.step()
    moved = [not torch.equal(p, b) for p, b in zip(params, before, strict=True)]
    assert moved == [True, False, False, False], "only the weight matrix decays"


def test_lars_scales_each_layer_step_to_its_norm() -> None:
    weight = torch.nn.Parameter(torch.full((4, 4), 2.0))
    bias = torch.nn.Parameter(torch.ones(4))
    optimizer = LARS([weight, bias], lr=1.0, momentum=0.0, trust_coefficient=0.01)
    weight.grad, bias.grad = torch.full((4, 4), 100.0), torch.full((4,), 0.5)
    optimizer.step()
    # The weight moves by 1 % of its norm whatever the gradient's size; the bias by its plain gradient.
    torch.testing.assert_close(torch.linalg.vector_norm(weight - 2.0), torch.tensor(0.01 * 8.0))
    torch.testing.assert_close(bias.detach(), torch.full((4,), 0.5))

"""The training losses: the per-tile area term charges each tile its own relative area error."""

from __future__ import annotations

import math

import torch

from ulcerseg.training.losses import DiceBCELoss, tile_area_loss


def _logits(prob: torch.Tensor) -> torch.Tensor:
    return torch.logit(prob.clamp(1e-6, 1 - 1e-6))


def test_tile_area_loss_is_the_mean_relative_area_error_of_wound_tiles() -> None:
    target = torch.zeros(3, 1, 8, 8)
    target[0, 0, :4, :4] = 1  # 16 px
    target[1, 0, :2, :2] = 1  # 4 px
    # tile 2 has no wound: its false pixels are the BCE's business, not this term's
    prob = torch.zeros(3, 1, 8, 8)
    prob[0, 0, :4, :8] = 1  # 32 px predicted for 16: too wide
    prob[1, 0, :2, :2] = 1  # exact
    prob[2, 0, :8, :8] = 1
    loss = tile_area_loss(_logits(prob), target)
    assert math.isclose(float(loss), (math.log(33 / 17) + 0.0) / 2, rel_tol=1e-3)


def test_tile_area_loss_is_zero_without_wound_and_carries_a_gradient() -> None:
    empty = torch.zeros(2, 1, 4, 4)
    assert float(tile_area_loss(torch.zeros(2, 1, 4, 4), empty)) == 0.0
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)  # soft area 8 px for a 2-px wound
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 0, :2] = 1
    tile_area_loss(logits, target).backward()
    assert logits.grad is not None and float(logits.grad.sum()) > 0  # too wide: push down


def test_area_weight_adds_the_term_and_zero_leaves_the_loss_as_before() -> None:
    target = torch.zeros(2, 1, 8, 8)
    target[:, 0, 2:6, 2:6] = 1
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = DiceBCELoss(1.0, 1.0)(logits, target)
    assert torch.equal(DiceBCELoss(1.0, 1.0, 0.0)(logits, target), plain)
    weighted = DiceBCELoss(1.0, 1.0, 0.5)(logits, target)
    assert math.isclose(float(weighted - plain), 0.5 * float(tile_area_loss(logits, target)), rel_tol=1e-5)

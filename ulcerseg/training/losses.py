"""Losses for binary segmentation (logits N×1×H×W, targets N×1×H×W in {0, 1})."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the whole batch (batch-level, so tiles without ulcer stay stable)."""
    prob = torch.sigmoid(logits.float())
    inter = (prob * target).sum()
    return 1.0 - (2.0 * inter + eps) / (prob.sum() + target.sum() + eps)


def tile_area_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean over the tiles that hold wound of ``|ln((soft area + eps) / (true area + eps))|``.

    Areas in px of the tile (soft area: the sum of the probabilities). The trial's number is
    each photo's area, and a batch-level Dice lets one tile's outline sit too wide while
    another's sits too tight; this term charges each tile its own relative area error. Tiles
    without wound are left to the BCE term (their log ratio would only count false pixels).
    """
    prob = torch.sigmoid(logits.float()).flatten(1).sum(1)
    true = target.flatten(1).sum(1)
    has_wound = true > 0
    if not bool(has_wound.any()):
        return logits.new_zeros((), dtype=torch.float32)
    ratio = torch.log((prob[has_wound] + eps) / (true[has_wound] + eps))
    return ratio.abs().mean()


class DiceBCELoss(torch.nn.Module):
    """``bce_weight * BCE + dice_weight * (1 - soft Dice) + area_weight * tile area error``."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, area_weight: float = 0.0) -> None:
        super().__init__()
        self.bce_weight, self.dice_weight, self.area_weight = bce_weight, dice_weight, area_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits.float(), target)
        loss = self.bce_weight * bce + self.dice_weight * soft_dice_loss(logits, target)
        if self.area_weight:
            loss = loss + self.area_weight * tile_area_loss(logits, target)
        return loss

"""Losses for binary segmentation (logits N×1×H×W, targets N×1×H×W in {0, 1})."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the whole batch (batch-level, so tiles without ulcer stay stable)."""
    prob = torch.sigmoid(logits.float())
    inter = (prob * target).sum()
    return 1.0 - (2.0 * inter + eps) / (prob.sum() + target.sum() + eps)


class DiceBCELoss(torch.nn.Module):
    """``bce_weight * BCE + dice_weight * (1 - soft Dice)``."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.bce_weight, self.dice_weight = bce_weight, dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits.float(), target)
        return self.bce_weight * bce + self.dice_weight * soft_dice_loss(logits, target)

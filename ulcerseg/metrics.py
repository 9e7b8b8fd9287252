"""Overlap metrics between binary masks: the one definition of Dice, IoU, precision and recall.

Used by training validation, ``ulcerseg evaluate``, QA agreement (automated vs manual, reader
vs reader) and the benchmark scripts. Pure numpy; masks are any same-shape arrays where
non-zero (or True) means ulcer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Counts:
    """Pixel counts of one prediction against its ground truth; ``a + b`` pools two images."""

    tp: int
    fp: int
    fn: int

    @property
    def pred_px(self) -> int:
        return self.tp + self.fp

    @property
    def gt_px(self) -> int:
        return self.tp + self.fn

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def counts(pred: np.ndarray, gt: np.ndarray) -> Counts:
    """Count true/false positives and false negatives of two same-shape masks."""
    pred, gt = np.asarray(pred) != 0, np.asarray(gt) != 0
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    tp = int(np.count_nonzero(pred & gt))
    return Counts(tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(gt)) - tp)


def dice(c: Counts) -> float:
    """Dice = 2 TP / (2 TP + FP + FN); 1.0 when both masks are empty."""
    denom = 2 * c.tp + c.fp + c.fn
    return 2 * c.tp / denom if denom else 1.0


def iou(c: Counts) -> float:
    """IoU (Jaccard) = TP / (TP + FP + FN); 1.0 when both masks are empty."""
    denom = c.tp + c.fp + c.fn
    return c.tp / denom if denom else 1.0


def scores(c: Counts) -> dict[str, float]:
    """Dice, IoU, precision, recall (1.0 when both masks are empty) and area error (px², %)."""
    precision = (c.tp / c.pred_px) if c.pred_px else (1.0 if c.gt_px == 0 else 0.0)
    recall = (c.tp / c.gt_px) if c.gt_px else (1.0 if c.pred_px == 0 else 0.0)
    err = c.pred_px - c.gt_px
    err_pct = 100.0 * err / c.gt_px if c.gt_px else float("nan")
    return {
        "dice": dice(c),
        "iou": iou(c),
        "precision": precision,
        "recall": recall,
        "area_error_px": float(err),
        "area_error_pct": err_pct,
    }


def dice_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two same-shape masks (1.0 when both are empty); symmetric in a and b."""
    c = counts(mask_a, mask_b)
    return dice(c), iou(c)

"""One definition of Dice/IoU: pooled and per-image values, empty masks, symmetry."""

from __future__ import annotations

import numpy as np
import pytest

from ulcerseg.metrics import Counts, counts, dice, dice_iou, iou, scores


def test_counts_scores_and_pooling() -> None:
    pred = np.zeros((10, 10), np.uint8)
    gt = np.zeros((10, 10), bool)
    pred[0:4, 0:5] = 255  # 20 px
    gt[2:6, 0:5] = True  # 20 px, 10 overlap
    c = counts(pred, gt)
    assert c == Counts(10, 10, 10) and c.pred_px == 20 and c.gt_px == 20
    s = scores(c)
    assert s["dice"] == pytest.approx(0.5) and s["iou"] == pytest.approx(1 / 3)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)
    assert s["area_error_px"] == 0.0 and s["area_error_pct"] == 0.0
    pooled = c + Counts(30, 0, 10)
    assert pooled == Counts(40, 10, 20) and dice(pooled) == pytest.approx(80 / 110)
    assert dice_iou(pred, gt) == dice_iou(gt, pred) == (pytest.approx(0.5), pytest.approx(1 / 3))


def test_empty_masks_agree_perfectly_and_shapes_must_match() -> None:
    empty = np.zeros((4, 4), bool)
    assert dice_iou(empty, empty) == (1.0, 1.0)
    assert dice(Counts(0, 0, 0)) == iou(Counts(0, 0, 0)) == 1.0
    assert dice(Counts(0, 5, 0)) == 0.0
    assert np.isnan(scores(Counts(0, 5, 0))["area_error_pct"])
    with pytest.raises(ValueError, match="shapes differ"):
        counts(empty, np.zeros((4, 5), bool))

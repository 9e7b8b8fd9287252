"""Overlap metrics between binary masks, and whole-image prediction with a tile predictor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: uint8 N×H×W×3 RGB tiles (H, W multiples of 32) -> float32 N×H×W probabilities.
TilePredictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Counts:
    """Pixel counts of one prediction against its ground truth."""

    tp: int
    fp: int
    fn: int

    @property
    def pred_px(self) -> int:
        return self.tp + self.fp

    @property
    def gt_px(self) -> int:
        return self.tp + self.fn


def counts(pred: np.ndarray, gt: np.ndarray) -> Counts:
    """Count true/false positives and false negatives of two same-size boolean masks."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    tp = int(np.count_nonzero(pred & gt))
    return Counts(tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(gt)) - tp)


def scores(c: Counts) -> dict[str, float]:
    """Dice, IoU, precision, recall (1.0 when both masks are empty) and area error (px², %)."""
    empty = c.gt_px == 0 and c.pred_px == 0
    dice = 1.0 if empty else 2 * c.tp / (2 * c.tp + c.fp + c.fn)
    iou = 1.0 if empty else c.tp / (c.tp + c.fp + c.fn)
    precision = (c.tp / c.pred_px) if c.pred_px else (1.0 if c.gt_px == 0 else 0.0)
    recall = (c.tp / c.gt_px) if c.gt_px else (1.0 if c.pred_px == 0 else 0.0)
    err = c.pred_px - c.gt_px
    err_pct = 100.0 * err / c.gt_px if c.gt_px else float("nan")
    return {
        "dice": dice,
        "iou": iou,
        "precision": precision,
        "recall": recall,
        "area_error_px": float(err),
        "area_error_pct": err_pct,
    }


def predict_image(
    predict: TilePredictor, image: np.ndarray, scale: float = 1.0, window: int = 1024
) -> np.ndarray:
    """Probability map (float32, same H×W as ``image``) of a whole RGB uint8 image.

    The image is resized by ``scale`` (to the model's px per mm) first, then tiled by
    :func:`ulcerseg.segmentation.inference.predict_image` (the same code as measuring).
    """
    import cv2

    from ulcerseg.segmentation.inference import predict_image as predict_tiled

    h0, w0 = image.shape[:2]
    if scale != 1.0:
        size = (max(32, round(w0 * scale)), max(32, round(h0 * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    prob = predict_tiled(predict, image, window)
    if prob.shape != (h0, w0):
        prob = cv2.resize(prob, (w0, h0), interpolation=cv2.INTER_LINEAR)
    return prob.astype(np.float32, copy=False)

"""Candidate ulcer regions of the coarse pass, and the rule that ranks them.

The coarse probability map (rectified frame around the marker) is thresholded at
``coarse_threshold``; candidate pixels closer than ``merge_distance_mm`` are one group (the
fragments of one ulcer). Each group's score is its probability mass (the sum of coarse
probability over its candidate pixels, px at the coarse resolution). The photo's ulcer is the
group with the highest score; the second-best score relative to the best is the photo's
candidate ambiguity (``quality.candidate_ambiguity``, flag ``ambiguous_ulcer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from ulcerseg.calibration.rectify import RectifiedGrid
from ulcerseg.config import SegmentationConfig


@dataclass(frozen=True)
class Candidate:
    """One candidate group: marker-plane box (lo, hi in mm, with the crop margin) and its score."""

    lo_mm: np.ndarray
    hi_mm: np.ndarray
    score: float


def rank_candidates(
    probability: np.ndarray, candidates: np.ndarray, grid: RectifiedGrid, config: SegmentationConfig
) -> list[Candidate]:
    """All candidate groups of a coarse pass, best first (see the module docstring)."""
    reach = max(1, round(config.merge_distance_mm * grid.px_per_mm / 2))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    grouped = cv2.dilate(candidates.astype(np.uint8), kernel)
    n, labels = cv2.connectedComponents(grouped, connectivity=8)
    labels = np.where(candidates, labels, 0)
    scores = ndimage.sum_labels(probability, labels, np.arange(1, n))
    origin = np.asarray(grid.origin_mm)
    ranked = []
    for index in np.argsort(-scores):
        ys, xs = np.nonzero(labels == index + 1)
        if len(xs) == 0:
            continue
        lo = np.array([xs.min(), ys.min()]) / grid.px_per_mm + origin - config.crop_margin_mm
        hi = np.array([xs.max() + 1, ys.max() + 1]) / grid.px_per_mm + origin + config.crop_margin_mm
        ranked.append(Candidate(lo, hi, float(scores[index])))
    return ranked

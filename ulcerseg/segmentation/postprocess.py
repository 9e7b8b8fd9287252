"""Probability map -> ulcer mask: threshold, fill holes, keep the ulcer's components."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def ulcer_mask(
    probability: np.ndarray,
    threshold: float,
    px_per_mm: float,
    min_area_mm2: float,
    merge_distance_mm: float,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Binary ulcer mask (bool, same shape) from a foreground probability map.

    Components smaller than ``min_area_mm2`` are dropped and holes are filled. One photo shows
    one ulcer: the main component is the one with the largest summed probability, and other
    components are kept only within ``merge_distance_mm`` of it, as fragments of the same
    ulcer. ``exclude`` (e.g. the marker and its quiet zone, or pixels outside the photo) is
    never foreground.
    """
    mask = probability >= threshold
    if exclude is not None:
        mask &= ~exclude
    if not mask.any():
        return mask
    mask = ndimage.binary_fill_holes(mask)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    min_px = min_area_mm2 * px_per_mm**2
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_px]
    if not big:
        return np.zeros_like(mask)
    sums = ndimage.sum_labels(probability, labels, big)
    main = big[int(np.argmax(sums))]
    main_mask = labels == main
    reach = max(1, round(merge_distance_mm * px_per_mm))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    near = cv2.dilate(main_mask.astype(np.uint8), kernel).astype(bool)
    keep = [i for i in big if i == main or np.any(near[labels == i])]
    return np.isin(labels, keep)

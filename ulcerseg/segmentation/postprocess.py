"""Probability map -> ulcer mask: threshold, fill holes, keep the ulcer's components."""

from __future__ import annotations

import cv2
import numpy as np


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` (bool) with every background region not 4-connected to the image border filled
    (as ``scipy.ndimage.binary_fill_holes``; an OpenCV flood fill, ~10x faster)."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    cv2.floodFill(padded, None, (0, 0), 2, flags=4)  # the background reached from outside
    return padded[1:-1, 1:-1] != 2


def label_sums(values: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Sum of ``values`` per label 0 .. n_labels - 1 (float64; as ``ndimage.sum_labels``)."""
    return np.bincount(labels.ravel(), weights=values.ravel().astype(np.float64), minlength=n_labels)[
        :n_labels
    ]


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
    mask = fill_holes(mask)
    if exclude is not None:  # a hole that is excluded (the marker inside a ring of foreground) stays out
        mask &= ~exclude
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    min_px = min_area_mm2 * px_per_mm**2
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_px]
    if not big:
        return np.zeros_like(mask)
    if len(big) == 1:  # one component (most photos): nothing to choose or merge
        return labels == big[0]
    sums = label_sums(probability, labels, n)[big]
    main = big[int(np.argmax(sums))]
    main_mask = labels == main
    reach = max(1, round(merge_distance_mm * px_per_mm))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    near = cv2.dilate(main_mask.astype(np.uint8), kernel).astype(bool)
    keep = [i for i in big if i == main or np.any(near[labels == i])]
    return np.isin(labels, keep)

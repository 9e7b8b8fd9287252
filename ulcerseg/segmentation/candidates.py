"""Candidate ulcer regions of the coarse pass, and the rule that ranks them.

The coarse probability map (rectified frame around the marker) is thresholded at
``coarse_threshold``; candidate pixels closer than ``merge_distance_mm`` are one group (the
fragments of one ulcer). The rule that picks the photo's ulcer among the groups:

    score = probability mass x body weight x distance weight

- probability mass: the sum of coarse probability over the group's candidate pixels;
- body weight: ``candidate_off_body_weight + (1 - candidate_off_body_weight) x f`` with f the
  fraction of the group on the body (:func:`ulcerseg.segmentation.body.body_mask`: skin and
  what skin surrounds), so red or magenta cloth and coloured cards beside the hand lose;
- distance weight: 1 up to ``candidate_max_distance_mm`` from the marker centre (the photo
  protocol places the marker next to the ulcer), then exp(-(d - max) / 10 mm).

The best-scoring groups get fine passes; the fine pass's own mass above threshold is weighted
the same way. The second-best score relative to the best is the photo's candidate ambiguity
(``quality.candidate_ambiguity``, flag ``ambiguous_ulcer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from ulcerseg.config import SegmentationConfig
from ulcerseg.geometry import RectifiedGrid
from ulcerseg.segmentation.body import body_mask


@dataclass(frozen=True)
class Candidate:
    """One candidate group: marker-plane box (lo, hi in mm, with the crop margin) and its score."""

    lo_mm: np.ndarray
    hi_mm: np.ndarray
    score: float
    weight: float = 1.0  # body x distance weight (score = mass x weight)


def rank_candidates(
    probability: np.ndarray,
    candidates: np.ndarray,
    grid: RectifiedGrid,
    config: SegmentationConfig,
    image: np.ndarray | None = None,
    marker_centre_mm: tuple[float, float] | None = None,
) -> list[Candidate]:
    """All candidate groups of a coarse pass, best first (see the module docstring).

    ``image``: the coarse rectified RGB image (for the body weight; None: weight 1);
    ``marker_centre_mm``: for the distance weight (None: weight 1).
    """
    reach = max(1, round(config.merge_distance_mm * grid.px_per_mm / 2))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    grouped = cv2.dilate(candidates.astype(np.uint8), kernel)
    labels: npt.NDArray[np.int32]
    # OpenCV's stubs type the labels as any int or float array; they are int32 (CV_32S)
    n, labels = cv2.connectedComponents(grouped, connectivity=8)  # type: ignore[assignment]
    # per-group sums over the candidate px alone, a small part of the grid (in raster order, as
    # over the whole grid: the same sums); group g's candidate px have label g
    px = np.flatnonzero(candidates.ravel())
    group = labels.ravel()[px]
    index = np.arange(1, n)
    prob = probability.ravel()[px].astype(np.float64)
    mass = np.bincount(group, weights=prob, minlength=n)[index]
    weight = np.ones(n - 1)
    if image is not None and n > 1:
        body = body_mask(image, grid.px_per_mm).ravel()[px].astype(np.float64)
        on_body_px = np.bincount(group, weights=body, minlength=n)[index]
        with np.errstate(invalid="ignore"):  # a group without px: nan, weight 1 below
            on_body = on_body_px / np.bincount(group, minlength=n)[index]
        floor = config.candidate_off_body_weight
        weight *= floor + (1 - floor) * np.nan_to_num(on_body, nan=1.0)
    origin = np.asarray(grid.origin_mm)
    ys, xs = np.divmod(px, labels.shape[1])
    if marker_centre_mm is not None and n > 1:
        total = np.maximum(mass, 1e-9)
        cx = np.bincount(group, weights=prob * xs, minlength=n)[index] / total / grid.px_per_mm + origin[0]
        cy = np.bincount(group, weights=prob * ys, minlength=n)[index] / total / grid.px_per_mm + origin[1]
        d = np.hypot(cx - marker_centre_mm[0], cy - marker_centre_mm[1])
        weight *= np.exp(-np.maximum(d - config.candidate_max_distance_mm, 0.0) / 10.0)
    scores = mass * weight
    # each group's box of candidate px (grid px, inclusive)
    unset = np.iinfo(np.int64).max
    x_lo, y_lo = np.full(n, unset), np.full(n, unset)
    x_hi, y_hi = np.full(n, -1), np.full(n, -1)
    np.minimum.at(x_lo, group, xs)
    np.minimum.at(y_lo, group, ys)
    np.maximum.at(x_hi, group, xs)
    np.maximum.at(y_hi, group, ys)
    ranked = []
    for i in np.argsort(-scores):
        g = i + 1
        if x_hi[g] < 0:
            continue
        lo = np.array([x_lo[g], y_lo[g]]) / grid.px_per_mm + origin - config.crop_margin_mm
        hi = np.array([x_hi[g] + 1, y_hi[g] + 1]) / grid.px_per_mm + origin + config.crop_margin_mm
        ranked.append(Candidate(lo, hi, float(scores[i]), float(weight[i])))
    return ranked

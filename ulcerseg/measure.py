"""Geometry of ulcer masks in the rectified marker-plane frame (mm, mm²)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ulcerseg.records import Measurement


@dataclass(frozen=True)
class MaskGeometry:
    """Size of a binary mask: area (mm²), perimeter, length and perpendicular width (mm)."""

    area_mm2: float
    perimeter_mm: float
    length_mm: float
    width_mm: float
    n_components: int
    centroid_px: tuple[float, float] | None  # (x, y) in the mask's frame


def feret_length_width(mask: np.ndarray) -> tuple[float, float]:
    """Longest extent of a mask and the extent perpendicular to it (px).

    Computed on the convex hull of pixel corners (a pixel covers its centre +/- 0.5 px), so a
    single pixel measures sqrt(2) x sqrt(2), its diagonal both ways, and a w x h rectangle its
    diagonal. Where several diameters are longest (common on the pixel lattice: a 3 x 2 and a
    2 x 3 step are equally long), the width is the largest of their perpendicular extents, so a
    mask rotated by 90° or mirrored measures the same.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0.0, 0.0
    # pixel corners: each pixel covers [x-0.5, x+0.5] x [y-0.5, y+0.5]
    pts = np.c_[xs, ys].astype(np.float32)
    offsets = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], np.float32)
    hull = cv2.convexHull((pts[:, None, :] + offsets[None]).reshape(-1, 2)).reshape(-1, 2)
    hull = hull.astype(np.float64)
    diff = hull[:, None, :] - hull[None, :, :]
    dist2 = (diff**2).sum(axis=2)
    # corners are half-integers: squared distances are exact, and so are their ties
    longest = dist2.max()
    length = float(np.sqrt(longest))
    width = 0.0
    for i, j in zip(*np.nonzero(np.triu(dist2 == longest)), strict=True):
        axis = (hull[j] - hull[i]) / max(length, 1e-12)
        proj = hull @ np.array([-axis[1], axis[0]])
        width = max(width, float(proj.max() - proj.min()))
    return length, width


def boundary_length(mask: np.ndarray) -> float:
    """Perimeter of a binary mask (px): the length of its boundary chains (OpenCV's contour
    tracing, 8-connected) through the centres of its boundary pixels, 1 px per straight and
    sqrt(2) px per diagonal step, over outer boundaries and holes of every component. On smooth
    masks this is scikit-image's ``perimeter(mask, neighborhood=4)`` (the measure before
    2026-11-27; equal to the last digit) without its ~0.6 s scipy import per run; on 1-px-wide
    lines it counts both sides, as a tracing does.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    straight = diagonal = 0
    for contour in contours:
        points = contour.reshape(-1, 2)
        steps = np.abs(np.diff(points, axis=0, append=points[:1])).sum(axis=1)  # closed chain
        straight += int(np.count_nonzero(steps == 1))
        diagonal += int(np.count_nonzero(steps == 2))
    return straight + diagonal * float(np.sqrt(2.0))


def mask_geometry(mask: np.ndarray, px_per_mm: float) -> MaskGeometry:
    """Area, perimeter, length and width of a binary mask sampled at ``px_per_mm``."""
    mask = np.asarray(mask).astype(bool)
    count = int(np.count_nonzero(mask))
    if count == 0:
        return MaskGeometry(0.0, 0.0, 0.0, 0.0, 0, None)
    n_labels, _labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    length_px, width_px = feret_length_width(mask)
    ys, xs = np.nonzero(mask)
    return MaskGeometry(
        area_mm2=count / px_per_mm**2,
        perimeter_mm=boundary_length(mask) / px_per_mm,
        length_mm=length_px / px_per_mm,
        width_mm=width_px / px_per_mm,
        n_components=n_labels - 1,
        centroid_px=(float(xs.mean()), float(ys.mean())),
    )


def measure_ulcer(
    probability: np.ndarray,
    mask: np.ndarray,
    band_masks: tuple[np.ndarray, np.ndarray],
    px_per_mm: float,
    origin_mm: tuple[float, float],
    marker_centre_mm: tuple[float, float] | None,
) -> Measurement:
    """Full measurement of the ulcer mask in a rectified grid.

    ``band_masks`` are the (tighter, looser) masks at threshold +/- delta, giving the area
    uncertainty band; ``probability`` is the network's foreground probability on the grid.
    """
    geom = mask_geometry(mask, px_per_mm)
    mean_prob = float(probability[mask > 0].mean()) if geom.area_mm2 > 0 else 0.0
    distance = None
    if geom.centroid_px is not None and marker_centre_mm is not None:
        cx = origin_mm[0] + geom.centroid_px[0] / px_per_mm
        cy = origin_mm[1] + geom.centroid_px[1] / px_per_mm
        distance = float(np.hypot(cx - marker_centre_mm[0], cy - marker_centre_mm[1]))
    low, high = (float(np.count_nonzero(m)) / px_per_mm**2 for m in band_masks)
    return Measurement(
        area_mm2=geom.area_mm2,
        perimeter_mm=geom.perimeter_mm,
        length_mm=geom.length_mm,
        width_mm=geom.width_mm,
        n_components=geom.n_components,
        mean_probability=mean_prob,
        area_low_mm2=min(low, geom.area_mm2),
        area_high_mm2=max(high, geom.area_mm2),
        marker_distance_mm=distance,
    )


def area_interval(
    area_mm2: float, band_low_mm2: float, band_high_mm2: float, floor: float, q_low: float, q_high: float
) -> tuple[float, float]:
    """Calibrated interval (mm²) of an area from its threshold band (split-conformal constants).

    The scale ``s = floor + (band_high - band_low) / area`` grows with the boundary's doubt;
    the interval is ``area x exp(q_low x s) .. area x exp(q_high x s)`` where ``q_low``/``q_high``
    are quantiles of log(true / measured) / s fitted on photos with known areas. No area (0)
    gives (0, 0).
    """
    if area_mm2 <= 0:
        return 0.0, 0.0
    s = floor + max(band_high_mm2 - band_low_mm2, 0.0) / area_mm2
    return float(area_mm2 * np.exp(q_low * s)), float(area_mm2 * np.exp(q_high * s))

"""Calibration marker detection and photo -> marker-plane geometry.

Frames: see :mod:`ulcerseg.records`. The marker's outer black square has side ``side_mm``;
its corner 0 is the marker-plane origin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ulcerseg.calibration.aruco import aruco_dictionary, marker_cells
from ulcerseg.errors import CalibrationError
from ulcerseg.geometry import apply_homography, homography_jacobian, polygon_area, reduced_to_photo
from ulcerseg.imageio import Preview, make_preview
from ulcerseg.records import Calibration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarkerDetection:
    """Accepted markers found in a photo, largest first; corners in photo px (TL, TR, BR, BL).
    ``other_ids``: markers of the dictionary seen whose IDs are not accepted (only when no
    accepted one was found: what the photo shows instead)."""

    ids: tuple[int, ...]
    corners_px: tuple[np.ndarray, ...]  # each 4 x 2 float64
    other_ids: tuple[int, ...] = ()


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def detect_markers(
    image: np.ndarray,
    dictionary: str,
    accepted_ids: tuple[int, ...],
    max_side_px: int = 1600,
    preview: Preview | None = None,
) -> MarkerDetection:
    """Find accepted markers in a photo (H x W x 3 RGB or H x W grey, uint8).

    Detection runs on a downscaled copy (``preview``, or one made at ``max_side_px``: fast on
    12-MP photos) and falls back to full resolution; corners are in full-resolution photo px.
    """
    detector = _detector(dictionary)
    preview = preview or make_preview(image, max_side_px)
    attempts = [preview, Preview(image, 1.0)] if preview.scale < 1.0 else [preview]
    others: set[int] = set()
    for level in attempts:
        s = level.scale
        corners, ids, _rejected = detector.detectMarkers(_gray(level.image))
        if ids is None:
            continue
        others.update(int(i) for i in ids.ravel() if int(i) not in accepted_ids)
        # a preview's px centres are aligned with the photo's (OpenCV resizes): preview px c is
        # photo px (c + 0.5) / s - 0.5, not c / s (a shift of 0.5 photo px at s = 1/2)
        to_photo = reduced_to_photo(1.0 / s)
        found = [
            (int(i), apply_homography(to_photo, c.reshape(4, 2).astype(np.float64)))
            for i, c in zip(ids.ravel(), corners, strict=True)
            if int(i) in accepted_ids
        ]
        if found:
            found.sort(key=lambda item: -polygon_area(item[1]))
            return MarkerDetection(tuple(i for i, _ in found), tuple(c for _, c in found))
    return MarkerDetection((), (), tuple(sorted(others)))


def _detector(dictionary: str) -> cv2.aruco.ArucoDetector:
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    return cv2.aruco.ArucoDetector(aruco_dictionary(dictionary), params)


def _why_no_marker(
    found: MarkerDetection, preview: Preview, dictionary: str, accepted_ids: tuple[int, ...]
) -> str:
    """What a photo without an accepted marker shows instead, for the site to fix: markers of
    the dictionary with other IDs (a sheet of another trial, a config listing the wrong ID:
    ``found.other_ids``), or an accepted marker seen mirrored (a selfie camera). Only on the
    failing path: one more detection, on the mirrored preview."""
    if found.other_ids:
        return f" (seen: ID {', '.join(map(str, found.other_ids))}, which marker.ids does not accept)"
    mirrored = np.ascontiguousarray(_gray(preview.image)[:, ::-1])
    _corners, ids, _rejected = _detector(dictionary).detectMarkers(mirrored)
    if ids is not None and set(ids.ravel().tolist()) & set(accepted_ids):
        return " (seen mirrored: a front camera's mirror image? take the photo with the back camera)"
    return ""


def _edge_points(gray: np.ndarray, p0: np.ndarray, p1: np.ndarray, outward: np.ndarray) -> np.ndarray:
    """Sub-pixel points of the black->white edge along the side p0->p1 (photo px)."""
    side = float(np.linalg.norm(p1 - p0))
    n_samples = int(np.clip(side / 4, 8, 40))
    half = max(3.0, 0.12 * side)  # search half-width across the edge, px
    t = np.linspace(0.15, 0.85, n_samples)
    offsets = np.linspace(-half, half, int(2 * half) * 2 + 1)
    base = p0[None, :] + t[:, None] * (p1 - p0)[None, :]
    pts = base[:, None, :] + offsets[None, :, None] * outward[None, None, :]
    prof = cv2.remap(
        np.asarray(gray, np.float32),  # no copy when the caller converted it once
        pts[..., 0].astype(np.float32),
        pts[..., 1].astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    grad = np.gradient(prof, axis=1)  # dark inside -> bright outside: positive peak
    grad = np.clip(grad, 0, None)
    k = np.argmax(grad, axis=1)
    ok = (k > 0) & (k < len(offsets) - 1) & (grad[np.arange(len(k)), k] > 2.0)
    rows = np.arange(len(k))[ok]
    k = k[ok]
    g0, g1, g2 = grad[rows, k - 1], grad[rows, k], grad[rows, k + 1]
    denom = g0 - 2 * g1 + g2
    sub = np.where(np.abs(denom) > 1e-9, 0.5 * (g0 - g2) / np.where(denom == 0, 1, denom), 0.0)
    step = offsets[1] - offsets[0]
    off = offsets[k] + np.clip(sub, -1, 1) * step
    return base[rows] + off[:, None] * outward[None, :]


def refine_corners(gray: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, float]:
    """Refine marker corners by fitting a line to each side's edge points.

    Returns the corners (4 x 2, photo px) at the intersections of the fitted lines, and the
    RMS distance (px) of the edge points from their lines: it grows when the sticker is bent
    over a curved finger, blurred, or distorted by the lens. Falls back to the input corners
    when an edge cannot be fitted.
    """
    centre = corners.mean(axis=0)
    lines = []
    residuals = []
    for i in range(4):
        p0, p1 = corners[i], corners[(i + 1) % 4]
        direction = (p1 - p0) / max(np.linalg.norm(p1 - p0), 1e-9)
        normal = np.array([direction[1], -direction[0]])
        if np.dot(normal, (p0 + p1) / 2 - centre) < 0:
            normal = -normal
        pts = _edge_points(gray, p0, p1, normal)
        if len(pts) < 5:
            return corners, float("nan")
        vx, vy, x0, y0 = cv2.fitLine(pts.astype(np.float32), cv2.DIST_L2, 0, 0.01, 0.01).ravel()
        d = (pts[:, 0] - x0) * vy - (pts[:, 1] - y0) * vx
        residuals.append(d)
        lines.append((np.array([x0, y0], float), np.array([vx, vy], float)))
    refined = np.empty_like(corners)
    for i in range(4):
        (a, u), (b, v) = lines[(i - 1) % 4], lines[i]
        mat = np.array([u, -v]).T
        if abs(np.linalg.det(mat)) < 1e-6:
            return corners, float("nan")
        s, _ = np.linalg.solve(mat, b - a)
        refined[i] = a + s * u
    if np.max(np.linalg.norm(refined - corners, axis=1)) > 0.1 * np.linalg.norm(corners[1] - corners[0]) + 2:
        log.debug("edge refinement moved a corner too far; keeping detector corners")
        return corners, float("nan")
    rms = float(np.sqrt(np.mean(np.concatenate(residuals) ** 2)))
    return refined, rms


BEND_MIN_CELL_PX = 4.0
"""Below this many photo px per marker cell, :func:`cell_bend` does not measure (NaN)."""


def cell_bend(gray: np.ndarray, corners: np.ndarray, cells: np.ndarray) -> float:
    """How far a marker is from flat, from where the edges between its cells lie.

    A sticker bent over a rounded finger keeps straight outer edges when photographed head on
    (:func:`refine_corners`' residual stays small), but its middle cells image wider than the
    outer ones, and the homography of its four corners misses the scale: areas ~7% too large on
    a finger of 10 mm radius seen from 8 cm. Each black/white edge between two cells is located across its
    middle (photo px) and compared with where the corners' homography puts it; the shifts are
    fitted per axis with a shift of every edge towards black or white (blur, exposure, ink
    spread: it moves the outer edges too, hence a scale) and the pattern of a bend, x (1 - x²)
    for an edge at x (-1..1 across the marker). Returns the larger |bend| of the two axes: about
    the relative error of the area scale (0.055 for that finger, 0.09 for an 8 mm radius; flat
    markers of synthetic photos at >= 8 px/mm: < 0.02). NaN when the cells are under
    :data:`BEND_MIN_CELL_PX` px or their edges cannot tell a bend on either axis.

    ``corners``: TL, TR, BR, BL (px of ``gray``); ``cells``: the marker's cells as oriented by
    the corners, True = black (:func:`ulcerseg.calibration.aruco.marker_cells`).
    """
    n = cells.shape[0]
    cell_px = float(np.sqrt(polygon_area(corners))) / n
    if not np.isfinite(cell_px) or cell_px < BEND_MIN_CELL_PX:
        return float("nan")
    to_px = np.linalg.inv(marker_homography(corners, 1.0))  # unit square -> photo px
    # every edge between two cells of different colour: axis 0 between columns k-1 and k
    # (constant u), axis 1 between rows; 5 points across the middle of each
    t = np.linspace(0.25, 0.75, 5)
    axis_l, k_l, j_l, pol_l = [], [], [], []
    for ax in (0, 1):
        grid = cells if ax == 0 else cells.T  # grid[j, k]: cell j along the edge, k across
        for k in range(1, n):
            for j in np.nonzero(grid[:, k - 1] != grid[:, k])[0]:
                axis_l.append(ax)
                k_l.append(k)
                j_l.append(j)
                pol_l.append(1.0 if grid[j, k - 1] else -1.0)  # +1: black below k/n, white above
    if len(axis_l) < 4:
        return float("nan")
    axis = np.repeat(axis_l, len(t))
    across = np.repeat(np.asarray(k_l, float), len(t)) / n
    along = (np.repeat(j_l, len(t)) + np.tile(t, len(axis_l))) / n
    pol = np.repeat(pol_l, len(t))
    unit = np.c_[across, along]  # (u, v) of each point
    unit[axis == 1] = unit[axis == 1, ::-1]
    centre = apply_homography(to_px, unit)
    jac = homography_jacobian(to_px, unit)  # unit -> px, N x 2 x 2
    d_across = np.where(axis[:, None] == 0, jac[:, :, 0], jac[:, :, 1])
    d_along = np.where(axis[:, None] == 0, jac[:, :, 1], jac[:, :, 0])
    normal = np.c_[d_along[:, 1], -d_along[:, 0]]
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    normal *= (np.sign(np.sum(normal * d_across, axis=1)) * pol)[:, None]  # black -> white
    half = 0.35 * cell_px  # search across the edge, px: never reaches a parallel edge
    offsets = np.linspace(-half, half, max(7, int(4 * half) | 1))
    pts = centre[:, None, :] + offsets[None, :, None] * normal[:, None, :]
    xs, ys = pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32)
    prof = cv2.remap(np.asarray(gray, np.float32), xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    grad = np.gradient(prof, axis=1)
    i = np.argmax(grad, axis=1)
    rows = np.arange(len(i))
    ok = (i > 0) & (i < len(offsets) - 1) & (grad[rows, i] > 2.0)
    rows, i = rows[ok], i[ok]
    g0, g1, g2 = grad[rows, i - 1], grad[rows, i], grad[rows, i + 1]
    den = g0 - 2 * g1 + g2
    sub = np.where(np.abs(den) > 1e-9, 0.5 * (g0 - g2) / np.where(den == 0, 1, den), 0.0)
    shift_px = offsets[i] + np.clip(sub, -1, 1) * (offsets[1] - offsets[0])
    # px along the normal -> half sides across the edge (row `axis` of the px -> unit Jacobian)
    per_px = np.abs(
        np.einsum("ni,ni->n", np.linalg.inv(jac[rows])[np.arange(len(rows)), axis[rows]], normal[rows])
    )
    shift = 2.0 * shift_px * per_px
    x, pol, on_u = 2.0 * across[rows] - 1.0, pol[rows], axis[rows] == 0
    bends = [_fit_bend(x[sel], pol[sel], shift[sel]) for sel in (on_u, ~on_u)]
    return float(np.nanmax(bends)) if np.isfinite(bends).any() else float("nan")


def _fit_bend(x: np.ndarray, pol: np.ndarray, shift: np.ndarray) -> float:
    """|bend| of one axis from the shifts (half sides, towards white) of its cell edges at ``x``
    (-1..1) with ``pol`` +1 where white lies towards +x; NaN where the edges cannot tell it.

    Fitted: a shift of every edge towards black (which moves the outer edges too, so the corners'
    scale is off by as much: b (1 - pol x)), a lean (a bend seen obliquely, (1 - x²): it moves
    the marker, not its scale) and the bend x (1 - x²). A marker whose edges lie at too few
    places for all three is fitted without the lean, then not at all (DICT_4X4_50 ID 17: its
    one white square grows the same way when bent and when blurred).
    """
    towards, lean, bend = 1.0 - pol * x, pol * (1.0 - x**2), pol * x * (1.0 - x**2)
    for design in (np.c_[towards, lean, bend], np.c_[towards, bend]):
        if len(shift) < 2 * design.shape[1] + 4:
            continue
        sv = np.linalg.svd(design, compute_uv=False)
        if sv[-1] < 0.02 * sv[0]:  # the edges cannot tell these apart
            continue
        keep = np.ones(len(shift), bool)
        for _ in range(2):  # least squares, then again without the outliers (a hair, a glint)
            coef = np.linalg.lstsq(design[keep], shift[keep], rcond=None)[0]
            resid = np.abs(shift - design @ coef)
            keep = resid <= 4.0 * 1.4826 * float(np.median(resid[keep])) + 1e-4
        return float(abs(coef[-1]))
    return float("nan")


def marker_homography(corners_px: np.ndarray, side_mm: float) -> np.ndarray:
    """3x3 homography from photo px to marker-plane mm for corners TL, TR, BR, BL."""
    dst = np.array([[0, 0], [side_mm, 0], [side_mm, side_mm], [0, side_mm]], np.float64)
    return cv2.getPerspectiveTransform(corners_px.astype(np.float32), dst.astype(np.float32)).astype(
        np.float64
    )


def local_scale_and_tilt(h_mm_to_px: np.ndarray, point_mm: np.ndarray) -> tuple[float, float]:
    """Local px per mm (geometric mean) and plane tilt (degrees) at a marker-plane point.

    Under weak perspective a square of the tilted plane images as a rectangle whose sides'
    ratio is cos(tilt), so tilt = arccos(sigma_min / sigma_max) of the local Jacobian.
    """
    sv = np.linalg.svd(homography_jacobian(h_mm_to_px, point_mm), compute_uv=False)
    px_per_mm = float(np.sqrt(sv[0] * sv[1]))
    tilt = float(np.degrees(np.arccos(np.clip(sv[1] / sv[0], 0.0, 1.0))))
    return px_per_mm, tilt


def calibrate(
    rgb: np.ndarray,
    dictionary: str,
    accepted_ids: tuple[int, ...],
    side_mm: float,
    max_side_px: int = 1600,
    preview: Preview | None = None,
) -> Calibration:
    """Find the marker in an RGB photo and return its calibration.

    ``preview`` (a downscaled copy) speeds up detection; corners are refined at full size.
    Raises :class:`CalibrationError` when no accepted marker is visible.
    """
    preview = preview or make_preview(rgb, max_side_px)
    found = detect_markers(rgb, dictionary, accepted_ids, max_side_px, preview)
    if not found.ids:
        hint = _why_no_marker(found, preview, dictionary, accepted_ids)
        raise CalibrationError(f"no marker of {dictionary} with ID in {list(accepted_ids)} found{hint}")
    # refine on a grey crop around the marker only (the edge search reaches 12% of a side)
    detected = found.corners_px[0]
    side = float(np.linalg.norm(detected[1] - detected[0]))
    lo = np.maximum(np.floor(detected.min(axis=0) - 0.5 * side - 4), 0).astype(int)
    hi = np.minimum(np.ceil(detected.max(axis=0) + 0.5 * side + 4), [rgb.shape[1], rgb.shape[0]]).astype(int)
    # float once: the edge searches of refine_corners and cell_bend sample it sub-pixel
    crop = _gray(rgb[lo[1] : hi[1], lo[0] : hi[0]]).astype(np.float32)
    corners, residual = refine_corners(crop, detected - lo)
    bend = cell_bend(crop, corners, marker_cells(dictionary, found.ids[0]))
    corners = corners + lo
    h = marker_homography(corners, side_mm)
    centre_mm = np.array([side_mm / 2, side_mm / 2])
    px_per_mm, tilt = local_scale_and_tilt(np.linalg.inv(h), centre_mm)
    return Calibration(
        marker_id=found.ids[0],
        corners_px=tuple((float(x), float(y)) for x, y in corners),
        homography=tuple(float(v) for v in (h / h[2, 2]).ravel()),
        mm_per_px=1.0 / px_per_mm,
        tilt_deg=tilt,
        residual_px=residual,
        side_mm=side_mm,
        n_markers_found=len(found.ids),
        bend=bend,
    )


def in_photo_frame(calibration: Calibration, to_photo_px: np.ndarray) -> Calibration:
    """A calibration made on a reduced copy of a photo, expressed in the photo's own px.

    ``to_photo_px`` (3x3) maps the copy's px to photo px, e.g.
    :func:`ulcerseg.geometry.reduced_to_photo`. Corners, homography, mm per px and the corner
    residual (px) change frame; tilt, bend and IDs do not.
    """
    corners = apply_homography(to_photo_px, np.asarray(calibration.corners_px, np.float64))
    h = marker_homography(corners, calibration.side_mm)
    px_per_mm, _ = local_scale_and_tilt(np.linalg.inv(h), np.full(2, calibration.side_mm / 2))
    linear = float(np.sqrt(abs(np.linalg.det(to_photo_px[:2, :2]))))
    return replace(
        calibration,
        corners_px=tuple((float(x), float(y)) for x, y in corners),
        homography=tuple(float(v) for v in (h / h[2, 2]).ravel()),
        mm_per_px=1.0 / px_per_mm,
        residual_px=calibration.residual_px * linear,
    )


def homography_matrix(calibration: Calibration) -> np.ndarray:
    """The calibration's photo px -> marker mm homography as a 3x3 array."""
    return np.asarray(calibration.homography, np.float64).reshape(3, 3)

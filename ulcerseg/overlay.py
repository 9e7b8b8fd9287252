"""Overlay images for humans: photo crop with ulcer contour, marker outline, scale bar, area."""

from __future__ import annotations

import cv2
import numpy as np

from ulcerseg.geometry import RectifiedGrid, apply_homography
from ulcerseg.records import Calibration

_GREEN = (40, 220, 40)
_BLUE = (40, 120, 255)
_WHITE = (255, 255, 255)


def mask_contours_photo(mask: np.ndarray, grid: RectifiedGrid, h_px_to_mm: np.ndarray) -> list[np.ndarray]:
    """Contours of a rectified-frame mask mapped to photo px (list of N x 2 float arrays)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    to_photo = np.linalg.inv(grid.mm_to_px() @ h_px_to_mm)
    return [apply_homography(to_photo, c.reshape(-1, 2).astype(float)) for c in contours]


def render_overlay(
    photo_rgb: np.ndarray,
    calibration: Calibration,
    contours_px: list[np.ndarray],
    area_mm2: float | None,
    label: str,
    max_side_px: int = 800,
    scale_bar_mm: float = 5.0,
    image_scale: float = 1.0,
) -> np.ndarray:
    """RGB overlay of the region spanned by marker and ulcer, at most ``max_side_px`` a side.

    ``photo_rgb`` may be a downscaled copy of the photo: ``image_scale`` = its px per photo px.
    """
    corners = np.asarray(calibration.corners_px) * image_scale
    contours_px = [c * image_scale for c in contours_px]
    pts = np.vstack([corners, *contours_px]) if contours_px else corners
    side_px = float(np.linalg.norm(corners[1] - corners[0]))
    margin = 1.5 * side_px
    h, w = photo_rgb.shape[:2]
    x0, y0 = np.maximum(np.floor(pts.min(axis=0) - margin), 0).astype(int)
    x1 = int(min(w, np.ceil(pts[:, 0].max() + margin)))
    y1 = int(min(h, np.ceil(pts[:, 1].max() + margin)))
    crop = photo_rgb[y0:y1, x0:x1]
    s = min(1.0, max_side_px / max(crop.shape[:2]))
    out = np.ascontiguousarray(cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))

    def to_out(p: np.ndarray) -> np.ndarray:
        return np.round((p - [x0, y0]) * s * 16).astype(np.int32)  # 4 fractional bits

    thick = max(1, round(out.shape[1] / 400))
    cv2.polylines(out, [to_out(corners)], True, _BLUE, thick, cv2.LINE_AA, shift=4)
    for c in contours_px:
        cv2.polylines(out, [to_out(c)], True, _GREEN, thick, cv2.LINE_AA, shift=4)
    # scale bar along the marker's x axis, starting below its bottom-left corner
    h_mm_to_px = np.diag([image_scale, image_scale, 1.0]) @ np.linalg.inv(
        np.asarray(calibration.homography).reshape(3, 3)
    )
    side = calibration.side_mm
    bar = apply_homography(h_mm_to_px, np.array([[0, side + 3], [scale_bar_mm, side + 3]]))
    ends = [tuple(int(c) for c in v) for v in to_out(bar)]
    # white bar with a dark outline: readable on the white sticker and on dark backgrounds
    cv2.line(out, ends[0], ends[1], (0, 0, 0), thick + 4, cv2.LINE_AA, shift=4)
    cv2.line(out, ends[0], ends[1], _WHITE, thick + 1, cv2.LINE_AA, shift=4)
    text = f"{label}  area {area_mm2:.1f} mm2" if area_mm2 is not None else f"{label}  no area"
    text += f"  bar {scale_bar_mm:g} mm"
    font_scale = max(0.4, out.shape[1] / 1400)
    org = (8, int(24 * font_scale * 1.6))
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, _WHITE, thick, cv2.LINE_AA)
    return out

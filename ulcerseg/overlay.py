"""Overlay images for humans: photo crop with ulcer contour, marker outline, scale bar, area, flags."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ulcerseg.geometry import RectifiedGrid, apply_homography
from ulcerseg.imageio import make_preview
from ulcerseg.records import Calibration

_GREEN = (40, 220, 40)
_BLUE = (40, 120, 255)
_WHITE = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX

__all__ = ["FLAG_WORDS", "flag_lines", "mask_contours_photo", "render_overlay"]


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
    flags: Sequence[str] = (),
) -> np.ndarray:
    """RGB overlay of the region spanned by marker and ulcer, at most ``max_side_px`` a side.

    ``photo_rgb`` may be a downscaled copy of the photo: ``image_scale`` = its px per photo px.
    The header (white on a dark box) gives ``label``, the area in mm², the scale bar's length
    and the photo's reason codes ``flags`` in words; the bar under the marker is labelled too.
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
    # halvings by 2 x 2 averaging, then bilinear: ~1/5 the cost of one fractional area resize
    small = make_preview(photo_rgb[y0:y1, x0:x1], max_side_px)
    s = small.scale
    out = np.array(small.image)  # drawn on: never the caller's pixels

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
    # label the bar itself, just past its right end
    bar_font = max(0.35, out.shape[1] / 1800)
    (tw, th), _ = cv2.getTextSize(f"{scale_bar_mm:g} mm", _FONT, bar_font, 1)
    bx = min(out.shape[1] - tw - 4, max(ends[0][0], ends[1][0]) // 16 + 6)
    by = min(out.shape[0] - 4, max(th + 4, (ends[0][1] + ends[1][1]) // 32 + th // 2))
    _draw_lines(out, [f"{scale_bar_mm:g} mm"], (bx, by - th - 3), bar_font, 1)
    area = f"area {area_mm2:.1f} mm²" if area_mm2 is not None else "no area"
    lines = [f"{label}   {area}   scale bar {scale_bar_mm:g} mm"]
    lines += flag_lines(flags)
    font_scale = max(0.5, out.shape[1] / 1100)
    _draw_lines(out, lines, (0, 0), font_scale, thick)
    return out


FLAG_WORDS: dict[str, str] = {
    "unreadable_file": "file unreadable",
    "no_marker": "no marker found",
    "ambiguous_marker": "several markers",
    "marker_too_oblique": "marker too oblique",
    "marker_distorted": "marker distorted",
    "low_resolution": "resolution too low",
    "grayscale": "grayscale photo",
    "several_images": "file holds several images: first measured",
    "marker_far_from_ulcer": "marker far from ulcer",
    "blurred": "blurred",
    "overexposed": "overexposed (too bright)",
    "underexposed": "underexposed (too dark)",
    "low_confidence": "low model confidence",
    "mask_at_border": "ulcer touches image border",
    "no_ulcer_found": "no ulcer found",
    "search_incomplete": "ulcer site partly outside photo",
    "dark_bed": "dark bed (eschar?): outline may be small",
    "processing_error": "processing error",
}


def flag_lines(flags: Sequence[str], per_line: int = 3) -> list[str]:
    """The photo's reason codes in words for the overlay header ("check: ..." lines)."""
    if not flags:
        return ["quality: no flags"]
    words = [FLAG_WORDS.get(str(f), str(f).replace("_", " ")) for f in flags]
    chunks = [words[i : i + per_line] for i in range(0, len(words), per_line)]
    return [("check: " if i == 0 else "       ") + ", ".join(c) for i, c in enumerate(chunks)]


def _segments(text: str) -> list[tuple[str, bool]]:
    """Split at "²": (text, superscript) pieces; OpenCV fonts have no superscript glyphs."""
    out: list[tuple[str, bool]] = []
    for i, piece in enumerate(text.split("²")):
        if i:
            out.append(("2", True))
        if piece:
            out.append((piece, False))
    return out


def _text_width(text: str, scale: float, thick: int) -> tuple[int, int]:
    width, height = 0, 0
    for piece, sup in _segments(text):
        (w, h), _ = cv2.getTextSize(piece, _FONT, scale * (0.6 if sup else 1.0), thick)
        width += w
        height = max(height, h)
    return width, height


def _draw_lines(
    out: np.ndarray, lines: Sequence[str], origin: tuple[int, int], scale: float, thick: int
) -> None:
    """White text lines on a dark, semi-opaque box at ``origin`` (readable on any background)."""
    sizes = [_text_width(line, scale, thick) for line in lines]
    line_h = max(h for _, h in sizes) + max(4, int(10 * scale))
    pad = max(3, int(6 * scale))
    x0, y0 = origin
    x1 = min(out.shape[1], x0 + max(w for w, _ in sizes) + 2 * pad)
    y1 = min(out.shape[0], y0 + line_h * len(lines) + pad)
    box = out[y0:y1, x0:x1]
    box[:] = (box.astype(np.float32) * 0.3).astype(out.dtype)  # 70 % black backing
    for i, line in enumerate(lines):
        x = x0 + pad
        y = y0 + pad + line_h * (i + 1) - max(4, int(10 * scale)) // 2 - 2
        for piece, sup in _segments(line):
            s = scale * (0.6 if sup else 1.0)
            yy = y - int(0.45 * line_h) if sup else y
            cv2.putText(out, piece, (x, yy), _FONT, s, _WHITE, thick, cv2.LINE_AA)
            x += cv2.getTextSize(piece, _FONT, s, thick)[0][0]

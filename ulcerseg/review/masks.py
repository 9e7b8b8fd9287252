"""Corrected masks from the review app (PNG or polygon, rectified frame) and their re-measurement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from ulcerseg.errors import DecisionError
from ulcerseg.geometry import fill_polygon, fill_polygons
from ulcerseg.measure import mask_geometry

__all__ = ["mask_from_png", "mask_from_polygon", "mask_from_review_polygons", "png_size", "remeasure_mask"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, read from the header alone (nothing decoded);
    None when ``data`` does not start like a PNG."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


_MASK_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA"})
"""Pillow modes of a corrected mask PNG (8 bits per channel or fewer; 16-bit RGB opens as RGB)."""


def mask_from_png(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (H, W) from PNG bytes: opaque bright pixels (alpha and luma >= 128) are ulcer.

    ``shape`` is the (height, width) of the rectified frame; other sizes are rejected.
    """
    import io

    size = png_size(data)
    if size is None:
        raise DecisionError("corrected mask is not a PNG")
    if size != (shape[1], shape[0]):
        raise DecisionError(
            f"corrected mask is {size[0]}x{size[1]} px, the rectified frame is {shape[1]}x{shape[0]} px"
        )
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            rgba = np.asarray(im.convert("RGBA")) if mode in _MASK_MODES else None
    except (OSError, ValueError, SyntaxError):
        # Pillow's message can hold an object repr with a memory address: it stays here (a
        # broken chunk header is a SyntaxError to Pillow)
        raise DecisionError("corrected mask is not a readable PNG") from None
    if rgba is None:
        # a 16-bit grey PNG would be clipped at 255, not scaled, by the conversion: every pixel
        # above 128 of 65535 (visually black) would be ulcer
        raise DecisionError(f"corrected mask is a {mode} PNG; save it with 8 bits per channel")
    if rgba.shape[:2] != tuple(shape):
        raise DecisionError(
            f"corrected mask is {rgba.shape[1]}x{rgba.shape[0]} px, the rectified frame is "
            f"{shape[1]}x{shape[0]} px"
        )
    luma = rgba[..., :3].max(axis=2)
    return (rgba[..., 3] >= 128) & (luma >= 128)


def mask_from_polygon(vertices: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (H, W) of a polygon given in px ``[[u, v], ...]`` (pixel centres at integers).

    A pixel is inside exactly when its centre is (the one pixel-centre rule,
    ``fill_polygon``), so a 20 x 10 px rectangle is 200 px, not the 21 x 11 of ``cv2.fillPoly``.
    """
    pts = np.asarray(vertices, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.isfinite(pts).all():
        raise DecisionError("polygon needs at least 3 finite [u, v] vertices in rectified px")
    # the one pixel-centre rule (a pixel counts when its centre is inside): cv2.fillPoly set
    # every pixel the outline touches, +15% on a small ulcer
    return fill_polygon(shape, pts)


def mask_from_review_polygons(
    polygons: Any, px_per_mm: Any, model_px_per_mm: float, shape: tuple[int, int]
) -> np.ndarray:
    """Model-frame mask (H, W) of polygons drawn in the review frame.

    ``polygons``: ``[[[u, v], ...], ...]`` in review-frame px (pixel centres at integers) at
    ``px_per_mm``; the review frame shares the model frame's origin, so model px = review px x
    ``model_px_per_mm / px_per_mm``. Filled by the pixel-centre rule
    (:func:`ulcerseg.geometry.fill_polygons`, even-odd), so the area is unbiased.
    """
    try:
        ppm = float(px_per_mm)
    except (TypeError, ValueError):
        raise DecisionError("px_per_mm must be a number") from None
    if not np.isfinite(ppm) or ppm <= 0 or ppm > 1000:
        raise DecisionError("px_per_mm must be a positive finite number")
    if not isinstance(polygons, list) or not polygons or len(polygons) > 100:
        raise DecisionError("polygons must be a list of 1 to 100 polygons")
    scaled = []
    for poly in polygons:
        try:
            pts = np.asarray(poly, dtype=np.float64)
        except (TypeError, ValueError):
            raise DecisionError("polygon vertices must be [u, v] numbers") from None
        if pts.ndim != 2 or pts.shape[1] != 2 or not 3 <= len(pts) <= 100_000 or not np.isfinite(pts).all():
            raise DecisionError("each polygon needs 3 or more finite [u, v] vertices")
        pts = pts * (model_px_per_mm / ppm)
        if not np.isfinite(pts).all():  # a scale so small that the ratio overflows
            raise DecisionError("px_per_mm is out of range")
        if (pts < -1).any() or (pts[:, 0] > shape[1]).any() or (pts[:, 1] > shape[0]).any():
            raise DecisionError("polygon lies outside the review frame")
        scaled.append(pts)
    return fill_polygons(shape, scaled)


def remeasure_mask(mask: np.ndarray, px_per_mm: float) -> dict[str, float]:
    """Area (mm² = count / px_per_mm²), perimeter, length, width (mm) of a rectified-frame mask."""
    g = mask_geometry(np.asarray(mask).astype(bool), px_per_mm)
    return {
        "area_mm2": g.area_mm2,
        "perimeter_mm": g.perimeter_mm,
        "length_mm": g.length_mm,
        "width_mm": g.width_mm,
        "n_components": g.n_components,
    }

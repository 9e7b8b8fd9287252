"""Corrected masks from the review app (PNG or polygon, rectified frame) and their re-measurement."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ulcerseg.errors import DecisionError
from ulcerseg.geometry import fill_polygon
from ulcerseg.measure import mask_geometry

__all__ = ["mask_from_png", "mask_from_polygon", "remeasure_mask"]


def mask_from_png(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (H, W) from PNG bytes: opaque bright pixels (alpha and luma >= 128) are ulcer.

    ``shape`` is the (height, width) of the rectified frame; other sizes are rejected.
    """
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgba = np.asarray(im.convert("RGBA"))
    except (OSError, ValueError) as err:
        raise DecisionError(f"corrected mask is not a readable PNG ({err})") from None
    if rgba.shape[:2] != tuple(shape):
        raise DecisionError(
            f"corrected mask is {rgba.shape[1]}x{rgba.shape[0]} px, the rectified frame is "
            f"{shape[1]}x{shape[0]} px"
        )
    luma = rgba[..., :3].max(axis=2)
    return (rgba[..., 3] >= 128) & (luma >= 128)


def mask_from_polygon(vertices: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (H, W) of a polygon given in rectified-frame px ``[[u, v], ...]``."""
    pts = np.asarray(vertices, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.isfinite(pts).all():
        raise DecisionError("polygon needs at least 3 finite [u, v] vertices in rectified px")
    # the one pixel-centre rule (a pixel counts when its centre is inside): cv2.fillPoly set
    # every pixel the outline touches, +15% on a small ulcer
    return fill_polygon(shape, pts)


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

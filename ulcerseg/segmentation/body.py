"""A colour-based skin / body mask in the rectified frame (no network).

Skin of every tone falls in a compact region of YCrCb chroma (Cr 133-180, Cb 77-135 on 0-255,
the classic rule widened a little for dark skin and warm light). Saturated red and magenta
cloth (Cr > 180 or Cb > 135), white gauze and paper (Cr ~ 128), blue/green/yellow cards fall
outside. The ulcer itself is often not skin-coloured, so the *body* is the skin mask closed
over small gaps with its holes filled: an ulcer surrounded by skin is on the body, a red
object lying beside the hand is not.
"""

from __future__ import annotations

import cv2
import numpy as np

from ulcerseg.segmentation.postprocess import fill_holes

CR_RANGE = (133, 180)
CB_RANGE = (77, 135)
MIN_LUMA = 25  # too dark to judge colour: not counted as skin


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels of an RGB uint8 image (bool, H x W)."""
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    y, cr, cb = ycrcb[..., 0], ycrcb[..., 1], ycrcb[..., 2]
    return (
        (y >= MIN_LUMA)
        & (cr >= CR_RANGE[0])
        & (cr <= CR_RANGE[1])
        & (cb >= CB_RANGE[0])
        & (cb <= CB_RANGE[1])
    )


def body_mask(rgb: np.ndarray, px_per_mm: float, close_mm: float = 1.5) -> np.ndarray:
    """Body region (bool): skin, closed over gaps up to ~``close_mm``, holes (ulcers) filled."""
    skin = skin_mask(rgb).astype(np.uint8)
    reach = max(1, round(close_mm * px_per_mm / 2))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    closed = cv2.morphologyEx(skin, cv2.MORPH_CLOSE, kernel)
    return fill_holes(closed.astype(bool))

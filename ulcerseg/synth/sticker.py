"""The printed ArUco marker sticker, rendered with exact area-coverage anti-aliasing.

The marker's outer black square is ``[0, side_mm]²`` in the marker plane (it *defines* that
frame); the white sticker extends ``quiet_mm`` beyond it on every side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ulcerseg.calibration.aruco import marker_cells
from ulcerseg.geometry import RectifiedGrid


def _coverage(centres: np.ndarray, px_per_mm: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fraction of each pixel (len P, centred at ``centres`` mm) inside each interval: P x K."""
    half = 0.5 / px_per_mm
    c = centres[:, None]
    ov = np.minimum(hi[None, :], c + half) - np.maximum(lo[None, :], c - half)
    return np.clip(ov * px_per_mm, 0, 1)


@dataclass(frozen=True)
class Sticker:
    """Marker sticker: dictionary, ID, side (mm), white quiet zone (mm), paper and ink colours."""

    dictionary: str
    marker_id: int
    side_mm: float
    quiet_mm: float
    paper: tuple[float, float, float]
    ink: float

    def bbox_mm(self) -> tuple[float, float, float, float]:
        q = self.quiet_mm
        return (-q, -q, self.side_mm + q, self.side_mm + q)

    def corners_mm(self) -> np.ndarray:
        """Outer black-square corners TL, TR, BR, BL (mm)."""
        s = self.side_mm
        return np.array([[0, 0], [s, 0], [s, s], [0, s]], np.float64)

    def render(self, grid: RectifiedGrid) -> tuple[np.ndarray, np.ndarray]:
        """Unlit colour (H x W x 3) and alpha (H x W) of the sticker on ``grid``."""
        bits = marker_cells(self.dictionary, self.marker_id).astype(np.float64)
        n = bits.shape[0]
        edges = np.linspace(0, self.side_mm, n + 1)
        xs = grid.origin_mm[0] + np.arange(grid.width) / grid.px_per_mm
        ys = grid.origin_mm[1] + np.arange(grid.height) / grid.px_per_mm
        ox = _coverage(xs, grid.px_per_mm, edges[:-1], edges[1:])
        oy = _coverage(ys, grid.px_per_mm, edges[:-1], edges[1:])
        black = (oy @ bits @ ox.T).astype(np.float32)
        x0, y0, x1, y1 = self.bbox_mm()
        sx = _coverage(xs, grid.px_per_mm, np.array([x0]), np.array([x1]))[:, 0]
        sy = _coverage(ys, grid.px_per_mm, np.array([y0]), np.array([y1]))[:, 0]
        alpha = np.outer(sy, sx).astype(np.float32)
        paper = np.asarray(self.paper, np.float32)
        col = paper[None, None, :] + black[..., None] * (np.float32(self.ink) - paper[None, None, :])
        return col.astype(np.float32), alpha

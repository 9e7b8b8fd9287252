"""Raster grids over the marker plane and small shared helpers for the renderer.

A :class:`Grid` is a rectified-frame raster (see :mod:`ulcerseg.records`): pixel centre
``(u, v)`` is the marker-plane point ``(x0 + u / px_per_mm, y0 + v / px_per_mm)`` in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Grid:
    """An axis-aligned raster over the marker plane (mm origin, px per mm, size in px)."""

    x0: float
    y0: float
    px_per_mm: float
    width: int
    height: int

    @classmethod
    def covering(cls, x_min: float, y_min: float, x_max: float, y_max: float, px_per_mm: float) -> Grid:
        """Smallest grid at ``px_per_mm`` whose pixel centres cover the mm box."""
        w = max(1, int(np.ceil((x_max - x_min) * px_per_mm)) + 1)
        h = max(1, int(np.ceil((y_max - y_min) * px_per_mm)) + 1)
        return cls(float(x_min), float(y_min), float(px_per_mm), w, h)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def xs(self) -> np.ndarray:
        """Marker-plane x (mm) of pixel centres, shape (1, width), float32."""
        return (self.x0 + np.arange(self.width, dtype=np.float32) / self.px_per_mm)[None, :].astype(
            np.float32
        )

    def ys(self) -> np.ndarray:
        """Marker-plane y (mm) of pixel centres, shape (height, 1), float32."""
        return (self.y0 + np.arange(self.height, dtype=np.float32) / self.px_per_mm)[:, None].astype(
            np.float32
        )

    def px_to_mm(self) -> np.ndarray:
        """3x3 affine: grid px -> marker-plane mm."""
        p = self.px_per_mm
        return np.array([[1 / p, 0, self.x0], [0, 1 / p, self.y0], [0, 0, 1]], np.float64)

    def mm_to_px(self, pts_mm: np.ndarray) -> np.ndarray:
        """Map N x 2 marker-plane points (mm) to grid px."""
        pts = np.asarray(pts_mm, np.float64)
        return (pts - [self.x0, self.y0]) * self.px_per_mm

    def sub(self, x_min: float, y_min: float, x_max: float, y_max: float) -> tuple[Grid, slice, slice] | None:
        """The part of this grid inside a mm box, with its row and column slices (None if empty)."""
        p = self.px_per_mm
        u0 = max(0, int(np.floor((x_min - self.x0) * p)))
        v0 = max(0, int(np.floor((y_min - self.y0) * p)))
        u1 = min(self.width, int(np.ceil((x_max - self.x0) * p)) + 1)
        v1 = min(self.height, int(np.ceil((y_max - self.y0) * p)) + 1)
        if u1 <= u0 or v1 <= v0:
            return None
        g = Grid(self.x0 + u0 / p, self.y0 + v0 / p, p, u1 - u0, v1 - v0)
        return g, slice(v0, v1), slice(u0, u1)


@dataclass(frozen=True)
class Lattice:
    """A smooth random field defined in mm: values on a coarse lattice, sampled bicubically."""

    values: np.ndarray  # (ny, nx) float32
    x0: float
    y0: float
    spacing_mm: float

    @classmethod
    def random(
        cls, rng: np.random.Generator, centre: tuple[float, float], extent_mm: float, spacing_mm: float
    ) -> Lattice:
        n = int(np.ceil(extent_mm / spacing_mm)) + 4
        vals = rng.standard_normal((n, n)).astype(np.float32)
        half = n * spacing_mm / 2
        return cls(vals, centre[0] - half, centre[1] - half, spacing_mm)

    def sample(self, grid: Grid) -> np.ndarray:
        """Field values at the grid's pixel centres, shape (height, width), float32, ~N(0, 0.5)."""
        s = self.spacing_mm
        k = 1.0 / (grid.px_per_mm * s)
        m = np.array([[k, 0, (grid.x0 - self.x0) / s], [0, k, (grid.y0 - self.y0) / s]], np.float64)
        return cv2.warpAffine(
            self.values,
            m,
            (grid.width, grid.height),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``e0`` to 1 at ``e1`` (float32)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def fine_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """White noise blurred by ``sigma_px`` and renormalised to unit std (float32)."""
    n = rng.standard_normal(shape, dtype=np.float32)
    if sigma_px > 0.3:
        n = cv2.GaussianBlur(n, (0, 0), sigma_px)
        n *= np.float32(1.0 / max(float(n.std()), 1e-6))
    return n


def polygon_area(poly: np.ndarray) -> float:
    """Shoelace area of a closed polygon given as N x 2 vertices (units²)."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def fill_polygon(shape: tuple[int, int], poly_px: np.ndarray, antialias: bool = False) -> np.ndarray:
    """Rasterise a polygon given in px (pixel centres at integers) into a uint8 0/255 mask.

    Without ``antialias`` a pixel is set exactly when its centre lies inside the polygon
    (even-odd scanline rule), so the pixel count is an unbiased estimate of the polygon area
    (unlike ``cv2.fillPoly``, which also sets every pixel its outline touches).
    """
    h, w = shape
    mask = np.zeros(shape, np.uint8)
    if len(poly_px) < 3:
        return mask
    if antialias:
        pts = np.round(np.asarray(poly_px, np.float64) * 16).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=4)
        return mask
    p = np.asarray(poly_px, np.float64)
    q = np.roll(p, -1, axis=0)
    v0 = max(0, int(np.ceil(p[:, 1].min())))
    v1 = min(h - 1, int(np.floor(p[:, 1].max())))
    if v1 < v0:
        return mask
    ys = np.arange(v0, v1 + 1, dtype=np.float64)[:, None]
    ylo, yhi = np.minimum(p[:, 1], q[:, 1]), np.maximum(p[:, 1], q[:, 1])
    crosses = (ys >= ylo) & (ys < yhi)  # half-open: each vertex counted once
    dy = np.where(q[:, 1] != p[:, 1], q[:, 1] - p[:, 1], 1.0)
    xs = p[:, 0] + (ys - p[:, 1]) * (q[:, 0] - p[:, 0]) / dy
    xs = np.sort(np.where(crosses, xs, np.inf), axis=1)
    n_max = int(crosses.sum(axis=1).max())
    xs = xs[:, : n_max - n_max % 2]
    u0 = max(0, int(np.ceil(p[:, 0].min())))
    u1 = min(w, int(np.floor(p[:, 0].max())) + 1)
    if u1 <= u0:
        return mask
    starts = np.clip(np.ceil(xs[:, 0::2]), u0, u1) - u0
    stops = np.clip(np.ceil(xs[:, 1::2]), u0, u1) - u0
    diff = np.zeros((len(ys), u1 - u0 + 1), np.int32)
    rows = np.broadcast_to(np.arange(len(ys))[:, None], starts.shape)
    ok = np.isfinite(starts) & np.isfinite(stops)
    np.add.at(diff, (rows[ok], starts[ok].astype(np.int64)), 1)
    np.add.at(diff, (rows[ok], stops[ok].astype(np.int64)), -1)
    inside = np.cumsum(diff[:, : u1 - u0], axis=1) > 0
    mask[v0 : v1 + 1, u0:u1] = inside.astype(np.uint8) * 255
    return mask

"""Plane geometry shared by every stage: the marker-plane grid, homographies, polygons.

Frames (see docs/architecture.md): photo px and rectified px have pixel centres at integer
coordinates; the marker plane is in mm. Everything here is pure numpy (OpenCV only for the
anti-aliased rendering path), so calibration, measuring, synthesis, review and QA rasterise
and measure a polygon the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# --------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class RectifiedGrid:
    """A pixel grid on the marker plane: pixel centre (u, v) is mm (x0 + u / px_per_mm, y0 + v / px_per_mm).

    ``origin_mm`` = (x0, y0) is the marker-plane point (mm) of pixel centre (0, 0).
    """

    origin_mm: tuple[float, float]
    px_per_mm: float
    width: int
    height: int

    @classmethod
    def covering(
        cls, x_min: float, y_min: float, x_max: float, y_max: float, px_per_mm: float
    ) -> RectifiedGrid:
        """Smallest grid at ``px_per_mm`` whose pixel centres cover the mm box."""
        w = max(1, int(np.ceil((x_max - x_min) * px_per_mm)) + 1)
        h = max(1, int(np.ceil((y_max - y_min) * px_per_mm)) + 1)
        return cls((float(x_min), float(y_min)), float(px_per_mm), w, h)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in px, the numpy shape of an image on this grid."""
        return self.height, self.width

    def mm_to_px(self) -> np.ndarray:
        """3x3 affine matrix from marker mm to grid px."""
        p = self.px_per_mm
        return np.array([[p, 0, -p * self.origin_mm[0]], [0, p, -p * self.origin_mm[1]], [0, 0, 1.0]])

    def px_to_mm(self) -> np.ndarray:
        """3x3 affine matrix from grid px to marker mm."""
        p = self.px_per_mm
        return np.array([[1 / p, 0, self.origin_mm[0]], [0, 1 / p, self.origin_mm[1]], [0, 0, 1.0]])

    def xs(self) -> np.ndarray:
        """Marker-plane x (mm) of pixel centres, shape (1, width), float32."""
        x = self.origin_mm[0] + np.arange(self.width, dtype=np.float32) / self.px_per_mm
        return x[None, :].astype(np.float32)

    def ys(self) -> np.ndarray:
        """Marker-plane y (mm) of pixel centres, shape (height, 1), float32."""
        y = self.origin_mm[1] + np.arange(self.height, dtype=np.float32) / self.px_per_mm
        return y[:, None].astype(np.float32)

    def scaled(self, factor: float) -> RectifiedGrid:
        """The same region at ``factor`` times the resolution."""
        return RectifiedGrid(
            self.origin_mm,
            self.px_per_mm * factor,
            max(1, round(self.width * factor)),
            max(1, round(self.height * factor)),
        )

    def crop(self, x0: int, y0: int, x1: int, y1: int) -> RectifiedGrid:
        """Sub-grid of pixel columns x0:x1 and rows y0:y1."""
        p = self.px_per_mm
        return RectifiedGrid((self.origin_mm[0] + x0 / p, self.origin_mm[1] + y0 / p), p, x1 - x0, y1 - y0)

    def sub(
        self, x_min: float, y_min: float, x_max: float, y_max: float
    ) -> tuple[RectifiedGrid, slice, slice] | None:
        """The part of this grid inside a mm box, with its row and column slices (None if empty)."""
        p = self.px_per_mm
        ox, oy = self.origin_mm
        u0 = max(0, int(np.floor((x_min - ox) * p)))
        v0 = max(0, int(np.floor((y_min - oy) * p)))
        u1 = min(self.width, int(np.ceil((x_max - ox) * p)) + 1)
        v1 = min(self.height, int(np.ceil((y_max - oy) * p)) + 1)
        if u1 <= u0 or v1 <= v0:
            return None
        return self.crop(u0, v0, u1, v1), slice(v0, v1), slice(u0, u1)


# --------------------------------------------------------------------------- homographies


def as_homography(homography: Sequence[float] | np.ndarray | str) -> np.ndarray:
    """3x3 float64 matrix from 9 row-major numbers, a 3x3 array or a JSON list string."""
    if isinstance(homography, str):
        import json

        homography = json.loads(homography)
    h = np.asarray(homography, dtype=np.float64)
    if h.size != 9:
        raise ValueError(f"homography must be 9 finite numbers, got {h.size}")
    if not np.all(np.isfinite(h)):
        raise ValueError(
            f"homography must be 9 finite numbers, got {int(np.sum(~np.isfinite(h)))} not finite"
        )
    return h.reshape(3, 3)


def reduced_to_photo(reduction: float) -> np.ndarray:
    """3x3 map from the px of a photo decoded or resized at 1/``reduction`` of its size to
    photo px (px centres: reduced px i covers photo px r*i .. r*i + r - 1)."""
    r = float(reduction)
    return np.array([[r, 0.0, (r - 1) / 2], [0.0, r, (r - 1) / 2], [0.0, 0.0, 1.0]])


def apply_homography(
    h: np.ndarray | Sequence[float], points: np.ndarray, *, check_horizon: bool = False
) -> np.ndarray:
    """Map N x 2 points through a 3x3 homography ``h`` (matrix first, then points).

    ``h`` may also be 9 row-major numbers. With ``check_horizon`` a point that maps onto or
    behind the homography's horizon (w <= 0) raises ValueError instead of giving a mirrored point.
    """
    m = np.asarray(h, np.float64)
    if m.shape != (3, 3):
        m = as_homography(m)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    hom = np.c_[pts, np.ones(len(pts))] @ m.T
    if check_horizon and np.any(hom[:, 2] <= 0):
        raise ValueError("polygon crosses the horizon of the homography")
    return hom[:, :2] / hom[:, 2:3]


def homography_jacobian(h: np.ndarray, point: np.ndarray) -> np.ndarray:
    """2x2 Jacobian of the map ``h`` at ``point`` (independent of the homography's scale);
    N x 2 x 2 for N x 2 points."""
    p = np.asarray(point, np.float64)
    hx = np.c_[p.reshape(-1, 2), np.ones(p.size // 2)] @ h.T  # N x 3
    w = hx[:, 2, None, None]
    jac = (h[None, :2, :2] * w - hx[:, :2, None] * h[None, None, 2, :2]) / w**2
    return jac if p.ndim == 2 else jac[0]


# --------------------------------------------------------------------------- polygons


def polygon_area(polygon: np.ndarray) -> float:
    """Unsigned shoelace area of a closed polygon given as N x 2 vertices (units²)."""
    return abs(signed_polygon_area(polygon))


def signed_polygon_area(polygon: np.ndarray) -> float:
    """Signed shoelace area (units²; positive when counter-clockwise with y up)."""
    p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


FILL_BAND_ELEMENTS = 1 << 20
"""Rows per band x (edges + image width) that :func:`fill_polygons` works on at once: its
temporaries are a few arrays of that many elements (~8 MB each), whatever the polygon."""


def fill_polygons(shape: tuple[int, int], polygons: Sequence[np.ndarray]) -> np.ndarray:
    """Boolean mask (H, W) of pixels whose CENTRE lies inside the polygons (px, centres at integers).

    Several polygons combine even-odd (a polygon inside another is a hole). A pixel is inside
    exactly when its centre is, so the pixel count is an unbiased estimate of the polygon area
    (a 20 x 10 px rectangle gives 200 px); ``cv2.fillPoly`` instead sets every pixel the outline
    touches, which over-counts small shapes by a one-pixel rim. Rows are filled in bands of
    :data:`FILL_BAND_ELEMENTS`, so memory stays bounded for any number of edges.
    """
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), bool)
    edges_p, edges_q = [], []
    for poly in polygons:
        p = np.asarray(poly, np.float64).reshape(-1, 2)
        if len(p) < 3:
            continue
        edges_p.append(p)
        edges_q.append(np.roll(p, -1, axis=0))
    if not edges_p or h == 0 or w == 0:
        return mask
    p, q = np.concatenate(edges_p), np.concatenate(edges_q)
    if not np.isfinite(p).all():
        raise ValueError("polygon vertices must be finite")
    v0 = max(0, int(np.ceil(p[:, 1].min())))
    v1 = min(h - 1, int(np.floor(p[:, 1].max())))
    u0 = max(0, int(np.ceil(p[:, 0].min())))
    u1 = min(w, int(np.floor(p[:, 0].max())) + 1)
    if v1 < v0 or u1 <= u0:
        return mask
    ylo, yhi = np.minimum(p[:, 1], q[:, 1]), np.maximum(p[:, 1], q[:, 1])
    # a band's temporaries are rows x edges (crossings) and rows x width (span counts): bound both
    rows = max(1, FILL_BAND_ELEMENTS // (len(p) + u1 - u0 + 1))
    for b0 in range(v0, v1 + 1, rows):
        b1 = min(v1, b0 + rows - 1)
        # only edges spanning some row of the band can cross it; the others add no crossing
        near = (yhi > b0) & (ylo <= b1)
        mask[b0 : b1 + 1, u0:u1] = _fill_band(b0, b1, p[near], q[near], u0, u1)
    return mask


def _fill_band(v0: int, v1: int, p: np.ndarray, q: np.ndarray, u0: int, u1: int) -> np.ndarray:
    """Inside-mask of rows v0..v1 (inclusive), columns u0..u1-1 (px) for edges p -> q (even-odd)."""
    ys = np.arange(v0, v1 + 1, dtype=np.float64)[:, None]
    ylo, yhi = np.minimum(p[:, 1], q[:, 1]), np.maximum(p[:, 1], q[:, 1])
    crosses = (ys >= ylo) & (ys < yhi)  # half-open: each vertex counted once
    if not crosses.any():
        return np.zeros((len(ys), u1 - u0), bool)
    # a crossing multiplies two coordinate differences, which overflowed for an edge with a
    # vertex beyond ~1e150 px (inf, or inf - inf = NaN: whole rows came out wrong). Such an edge
    # is worked out scaled by a power of two (exact) to below 2^480; every other edge is not
    # scaled, and comes out bit for bit as before
    big = np.maximum(np.abs(p).max(axis=1), np.abs(q).max(axis=1))
    scale = np.ldexp(1.0, np.minimum(0, 480 - np.frexp(np.maximum(big, v1 + 1.0))[1]))
    scaled = bool((scale != 1.0).any())
    if scaled:
        p, q, ys = p * scale[:, None], q * scale[:, None], ys * scale
    dy = np.where(q[:, 1] != p[:, 1], q[:, 1] - p[:, 1], 1.0)
    # the quotient may still overflow (a nearly flat edge): to an infinity of the right sign
    with np.errstate(over="ignore"):
        xs = p[:, 0] + (ys - p[:, 1]) * (q[:, 0] - p[:, 0]) / dy
        if scaled:
            xs /= scale
    xs = np.sort(np.where(crosses, xs, np.inf), axis=1)
    n_max = int(crosses.sum(axis=1).max())
    del crosses
    xs = xs[:, : n_max - n_max % 2]
    # centre u is inside a span [a, b) when ceil(a) <= u < ceil(b)
    starts = np.clip(np.ceil(xs[:, 0::2]), u0, u1) - u0
    stops = np.clip(np.ceil(xs[:, 1::2]), u0, u1) - u0
    del xs
    diff = np.zeros((len(ys), u1 - u0 + 1), np.int32)
    rows = np.broadcast_to(np.arange(len(ys))[:, None], starts.shape)
    ok = np.isfinite(starts) & np.isfinite(stops)
    np.add.at(diff, (rows[ok], starts[ok].astype(np.int64)), 1)
    np.add.at(diff, (rows[ok], stops[ok].astype(np.int64)), -1)
    return np.cumsum(diff[:, : u1 - u0], axis=1) > 0


def fill_polygon(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """Boolean mask (H, W) of pixels whose centre lies inside one polygon (px); see :func:`fill_polygons`."""
    return fill_polygons(shape, [polygon])


def render_polygon_antialiased(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """uint8 0..255 coverage-like rendering of a polygon (px) with anti-aliased edges.

    For drawing (synthetic images), not for counting: use :func:`fill_polygon` for masks.
    """
    mask = np.zeros((int(shape[0]), int(shape[1])), np.uint8)
    if len(polygon) < 3:
        return mask
    pts = np.round(np.asarray(polygon, np.float64) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    return mask

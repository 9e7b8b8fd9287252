"""Resampling photos onto the marker plane at a fixed physical resolution."""

from __future__ import annotations

import cv2
import numpy as np

from ulcerseg.geometry import RectifiedGrid, apply_homography, fill_polygon, homography_jacobian
from ulcerseg.imageio import downscale

HORIZON_DEPTH_RATIO = 1000.0
"""Where the marker plane's horizon crosses a photo, its footprint keeps the plane up to this
many times the marker's depth from the camera (far beyond any search region)."""


def photo_footprint_mm(h_px_to_mm: np.ndarray, width: int, height: int) -> np.ndarray:
    """The photo's outline mapped to the marker plane (N x 2, mm; the 4 corners in most photos).

    A photo taken obliquely can show the plane's horizon: photo px beyond it see no point of the
    plane in front of the camera, and the homography maps them to mirrored points on the far
    side, which made the footprint (and the search grid built from it) a sliver away from the
    marker. The outline is therefore first cut to the photo px that see the plane in front of
    the camera, no deeper than :data:`HORIZON_DEPTH_RATIO` x the marker's depth. Empty (0 x 2)
    when no photo px sees the plane in front.
    """
    h = np.asarray(h_px_to_mm, np.float64)
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float)
    # w of a photo px is proportional to 1 / depth of the plane point it sees; the marker's
    # corner 0 (mm origin) is in front, at w = 1 / q[2] with q its homogeneous photo point
    q = np.linalg.solve(h, np.array([0.0, 0.0, 1.0]))
    if q[2] == 0:
        return np.empty((0, 2))
    depth_inv = (np.c_[corners, np.ones(4)] @ h[2]) * q[2]  # = marker depth / depth, 1 at the marker
    keep = depth_inv - 1.0 / HORIZON_DEPTH_RATIO
    if np.all(keep > 0):
        return apply_homography(h, corners)
    clipped = []  # Sutherland-Hodgman against the line keep = 0
    for i in range(4):
        j = (i + 1) % 4
        if keep[i] > 0:
            clipped.append(corners[i])
        if (keep[i] > 0) != (keep[j] > 0):
            t = keep[i] / (keep[i] - keep[j])
            clipped.append(corners[i] + t * (corners[j] - corners[i]))
    if len(clipped) < 3:
        return np.empty((0, 2))
    return apply_homography(h, np.asarray(clipped))


def search_grid(
    h_px_to_mm: np.ndarray,
    image_size: tuple[int, int],
    centre_mm: tuple[float, float],
    radius_mm: float,
    px_per_mm: float,
) -> RectifiedGrid:
    """Grid covering the square of ``radius_mm`` around ``centre_mm``, clipped to the photo."""
    width, height = image_size
    foot = photo_footprint_mm(h_px_to_mm, width, height)
    lo, hi = np.asarray(centre_mm) - radius_mm, np.asarray(centre_mm) + radius_mm
    if len(foot):
        lo, hi = np.maximum(foot.min(axis=0), lo), np.minimum(foot.max(axis=0), hi)
    hi = np.maximum(hi, lo + 1.0 / px_per_mm)
    size = np.ceil((hi - lo) * px_per_mm).astype(int)
    return RectifiedGrid((float(lo[0]), float(lo[1])), px_per_mm, int(size[0]), int(size[1]))


def rectify(image: np.ndarray, h_px_to_mm: np.ndarray, grid: RectifiedGrid) -> np.ndarray:
    """Resample ``image`` (photo frame) onto ``grid``; pixels outside the photo are 0.

    When the photo is much finer than the grid, the photo region is first shrunk to ~2 photo px
    per grid px (:func:`~ulcerseg.imageio.downscale`: 2 x 2 averaging, then bilinear) so the warp
    does not alias (and so cost follows the region, not the megapixels).
    """
    h_px_to_grid = grid.mm_to_px() @ h_px_to_mm
    # photo region that maps into the grid
    grid_corners = np.array([[0, 0], [grid.width, 0], [grid.width, grid.height], [0, grid.height]], float)
    photo_pts = apply_homography(np.linalg.inv(h_px_to_grid), grid_corners)
    x0, y0 = np.floor(np.clip(photo_pts.min(axis=0), 0, None)).astype(int)
    x1 = int(min(image.shape[1], np.ceil(photo_pts[:, 0].max()) + 1))
    y1 = int(min(image.shape[0], np.ceil(photo_pts[:, 1].max()) + 1))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((grid.height, grid.width, *image.shape[2:]), image.dtype)
    region = image[y0:y1, x0:x1]
    # grid px per photo px at the grid centre (area ratio, so it works under perspective)
    jac = homography_jacobian(np.linalg.inv(h_px_to_grid), np.array([grid.width / 2, grid.height / 2]))
    shrink = 1.0 / np.sqrt(max(abs(np.linalg.det(jac)), 1e-12))
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])
    if shrink < 0.5:
        f = min(1.0, 2.0 * shrink)  # keep ~2 photo px per grid px before the warp
        region = downscale(region, f)
        sy, sx = region.shape[0] / (y1 - y0), region.shape[1] / (x1 - x0)
        # OpenCV resizes align pixel centres: shrunk px i is region px (i + 0.5) / s - 0.5 (not
        # i / s, which moved the rectified image by (1 / s - 1) / 2 photo px up and left)
        shift = shift @ np.array([[1 / sx, 0, (1 / sx - 1) / 2], [0, 1 / sy, (1 / sy - 1) / 2], [0, 0, 1.0]])
    return cv2.warpPerspective(
        region,
        h_px_to_grid @ shift,
        (grid.width, grid.height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def valid_region(h_px_to_mm: np.ndarray, image_size: tuple[int, int], grid: RectifiedGrid) -> np.ndarray:
    """Boolean mask of grid pixels whose centre lies inside the photo."""
    foot = photo_footprint_mm(h_px_to_mm, *image_size)
    poly = apply_homography(grid.mm_to_px(), foot)
    return fill_polygon(grid.shape, poly)

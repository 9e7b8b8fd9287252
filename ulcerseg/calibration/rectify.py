"""Resampling photos onto the marker plane at a fixed physical resolution."""

from __future__ import annotations

import cv2
import numpy as np

from ulcerseg.geometry import RectifiedGrid, apply_homography, fill_polygon, homography_jacobian
from ulcerseg.imageio import downscale


def photo_footprint_mm(h_px_to_mm: np.ndarray, width: int, height: int) -> np.ndarray:
    """The photo's outline mapped to the marker plane (4 x 2, mm)."""
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float)
    return apply_homography(h_px_to_mm, corners)


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
    lo = np.maximum(foot.min(axis=0), np.asarray(centre_mm) - radius_mm)
    hi = np.minimum(foot.max(axis=0), np.asarray(centre_mm) + radius_mm)
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
        shift = shift @ np.array([[1 / sx, 0, 0], [0, 1 / sy, 0], [0, 0, 1.0]])
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

"""Smooth random fields and small shared helpers for the renderer.

Rasters over the marker plane are :class:`ulcerseg.geometry.RectifiedGrid`s.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ulcerseg.geometry import RectifiedGrid


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

    def sample(self, grid: RectifiedGrid) -> np.ndarray:
        """Field values at the grid's pixel centres, shape (height, width), float32, ~N(0, 0.5)."""
        s = self.spacing_mm
        k = 1.0 / (grid.px_per_mm * s)
        gx, gy = grid.origin_mm
        m = np.array([[k, 0, (gx - self.x0) / s], [0, k, (gy - self.y0) / s]], np.float64)
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
        # OpenCV's stubs type the result as any int or float array; it keeps float32
        n = cv2.GaussianBlur(n, (0, 0), sigma_px)  # type: ignore[assignment]
        n *= np.float32(1.0 / max(float(n.std()), 1e-6))
    return n

"""Rectified synthetic training tiles: the marker plane rendered directly at ``px_per_mm``.

The tiles look like photos that the pipeline has already rectified to the marker plane: camera
degradations (blur, sensor noise, white balance, exposure, JPEG) are applied on the tile.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from ulcerseg.errors import InputError
from ulcerseg.geometry import RectifiedGrid, apply_homography, fill_polygon
from ulcerseg.imageio import write_png
from ulcerseg.synth.scene import render_plane, sample_scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """A rectified tile: RGB uint8 image (H x W x 3), ulcer mask (H x W, 0/255), its grid, seed."""

    image: np.ndarray
    mask: np.ndarray
    grid: RectifiedGrid
    seed: int
    true_area_mm2: float


def degrade_rgb(
    img: np.ndarray, rng: np.random.Generator, blur_px: float, noise: float, quality: int
) -> np.ndarray:
    """Blur (px), add Gaussian noise (std in 0..255 units) and JPEG-compress an RGB uint8 image."""
    out = img
    if blur_px > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), blur_px)
    if noise > 0:
        n = rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise)
        n += rng.standard_normal(out.shape[:2], dtype=np.float32)[..., None] * np.float32(noise)
        out = np.clip(out.astype(np.float32) + n, 0, 255).astype(np.uint8)
    _ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert decoded is not None  # the JPEG OpenCV just encoded from a uint8 RGB image
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def render_tile(seed: int, px_per_mm: float = 10.0, tile_px: int = 256) -> Tile:
    """One rectified tile at ``px_per_mm`` with its ulcer mask (deterministic from ``seed``).

    About 80% of tiles show an ulcer, ~8% a healed finger (faint scar, empty mask) and ~12% are
    centred on the calibration marker (a hard negative; the ulcer may be partly in view).
    """
    rng = np.random.default_rng(seed)
    kind = rng.choice(["ulcer", "healed", "marker"], p=[0.8, 0.08, 0.12])
    scene = sample_scene(rng, area_mm2=0.0 if kind == "healed" else None)
    size_mm = tile_px / px_per_mm
    if kind == "marker":
        cx, cy = scene.marker_centre_mm
        cx, cy = cx + rng.uniform(-0.3, 0.3) * size_mm, cy + rng.uniform(-0.3, 0.3) * size_mm
    else:
        cx = scene.ulcer_centre_mm[0] + rng.uniform(-0.3, 0.3) * size_mm
        cy = scene.ulcer_centre_mm[1] + rng.uniform(-0.3, 0.3) * size_mm
    grid = RectifiedGrid((cx - size_mm / 2, cy - size_mm / 2), px_per_mm, tile_px, tile_px)
    plane = render_plane(scene, grid)
    img = (np.clip(plane, 0, 1) * 255 + 0.5).astype(np.uint8)
    blur = float(rng.uniform(0.0, 1.3)) if rng.random() < 0.7 else 0.0
    img = degrade_rgb(img, rng, blur, float(rng.uniform(0.5, 4.0)), int(rng.integers(60, 96)))
    mask = (
        fill_polygon(grid.shape, apply_homography(grid.mm_to_px(), scene.ulcer.polygon_mm)).astype(np.uint8)
        * 255
    )
    return Tile(img, mask, grid, seed, scene.ulcer.area_mm2)


def generate_training_set(
    out_dir: str | Path,
    n: int,
    px_per_mm: float = 10.0,
    tile_px: int = 256,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``n`` rectified tiles as ``images/NNNN.png`` + ``masks/NNNN.png`` (0/255) + dataset.yaml.

    Tile ``i`` uses seed ``seed * 1_000_003 + i`` so sets with different seeds do not overlap.
    ``progress(k)`` is called after each tile (for a CLI progress bar). The bounds are ``synth
    dataset``'s: n >= 1, px_per_mm 0.5-100, tile_px 32-4096, seed >= 0 (else InputError).
    """
    from ulcerseg.synth.trial import check_seed

    if not (isinstance(n, numbers.Integral) and n >= 1):
        raise InputError(f"synthetic dataset: {n!r} tiles; need at least 1")
    if not (math.isfinite(px_per_mm) and 0.5 <= px_per_mm <= 100):
        raise InputError(f"synthetic dataset: px_per_mm {px_per_mm!r}; need a finite number 0.5-100")
    if not (isinstance(tile_px, numbers.Integral) and 32 <= tile_px <= 4096):
        raise InputError(f"synthetic dataset: tile_px {tile_px!r}; need an integer 32-4096")
    check_seed("synthetic dataset", seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(n - 1)))
    for i in range(n):
        tile = render_tile(seed * 1_000_003 + i, px_per_mm, tile_px)
        stem = f"{i:0{width}d}"
        write_png(out / "images" / f"{stem}.png", tile.image)
        write_png(out / "masks" / f"{stem}.png", tile.mask)
        if progress:
            progress(1)
    meta = {"name": out.name, "px_per_mm": float(px_per_mm), "source": "synthetic", "seed": seed, "n": n}
    (out / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    log.info("wrote %d synthetic tiles to %s", n, out)
    return out

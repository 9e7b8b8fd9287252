"""Synthetic calibrated photographs: a marker-plane scene projected through a random camera.

Rendering is split for speed: the whole visible plane is drawn once at a moderate px per mm and
warped to the photo with one ``cv2.warpPerspective``; the ulcer and the marker sticker are then
re-rendered at photo resolution in small patches and composited in their photo regions, so the
marker edges and the wound border stay sharp on 12-MP photos. Photo-level degradations (tone
curve, defocus or motion blur, sensor noise) run on uint8 with OpenCV; JPEG compression happens
when the photo is written (its quality is part of the ground truth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ulcerseg.geometry import RectifiedGrid, apply_homography, fill_polygon
from ulcerseg.synth.camera import Camera, mm_per_px_at, sample_camera
from ulcerseg.synth.scene import Scene, lighting, render_plane, sample_scene, ulcer_layer

PLANE_BUDGET_PX = 2_000_000  # max pixels of the coarse plane raster (keeps 12 MP under ~1.5 s)
Layer = Callable[[RectifiedGrid], tuple[np.ndarray, np.ndarray]]  # grid -> unlit colour (H x W x 3), alpha


@dataclass(frozen=True)
class PhotoConfig:
    """What to render. ``mm_per_px_range`` None means a field of view of 55-130 mm across the width."""

    size: tuple[int, int] = (4000, 3000)  # (W, H) px
    max_tilt_deg: float = 45.0
    mm_per_px_range: tuple[float, float] | None = None
    side_mm: float = 10.0
    marker_id: int = 0
    dictionary: str = "DICT_4X4_50"
    area_range_mm2: tuple[float, float] = (2.0, 50.0)
    distance_range_mm: tuple[float, float] = (5.0, 35.0)
    jpeg_quality_range: tuple[int, int] = (60, 95)
    blur: bool = True
    noise: bool = True

    def mm_per_px_bounds(self) -> tuple[float, float]:
        if self.mm_per_px_range is not None:
            return self.mm_per_px_range
        return (55.0 / self.size[0], 130.0 / self.size[0])


@dataclass(frozen=True, eq=False)
class PhotoTruth:
    """Exact ground truth of one synthetic photo.

    ``polygon_mm``: ulcer outline in the marker plane (N x 2 mm; empty when healed) and
    ``true_area_mm2`` its shoelace area. ``mask``: the polygon projected into the photo frame
    (H x W uint8 0/255). ``homography``: marker-plane mm -> photo px. ``marker_corners_px``:
    outer black-square corners TL, TR, BR, BL in photo px. ``mm_per_px``: sqrt of the local
    area scale at the marker centre. ``tilt_deg``: angle between marker plane and image plane.
    """

    seed: int
    polygon_mm: np.ndarray
    true_area_mm2: float
    mask: np.ndarray
    homography: np.ndarray
    marker_corners_px: np.ndarray
    tilt_deg: float
    mm_per_px: float
    marker_distance_mm: float
    side_mm: float
    marker_id: int
    jpeg_quality: int
    ulcer_centre_mm: tuple[float, float] = field(default=(0.0, 0.0))


@dataclass(frozen=True, eq=False)
class SynthPhoto:
    """A rendered photo (RGB uint8, H x W x 3, before JPEG) and its ground truth."""

    image: np.ndarray
    truth: PhotoTruth


def _visible_box(cam: Camera, centre: tuple[float, float], limit_mm: float = 400.0) -> tuple[float, ...]:
    w, h = cam.size
    m = 0.02 * max(w, h)
    corners = np.array([[-m, -m], [w + m, -m], [w + m, h + m], [-m, h + m]])
    pts = apply_homography(np.linalg.inv(cam.homography), corners)
    lo = np.maximum(pts.min(axis=0), np.subtract(centre, limit_mm))
    hi = np.minimum(pts.max(axis=0), np.add(centre, limit_mm))
    return (lo[0], lo[1], hi[0], hi[1])


def _composite_patch(
    photo: np.ndarray,
    cam: Camera,
    box_mm: tuple[float, float, float, float],
    layer: Layer,
    scene: Scene,
    oversample: float = 1.0,
    max_px: int = 1400,
) -> None:
    """Render a layer at photo resolution over ``box_mm`` and alpha-composite it into ``photo``."""
    x0, y0, x1, y1 = box_mm
    if x1 <= x0 or y1 <= y0:
        return
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    scale = min(mm_per_px_at(cam.homography, tuple(c)) for c in corners)
    p = min(oversample / scale, max_px / max(x1 - x0, y1 - y0))
    grid = RectifiedGrid.covering(x0, y0, x1, y1, p)
    col, a = layer(grid)
    if not np.any(a > 0.002):
        return
    col = col * lighting(scene, grid) * 255.0
    pts = apply_homography(cam.homography, corners)
    h, w = photo.shape[:2]
    u0, v0 = np.maximum(np.floor(pts.min(axis=0)).astype(int) - 2, 0)
    u1, v1 = np.minimum(np.ceil(pts.max(axis=0)).astype(int) + 3, [w, h])
    if u1 <= u0 or v1 <= v0:
        return
    shift = np.array([[1, 0, -u0], [0, 1, -v0], [0, 0, 1]], np.float64)
    m = shift @ cam.homography @ grid.px_to_mm()
    rgba = np.dstack([col * a[..., None], a]).astype(np.float32)
    warped = cv2.warpPerspective(rgba, m, (int(u1 - u0), int(v1 - v0)), flags=cv2.INTER_LINEAR)
    roi = photo[v0:v1, u0:u1].astype(np.float32)
    alpha = warped[..., 3:4]
    out = roi * (1 - alpha) + warped[..., :3]
    photo[v0:v1, u0:u1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _degrade_photo(img: np.ndarray, rng: np.random.Generator, config: PhotoConfig) -> np.ndarray:
    """Tone curve, defocus or motion blur and sensor noise on a uint8 RGB photo (OpenCV only)."""
    w = img.shape[1]
    gamma = rng.uniform(0.85, 1.15)
    lut = np.clip(255 * (np.arange(256) / 255) ** gamma + 0.5, 0, 255).astype(np.uint8)
    out = cv2.LUT(img, lut)
    scale = max(1.0, w / 2500)
    if config.blur:
        if rng.random() < 0.15:  # camera shake
            length = rng.uniform(2, 6) * scale
            k = np.zeros((int(length) | 1, int(length) | 1), np.float32)
            c = k.shape[0] // 2
            ang = rng.uniform(0, np.pi)
            dx, dy = np.cos(ang) * c, np.sin(ang) * c
            cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0)
            out = cv2.filter2D(out, -1, k / k.sum())
        sigma = rng.uniform(0.3, 1.4) * scale
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if config.noise:
        # One noise tile with a random offset: sensor grain without drawing 36 M normals.
        t = 512
        std = rng.uniform(1.0, 5.0)
        tile = rng.standard_normal((t, t, 3), dtype=np.float32) * np.float32(std * 0.6)
        tile += rng.standard_normal((t, t, 1), dtype=np.float32) * np.float32(std * 0.8)
        if scale > 1.2:
            # OpenCV's stubs type the result as any int or float array; it keeps float32
            tile = cv2.GaussianBlur(tile, (0, 0), 0.6 * scale)  # type: ignore[assignment]
            tile *= np.float32(std / max(float(tile.std()), 1e-6))
        tile_u8 = np.clip(tile + 128, 0, 255).astype(np.uint8)
        h = out.shape[0]
        oy, ox = rng.integers(0, t, 2)
        reps = ((h + oy) // t + 1, (w + ox) // t + 1, 1)
        noise = np.ascontiguousarray(np.tile(tile_u8, reps)[oy : oy + h, ox : ox + w])
        out = cv2.addWeighted(out, 1.0, noise, 1.0, -128.0)
    return out


@dataclass(frozen=True)
class Patch:
    """A layer drawn at photo resolution over a marker-plane box (mm), composited in order."""

    box_mm: tuple[float, float, float, float]
    layer: Layer
    oversample: float = 1.0


def photograph(
    scene: Scene, cam: Camera, rng: np.random.Generator, config: PhotoConfig, patches: list[Patch]
) -> np.ndarray:
    """Photo (RGB uint8, H x W x 3, before JPEG) of ``scene``'s plane seen through ``cam``.

    The plane (background, fingers, lighting) is rasterised once at a moderate px per mm and
    warped; each of ``patches`` is then rendered at photo resolution and composited in order;
    last come the photo degradations (tone curve, blur, noise; they draw from ``rng``).
    """
    x0, y0, x1, y1 = _visible_box(cam, scene.centre_mm)
    p = min(1.2 / cam.mm_per_px, np.sqrt(PLANE_BUDGET_PX / max((x1 - x0) * (y1 - y0), 1e-6)))
    grid = RectifiedGrid.covering(x0, y0, x1, y1, p)
    # Ulcer and sticker are drawn only in the full-resolution patches (drawing them here
    # too would double their semi-transparent rims).
    plane = render_plane(scene, grid, layers=())
    plane_u8 = (np.clip(plane, 0, 1) * 255 + 0.5).astype(np.uint8)
    w, h = config.size
    photo = cv2.warpPerspective(
        plane_u8,
        cam.homography @ grid.px_to_mm(),
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    for patch in patches:
        _composite_patch(photo, cam, patch.box_mm, patch.layer, scene, oversample=patch.oversample)
    return _degrade_photo(photo, rng, config)


def render_scene_photo(scene: Scene, rng: np.random.Generator, config: PhotoConfig, seed: int) -> SynthPhoto:
    """Photograph a given scene with a random camera (see :func:`render_photo`)."""
    ulcer = scene.ulcer
    shape_pts = ulcer.polygon_mm if len(ulcer.polygon_mm) else ulcer.scar_polygon_mm
    if len(shape_pts) == 0:
        shape_pts = np.array([scene.ulcer_centre_mm])
    see = np.vstack(
        [
            _box_corners(scene.sticker.bbox_mm()),
            _box_corners((*(shape_pts.min(axis=0) - 2.0), *(shape_pts.max(axis=0) + 2.0))),
        ]
    )
    cam = sample_camera(
        rng,
        config.size,
        scene.centre_mm,
        scene.marker_centre_mm,
        config.mm_per_px_bounds(),
        config.max_tilt_deg,
        see,
    )
    patches: list[Patch] = []
    if len(ulcer.polygon_mm) or len(ulcer.scar_polygon_mm):
        patches.append(Patch(ulcer.bbox_mm(1.0), lambda g: ulcer_layer(scene, g)))
    patches.append(Patch(scene.sticker.bbox_mm(), scene.sticker.render, oversample=1.5))
    photo = photograph(scene, cam, rng, config, patches)
    w, h = config.size
    poly_px = (
        apply_homography(cam.homography, ulcer.polygon_mm) if len(ulcer.polygon_mm) else np.zeros((0, 2))
    )
    truth = PhotoTruth(
        seed=seed,
        polygon_mm=ulcer.polygon_mm.copy(),
        true_area_mm2=ulcer.area_mm2,
        mask=fill_polygon((h, w), poly_px).astype(np.uint8) * 255,
        homography=cam.homography.copy(),
        marker_corners_px=apply_homography(cam.homography, scene.sticker.corners_mm()),
        tilt_deg=cam.tilt_deg,
        mm_per_px=cam.mm_per_px,
        marker_distance_mm=scene.marker_distance_mm,
        side_mm=scene.sticker.side_mm,
        marker_id=scene.sticker.marker_id,
        jpeg_quality=int(rng.integers(config.jpeg_quality_range[0], config.jpeg_quality_range[1] + 1)),
        ulcer_centre_mm=scene.ulcer_centre_mm,
    )
    return SynthPhoto(photo, truth)


def _box_corners(box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def render_photo(seed: int, config: PhotoConfig | None = None, area_mm2: float | None = None) -> SynthPhoto:
    """Render one synthetic calibrated photo, deterministically from ``seed``.

    ``area_mm2`` None draws the ulcer area log-uniformly from ``config.area_range_mm2``; 0 renders
    a healed finger (faint scar, empty mask).
    """
    config = config or PhotoConfig()
    rng = np.random.default_rng(seed)
    return render_scene_photo(sample_photo_scene(rng, config, area_mm2=area_mm2), rng, config, seed)


def sample_photo_scene(rng: np.random.Generator, config: PhotoConfig, **overrides: Any) -> Scene:
    """A scene with ``config``'s marker (side, ID, dictionary) and ulcer area/distance ranges.

    ``overrides`` (area, shape, look, subject, ...) go to :func:`ulcerseg.synth.scene.sample_scene`.
    """
    return sample_scene(
        rng,
        side_mm=config.side_mm,
        marker_id=config.marker_id,
        dictionary=config.dictionary,
        area_range_mm2=config.area_range_mm2,
        distance_range_mm=config.distance_range_mm,
        **overrides,
    )

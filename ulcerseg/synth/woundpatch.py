"""Calibrated photos of *real* wounds: a wound photo crop placed on the marker plane.

A wound photo with its expert mask (e.g. a held-out FUSeg image) is cropped around the wound
with some surrounding skin, scaled so that the wound covers a chosen physical area, rotated,
feathered at its edge and laid on a background in the marker plane next to the printed marker;
the scene is then photographed through the synthetic pinhole camera of :mod:`ulcerseg.synth`
(:func:`ulcerseg.synth.render.photograph`). The true area is exact: the mask's pixel count times
the square of the crop's mm per source px. Frames: *source* px of the wound photo (pixel centres
at integers), marker-plane mm (see :mod:`ulcerseg.records`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ulcerseg.geometry import RectifiedGrid, apply_homography
from ulcerseg.synth.camera import sample_camera
from ulcerseg.synth.finger import skin_tone
from ulcerseg.synth.grid import Lattice, fine_noise, smoothstep
from ulcerseg.synth.render import Patch, PhotoConfig, photograph
from ulcerseg.synth.scene import Scene, _box_distance, _pair, _triple
from ulcerseg.synth.sticker import Sticker
from ulcerseg.synth.ulcer import Ulcer, UlcerLook

# background kinds and their sampling weights: skin of every tone, off-body distractors
BACKGROUND_KINDS = {
    "skin": 0.34,
    "red_cloth": 0.12,
    "magenta_cloth": 0.08,
    "patterned_cloth": 0.16,
    "gauze": 0.15,
    "card": 0.15,
}
CARD_COLOURS = (
    (0.18, 0.36, 0.72),  # blue
    (0.20, 0.55, 0.30),  # green
    (0.90, 0.80, 0.20),  # yellow
    (0.92, 0.50, 0.15),  # orange
    (0.92, 0.55, 0.62),  # pink
    (0.55, 0.35, 0.70),  # violet
)


@dataclass(frozen=True)
class PlaneBackground:
    """What lies under the wound patch on the marker plane: colour(s), pattern, texture.

    ``pattern``: ``plain``, ``weave`` (fine cloth or gauze threads, period ``period_mm``),
    ``stripes`` or ``checks`` (two colours, period ``period_mm``, at ``angle_rad``).
    """

    kind: str
    colour: tuple[float, float, float]
    colour2: tuple[float, float, float]
    pattern: str
    period_mm: float
    angle_rad: float
    texture: float  # strength of the smooth blotches (0..~0.1)
    texture_seed: int

    @classmethod
    def random(cls, rng: np.random.Generator, kind: str | None = None) -> PlaneBackground:
        kinds = list(BACKGROUND_KINDS)
        if kind is None:
            weights = np.array(list(BACKGROUND_KINDS.values()))
            kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]

        def jitter(c: tuple[float, ...] | np.ndarray, amount: float = 0.06) -> tuple[float, float, float]:
            col = np.clip(np.asarray(c) * rng.uniform(1 - amount, 1 + amount, 3), 0, 1)
            return (float(col[0]), float(col[1]), float(col[2]))

        period = float(rng.uniform(3.0, 12.0))
        angle = float(rng.uniform(0, np.pi))
        seed = int(rng.integers(2**31))
        if kind == "skin":
            col = jitter(skin_tone(float(rng.uniform(0, 1))))
            return cls(kind, col, col, "plain", period, angle, 0.06, seed)
        if kind == "red_cloth":
            col = jitter((0.72, 0.09, 0.11), 0.12)
            return cls(kind, col, col, "weave", float(rng.uniform(0.5, 1.2)), angle, 0.05, seed)
        if kind == "magenta_cloth":
            col = jitter((0.78, 0.12, 0.48), 0.12)
            return cls(kind, col, col, "weave", float(rng.uniform(0.5, 1.2)), angle, 0.05, seed)
        if kind == "patterned_cloth":
            palette = [(0.75, 0.10, 0.12), (0.92, 0.90, 0.86), (0.15, 0.25, 0.55), (0.85, 0.70, 0.20),
                       (0.20, 0.45, 0.30), (0.10, 0.10, 0.12)]  # fmt: skip
            i, j = rng.choice(len(palette), 2, replace=False)
            pattern = "stripes" if rng.random() < 0.5 else "checks"
            return cls(kind, jitter(palette[i]), jitter(palette[j]), pattern, period, angle, 0.04, seed)
        if kind == "gauze":
            col = jitter((0.93, 0.93, 0.90), 0.03)
            return cls(kind, col, col, "weave", float(rng.uniform(0.7, 1.5)), angle, 0.03, seed)
        if kind == "card":
            col = jitter(CARD_COLOURS[int(rng.integers(len(CARD_COLOURS)))], 0.08)
            return cls(kind, col, col, "plain", period, angle, 0.02, seed)
        raise ValueError(f"unknown background kind {kind!r} (expected {', '.join(kinds)})")

    def render(self, grid: RectifiedGrid, centre: tuple[float, float]) -> np.ndarray:
        """Unlit colour on ``grid``: H x W x 3 float32, 0..1 (the ``Background`` interface)."""
        xs, ys = grid.xs(), grid.ys()
        rng = np.random.default_rng(self.texture_seed)
        blotch = Lattice.random(rng, centre, 800.0, 10.0).sample(grid)
        shade = 1 + np.float32(self.texture) * blotch + 0.015 * fine_noise(rng, grid.shape, 0.0)
        c, s = np.float32(np.cos(self.angle_rad)), np.float32(np.sin(self.angle_rad))
        u = xs * c + ys * s  # along the pattern axis (mm)
        v = -xs * s + ys * c
        period_px = self.period_mm * grid.px_per_mm
        # patterns finer than ~3 px would alias: fade them out (their mean colour remains)
        vis = np.float32(np.clip((period_px - 3.0) / 3.0, 0.0, 1.0))
        k = np.float32(2 * np.pi / self.period_mm)
        c1, c2 = np.asarray(self.colour, np.float32), np.asarray(self.colour2, np.float32)
        if self.pattern == "weave":
            shade = shade + vis * 0.08 * np.sin(u * k) * np.sin(v * k)
            w = np.zeros(grid.shape, np.float32)
        elif self.pattern == "stripes":
            w = smoothstep(-0.15, 0.15, np.sin(u * k))
        elif self.pattern == "checks":
            w = smoothstep(-0.15, 0.15, np.sin(u * k) * np.sin(v * k))
        else:
            w = np.zeros(grid.shape, np.float32)
        w = 0.5 + vis * (w - 0.5) if self.pattern in ("stripes", "checks") else w
        col = c1 + w[..., None] * (c2 - c1)
        return (np.clip(shade, 0.3, 1.6)[..., None] * col).astype(np.float32)


@dataclass(frozen=True, eq=False)
class WoundPatch:
    """A wound photo crop on the marker plane (similarity transform source px -> mm).

    ``rgb``: crop colours (h x w x 3 float32, 0..1); ``mask``: the wound (h x w bool);
    ``alpha``: opacity of the crop (feathered edge, 0 on padding, 1 on the wound);
    the crop pixel ``anchor_px`` (x, y) lands on ``centre_mm``, rotated by ``angle_rad``,
    at ``mm_per_px`` mm per source pixel.
    """

    rgb: np.ndarray
    mask: np.ndarray
    alpha: np.ndarray
    anchor_px: tuple[float, float]
    centre_mm: tuple[float, float]
    angle_rad: float
    mm_per_px: float
    crop_box_px: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0, y0, x1, y1 of the crop in its photo

    @property
    def area_mm2(self) -> float:
        """True wound area on the marker plane (mm²): each source pixel covers mm_per_px² mm²."""
        return float(np.count_nonzero(self.mask)) * self.mm_per_px**2

    def src_to_mm(self) -> np.ndarray:
        """3x3: source px -> marker-plane mm."""
        s, a = self.mm_per_px, self.angle_rad
        rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        t = np.asarray(self.centre_mm) - rot @ np.asarray(self.anchor_px)
        return np.array([[*rot[0], t[0]], [*rot[1], t[1]], [0, 0, 1.0]])

    def bbox_mm(self, which: str = "patch", margin_mm: float = 0.0) -> tuple[float, float, float, float]:
        """Marker-plane box of the whole crop (``patch``) or of the wound only (``wound``)."""
        if which == "wound":
            ys, xs = np.nonzero(self.mask)
            pts = np.c_[[xs.min() - 0.5, xs.max() + 0.5, xs.max() + 0.5, xs.min() - 0.5],
                        [ys.min() - 0.5, ys.min() - 0.5, ys.max() + 0.5, ys.max() + 0.5]]  # fmt: skip
        else:
            h, w = self.mask.shape
            pts = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
        mm = apply_homography(self.src_to_mm(), pts)
        lo, hi = mm.min(axis=0) - margin_mm, mm.max(axis=0) + margin_mm
        return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    def wound_outline_mm(self) -> np.ndarray:
        """Points (N x 2 mm) on the wound's outer contours."""
        contours, _ = cv2.findContours(self.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        pts = np.vstack([c.reshape(-1, 2) for c in contours]).astype(np.float64)
        return apply_homography(self.src_to_mm(), pts)

    def _grid_to_src(self, grid: RectifiedGrid) -> np.ndarray:
        return (np.linalg.inv(self.src_to_mm()) @ grid.px_to_mm())[:2]

    def layer(self, grid: RectifiedGrid) -> tuple[np.ndarray, np.ndarray]:
        """Unlit colour (H x W x 3) and alpha (H x W) of the crop on ``grid`` (the render layer API)."""
        m = self._grid_to_src(grid)
        src_per_grid_px = 1.0 / (grid.px_per_mm * self.mm_per_px)
        rgb = self.rgb
        if src_per_grid_px > 1.2:  # downsampling: low-pass first, as a camera's optics would
            rgb = cv2.GaussianBlur(rgb, (0, 0), 0.45 * np.sqrt(src_per_grid_px**2 - 1))
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        size = (grid.width, grid.height)
        col = cv2.warpAffine(rgb, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(self.alpha, m, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
        return col.astype(np.float32), np.clip(alpha, 0, 1).astype(np.float32)

    def mask_on_grid(self, grid: RectifiedGrid) -> np.ndarray:
        """True wound mask sampled at ``grid``'s pixel centres (bool, H x W)."""
        m = self._grid_to_src(grid)
        warped = cv2.warpAffine(self.mask.astype(np.float32), m, (grid.width, grid.height),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT)  # fmt: skip
        return warped >= 0.5


def padding_mask(rgb: np.ndarray, level: int = 12) -> np.ndarray:
    """Zero-padding of a photo (bool): near-black rows and columns reaching the image border."""
    dark = rgb.max(axis=2) <= level
    pad = np.zeros(dark.shape, bool)
    rows = dark.mean(axis=1) > 0.98
    cols = dark.mean(axis=0) > 0.98
    for flags, axis in ((rows, 0), (cols, 1)):
        n = len(flags)
        i = 0
        while i < n and flags[i]:
            i += 1
        j = n
        while j > i and flags[j - 1]:
            j -= 1
        sl_lo, sl_hi = (slice(0, i), slice(j, n))
        if axis == 0:
            pad[sl_lo, :] = True
            pad[sl_hi, :] = True
        else:
            pad[:, sl_lo] = True
            pad[:, sl_hi] = True
    return pad


def crop_wound(
    rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator, min_size_px: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Crop a wound photo around its largest wound component with surrounding skin.

    The crop is at least ``min_size_px`` across where the photo allows. Returns the crop's
    colours (float32 0..1), wound mask (bool; every wound pixel inside the crop, so the truth
    is what is visible) and alpha (an ellipse feathered towards the crop's edge, 0 on the
    photo's zero-padding, 1 on the wound) and the crop box (x0, y0, x1, y1) in the photo.
    """
    mask = np.asarray(mask) > 0
    n, _labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        raise ValueError("empty wound mask")
    main = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[main, :4]
    side = max(w, h)
    margin = int(max(24, side * rng.uniform(0.35, 0.8), (min_size_px - side) / 2))
    hh, ww = mask.shape
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(ww, x + w + margin), min(hh, y + h + margin)
    crop_rgb = rgb[y0:y1, x0:x1].astype(np.float32) / 255.0
    crop_mask = mask[y0:y1, x0:x1].copy()
    pad = padding_mask(rgb)[y0:y1, x0:x1]
    ch, cw = crop_mask.shape
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    r = np.hypot((xx - (cw - 1) / 2) / (cw / 2), (yy - (ch - 1) / 2) / (ch / 2))
    alpha = (1.0 - smoothstep(0.7, 1.0, r)) * (~pad)
    wound = cv2.dilate(crop_mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    alpha = np.where(wound, 1.0, alpha).astype(np.float32)
    return crop_rgb, crop_mask, alpha, (int(x0), int(y0), int(x1), int(y1))


def sample_area_mm2(rng: np.random.Generator, large_fraction: float = 0.15) -> float:
    """A digital-ulcer-like true area: log-uniform 3-80 mm², or 80-300 mm² for a few photos."""
    lo, hi = (80.0, 300.0) if rng.random() < large_fraction else (3.0, 80.0)
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _largest_component_px(mask: np.ndarray) -> int:
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    n, _labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        raise ValueError("empty wound mask")
    return int(stats[1:, cv2.CC_STAT_AREA].max())


_NO_LOOK = UlcerLook.random(np.random.default_rng(0), np.ones(3))  # unused: the scene has no drawn ulcer


@dataclass(frozen=True, eq=False)
class WoundPhoto:
    """A rendered photo (RGB uint8, before JPEG) of a real wound beside the marker, with its truth."""

    image: np.ndarray
    patch: WoundPatch
    scene: Scene
    background: PlaneBackground
    homography: np.ndarray  # marker-plane mm -> photo px
    tilt_deg: float
    mm_per_px: float  # at the marker centre
    marker_distance_mm: float  # marker centre to the wound mask's centroid
    jpeg_quality: int

    @property
    def true_area_mm2(self) -> float:
        return self.patch.area_mm2


def render_wound_photo(
    rgb: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    config: PhotoConfig | None = None,
    area_mm2: float | None = None,
    distance_range_mm: tuple[float, float] = (5.0, 30.0),
    background: str | None = None,
    max_mm_per_src_px: float = 0.12,
) -> WoundPhoto:
    """Photograph the wound of ``rgb``/``mask`` (uint8 photo, its binary mask) beside the marker.

    ``area_mm2`` None draws :func:`sample_area_mm2` (the main wound component's area, capped so a
    source pixel covers at most ``max_mm_per_src_px``; the true area counts every wound pixel
    of the crop); the crop of surrounding skin is 14-25 mm across where the photo allows; the
    wound centroid is placed 5-30 mm from
    the marker centre (further when a large wound would touch the sticker).
    """
    config = config or PhotoConfig(size=(4000, 3000), max_tilt_deg=40.0, jpeg_quality_range=(80, 95))
    area = sample_area_mm2(rng) if area_mm2 is None else area_mm2
    n_main = _largest_component_px(mask)
    # at most max_mm_per_src_px: the source stays about as sharp as the model's 10 px/mm
    area = min(area, n_main * max_mm_per_src_px**2)
    s = float(np.sqrt(area / n_main))
    crop_rgb, crop_mask, alpha, box = crop_wound(rgb, mask, rng, min_size_px=rng.uniform(14.0, 25.0) / s)
    ys, xs = np.nonzero(crop_mask)
    anchor = (float(xs.mean()), float(ys.mean()))
    angle = float(rng.uniform(0, 2 * np.pi))
    side = config.side_mm
    quiet = float(rng.uniform(2.0, 4.0))
    sticker = Sticker(
        config.dictionary,
        config.marker_id,
        side,
        quiet,
        tuple(np.clip(rng.uniform(0.86, 0.95) + rng.normal(0, 0.01, 3), 0, 1)),
        float(rng.uniform(0.03, 0.12)),
    )
    mc = np.array([side / 2, side / 2])
    lo, hi = distance_range_mm
    patch = WoundPatch(crop_rgb, crop_mask, alpha, anchor, (0.0, 0.0), angle, s, box)
    outline0 = patch.wound_outline_mm()  # wound centred at the origin
    centre = mc + np.array([hi, 0.0])
    for attempt in range(400):
        d = rng.uniform(lo, hi) + 0.25 * max(0, attempt - 100)  # widen when nothing fits
        phi = rng.uniform(0, 2 * np.pi)
        c = mc + d * np.array([np.cos(phi), np.sin(phi)])
        if np.min(_box_distance(outline0 + c, sticker.bbox_mm())) > 1.0:
            centre = c
            break
    patch = WoundPatch(
        crop_rgb, crop_mask, alpha, anchor, (float(centre[0]), float(centre[1])), angle, s, box
    )
    bg = PlaneBackground.random(rng, background)
    az = rng.uniform(0, 2 * np.pi)
    el = np.radians(rng.uniform(35, 80))
    light = (np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el))
    warm = rng.normal(0, 0.07)
    wb = np.exp(rng.normal(0, 0.04, 3)) * np.array([1 + warm, 1.0, 1 - warm])
    wb /= wb.mean()
    r = rng.random()
    # most photos exposed for the scene; some too bright, some too dark
    exposure = (
        rng.uniform(1.05, 1.3) if r < 0.12 else rng.uniform(0.6, 0.8) if r < 0.24 else rng.uniform(0.8, 1.05)
    )
    scene = Scene(
        sticker=sticker,
        fingers=(),
        ulcer=Ulcer(np.zeros((0, 2)), _NO_LOOK, np.zeros((0, 2))),  # the wound is the patch layer
        ulcer_centre_mm=(float(centre[0]), float(centre[1])),
        background=bg,  # type: ignore[arg-type]  # same render(grid, centre) interface
        light=_triple(light),
        ambient=float(rng.uniform(0.35, 0.6)),
        shadow_offset_mm=(0.0, 0.0),
        shadow_strength=0.0,
        gradient_per_mm=_pair(rng.normal(0, 0.003, 2)),
        exposure=float(exposure),
        white_balance=_triple(wb),
    )
    wx0, wy0, wx1, wy1 = patch.bbox_mm("wound", margin_mm=2.0)
    x0, y0, x1, y1 = sticker.bbox_mm()
    see = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [wx0, wy0], [wx1, wy0], [wx1, wy1], [wx0, wy1]])
    cam = sample_camera(rng, config.size, scene.centre_mm, scene.marker_centre_mm, config.mm_per_px_bounds(),
                        config.max_tilt_deg, see)  # fmt: skip
    patches = [Patch(patch.bbox_mm("patch"), patch.layer), Patch(sticker.bbox_mm(), sticker.render, 1.5)]
    image = photograph(scene, cam, rng, config, patches)
    q_lo, q_hi = config.jpeg_quality_range
    return WoundPhoto(
        image=image,
        patch=patch,
        scene=scene,
        background=bg,
        homography=cam.homography.copy(),
        tilt_deg=cam.tilt_deg,
        mm_per_px=cam.mm_per_px,
        marker_distance_mm=float(np.hypot(*(centre - mc))),
        jpeg_quality=int(rng.integers(q_lo, q_hi + 1)),
    )

"""A synthetic scene in the marker plane: sticker, fingers, ulcer, background and lighting.

Everything is in marker-plane mm (origin at the marker's top-left outer corner). Scenes are
sampled from a numpy ``Generator`` only, so a seed reproduces a scene exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ulcerseg.geometry import RectifiedGrid
from ulcerseg.synth.finger import BACKGROUNDS, Background, Finger, skin_tone
from ulcerseg.synth.sticker import Sticker
from ulcerseg.synth.ulcer import Ulcer, UlcerLook, UlcerShape, render_ulcer_layer


@dataclass(frozen=True)
class Subject:
    """Per-subject traits kept across visits: skin tone (0 pale..1 dark), finger half width (mm)."""

    skin_t: float
    half_width_mm: float
    redness: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Subject:
        return cls(float(rng.uniform(0, 1)), float(rng.uniform(7.0, 10.0)), float(rng.uniform(0, 0.6)))


@dataclass(frozen=True)
class Scene:
    """Everything needed to render the marker plane; lighting folded in at render time."""

    sticker: Sticker
    fingers: tuple[Finger, ...]  # drawn in order; the last one carries the ulcer
    ulcer: Ulcer
    ulcer_centre_mm: tuple[float, float]
    background: Background
    light: tuple[float, float, float]  # unit direction towards the light (x, y, up)
    ambient: float
    shadow_offset_mm: tuple[float, float]
    shadow_strength: float
    gradient_per_mm: tuple[float, float]  # illumination falloff across the plane
    exposure: float
    white_balance: tuple[float, float, float]  # per-channel gains (R, G, B)

    @property
    def marker_centre_mm(self) -> tuple[float, float]:
        s = self.sticker.side_mm
        return (s / 2, s / 2)

    @property
    def marker_distance_mm(self) -> float:
        """Marker centre to ulcer centroid (mm)."""
        return float(np.hypot(*(np.subtract(self.ulcer_centre_mm, self.marker_centre_mm))))

    @property
    def centre_mm(self) -> tuple[float, float]:
        """Midpoint between marker centre and ulcer (where a photographer would aim)."""
        m = np.add(self.ulcer_centre_mm, self.marker_centre_mm) / 2
        return (float(m[0]), float(m[1]))


def _pair(v: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """The first two numbers of ``v`` as Python floats (a 2-vector, e.g. a gradient)."""
    return (float(v[0]), float(v[1]))


def _triple(v: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """The first three numbers of ``v`` as Python floats (a 3-vector, e.g. RGB gains)."""
    return (float(v[0]), float(v[1]), float(v[2]))


def _box_distance(pts: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Distance (mm) from points to an axis-aligned box (0 inside)."""
    x0, y0, x1, y1 = box
    dx = np.maximum.reduce([x0 - pts[:, 0], np.zeros(len(pts)), pts[:, 0] - x1])
    dy = np.maximum.reduce([y0 - pts[:, 1], np.zeros(len(pts)), pts[:, 1] - y1])
    return np.hypot(dx, dy)


def sample_scene(
    rng: np.random.Generator,
    *,
    side_mm: float = 10.0,
    marker_id: int = 0,
    dictionary: str = "DICT_4X4_50",
    area_mm2: float | None = None,
    area_range_mm2: tuple[float, float] = (2.0, 50.0),
    distance_range_mm: tuple[float, float] = (5.0, 35.0),
    shape: UlcerShape | None = None,
    look: UlcerLook | None = None,
    subject: Subject | None = None,
    healed_scar_area_mm2: float | None = None,
) -> Scene:
    """Sample a scene. ``area_mm2`` None draws a log-uniform area; 0 means healed (no open area).

    ``healed_scar_area_mm2`` sets the faint scar drawn when the ulcer is healed.
    """
    subject = subject or Subject.random(rng)
    if area_mm2 is None:
        area_mm2 = float(np.exp(rng.uniform(*np.log(area_range_mm2))))
    shape = shape or UlcerShape.random(rng)
    skin = skin_tone(subject.skin_t) * rng.uniform(0.95, 1.05, 3)
    skin = np.clip(skin, 0, 1)
    look = look or UlcerLook.random(rng, skin)
    scar_area = healed_scar_area_mm2 if healed_scar_area_mm2 is not None else rng.uniform(2, 12)
    ref = shape.polygon(max(area_mm2, scar_area, 1.0), (0.0, 0.0))
    r_max = float(np.max(np.hypot(ref[:, 0], ref[:, 1])))

    # Finger around the ulcer (placed relative to the ulcer centre, origin for now).
    hw = subject.half_width_mm * rng.uniform(0.95, 1.05)
    tip_r = hw * rng.uniform(0.85, 1.25)
    nail = bool(rng.random() < 0.55)
    nail_len = float(rng.uniform(8, 12)) if nail else 0.0
    theta = rng.uniform(0, 2 * np.pi)
    u = np.array([np.cos(theta), np.sin(theta)])
    n = np.array([-u[1], u[0]])
    lat_max = max(0.0, hw - r_max - 1.5)
    t, o = 0.0, 0.0
    for _ in range(50):
        if nail and rng.random() < 0.4:  # at the nail fold
            t = 1.2 + nail_len + r_max * rng.uniform(0.4, 1.0)
            o = rng.uniform(-0.5, 0.5) * lat_max
        elif nail:  # dorsum, over the distal or proximal knuckle
            t = rng.uniform(1.2 + nail_len + r_max + 0.5, 40)
            o = rng.uniform(-1, 1) * lat_max
        else:  # fingertip pulp
            t = rng.uniform(r_max + 1.5, 22)
            o = rng.uniform(-1, 1) * lat_max
        # Keep the ulcer inside the rounded tip too.
        probe = Finger((t, -o), (1.0, 0.0), hw, tip_r, (0, 0, 0), 0, False, 0, (), 0)
        loc = np.c_[ref @ u, ref @ n].astype(np.float32)  # ulcer vertices in the finger frame
        a, lat = probe.local(loc[:, 0], loc[:, 1])
        if np.max(probe.rho(a, lat)) < 0.9:
            break
    else:
        t, o = 1.2 + nail_len + r_max + 10, 0.0

    # Marker at the origin; the ulcer at a sampled distance that keeps the sticker off the wound.
    quiet = float(rng.uniform(2.0, 4.0))
    sticker = Sticker(
        dictionary,
        marker_id,
        side_mm,
        quiet,
        tuple(np.clip(rng.uniform(0.86, 0.95) + rng.normal(0, 0.01, 3), 0, 1)),
        float(rng.uniform(0.03, 0.12)),
    )
    box = sticker.bbox_mm()
    mc = np.array([side_mm / 2, side_mm / 2])
    lo, hi = distance_range_mm
    centre = mc + np.array([hi, 0.0])
    for _ in range(200):
        d = rng.uniform(lo, hi)
        phi = rng.uniform(0, 2 * np.pi)
        c = mc + d * np.array([np.cos(phi), np.sin(phi)])
        if np.min(_box_distance(ref + c, box)) > 1.0:
            centre = c
            break
    poly = shape.polygon(area_mm2, tuple(centre)) if area_mm2 > 0 else np.zeros((0, 2))
    scar = shape.polygon(scar_area, tuple(centre)) if area_mm2 <= 0 and scar_area > 0 else np.zeros((0, 2))
    tip = centre + t * u - o * n

    joints = (
        (1.2 + nail_len + rng.uniform(3, 6), 1.2 + nail_len + rng.uniform(25, 30))
        if nail
        else (rng.uniform(22, 28),)
    )
    main = Finger(
        tip=tuple(tip),
        axis=tuple(u),
        half_width_mm=hw,
        tip_radius_mm=tip_r,
        skin=tuple(skin),
        redness=subject.redness,
        nail=nail,
        nail_length_mm=nail_len,
        joints_mm=tuple(float(j) for j in joints),
        texture_seed=int(rng.integers(2**31)),
        sheen=float(rng.uniform(0.02, 0.12)),
    )
    fingers = [main]
    if rng.random() < 0.45:  # a neighbouring finger beside the one with the ulcer
        side = rng.choice([-1.0, 1.0])
        gap = 2 * hw + rng.uniform(0.5, 5)
        tip2 = tip + side * gap * n + rng.uniform(-15, 3) * u
        neighbour = replace(
            main,
            tip=tuple(tip2),
            half_width_mm=hw * rng.uniform(0.9, 1.05),
            skin=tuple(skin * rng.uniform(0.97, 1.03, 3)),
            texture_seed=int(rng.integers(2**31)),
        )
        fingers.insert(0, neighbour)

    bg_name = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    bg_col = np.clip(
        np.asarray(BACKGROUNDS[bg_name]) * rng.uniform(0.85, 1.15) + rng.normal(0, 0.02, 3), 0, 1
    )
    background = Background(
        tuple(bg_col),
        tuple(rng.normal(0, 0.003, 2)),
        float(rng.uniform(0.4, 1.5)),
        float(rng.uniform(0.0, 0.06)),
        int(rng.integers(2**31)),
    )
    az = rng.uniform(0, 2 * np.pi)
    el = np.radians(rng.uniform(35, 80))
    light = (np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el))
    sh = rng.uniform(1.0, 5.0) * -np.array(light[:2]) / max(np.hypot(*light[:2]), 1e-6)
    wb = np.exp(rng.normal(0, 0.05, 3)) * np.array([1 + 0.04 * (w := rng.normal()), 1.0, 1 - 0.04 * w])
    wb /= wb.mean()
    return Scene(
        sticker=sticker,
        fingers=tuple(fingers),
        ulcer=Ulcer(poly, look, scar),
        ulcer_centre_mm=(float(centre[0]), float(centre[1])),
        background=background,
        light=_triple(light),
        ambient=float(rng.uniform(0.35, 0.6)),
        shadow_offset_mm=(float(sh[0]), float(sh[1])),
        shadow_strength=float(rng.uniform(0.2, 0.5)),
        gradient_per_mm=_pair(rng.normal(0, 0.0025, 2)),
        # Phones expose for the scene; a few photos come out too bright.
        exposure=float(rng.uniform(1.0, 1.25) if rng.random() < 0.08 else rng.uniform(0.78, 1.02)),
        white_balance=_triple(wb),
    )


def render_plane(
    scene: Scene, grid: RectifiedGrid, layers: tuple[str, ...] = ("ulcer", "sticker")
) -> np.ndarray:
    """Lit colour of the marker plane on ``grid``: H x W x 3 float32, ~0..1 (sRGB-like)."""
    img = scene.background.render(grid, scene.centre_mm)
    shadow = np.zeros(grid.shape, np.float32)
    for f in scene.fingers:
        shadow = np.maximum(shadow, f.shadow(grid, scene.shadow_offset_mm, 3.0))
    img *= (1 - np.float32(scene.shadow_strength) * shadow)[..., None]
    light = np.asarray(scene.light)
    for f in scene.fingers:
        f.draw(img, grid, light, scene.ambient)
    if "ulcer" in layers:
        composite_layer(img, grid, scene.ulcer.bbox_mm(1.0), lambda g: ulcer_layer(scene, g))
    if "sticker" in layers:
        composite_layer(img, grid, scene.sticker.bbox_mm(), scene.sticker.render)
    img *= lighting(scene, grid)
    return img


def ulcer_layer(scene: Scene, grid: RectifiedGrid) -> tuple[np.ndarray, np.ndarray]:
    """Shaded (not globally lit) ulcer colour and alpha on ``grid``."""
    col, a = render_ulcer_layer(scene.ulcer, grid)
    col *= scene.fingers[-1].shading(grid, np.asarray(scene.light), scene.ambient)[..., None]
    return col, a


def composite_layer(
    img: np.ndarray, grid: RectifiedGrid, box: tuple[float, float, float, float], layer
) -> None:
    """Alpha-composite ``layer(subgrid) -> (colour, alpha)`` into ``img`` where the box overlaps."""
    sub = grid.sub(*box)
    if sub is None:
        return
    g, rows, cols = sub
    col, a = layer(g)
    tile = img[rows, cols]
    tile += a[..., None] * (col - tile)


def lighting(scene: Scene, grid: RectifiedGrid) -> np.ndarray:
    """Illumination x exposure x white balance on ``grid``: H x W x 3 float32 gains."""
    cx, cy = scene.centre_mm
    gx, gy = scene.gradient_per_mm
    g = 1 + (grid.xs() - np.float32(cx)) * np.float32(gx) + (grid.ys() - np.float32(cy)) * np.float32(gy)
    g = np.clip(g, 0.45, 1.6) * np.float32(scene.exposure)
    return g[..., None] * np.asarray(scene.white_balance, np.float32)

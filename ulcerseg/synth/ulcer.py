"""Ulcer shapes (marker-plane polygons with exact area) and their appearance layer.

Shapes are smooth irregular blobs: a circle perturbed by random radial harmonics, stretched and
rotated, then scaled so the 256-vertex polygon has exactly the requested area (mm²). The shape
family (harmonics, elongation, orientation) is kept per ulcer across visits so an ulcer can
shrink over a trial without changing identity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from ulcerseg.geometry import RectifiedGrid, apply_homography, polygon_area, render_polygon_antialiased
from ulcerseg.synth.grid import Lattice, fine_noise, smoothstep

N_VERTICES = 256


@dataclass(frozen=True)
class UlcerShape:
    """A shape family: radial harmonic amplitudes/phases, elongation and orientation (rad)."""

    amplitudes: tuple[float, ...]
    phases: tuple[float, ...]
    elongation: float
    angle: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> UlcerShape:
        ks = np.arange(2, 7)
        amps = rng.normal(0.0, 0.16 / ks**0.9)
        phases = rng.uniform(0, 2 * np.pi, len(ks))
        return cls(tuple(amps), tuple(phases), float(rng.uniform(1.0, 1.9)), float(rng.uniform(0, np.pi)))

    def evolve(self, rng: np.random.Generator, amount: float = 0.25) -> UlcerShape:
        """A slightly perturbed member of the same family (a later visit)."""
        amps = np.asarray(self.amplitudes) * (1 + rng.normal(0, amount, len(self.amplitudes)))
        phases = np.asarray(self.phases) + rng.normal(0, 0.3 * amount, len(self.phases))
        el = 1 + (self.elongation - 1) * float(np.clip(1 + rng.normal(0, amount), 0.5, 1.5))
        return replace(self, amplitudes=tuple(amps), phases=tuple(phases), elongation=el)

    def polygon(self, area_mm2: float, centre: tuple[float, float]) -> np.ndarray:
        """Closed polygon (N_VERTICES x 2, mm) with shoelace area ``area_mm2`` centred at ``centre``."""
        if area_mm2 <= 0:
            return np.zeros((0, 2))
        th = np.linspace(0, 2 * np.pi, N_VERTICES, endpoint=False)
        r = np.ones_like(th)
        for k, (a, ph) in enumerate(zip(self.amplitudes, self.phases, strict=True), start=2):
            r += a * np.cos(k * th + ph)
        r = np.maximum(r, 0.35)
        pts = np.c_[r * np.cos(th) * np.sqrt(self.elongation), r * np.sin(th) / np.sqrt(self.elongation)]
        c, s = np.cos(self.angle), np.sin(self.angle)
        pts = pts @ np.array([[c, s], [-s, c]])
        pts -= pts.mean(axis=0)
        pts *= np.sqrt(area_mm2 / polygon_area(pts))
        return pts + np.asarray(centre, np.float64)


@dataclass(frozen=True)
class UlcerLook:
    """Appearance of the wound bed and its surroundings (colours RGB 0..1, widths mm)."""

    bed: tuple[float, float, float]  # granulation / base colour
    fibrin: tuple[float, float, float]
    dark: tuple[float, float, float]  # necrotic or crust colour
    fibrin_amount: float  # 0..1 fraction-ish of slough
    dark_amount: float  # 0..1 fraction-ish of necrosis / crust
    rim: tuple[float, float, float]
    rim_width_mm: float
    rim_alpha: float
    halo: tuple[float, float, float]
    halo_width_mm: float
    halo_alpha: float
    depth_mm: float  # width of the darker inner edge
    gloss: float
    healed_scar_alpha: float  # used when the ulcer is healed (no open area)
    texture_seed: int

    @classmethod
    def random(cls, rng: np.random.Generator, skin: np.ndarray) -> UlcerLook:
        kind = rng.choice(
            ["granulation", "fibrin", "necrotic", "crust", "mixed"], p=[0.3, 0.2, 0.15, 0.15, 0.2]
        )
        bed = np.array([0.62, 0.14, 0.13]) * rng.uniform(0.75, 1.15) + rng.normal(0, 0.03, 3)
        fibrin = np.array([0.90, 0.82, 0.60]) + rng.normal(0, 0.04, 3)
        if rng.random() < 0.5:
            dark = np.array([0.10, 0.07, 0.06]) * rng.uniform(0.7, 1.6)  # necrotic eschar
        else:
            dark = np.array([0.40, 0.20, 0.11]) * rng.uniform(0.7, 1.2)  # haemorrhagic crust
        fa = {"granulation": 0.1, "fibrin": 0.75, "necrotic": 0.1, "crust": 0.05, "mixed": 0.4}[kind]
        da = {"granulation": 0.0, "fibrin": 0.05, "necrotic": 0.85, "crust": 0.8, "mixed": 0.35}[kind]
        rim_kind = rng.choice(["pale", "callus", "red"])
        rim_target = {"pale": [0.95, 0.82, 0.80], "callus": [0.90, 0.88, 0.78], "red": [0.80, 0.35, 0.32]}
        rim = skin + rng.uniform(0.35, 0.7) * (np.array(rim_target[rim_kind]) - skin)
        halo = skin * np.array([1.08, 0.72, 0.72])
        return cls(
            bed=tuple(np.clip(bed, 0, 1)),
            fibrin=tuple(np.clip(fibrin, 0, 1)),
            dark=tuple(np.clip(dark, 0, 1)),
            fibrin_amount=float(np.clip(fa + rng.normal(0, 0.1), 0, 1)),
            dark_amount=float(np.clip(da + rng.normal(0, 0.1), 0, 1)),
            rim=tuple(np.clip(rim, 0, 1)),
            rim_width_mm=float(rng.uniform(0.2, 1.0)),
            rim_alpha=float(rng.uniform(0.3, 0.85)),
            halo=tuple(np.clip(halo, 0, 1)),
            halo_width_mm=float(rng.uniform(0.5, 2.5)),
            halo_alpha=float(rng.uniform(0.0, 0.45)),
            depth_mm=float(rng.uniform(0.1, 0.5)),
            gloss=float(rng.uniform(0.0, 0.35)),
            healed_scar_alpha=float(rng.uniform(0.15, 0.4)),
            texture_seed=int(rng.integers(2**31)),
        )


@dataclass(frozen=True)
class Ulcer:
    """One ulcer in the marker plane: polygon (mm, empty when healed) and its look."""

    polygon_mm: np.ndarray
    look: UlcerLook
    scar_polygon_mm: np.ndarray  # faint scar drawn when healed (may be empty)

    @property
    def area_mm2(self) -> float:
        return polygon_area(self.polygon_mm)

    def bbox_mm(self, margin: float) -> tuple[float, float, float, float]:
        pts = self.polygon_mm if len(self.polygon_mm) else self.scar_polygon_mm
        if len(pts) == 0:
            return (0.0, 0.0, -1.0, -1.0)
        m = margin + self.look.rim_width_mm + 3 * self.look.halo_width_mm
        return (pts[:, 0].min() - m, pts[:, 1].min() - m, pts[:, 0].max() + m, pts[:, 1].max() + m)


def render_ulcer_layer(ulcer: Ulcer, grid: RectifiedGrid) -> tuple[np.ndarray, np.ndarray]:
    """Unlit colour (H x W x 3, 0..1) and alpha (H x W) of the ulcer, rim, halo or scar on ``grid``."""
    look = ulcer.look
    h, w = grid.shape
    rng = np.random.default_rng(look.texture_seed)
    p = grid.px_per_mm
    if len(ulcer.polygon_mm) == 0:
        if len(ulcer.scar_polygon_mm) == 0:
            return np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
        scar = render_polygon_antialiased((h, w), apply_homography(grid.mm_to_px(), ulcer.scar_polygon_mm))
        a = cv2.GaussianBlur(scar.astype(np.float32) / 255, (0, 0), max(0.3, 0.3 * p))
        col: np.ndarray = np.empty((h, w, 3), np.float32)
        col[:] = np.asarray(look.rim, np.float32)
        return col, a * np.float32(look.healed_scar_alpha)

    inside_u8 = render_polygon_antialiased((h, w), apply_homography(grid.mm_to_px(), ulcer.polygon_mm))
    ai = inside_u8.astype(np.float32) / 255
    binary = (inside_u8 >= 128).astype(np.uint8)
    din = cv2.distanceTransform(binary, cv2.DIST_L2, 5) / p
    dout = cv2.distanceTransform(1 - binary, cv2.DIST_L2, 5) / p
    centre = tuple(ulcer.polygon_mm.mean(axis=0))
    lat1 = Lattice.random(rng, centre, 30.0, 0.6).sample(grid)
    lat2 = Lattice.random(rng, centre, 30.0, 1.0).sample(grid)
    gran = fine_noise(rng, (h, w), 0.07 * p)

    bed = np.asarray(look.bed, np.float32)
    col = bed[None, None, :] * (1.0 + 0.22 * gran[..., None])
    # Slough: soft cream-yellow patches where a smooth field is high.
    thr = 1.0 - 1.5 * look.fibrin_amount
    wf = smoothstep(thr - 0.35, thr + 0.35, lat1) * np.float32(look.fibrin_amount > 0.05)
    fibrin = np.asarray(look.fibrin, np.float32) * (1 + 0.06 * gran[..., None])
    col += wf[..., None] * (fibrin - col)
    # Eschar / crust: one central plaque with an irregular, slightly soft border.
    r_eq = np.sqrt(max(ulcer.area_mm2, 1e-6) / np.pi)
    depth = np.clip(din / np.float32(r_eq), 0, 1) + 0.35 * lat2
    wd = smoothstep(0.9 - look.dark_amount - 0.12, 0.9 - look.dark_amount + 0.12, depth)
    wd *= np.float32(look.dark_amount > 0.05)
    col += wd[..., None] * (np.asarray(look.dark, np.float32) * (1 + 0.15 * gran[..., None]) - col)
    col *= (0.72 + 0.28 * smoothstep(0.0, look.depth_mm, din))[..., None]
    if look.gloss > 0:
        glint = smoothstep(1.8, 2.6, gran) * look.gloss * (1 - wd)
        col += glint[..., None]

    # Outside: a rim (maceration / callus / erythema) and a soft halo, both semi-transparent.
    rim_a = look.rim_alpha * (1 - smoothstep(0.0, look.rim_width_mm, dout)) * (1 - binary)
    halo_a = look.halo_alpha * np.exp(-dout / look.halo_width_mm) * (1 - binary)
    out_a = rim_a + (1 - rim_a) * halo_a
    out_col = (
        rim_a[..., None] * np.asarray(look.rim, np.float32)
        + ((1 - rim_a) * halo_a)[..., None] * np.asarray(look.halo, np.float32)
    ) / np.maximum(out_a, 1e-6)[..., None]
    alpha = ai + (1 - ai) * out_a
    colour = (ai[..., None] * col + ((1 - ai) * out_a)[..., None] * out_col) / np.maximum(alpha, 1e-6)[
        ..., None
    ]
    return np.clip(colour, 0, 1.5).astype(np.float32), alpha.astype(np.float32)

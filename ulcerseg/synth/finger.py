"""Fingers and backgrounds drawn in the marker plane (mm).

A finger is a tapering band ending in an elliptical tip; its surface normal is approximated from
the normalised distance to the axis (a half-cylinder with a rounded end) so Lambert shading and a
soft shadow on the background suggest curvature without any 3-D geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ulcerseg.geometry import RectifiedGrid
from ulcerseg.synth.grid import Lattice, fine_noise, smoothstep

# Fitzpatrick-like anchors (sRGB 0..1), pale to dark; skin tones are interpolated between them.
SKIN_ANCHORS = np.array(
    [
        [0.95, 0.83, 0.76],
        [0.89, 0.73, 0.62],
        [0.78, 0.60, 0.47],
        [0.63, 0.45, 0.32],
        [0.45, 0.30, 0.21],
        [0.28, 0.18, 0.13],
    ]
)

BACKGROUNDS = {
    "blue_drape": (0.22, 0.42, 0.62),
    "green_drape": (0.24, 0.48, 0.44),
    "paper_towel": (0.88, 0.88, 0.86),
    "grey_table": (0.58, 0.58, 0.57),
    "wood": (0.58, 0.40, 0.24),
    "dark_cloth": (0.13, 0.13, 0.16),
    "beige": (0.80, 0.72, 0.60),
}


def skin_tone(t: float) -> np.ndarray:
    """Skin colour for a tone ``t`` in [0, 1] (0 palest, 1 darkest), sRGB 0..1."""
    x = np.clip(t, 0, 1) * (len(SKIN_ANCHORS) - 1)
    i = min(int(x), len(SKIN_ANCHORS) - 2)
    return SKIN_ANCHORS[i] + (x - i) * (SKIN_ANCHORS[i + 1] - SKIN_ANCHORS[i])


@dataclass(frozen=True)
class Finger:
    """A finger: tip point (mm), unit axis towards the tip, half width (mm), look."""

    tip: tuple[float, float]
    axis: tuple[float, float]
    half_width_mm: float
    tip_radius_mm: float
    skin: tuple[float, float, float]
    redness: float  # extra red/purple at the fingertip (Raynaud-like), 0..1
    nail: bool
    nail_length_mm: float
    joints_mm: tuple[float, ...]  # distances from the tip of knuckle creases
    texture_seed: int
    sheen: float = 0.06  # strength of the specular highlight (0..~0.15)

    def local(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Axial (mm, 0 at the tip, negative towards the hand) and lateral (mm) coordinates."""
        ux, uy = self.axis
        dx = xs - np.float32(self.tip[0])
        dy = ys - np.float32(self.tip[1])
        a = dx * np.float32(ux) + dy * np.float32(uy)
        lat = -dx * np.float32(uy) + dy * np.float32(ux)
        return a, lat

    def rho(self, a: np.ndarray, lat: np.ndarray, grow_mm: float = 0.0) -> np.ndarray:
        """Normalised radius: < 1 inside the finger, 0 on the axis."""
        hw = np.float32(self.half_width_mm + grow_mm) * (1 - np.float32(0.004) * np.minimum(a, 0))
        rt = np.float32(self.tip_radius_mm + grow_mm)
        ax = np.maximum(a + rt, 0) / rt
        return np.sqrt((lat / hw) ** 2 + ax**2)

    def shading(self, grid: RectifiedGrid, light: np.ndarray, ambient: float) -> np.ndarray:
        """Lambert shading factor of the finger surface on ``grid`` (float32, ~0.3..1.1)."""
        a, lat = self.local(grid.xs(), grid.ys())
        return self._shade(a, lat, light, ambient)

    def _normal(self, a: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Surface normal as (lateral, axial, up) components (half-cylinder with a rounded tip)."""
        hw = np.float32(self.half_width_mm) * (1 - np.float32(0.004) * np.minimum(a, 0))
        rt = np.float32(self.tip_radius_mm)
        nl = np.clip(lat / hw, -1, 1)
        na = np.clip(np.maximum(a + rt, 0) / rt, 0, 1)
        nz = np.sqrt(np.clip(1 - nl**2 - na**2, 0, 1))
        return nl, na, nz

    def _light_local(self, light: np.ndarray) -> tuple[np.float32, np.float32, np.float32]:
        """A plane direction in (lateral, axial, up) components of this finger's frame."""
        ux, uy = self.axis
        ll = -light[0] * uy + light[1] * ux
        la = light[0] * ux + light[1] * uy
        return np.float32(ll), np.float32(la), np.float32(light[2])

    def _shade(self, a: np.ndarray, lat: np.ndarray, light: np.ndarray, ambient: float) -> np.ndarray:
        nl, na, nz = self._normal(a, lat)
        ll, la, lz = self._light_local(light)
        diffuse = np.clip(nl * ll + na * la + nz * lz, 0, 1)
        return (np.float32(ambient) + np.float32(1 - ambient) * diffuse).astype(np.float32)

    def _sheen(self, a: np.ndarray, lat: np.ndarray, light: np.ndarray) -> np.ndarray:
        """Blinn-Phong highlight of oily skin (viewer straight above the plane)."""
        half = np.asarray(light, np.float64) + np.array([0.0, 0.0, 1.0])
        half /= np.linalg.norm(half)
        nl, na, nz = self._normal(a, lat)
        hl, ha, hz = self._light_local(half)
        x = np.clip(nl * hl + na * ha + nz * hz, 0, 1)
        x *= x
        x *= x
        x *= x
        x *= x  # exponent 16
        return x * np.float32(self.sheen)

    def draw(self, img: np.ndarray, grid: RectifiedGrid, light: np.ndarray, ambient: float) -> None:
        """Composite this lit finger into ``img`` (H x W x 3 float32 on ``grid``) in place."""
        a, lat = self.local(grid.xs(), grid.ys())
        edge_mm = (1 - self.rho(a, lat)) * np.float32(self.half_width_mm)
        alpha = np.clip(edge_mm * np.float32(grid.px_per_mm) + 0.5, 0, 1)
        rows = np.flatnonzero(alpha.any(axis=1))
        cols = np.flatnonzero(alpha.any(axis=0))
        if len(rows) == 0:
            return
        # Colour only the finger's bounding box: most of the view is background.
        rs, cs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        sub = grid.crop(cs.start, rs.start, cs.stop, rs.stop)
        col = self._colour(sub, a[rs, cs], lat[rs, cs], light, ambient)
        tile = img[rs, cs]
        tile += alpha[rs, cs, None] * (col - tile)

    def _colour(
        self, grid: RectifiedGrid, a: np.ndarray, lat: np.ndarray, light: np.ndarray, ambient: float
    ) -> np.ndarray:
        rng = np.random.default_rng(self.texture_seed)
        blotch = Lattice.random(rng, self.tip, 500.0, 4.0).sample(grid)
        fine = fine_noise(rng, grid.shape, max(0.0, 0.06 * grid.px_per_mm))
        skin = np.asarray(self.skin, np.float32)
        tip_w = np.exp(np.minimum(a, 0) / np.float32(6.0)) * np.float32(self.redness)
        red = skin * np.array([1.05, 0.78, 0.85], np.float32)
        # Knuckle creases: bands of thin darker lines across the finger.
        crease = np.zeros(grid.shape, np.float32)
        wob = np.float32(0.35) * np.sin(lat * np.float32(0.45) + np.float32(self.texture_seed % 7))
        for j in self.joints_mm:
            d = a + np.float32(j) + wob
            band = np.exp(-((d / np.float32(2.2)) ** 2))
            c = np.float32(0.5) + np.float32(0.5) * np.cos(d * np.float32(2 * np.pi / 0.9))
            c *= c
            c *= c
            c *= c
            crease += band * c
        lum = (1 + 0.035 * blotch + 0.025 * fine) * (1 - 0.22 * np.clip(crease, 0, 1))
        lum *= self._shade(a, lat, light, ambient)
        col = skin[None, None, :] + tip_w[..., None] * (red - skin)[None, None, :]
        if self.nail:
            nl = np.float32(self.nail_length_mm)
            an = (a + np.float32(1.2) + nl / 2) / (nl / 2)
            ln = lat / np.float32(0.72 * self.half_width_mm)
            an2 = an * an
            r4 = an2 * an2 + ln * ln
            nail_a = 1 - smoothstep(0.85, 1.0, r4)
            nail_col = skin * 0.5 + np.array([0.50, 0.40, 0.42], np.float32)
            # Lunula-like paler proximal part of the nail.
            nail_full = nail_col[None, None, :] * (1 + 0.08 * smoothstep(0.3, 0.8, an))[..., None]
            col += nail_a[..., None] * (nail_full - col)
            fold = np.exp(-(((an - 1.0) / np.float32(0.12)) ** 2)) * (np.abs(ln) < 1)
            lum *= 1 - 0.25 * fold
            gloss = nail_a * smoothstep(0.2, 0.9, 1 - np.abs(ln - 0.25) * 3) * 0.18
            col *= lum[..., None]
            col += gloss[..., None]
        else:
            col *= lum[..., None]
        col += self._sheen(a, lat, light)[..., None]
        return col.astype(np.float32)

    def shadow(self, grid: RectifiedGrid, offset: tuple[float, float], soft_mm: float) -> np.ndarray:
        """Soft shadow coverage (0..1) cast on the background by this finger."""
        a, lat = self.local(grid.xs() - np.float32(offset[0]), grid.ys() - np.float32(offset[1]))
        rho = self.rho(a, lat)
        return np.clip((1 - rho) * np.float32(self.half_width_mm / soft_mm) + 0.5, 0, 1)


@dataclass(frozen=True)
class Background:
    """Cloth, drape, paper or table under the hand: colour, gradient (per mm) and texture."""

    colour: tuple[float, float, float]
    gradient: tuple[float, float]
    weave_mm: float
    weave_amount: float
    texture_seed: int

    def render(self, grid: RectifiedGrid, centre: tuple[float, float]) -> np.ndarray:
        xs, ys = grid.xs(), grid.ys()
        rng = np.random.default_rng(self.texture_seed)
        g = (
            1
            + (xs - np.float32(centre[0])) * np.float32(self.gradient[0])
            + (ys - np.float32(centre[1])) * np.float32(self.gradient[1])
        )
        blotch = Lattice.random(rng, centre, 800.0, 12.0).sample(grid)
        fine = fine_noise(rng, grid.shape, 0.0)
        tex = 1 + 0.05 * blotch + 0.02 * fine
        period_px = self.weave_mm * grid.px_per_mm
        if period_px >= 3 and self.weave_amount > 0:
            k = np.float32(2 * np.pi / self.weave_mm)
            tex = tex + np.float32(self.weave_amount) * np.sin(xs * k) * np.sin(ys * k)
        shade = np.clip(g * tex, 0.3, 1.6)
        return (shade[..., None] * np.asarray(self.colour, np.float32)).astype(np.float32)

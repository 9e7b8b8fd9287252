"""Appearance augmentation for wound photographs: what FUSeg lacks and trial photos hold.

FUSeg shows mostly red granulation tissue on feet against black padding. Ischemic digital ulcers
often have black eschar, dry brown crust, yellow fibrin/slough or pale macerated beds, sit on all
skin tones, and are photographed beside red cloth, gauze, dressings and coloured cards. These
pure functions (uint8 RGB tile H×W×3 and binary mask H×W in, new arrays out, never in place) let
the network see those appearances:

- :func:`recolour_wound`: shift part or all of the wound bed towards eschar, crust, slough or
  pale tissue, keeping its texture (label unchanged: it is still the ulcer);
- :func:`paste_hard_negatives`: off-body objects (red/magenta cloth, coloured cards, gauze,
  blood-stained dressing) pasted outside the wound, label 0;
- :func:`fill_padding`: replace the black zero padding of FUSeg photos by cloth, card or skin;
- :func:`shift_skin_tone`: darker or lighter skin around the wound.
"""

from __future__ import annotations

import numpy as np

# target tissue colours (RGB, 0-255) with the spread drawn around them
WOUND_TISSUES: dict[str, tuple[tuple[float, float, float], float]] = {
    "eschar": ((28.0, 22.0, 20.0), 14.0),  # black necrosis
    "crust": ((105.0, 62.0, 38.0), 25.0),  # dry brown crust / haemorrhagic scab
    "slough": ((205.0, 180.0, 95.0), 25.0),  # yellow fibrin
    "pale": ((222.0, 188.0, 182.0), 18.0),  # pale, macerated or re-epithelialising bed
    "dark_red": ((110.0, 25.0, 30.0), 20.0),  # dusky, poorly perfused bed
}

HARD_NEGATIVES = ("red_cloth", "card", "gauze", "dressing")


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int = 6) -> np.ndarray:
    """Smooth random field in [0, 1], float32 H×W (bicubic upsampling of a cells×cells grid)."""
    import cv2

    h, w = shape
    g = rng.random((cells, cells)).astype(np.float32)
    f = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(f.min()), float(f.max())
    return (f - lo) / (hi - lo + 1e-6)


def _luma(image: np.ndarray) -> np.ndarray:
    f = image.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _feather(region: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    r = region.astype(np.float32)
    return cv2.GaussianBlur(r, (0, 0), sigma) if sigma > 0 else r


def recolour_wound(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    tissue: str | None = None,
    cover: float | None = None,
) -> np.ndarray:
    """Part or all of the wound bed (``mask`` > 0) shifted towards one tissue colour.

    The tissue keeps the original local texture (luminance ratio to the bed's mean); a smooth
    random field picks 30-100% of the bed, so mixed beds (red rim, black centre) occur.
    ``tissue`` (a :data:`WOUND_TISSUES` name) and ``cover`` (share of the bed, 0-1) are drawn
    when not given (training); given, they make a benchmark condition.
    """
    m = mask > 0
    if not m.any():
        return image
    if tissue is None:
        tissue = list(WOUND_TISSUES)[int(rng.integers(len(WOUND_TISSUES)))]
    elif tissue not in WOUND_TISSUES:
        raise ValueError(f"unknown tissue {tissue!r} (known: {', '.join(WOUND_TISSUES)})")
    centre, spread = WOUND_TISSUES[tissue]
    colour = np.clip(np.array(centre) + rng.normal(0.0, spread, 3), 0, 255).astype(np.float32)
    luma = _luma(image)
    texture = luma / max(float(luma[m].mean()), 1.0)
    texture = 1.0 + (texture - 1.0) * float(rng.uniform(0.4, 1.0))
    cover = float(rng.uniform(0.3, 1.0)) if cover is None else float(cover)
    field = smooth_field(m.shape, rng, cells=int(rng.integers(3, 8)))
    region = m & (field <= np.quantile(field[m], cover))
    alpha = _feather(region, float(rng.uniform(0.5, 2.0))) * m * float(rng.uniform(0.7, 1.0))
    target = colour[None, None, :] * texture[..., None]
    out = image.astype(np.float32) * (1 - alpha[..., None]) + target * alpha[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def recolour_centre(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, tissue: str, rim_fraction: float = 0.25
) -> np.ndarray:
    """The centre of each wound (``mask`` > 0) turned to ``tissue``, a rim of the original bed
    kept: ``rim_fraction`` of each wound's equivalent radius (sqrt(area / pi)), at least 2 px.

    The mixed bed of an ischemic ulcer (black or brown centre, red rim) with the photo's own
    outline, unlike :func:`recolour_wound`, whose recoloured part may reach the mask's edge and
    draw it. Used by the robustness benchmarks and the mixed-bed training step.
    """
    import cv2

    m = (mask > 0).astype(np.uint8)
    n, labels = cv2.connectedComponents(m)
    centre = np.zeros_like(m)
    for i in range(1, n):
        wound = (labels == i).astype(np.uint8)
        rim = max(2, round(rim_fraction * float(np.sqrt(wound.sum() / np.pi))))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1, 2 * rim + 1))
        centre[cv2.erode(wound, disc) > 0] = 1
    return recolour_wound(image, centre, rng, tissue=tissue, cover=1.0)


def _weave(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Cloth-like texture in about [0.75, 1.25]: two crossing gratings plus fine noise."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    th = rng.uniform(0, np.pi)
    period = rng.uniform(2.5, 9.0)
    a = np.sin(2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / period)
    b = np.sin(2 * np.pi * (-xx * np.sin(th) + yy * np.cos(th)) / period)
    amp = rng.uniform(0.03, 0.12)
    return (1.0 + amp * (a + b) + rng.normal(0, 0.03, (h, w))).astype(np.float32)


def _object_texture(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """RGB float32 H×W×3 appearance of an off-body object."""
    if kind == "red_cloth":
        # red, crimson, magenta, pink: what the network must not take for a wound
        hue = rng.choice([rng.uniform(340, 360), rng.uniform(0, 12), rng.uniform(300, 340)])
        rgb = hsv_to_rgb(hue, rng.uniform(0.45, 1.0), rng.uniform(0.35, 0.95))
        return rgb[None, None, :] * _weave(shape, rng)[..., None]
    if kind == "card":
        rgb = hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.2, 1.0), rng.uniform(0.3, 1.0))
        shade = 1.0 + 0.15 * (smooth_field(shape, rng, 3) - 0.5)
        return rgb[None, None, :] * shade[..., None]
    base = np.array([rng.uniform(225, 250), rng.uniform(220, 248), rng.uniform(205, 240)])
    tex = base[None, None, :] * _weave(shape, rng)[..., None]
    if kind == "dressing":  # gauze with blood or exudate stains
        stain = smooth_field(shape, rng, int(rng.integers(4, 10)))
        stain = np.clip((stain - rng.uniform(0.55, 0.85)) * 6.0, 0, 1)[..., None]
        blood = np.array([rng.uniform(110, 190), rng.uniform(10, 50), rng.uniform(15, 50)])
        tex = tex * (1 - stain) + blood[None, None, :] * stain
    return tex


def hsv_to_rgb(hue_deg: float, sat: float, val: float) -> np.ndarray:
    """One colour: hue in degrees, saturation and value in [0, 1] -> RGB float (0-255)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360) / 360.0, sat, val)
    return np.array([r, g, b], dtype=np.float32) * 255.0


def _random_shape(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Boolean H×W: an ellipse, rectangle or irregular blob covering about 5-35% of the tile."""
    import cv2

    h, w = shape
    out = np.zeros((h, w), np.uint8)
    cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
    ax, ay = int(rng.uniform(0.1, 0.45) * w), int(rng.uniform(0.1, 0.45) * h)
    kind = int(rng.integers(3))
    if kind == 0:
        cv2.ellipse(out, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 1:
        box = cv2.boxPoints(((cx, cy), (2 * ax, 2 * ay), float(rng.uniform(0, 90))))
        cv2.fillPoly(out, [box.astype(np.int32)], 1)
    else:
        blob = smooth_field(shape, rng, int(rng.integers(3, 6)))
        return blob > rng.uniform(0.55, 0.8)
    return out.astype(bool)


def paste_hard_negatives(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, n_max: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """1..n_max off-body objects pasted over the tile; the wound label is cleared where covered.

    Objects avoid the wound's core (they may overlap its edge, as a dressing or cloth would),
    so the tile keeps most of its positive pixels.
    """
    import cv2

    out = image.astype(np.float32)
    label = mask.copy()
    core = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    for _ in range(int(rng.integers(1, n_max + 1))):
        region = _random_shape(mask.shape, rng) & ~core
        if not region.any():
            continue
        kind = HARD_NEGATIVES[int(rng.integers(len(HARD_NEGATIVES)))]
        tex = _object_texture(kind, mask.shape, rng)
        alpha = _feather(region, float(rng.uniform(0.3, 1.5)))[..., None]
        out = out * (1 - alpha) + tex * alpha
        label[region] = 0
    return np.clip(out, 0, 255).astype(np.uint8), label


def fill_padding(image: np.ndarray, rng: np.random.Generator, max_value: int = 4) -> np.ndarray:
    """Black zero padding (all channels <= ``max_value``) replaced by a background texture.

    FUSeg photos are zero-padded to 512 px; trial photos have cloth, paper or skin there.
    """
    pad = image.max(axis=2) <= max_value
    if pad.mean() < 0.01:
        return image
    choice = rng.random()
    if choice < 0.45:
        kind = HARD_NEGATIVES[int(rng.integers(len(HARD_NEGATIVES)))]
        tex = _object_texture(kind, pad.shape, rng)
    else:  # skin-like or neutral surface
        hue, sat, val = rng.uniform(5, 35), rng.uniform(0.15, 0.6), rng.uniform(0.2, 0.95)
        tex = hsv_to_rgb(hue, sat, val)[None, None, :] * (
            1.0 + 0.2 * (smooth_field(pad.shape, rng, 4)[..., None] - 0.5)
        )
    out = image.copy()
    out[pad] = np.clip(tex[pad], 0, 255).astype(np.uint8)
    return out


DEEPLY_PIGMENTED = (0.3, 0.5)
"""The ``darken`` range of :func:`shift_skin_tone` for deeply pigmented skin only."""


def shift_skin_tone(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    darken: tuple[float, float] = (0.3, 1.15),
    edge_sigma_px: float = 2.0,
    bed_share: float | None = None,
) -> np.ndarray:
    """Darker (down to deeply pigmented) or lighter skin; the wound bed changes less.

    Pigmentation multiplies the channels unevenly (melanin absorbs blue most); the wound bed,
    which has no epidermis, takes only a fraction of the change. ``darken``: the range of the
    overall gain (1: the photo's own tone; :data:`DEEPLY_PIGMENTED` for dark skin only).
    ``edge_sigma_px``: the Gaussian over which the change fades at the bed's edge (px of
    ``image``; 0: a step at the mask's edge); ``bed_share``: the fraction of the change the bed
    takes (None: drawn from 0.1-0.4; drawn in any case, so the other draws stay the same).
    """
    darken_gain = float(rng.uniform(*darken))
    gains = darken_gain * np.array([1.0, rng.uniform(0.78, 0.95), rng.uniform(0.6, 0.9)], np.float32)
    share = float(rng.uniform(0.1, 0.4))
    w = np.where(mask > 0, share if bed_share is None else bed_share, 1.0).astype(np.float32)
    w = _feather(w, edge_sigma_px)[..., None]
    g = 1.0 + (gains[None, None, :] - 1.0) * w
    return np.clip(image.astype(np.float32) * g, 0, 255).astype(np.uint8)

"""Augmentation for phone photographs (albumentations): scale, rotation, flips, colour and
white-balance jitter, blur, JPEG artefacts, noise, and random crops biased towards ulcers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np

from ulcerseg.config import Check

# a probability (fg_crop_prob: 5 and color_prob: -2 were taken without a word)
Probability = Annotated[float, Check(ge=0, le=1)]
# a rotation limit in degrees: ±180 already covers every angle (-400 was taken)
AngleLimit = Annotated[float, Check(ge=0, le=180)]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings. Scale factors multiply the image size (after rescaling a dataset
    of known px per mm to the model's px per mm)."""

    scale_range: tuple[float, float] = (0.5, 2.0)  # datasets of unknown physical scale
    scale_range_known: tuple[float, float] = (0.8, 1.25)  # datasets with known px_per_mm
    fg_crop_prob: Probability = 0.7  # probability that a crop is centred near an ulcer pixel
    rotate_limit: AngleLimit = 30.0  # degrees (plus random 90° turns and flips)
    color_prob: Probability = 0.8
    # colour temperature / per-channel gain, independent of the colour jitter: other cameras
    # and clinic lighting shift white balance more than anything else
    white_balance_prob: Probability = 0.5
    blur_prob: Probability = 0.2
    jpeg_prob: Probability = 0.3
    noise_prob: Probability = 0.2
    # appearance the training photos lack (training/appearance.py); 0 = off, as in the first
    # recipes, so their recorded configs keep their meaning
    padding_fill_prob: Probability = 0.0  # black photo padding -> cloth, card or skin
    hard_negative_prob: Probability = 0.0  # red cloth, cards, gauze, dressings pasted, label 0
    wound_appearance_prob: Probability = 0.0  # eschar, crust, slough, pale tissue in the wound bed
    skin_tone_prob: Probability = 0.0  # darker / lighter skin around the wound
    # mixed bed: the centre turned to eschar, crust or slough, a rim of the bed kept, all of it
    # labelled ulcer (measured end to end, the network took such a centre for the whole ulcer)
    mixed_bed_prob: Probability = 0.0


def _fg_biased_crop(
    image: np.ndarray, mask: np.ndarray, tile: int, fg_prob: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a tile×tile window; with ``fg_prob`` centred (with jitter) on a random ulcer pixel.

    Pads with zeros when the image is smaller than the tile.
    """
    h, w = mask.shape
    if h < tile or w < tile:
        ph, pw = max(0, tile - h), max(0, tile - w)
        top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        pad = ((top, ph - top), (left, pw - left))
        image = np.pad(image, (*pad, (0, 0)))
        mask = np.pad(mask, pad)
        h, w = mask.shape
    ys, xs = np.nonzero(mask) if rng.random() < fg_prob else ((), ())
    if len(ys):
        i = int(rng.integers(len(ys)))
        jitter = rng.integers(-tile // 3, tile // 3 + 1, size=2)
        cy, cx = int(ys[i] + jitter[0]), int(xs[i] + jitter[1])
        y0 = int(np.clip(cy - tile // 2, 0, h - tile))
        x0 = int(np.clip(cx - tile // 2, 0, w - tile))
    else:
        y0, x0 = int(rng.integers(0, h - tile + 1)), int(rng.integers(0, w - tile + 1))
    return image[y0 : y0 + tile, x0 : x0 + tile], mask[y0 : y0 + tile, x0 : x0 + tile]


class TrainAugment:
    """Callable (image uint8 H×W×3, mask uint8 H×W, base_scale, known_scale, rng) -> tile pair.

    ``base_scale`` rescales a dataset of known px per mm to the model's px per mm first.
    """

    def __init__(self, cfg: AugmentConfig, tile_px: int) -> None:
        import albumentations as A
        import cv2

        self.cfg, self.tile = cfg, tile_px
        self.geometric = A.Compose(
            [
                A.Rotate(limit=cfg.rotate_limit, border_mode=cv2.BORDER_CONSTANT, p=0.5),
                A.HorizontalFlip(p=0.5),
                A.VerticalFlip(p=0.5),
                A.RandomRotate90(p=0.5),
            ]
        )
        self.photometric = A.Compose(
            [
                A.OneOf(
                    [
                        A.PlanckianJitter(p=1.0),  # colour temperature of the light
                        A.MultiplicativeNoise((0.8, 1.2), per_channel=True, p=1.0),  # camera gains
                    ],
                    p=cfg.white_balance_prob,
                ),
                A.OneOf(
                    [
                        A.ColorJitter(0.25, 0.25, 0.25, 0.04, p=1.0),
                        A.HueSaturationValue(8, 25, 20, p=1.0),
                    ],
                    p=cfg.color_prob,
                ),
                A.OneOf(
                    [A.GaussianBlur(blur_limit=(3, 5), p=1.0), A.MotionBlur(blur_limit=5, p=1.0)],
                    p=cfg.blur_prob,
                ),
                A.GaussNoise(std_range=(0.01, 0.05), p=cfg.noise_prob),
                A.ImageCompression(quality_range=(40, 95), p=cfg.jpeg_prob),
            ]
        )

    def _appearance(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        from ulcerseg.training import appearance as ap

        c = self.cfg
        probs = (c.padding_fill_prob, c.hard_negative_prob, c.wound_appearance_prob, c.skin_tone_prob)
        if not any(probs) and not c.mixed_bed_prob:
            return image, mask  # recipes without these steps keep their random stream
        # draw every decision even when a step is off, so enabling one step does not
        # reshuffle the random stream of the others
        draws = rng.random(4)
        if draws[0] < probs[0]:
            image = ap.fill_padding(image, rng)
        if draws[1] < probs[1]:
            image, mask = ap.paste_hard_negatives(image, mask, rng)
        if draws[2] < probs[2]:
            image = ap.recolour_wound(image, mask, rng)
        # drawn only when on: the recipes before this step keep their random stream
        if c.mixed_bed_prob and rng.random() < c.mixed_bed_prob and mask.any():
            tissue = ("eschar", "crust", "slough")[int(rng.integers(3))]
            image = ap.recolour_centre(image, mask, rng, tissue, float(rng.uniform(0.1, 0.35)))
        if draws[3] < probs[3]:
            image = ap.shift_skin_tone(image, mask, rng)
        return image, mask

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        base_scale: float,
        known_scale: bool,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        import random

        import cv2

        # albumentations draws from its own generators: share ones derived from ``rng`` across
        # all transforms so each tile is reproducible and the transforms stay independent
        seed = int(rng.integers(2**63))
        shared = (np.random.default_rng(seed), random.Random(seed))
        self.geometric.set_random_state(*shared)
        self.photometric.set_random_state(*shared)
        lo, hi = self.cfg.scale_range_known if known_scale else self.cfg.scale_range
        # log-uniform so that zooming in and out are equally likely
        s = base_scale * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        # crop a generous window first so resizing stays cheap on large images
        win = int(np.ceil(self.tile * 1.5 / s)) + 2
        if win < min(mask.shape):
            image, mask = _fg_biased_crop(image, mask, win, self.cfg.fg_crop_prob, rng)
        size = (max(1, round(mask.shape[1] * s)), max(1, round(mask.shape[0] * s)))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        out: dict[str, Any] = self.geometric(image=image, mask=mask)
        image, mask = _fg_biased_crop(out["image"], out["mask"], self.tile, self.cfg.fg_crop_prob, rng)
        image, mask = self._appearance(image, mask, rng)
        image = self.photometric(image=np.ascontiguousarray(image))["image"]
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)

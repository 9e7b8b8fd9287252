"""Dice of a model under simulated camera / clinic shifts, on its held-out split.

Trial photos come from other cameras, lighting and distances than the training photos. With no
second real source to test on, this script perturbs the held-out images the model never saw
(white balance, exposure, JPEG compression, low resolution, blur, shooting distance) and prints
dataset-level and mean per-image Dice for each condition, next to the unperturbed reference.
Perturbed copies go to a temporary folder; the dataset itself is never modified.

The wound-appearance conditions (``*_bed``: 70% of each wound bed turned to black eschar, brown
crust, yellow slough or pale tissue, texture kept, whose new edge lies on the annotation and so
flatters the outline; ``*_centre``: the centre turned, a rim of the original bed kept, so the
outline is the photo's own; ``skin_tone``; ``hard_negatives``: red cloth,
cards, gauze and stained dressings pasted beside the wound, which take the label where they
cover it) use the training's own appearance steps (``ulcerseg.training.appearance``, seeded per
image): they show whether the network learned what those steps teach, not how it fares on real
eschar or slough, which no dataset here holds.

Usage: python scripts/bench_robustness.py [--model models/default]
           [--data ../shared/datasets/fuseg-train] [--conditions none,warm,...]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ulcerseg.imageio import read_mask
from ulcerseg.segmentation.backends import open_backend
from ulcerseg.segmentation.model import load_card
from ulcerseg.training import appearance
from ulcerseg.training.dataset import load_dataset, read_image
from ulcerseg.training.evaluate import evaluate, split_stems

Perturb = Callable[[np.ndarray], np.ndarray]
# what a condition does to one held-out image: (RGB, mask, rng seeded per image) -> (RGB, mask)
WoundPerturb = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _pixels(f: Perturb) -> WoundPerturb:
    """A perturbation of the pixels only (the mask kept)."""
    return lambda rgb, mask, _rng: (f(rgb), mask)


def _gains(r: float, g: float, b: float) -> Perturb:
    def f(rgb: np.ndarray) -> np.ndarray:
        return np.clip(rgb.astype(np.float32) * (r, g, b), 0, 255).astype(np.uint8)

    return f


def _gamma(gamma: float, gain: float = 1.0) -> Perturb:
    def f(rgb: np.ndarray) -> np.ndarray:
        x = (rgb.astype(np.float32) / 255.0) ** gamma * gain
        return np.clip(x * 255.0, 0, 255).astype(np.uint8)

    return f


def _jpeg(quality: int) -> Perturb:
    def f(rgb: np.ndarray) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()

    return f


def _lowres(factor: float) -> Perturb:
    def f(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    return f


def _blur(sigma: float) -> Perturb:
    def f(rgb: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(rgb, (0, 0), sigma)

    return f


def _tissue(name: str, cover: float = 0.7) -> WoundPerturb:
    """70% of the bed turned to ``name``: its new edge lies on the annotation where the recoloured
    part reaches it, an edge the network can follow (optimistic for the outline)."""

    def f(rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return appearance.recolour_wound(rgb, mask, rng, tissue=name, cover=cover), mask

    return f


def _tissue_centre(name: str) -> WoundPerturb:
    """The bed's centre turned to ``name``, a rim of the original bed kept: the outline is the
    photo's own, and the network must take the dark or yellow centre into the ulcer."""

    def f(rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return appearance.recolour_centre(rgb, mask, rng, tissue=name), mask

    return f


def _skin_tone(rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return appearance.shift_skin_tone(rgb, mask, rng), mask


def _hard_negatives(
    rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    out, label = appearance.paste_hard_negatives(rgb, mask.astype(np.uint8), rng)
    return out, label


# name -> (pixel perturbation or None, inference scale or None = dataset default)
CONDITIONS: dict[str, tuple[WoundPerturb | None, float | None]] = {
    "none": (None, None),
    "warm_wb": (_pixels(_gains(1.15, 1.0, 0.8)), None),
    "cool_wb": (_pixels(_gains(0.85, 1.0, 1.2)), None),
    "dark": (_pixels(_gamma(1.5, 0.7)), None),
    "bright": (_pixels(_gamma(0.7, 1.1)), None),
    "jpeg_q25": (_pixels(_jpeg(25)), None),
    "lowres_x0.4": (_pixels(_lowres(0.4)), None),
    "blur_s2": (_pixels(_blur(2.0)), None),
    "farther_x0.6": (None, 0.6),
    "closer_x1.6": (None, 1.6),
    "eschar_bed": (_tissue("eschar"), None),
    "crust_bed": (_tissue("crust"), None),
    "slough_bed": (_tissue("slough"), None),
    "pale_bed": (_tissue("pale"), None),
    "eschar_centre": (_tissue_centre("eschar"), None),
    "crust_centre": (_tissue_centre("crust"), None),
    "slough_centre": (_tissue_centre("slough"), None),
    "skin_tone": (_skin_tone, None),
    "hard_negatives": (_hard_negatives, None),
}


def perturbed_copy(data: Path, stems: list[str], perturb: WoundPerturb | None, out: Path) -> Path:
    """A dataset folder with the chosen stems, images (and masks) perturbed (PNG, lossless), with a
    generator seeded per image; without ``perturb``, a copy."""
    ds = load_dataset(data)
    by_stem = ds.by_stem()
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for stem in stems:
        s = by_stem[stem]
        if perturb is None:
            shutil.copy(s.image_path, out / "images" / s.image_path.name)
            shutil.copy(s.mask_path, out / "masks" / s.mask_path.name)
            continue
        rng = np.random.default_rng(zlib.crc32(stem.encode()))
        rgb, mask = perturb(read_image(s.image_path), read_mask(s.mask_path).astype(np.uint8), rng)
        cv2.imwrite(str(out / "images" / f"{stem}.png"), rgb[..., ::-1])
        cv2.imwrite(str(out / "masks" / f"{stem}.png"), (mask > 0).astype(np.uint8) * 255)
    # keep the dataset name so results read as the same split
    (out / "dataset.yaml").write_text(f"name: {ds.name}\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/fuseg-train"))
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated names")
    args = parser.parse_args()
    names = [n.strip() for n in args.conditions.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        parser.error(f"unknown condition {unknown[0]!r} (known: {', '.join(CONDITIONS)})")

    card = load_card(args.model)
    ds_name = load_dataset(args.data).name
    stems = split_stems(card, ds_name)
    if not stems:
        parser.error(f"{args.model}: model card records no held-out split for dataset {ds_name!r}")
    backend = open_backend(args.model, args.backend)
    print(f"model {card.name} ({backend.sha256[:12]}), {len(stems)} held-out images of {ds_name}")
    print(f"{'condition':<14} {'Dice pooled':>11} {'Dice mean':>10} {'recall':>7} {'area err':>9} "
          f"{'median |err|':>12} {'s':>6}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ulcerseg-robust-") as tmp:
        for name in names:
            perturb, scale = CONDITIONS[name]
            folder = perturbed_copy(args.data, stems, perturb, Path(tmp) / name)
            t0 = time.perf_counter()
            s = evaluate(backend, [folder], scale=scale, worst=0).summary
            print(
                f"{name:<14} {s['dataset_dice']:>11.4f} {s['mean_dice']:>10.4f} {s['dataset_recall']:>7.3f} "
                f"{s['dataset_area_error_pct']:>+8.1f}% {s['median_abs_area_error_pct']:>11.1f}% "
                f"{time.perf_counter() - t0:>6.1f}"
            )


if __name__ == "__main__":
    main()

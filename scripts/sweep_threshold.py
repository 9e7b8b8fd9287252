"""Dice and area bias of a model at several probability thresholds on a dataset.

Used to choose the operating threshold recorded in a model card on data of the deployment
domain (e.g. held-out synthetic finger tiles), never on the data used to report results.

Usage: python scripts/sweep_threshold.py --model models/default --data data/synth-test
"""

from __future__ import annotations

import argparse

import numpy as np

from ulcerseg.metrics import Counts, counts, dice
from ulcerseg.segmentation.backends import open_backend
from ulcerseg.training.dataset import load_dataset, read_image, read_mask
from ulcerseg.training.predict import predict_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--data", required=True)
    parser.add_argument("--thresholds", default="0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    args = parser.parse_args()
    backend = open_backend(args.model, "auto")
    ds = load_dataset(args.data)
    f = backend.card.px_per_mm / ds.px_per_mm if ds.px_per_mm else 1.0
    thresholds = [float(t) for t in args.thresholds.split(",")]
    probs, gts = [], []
    for s in ds.samples:
        probs.append(predict_image(backend.predict_proba, read_image(s.image_path), f, 1024))
        gts.append(read_mask(s.mask_path) > 0)
    card = backend.card
    print(f"model {card.name} (card threshold {card.threshold}), {len(gts)} images of {args.data}")
    print("threshold  pooled_dice  mean_dice  median_area_ratio  median_|area_err|_%")
    for t in thresholds:
        pooled = Counts(0, 0, 0)
        dices, ratios = [], []
        for p, g in zip(probs, gts, strict=True):
            m = p >= t
            c = counts(m, g)
            pooled = pooled + c
            if g.any():
                dices.append(dice(c))
                ratios.append(m.sum() / g.sum())
        ratios_arr = np.asarray(ratios)
        print(
            f"{t:9.2f}  {dice(pooled):11.3f}  {np.mean(dices):9.3f}  "
            f"{np.median(ratios_arr):17.3f}  {100 * np.median(np.abs(ratios_arr - 1)):19.1f}"
        )


if __name__ == "__main__":
    main()

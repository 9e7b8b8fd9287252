"""Fine-pass thresholds and scale views, swept offline on the end-to-end benchmark's own crops.

`bench_endtoend.py` keeps each measured photo's rectified crop (10 px/mm of the marker plane).
This script segments those crops again under other settings of the fine pass, without
running `measure` again: the probability threshold, and "scale views" (the crop also seen at a
fraction of its px per mm, area-averaged down, the probability resampled back and averaged
with the crop's own). Each setting is the mirror average `measure` uses; the mask rule is
`measure`'s (minimum area, merge distance, marker excluded). The true wound is sampled on the
crop's grid. Printed per part of the benchmark (calibration / test) and for all photos:
median and p90 |area error|, median signed error, the share of photos off by > 25% and the
mean Dice. Choose on the calibration part, read the test part.

`--edge-snap` adds, per set of views, a per-photo threshold: of the swept thresholds, the one
whose outline lies on the strongest image edge (mean CIELAB gradient magnitude along the
outline; key `<views>@snap`).

The baseline setting (`1@<card threshold>`) reproduces `measure`'s areas; the first line
printed says how closely (the ulcer choice among several candidates is not re-run).

Usage: python scripts/sweep_endtoend.py --pool out/bench-e2e-pool
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

# scripts/ is on sys.path when this file is run as a script
from bench_endtoend import ERROR_LIMIT_PCT, measure_dir_name, truth_patch

from ulcerseg.config import SegmentationConfig
from ulcerseg.geometry import RectifiedGrid
from ulcerseg.imageio import read_mask
from ulcerseg.segmentation.backends import open_backend
from ulcerseg.segmentation.inference import marker_exclusion, mirrored, predict_image
from ulcerseg.segmentation.postprocess import ulcer_mask

MARKER_SIDE_MM = 10.0  # the benchmark's marker


def per_photo_tables(pool: Path) -> pd.DataFrame:
    """The measured rows of ``pool``'s per_photo.csv (one benchmark run, one or several seeds)."""
    df = pd.read_csv(pool / "per_photo.csv", dtype={"stem": str})
    return df[df["rectified_file"].notna()].reset_index(drop=True)


def run_dir(pool: Path, row: pd.Series) -> Path:
    """The `measure` output folder of ``row`` (bench_endtoend's naming)."""
    seed_dir = pool / f"seed{int(row['bench_seed'])}" if "bench_seed" in row else pool
    return seed_dir / measure_dir_name(row["model_sha256"], row["config_sha256"])


def edge_strength(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude (CIELAB units per px, Sobel, after a 1 px Gaussian) of an RGB image."""
    lab = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32), (0, 0), 1.0)
    gx, gy = cv2.Sobel(lab, cv2.CV_32F, 1, 0), cv2.Sobel(lab, cv2.CV_32F, 0, 1)
    return np.sqrt((gx * gx + gy * gy).sum(axis=2))


def on_strongest_edge(masks: list[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Of ``masks`` (one per threshold), the one whose outline has the highest mean ``edges``."""
    best, chosen = -1.0, masks[0]
    for mask in masks:
        if not mask.any():
            continue
        outline = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        score = float(edges[outline].mean())
        if score > best:
            best, chosen = score, mask
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=Path("out/bench-e2e-pool"),
                        help="bench_endtoend.py --out folder (per_photo.csv, measure folders)")  # fmt: skip
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/fuseg-train"))
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.85,0.9")
    parser.add_argument("--views", default="1;1,0.9;1,0.8;1,0.7;1,0.6;1,0.8,0.6;1,0.7,1.2;1,0.9,0.8,0.7",
                        help="';'-separated sets of scale factors (1: the crop itself)")  # fmt: skip
    parser.add_argument("--edge-snap", action="store_true",
                        help="add a per-photo threshold: the swept one on the strongest edge")  # fmt: skip
    parser.add_argument("--csv", type=Path, help="write the per-photo areas here")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    view_sets = [tuple(float(s) for s in v.split(",")) for v in args.views.split(";")]
    scales = sorted({s for v in view_sets for s in v})
    df = per_photo_tables(args.pool)
    backend = open_backend(args.model, "auto")
    card_threshold = backend.card.threshold
    rule = SegmentationConfig()  # measure's default mask rule (minimum area, merge distance)
    min_mm2 = rule.min_area_mm2

    def mirror_mean(image: np.ndarray) -> np.ndarray:
        own = predict_image(backend.predict_proba, image, 1024)
        return (own + predict_image(mirrored(backend.predict_proba), image, 1024)) / 2

    rows = []
    t0 = time.perf_counter()
    for _, r in df.iterrows():
        bgr = cv2.imread(str(run_dir(args.pool, r) / r["rectified_file"]))
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        px_mm = float(r["rectified_px_per_mm"])
        grid = RectifiedGrid((r["rectified_origin_x_mm"], r["rectified_origin_y_mm"]), px_mm, w, h)
        truth = truth_patch(r, read_mask(args.data / "masks" / f"{r['stem']}.png")).mask_on_grid(grid)
        exclude = marker_exclusion(grid, MARKER_SIDE_MM)
        views = {}
        for s in scales:
            if s == 1.0:
                views[s] = mirror_mean(image)
                continue
            size = (max(round(w * s), 1), max(round(h * s), 1))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            views[s] = cv2.resize(mirror_mean(small), (w, h), interpolation=cv2.INTER_LINEAR)
        out = {"file": r["file"], "part": r["part"], "true_area_mm2": r["true_area_mm2"],
               "measured_area_mm2": r["area_mm2"]}  # fmt: skip
        edges = edge_strength(image) if args.edge_snap else None
        for vs in view_sets:
            prob = np.mean([views[s] for s in vs], axis=0)
            prob[exclude] = 0.0
            name = "+".join(f"{s:g}" for s in vs)
            masks = {
                f"{name}@{t:g}": ulcer_mask(prob, t, px_mm, min_mm2, rule.merge_distance_mm, exclude)
                for t in thresholds
            }
            if edges is not None:
                masks[f"{name}@snap"] = on_strongest_edge(list(masks.values()), edges)
            for key, mask in masks.items():
                out[key] = mask.sum() / px_mm**2
                n = mask.sum() + truth.sum()
                out[key + "_dice"] = 2 * (mask & truth).sum() / n if n else 1.0
        rows.append(out)
    res = pd.DataFrame(rows)
    print(f"{len(res)} photos re-segmented in {time.perf_counter() - t0:.0f} s")
    if args.csv:
        res.to_csv(args.csv, index=False)
    base = f"1@{card_threshold:g}"
    if base in res:
        diff = (res[base] / res["measured_area_mm2"] - 1).abs() * 100
        print(f"baseline {base} vs measure's areas: median |diff| {diff.median():.2f}%, "
              f"{(diff < 0.5).mean():.1%} within 0.5%")  # fmt: skip
    keys = [c for c in res.columns if "@" in c and not c.endswith("_dice")]
    for part in [*sorted(res["part"].unique()), None]:
        sub = res if part is None else res[res["part"] == part]
        print(f"\n== {part or 'all'}: {len(sub)} photos ==")
        print(f"{'views@threshold':<20} {'median':>7} {'p90':>7} {'bias':>7} {'wrong':>7} {'Dice':>6}")
        for key in keys:
            err = (sub[key] / sub["true_area_mm2"] - 1) * 100
            print(f"{key:<20} {err.abs().median():>6.1f}% {err.abs().quantile(0.9):>6.1f}% "
                  f"{err.median():>+6.1f}% {(err.abs() > ERROR_LIMIT_PCT).mean():>6.1%} "
                  f"{sub[key + '_dice'].mean():>6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()

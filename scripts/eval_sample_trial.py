"""End-to-end accuracy on a synthetic trial: measured vs true ulcer area per photo.

Runs `measure` on the trial folder (default sample_images/) with the given model unless
--out already holds a run, then joins measurements.csv with the trial's ground_truth.csv and
prints per-photo area error and summary figures (median absolute % error, detection rate).

Usage: python scripts/eval_sample_trial.py [--trial sample_images] [--out out/] [--model models/default]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from ulcerseg.config import load_config, with_overrides
from ulcerseg.pipeline import measure_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial", type=Path, default=Path("sample_images"))
    parser.add_argument("--out", type=Path, default=None, help="measure output folder (reused if present)")
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--config", type=Path, default=None, help="pipeline config YAML")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="ulcerseg-eval-"))
    overrides = {"model": args.model, "backend": args.backend}
    cfg = with_overrides(load_config(args.config), segmentation=overrides)
    summary = measure_study(args.trial, out, cfg)
    print(f"measure: {summary.n_measured} measured, {summary.n_failed} failed, {summary.n_skipped} reused")
    auto = pd.read_csv(out / "measurements.csv")
    truth = pd.read_csv(args.trial / "ground_truth.csv")
    df = truth.merge(auto, on="file", how="left", suffixes=("_true", ""))
    df["error_mm2"] = df["area_mm2"] - df["true_area_mm2"]
    df["error_pct"] = 100 * df["error_mm2"] / df["true_area_mm2"].where(df["true_area_mm2"] > 0)
    cols = ["file", "true_area_mm2", "area_mm2", "error_mm2", "error_pct", "tilt_deg_true", "flags"]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(df[cols].round(2).to_string(index=False))
    ulcers = df[df["true_area_mm2"] > 0]
    found = ulcers["area_mm2"].fillna(0) > 0
    abs_pct = ulcers["error_pct"].abs()
    print(f"photos with an ulcer: {len(ulcers)}, found: {int(found.sum())}")
    abs_mm2 = ulcers["error_mm2"].abs().median()
    print(
        f"area error: median |e| {abs_pct.median():.1f}%  mean |e| {abs_pct.mean():.1f}%  "
        f"median e {ulcers['error_pct'].median():+.1f}%  median |e| {abs_mm2:.2f} mm2"
    )
    print(f"output: {out}")


if __name__ == "__main__":
    main()

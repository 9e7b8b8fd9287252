"""QA of the automated pipeline on the synthetic sample trial against its ground truth.

Usage::

    ulcerseg measure sample_images -o OUT
    python scripts/qa_sample_trial.py --auto OUT [--trial sample_images] [-o OUT/qa_sample]

Two references are compared with the automated areas:

- ``ground_truth_area``: the exact synthetic areas (``true_area_mm2`` of ground_truth.csv,
  mm² on the marker plane), matched by photo path;
- ``ground_truth_masks``: the photo-frame ground-truth masks (ground_truth_masks/
  ``<subject>_<visit>_<ulcer>.png``), converted to mm² with each photo's homography from the
  automated run and resampled into its rectified frame for Dice/IoU.

Their mutual agreement (``ground_truth_area vs ground_truth_masks``) isolates the calibration
error of the automated run (estimated homography vs the true one). Prints bias, limits of
agreement, ICC and Dice; the full QA folder (tables, plots, summary.md/html) is written to -o.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import pandas as pd

from ulcerseg.qa.compare import run_qa
from ulcerseg.tables import write_frame_csv

GROUND_TRUTH_CSV = "ground_truth.csv"
MASK_DIR = "ground_truth_masks"


def write_area_reference(trial: Path, path: Path) -> Path:
    """Manual-reference CSV (file, area_mm2) from the trial's ground_truth.csv."""
    gt = pd.read_csv(trial / GROUND_TRUTH_CSV, dtype={"file": str})
    missing = {"file", "true_area_mm2"} - set(gt.columns)
    if missing:
        raise SystemExit(f"{trial / GROUND_TRUTH_CSV}: missing columns {sorted(missing)}")
    return write_frame_csv(path, gt[["file", "true_area_mm2"]].rename(columns={"true_area_mm2": "area_mm2"}))


def _fmt(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) and math.isfinite(v) else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--auto", required=True, type=Path, help="ulcerseg measure output folder")
    parser.add_argument("--trial", default=Path("sample_images"), type=Path)
    parser.add_argument("-o", "--out", type=Path, default=None, help="QA folder")
    parser.add_argument("--by", action="append", default=None, help="sub-group column (default area_range)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    out = args.out or args.auto / "qa_sample"
    if not (args.trial / GROUND_TRUTH_CSV).is_file():
        parser.error(f"{args.trial}: no {GROUND_TRUTH_CSV} (generate the sample trial first)")
    manuals: list[Path] = [write_area_reference(args.trial, out / "inputs" / "ground_truth_area.csv")]
    names: list[str | None] = ["ground_truth_area"]
    if (args.trial / MASK_DIR).is_dir():
        manuals.append(args.trial / MASK_DIR)
        names.append("ground_truth_masks")
    report = run_qa(args.auto, manuals, out, by=args.by or ["area_range"], names=names)
    ag = report.agreement.set_index("comparison")
    for name in ag.index:
        r = ag.loc[name]
        print(
            f"{name}: n={int(r['n'])} bias {_fmt(r['bias_mm2'])} mm² "
            f"(95% LoA {_fmt(r['loa_low_mm2'])} to {_fmt(r['loa_high_mm2'])} mm²; "
            f"{_fmt(r['bias_pct'], 1)}%, LoA {_fmt(r['loa_low_pct'], 1)}% to "
            f"{_fmt(r['loa_high_pct'], 1)}%), ICC(2,1) {_fmt(r['icc2'], 3)} "
            f"[{_fmt(r['icc2_ci_low'], 3)}, {_fmt(r['icc2_ci_high'], 3)}], "
            f"CCC {_fmt(r['ccc'], 3)}, Dice mean {_fmt(r['dice_mean'], 3)} "
            f"(median {_fmt(r['dice_median'], 3)}, n={int(r['n_dice'])})"
        )
    if report.issues:
        print(f"{len(report.issues)} input problem(s): {out / 'issues.csv'}")
    print(f"unmatched items: {len(report.unmatched)} ({out / 'unmatched.csv'})")
    print(f"summary: {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

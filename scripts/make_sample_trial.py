"""Regenerate ``sample_images/``: a small synthetic demo trial with its ground truth.

2 subjects x visits D0, W4, W8 x 1-2 ulcers, rendered at phone resolution (4000x3000) and
downscaled to 1600x1200 JPEG (quality 86-90) so the folder stays small. Deterministic: the same
seed always writes the same bytes (with the same library versions).

    python scripts/make_sample_trial.py [--out sample_images] [--seed 15]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ulcerseg.synth.render import PhotoConfig
from ulcerseg.synth.trial import GROUND_TRUTH_CSV, TRIAL_MASK_DIR, generate_trial

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sample_images")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--size", default="1600x1200", help="photo size WxH written to disk")
    parser.add_argument("--render-size", default="4000x3000", help="size rendered before downscaling")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    render_size = tuple(int(v) for v in args.render_size.split("x"))
    out: Path = args.out
    # Remove only what this script writes, so stale photos never survive a regeneration.
    if out.is_dir():
        for sub in out.iterdir():
            if sub.is_dir() and (sub.name.startswith("S") or sub.name == TRIAL_MASK_DIR):
                shutil.rmtree(sub)
        (out / GROUND_TRUTH_CSV).unlink(missing_ok=True)
    config = PhotoConfig(jpeg_quality_range=(86, 90))
    generate_trial(
        out,
        n_subjects=2,
        visits=("D0", "W4", "W8"),
        ulcers_per_subject=(1, 2),
        photo_size=size,
        render_size=render_size,
        seed=args.seed,
        config=config,
    )
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    n = len(list(out.rglob("*.jpg")))
    print(f"wrote {n} photos to {out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

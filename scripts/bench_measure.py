"""Throughput of `measure` on 12-MP synthetic photos: images/s and time per stage.

Writes N synthetic photos (default 4000x3000 JPEG) into a temporary trial folder, runs the
whole pipeline (discovery, decode, marker, rectify, segment, measure, write to the study) with
the given model, and prints end-to-end images/s plus the mean time of each stage per photo.

Usage: python scripts/bench_measure.py [--n 12] [--model models/default] [--backend auto] [--config my.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import cv2

from ulcerseg.config import load_config, with_overrides
from ulcerseg.pipeline import measure_study, open_model
from ulcerseg.synth.render import PhotoConfig, render_photo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-overlays", action="store_true")
    parser.add_argument("--config", type=Path, default=None, help="pipeline config YAML (default: built-in)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    cfg = with_overrides(
        load_config(args.config),
        segmentation={"model": args.model, "backend": args.backend, "threads": args.threads},
        output={"write_overlays": not args.no_overlays},
    )
    backend = open_model(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "trial"
        for i in range(args.n):
            photo = render_photo(500 + i, PhotoConfig(size=(width, height)))
            path = root / f"S{i:03d}" / "D0" / "U1.jpg"
            path.parent.mkdir(parents=True)
            bgr = cv2.cvtColor(photo.image, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        mb = sum(p.stat().st_size for p in root.rglob("*.jpg")) / 1e6
        backend.predict_proba(cv2.resize(photo.image, (256, 256))[None])  # warm-up, not timed
        t0 = time.perf_counter()
        summary = measure_study(root, Path(tmp) / "out", cfg, backend=backend)
        elapsed = time.perf_counter() - t0
        con = sqlite3.connect(Path(tmp) / "out" / "study.sqlite")
        stages = [json.loads(s) for (s,) in con.execute("SELECT stage_seconds FROM measurements")]
    seg = cfg.segmentation
    print(f"model: {backend.card.name} ({type(backend).__name__}), threads {args.threads}, "
          f"coarse_factor {seg.coarse_factor}, tta {seg.tta}")  # fmt: skip
    print(f"photos: {args.n} x {width}x{height} JPEG ({mb / args.n:.1f} MB each), "
          f"measured {summary.n_measured}, failed {summary.n_failed}")  # fmt: skip
    print(f"end-to-end: {args.n / elapsed:.2f} images/s ({1000 * elapsed / args.n:.0f} ms per photo)")
    names = ["decode", "marker", "rectify", "segment", "measure", "write"]
    per_stage = {k: 1000 * sum(s.get(k, 0.0) for s in stages) / max(len(stages), 1) for k in names}
    other = 1000 * elapsed / args.n - sum(per_stage.values())
    print("ms per photo: " + ", ".join(f"{k} {v:.0f}" for k, v in per_stage.items()) + f", other {other:.0f}")


if __name__ == "__main__":
    main()

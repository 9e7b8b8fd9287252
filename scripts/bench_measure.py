"""Throughput of `ulcerseg measure` on 12-MP synthetic photos: photos/s, decode-floor ratio, peak RSS.

Writes N synthetic photos (default 4000x3000 JPEG, quality 92) into a trial folder (``--photos
DIR`` keeps them for the next run), then times the real command line, `ulcerseg measure`, in a
child process: wall clock including start-up and model loading, as a user sees it. In the same
run it times the decode floor (``cv2.imread`` of the same photos, one after another, right
before and right after the run, averaged) and reads the child's peak RSS
(``resource.getrusage``). Prints photos/s, the ratio of time per photo to the decode floor, peak
RSS and the mean time of each stage per photo (stages overlap: the next photo is decoded and the
previous one written while a photo is measured).

Usage: python scripts/bench_measure.py [--n 24] [--photos DIR] [--model models/default]
       [--backend auto] [--threads N] [--parallel-photos N] [--device cuda] [--no-overlays]
       [--config my.yaml] [--repeat 1] [--code CHECKOUT]

A paired comparison with a baseline: ``git worktree add /tmp/base COMMIT``, then alternate runs
with ``--code /tmp/base`` and without on the same ``--photos`` folder.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from ulcerseg.synth.render import PhotoConfig, render_photo

STAGES = ["decode", "marker", "rectify", "segment", "measure", "write"]


def make_photo(root: Path, i: int, size: tuple[int, int]) -> Path:
    """Synthetic photo number ``i`` under ``root`` (reused when already there)."""
    path = root / f"S{i:03d}" / "D0" / "U1.jpg"
    if not path.is_file():
        photo = render_photo(500 + i, PhotoConfig(size=size))
        path.parent.mkdir(parents=True, exist_ok=True)
        bgr = cv2.cvtColor(photo.image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def make_photos(root: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """N synthetic photos under ``root`` (reused when already there)."""
    return [make_photo(root, i, size) for i in range(n)]


def decode_floor(paths: list[Path]) -> float:
    """Seconds per photo to decode the photos with cv2.imread (full size, one thread of work)."""
    t0 = time.perf_counter()
    for path in paths:
        cv2.imread(str(path), cv2.IMREAD_COLOR)
    return (time.perf_counter() - t0) / len(paths)


def _entry(code: Path | None) -> str:
    """Python source of the measuring child: this environment's ulcerseg, or the one in the
    checkout ``code``. An editable install's import hook would win over PYTHONPATH, so it is
    removed from the child's meta path first."""
    if code is None:
        return "from ulcerseg.cli import run; run()"
    return ("import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
            f"sys.path.insert(0, {str(code.resolve())!r}); import ulcerseg; "
            f"assert ulcerseg.__file__.startswith({str(code.resolve())!r}), ulcerseg.__file__; "
            "from ulcerseg.cli import run; run()")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--photos", type=Path, default=None, help="trial folder to make or reuse")
    parser.add_argument("--model", default=None, help="model folder (default: the config's)")
    parser.add_argument("--backend", default=None, choices=["auto", "torch", "onnx"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--parallel-photos", type=int, default=None)
    parser.add_argument("--device", default=None, help="cuda: the GPU path (torch backend, batched tiles)")
    parser.add_argument("--no-overlays", action="store_true")
    parser.add_argument("--config", type=Path, default=None, help="pipeline config YAML (default: built-in)")
    parser.add_argument("--repeat", type=int, default=1, help="measure the same photos this many times")
    parser.add_argument(
        "--code", type=Path, default=None, help="run the ulcerseg of this checkout (e.g. a git worktree)"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.photos or Path(tmp) / "trial"
        paths = make_photos(root, args.n, (width, height))
        mb = sum(p.stat().st_size for p in paths) / 1e6
        cmd = [sys.executable, "-c", _entry(args.code), "measure", str(root)]
        options = (("--config", args.config), ("--model", args.model), ("--backend", args.backend),
                   ("--threads", args.threads), ("--parallel-photos", args.parallel_photos),
                   ("--device", args.device))  # fmt: skip
        for flag, value in options:
            if value is not None:
                cmd += [flag, str(value)]
        if args.no_overlays:
            overrides = Path(tmp) / "no_overlays.yaml"
            overrides.write_text("output:\n  write_overlays: false\n")
            if args.config is None:
                cmd += ["--config", str(overrides)]
        # the checkout this script is in (an installed, not editable, ulcerseg would win over
        # PYTHONPATH otherwise), or --code's
        env = {**os.environ}
        env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
        print(f"photos: {args.n} x {width}x{height} JPEG ({mb / args.n:.1f} MB each) in {root}")
        for rep in range(args.repeat):
            # the floor is timed right before and right after the run and averaged: the shared
            # machine's speed drifts by 10-30% within minutes, and a ratio against a floor taken
            # at another speed says more about the machine than about the code
            floor_before = decode_floor(paths)
            out = Path(tmp) / f"out{rep}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run([*cmd, "-o", str(out)], env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - t0
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            floor_after = decode_floor(paths)
            floor = (floor_before + floor_after) / 2
            if proc.returncode not in (0, 1):
                sys.exit(f"ulcerseg measure failed ({proc.returncode}): {proc.stderr[-2000:]}")
            rss_mb = usage.ru_maxrss / 1024  # the largest child so far
            cpu = (usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime) / args.n
            con = sqlite3.connect(out / "study.sqlite")
            stages = [json.loads(s) for (s,) in con.execute("SELECT stage_seconds FROM measurements")]
            n_ok = con.execute("SELECT COUNT(*) FROM measurements WHERE status = 'measured'").fetchone()[0]
            con.close()
            per_photo = elapsed / args.n
            print(f"run {rep + 1}: {args.n / elapsed:.2f} photos/s end to end ({1000 * per_photo:.0f} ms per "
                  f"photo, {n_ok} measured), decode floor {1000 * floor:.0f} ms per photo (before "
                  f"{1000 * floor_before:.0f}, after {1000 * floor_after:.0f}) -> "
                  f"{per_photo / floor:.1f}x the decode floor, peak RSS {rss_mb:.0f} MB, "
                  f"CPU {1000 * cpu:.0f} ms per photo")  # fmt: skip
            per_stage = {k: 1000 * sum(s.get(k, 0.0) for s in stages) / max(len(stages), 1) for k in STAGES}
            stage_text = ", ".join(f"{k} {v:.0f}" for k, v in per_stage.items())
            print(f"  ms per photo by stage (overlapping): {stage_text}")


if __name__ == "__main__":
    main()

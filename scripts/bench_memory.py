"""Memory of one long `ulcerseg measure` run: RSS sampled over N photos (is it flat?).

Renders ``--distinct`` 12-MP synthetic photos (as ``bench_measure.py``; ``--photos DIR`` keeps
them), writes N photo files from them, each with 4 bytes of its number after the JPEG's end
(distinct files, so none is skipped as a duplicate; the same pixels), then runs the real command
line in a child process and reads its RSS from /proc every second (Linux). Prints photos/s and,
per block of photos written, the median and peak RSS: a leak shows as a rising median.

Usage: python scripts/bench_memory.py [--n 1000] [--distinct 24] [--photos DIR] [--block 100]
       [--config my.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_measure import make_photos


def rss_mb(pid: int) -> float | None:
    """Resident set size of process ``pid`` in MB (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            line = next(ln for ln in status if ln.startswith("VmRSS"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="photos measured in the one run")
    parser.add_argument("--distinct", type=int, default=24, help="photos rendered (the rest are copies)")
    parser.add_argument("--photos", type=Path, default=None, help="keep the rendered photos here")
    parser.add_argument("--block", type=int, default=100, help="photos per line of the RSS table")
    parser.add_argument("--config", type=Path, default=None, help="pipeline config YAML (default: built-in)")
    args = parser.parse_args()
    if not Path("/proc/self/status").is_file():
        sys.exit("bench_memory.py reads RSS from /proc: Linux only")
    with tempfile.TemporaryDirectory() as tmp:
        sources = make_photos(args.photos or Path(tmp) / "rendered", args.distinct, (4000, 3000))
        root, out = Path(tmp) / "trial", Path(tmp) / "out"
        for i in range(args.n):
            path = root / f"S{i:04d}" / "D0" / "U1.jpg"
            path.parent.mkdir(parents=True)
            # bytes after the JPEG's end marker: decoders ignore them, the SHA-256 differs
            path.write_bytes(sources[i % len(sources)].read_bytes() + i.to_bytes(4, "big"))
        cmd = [sys.executable, "-c", "from ulcerseg.cli import run; run()", "measure", str(root)]
        cmd += ["-o", str(out)]
        if args.config is not None:
            cmd += ["--config", str(args.config)]
        samples: list[tuple[int, float]] = []  # (photos written, RSS MB)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            rss = rss_mb(proc.pid)
            if rss is not None:
                written = sum(1 for _ in (out / "masks").glob("*.png")) if (out / "masks").is_dir() else 0
                samples.append((written, rss))
            time.sleep(1.0)
        elapsed = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            sys.exit(f"ulcerseg measure failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    print(f"{args.n} photos ({args.distinct} distinct) in {elapsed:.0f} s: {args.n / elapsed:.2f} photos/s, "
          f"peak RSS {max(r for _, r in samples):.0f} MB")  # fmt: skip
    for lo in range(0, args.n, args.block):
        block = [r for n, r in samples if lo <= n < lo + args.block]
        if block:
            median, peak, hi = statistics.median(block), max(block), lo + args.block - 1
            print(f"  photos {lo:5d}-{hi:5d}: RSS median {median:5.0f} MB, peak {peak:5.0f} MB")


if __name__ == "__main__":
    main()

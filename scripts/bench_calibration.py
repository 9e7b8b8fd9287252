"""Calibration accuracy: area error due to marker detection alone, on synthetic photos.

For each synthetic photo (random tilt up to --max-tilt, rotation, distance, lighting, blur,
noise, JPEG compression), the marker is detected in the JPEG-decoded photo and the estimated
photo->marker homography is used to measure the ground-truth ulcer:

- polygon: the true marker-plane polygon projected into the photo with the TRUE camera, then
  mapped back with the ESTIMATED homography (shoelace area): pure calibration error;
- mask: the ground-truth photo-frame mask warped to the marker plane (adds rasterisation).

Usage: python scripts/bench_calibration.py [--n 200] [--size 2000x1500] [--max-tilt 45]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from ulcerseg.annotations import mask_area_mm2, polygon_area_mm2
from ulcerseg.calibration.marker import calibrate, homography_matrix
from ulcerseg.errors import CalibrationError
from ulcerseg.geometry import apply_homography
from ulcerseg.synth.render import PhotoConfig, render_photo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", default="2000x1500", help="photo size WxH px")
    parser.add_argument("--max-tilt", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    config = PhotoConfig(size=(width, height), max_tilt_deg=args.max_tilt)
    poly_err, mask_err, tilts, missed = [], [], [], 0
    t0 = time.perf_counter()
    for i in range(args.n):
        photo = render_photo(args.seed + i, config)
        truth = photo.truth
        if truth.true_area_mm2 <= 0:
            continue
        ok, enc = cv2.imencode(".jpg", cv2.cvtColor(photo.image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, truth.jpeg_quality])  # fmt: skip
        assert ok
        rgb = cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        try:
            cal = calibrate(rgb, "DICT_4X4_50", (truth.marker_id,), truth.side_mm)
        except CalibrationError:
            missed += 1
            continue
        h_est = homography_matrix(cal)
        poly_px = apply_homography(truth.homography, truth.polygon_mm)
        area_poly = polygon_area_mm2(poly_px, h_est)
        area_mask = mask_area_mm2(truth.mask > 0, h_est)
        poly_err.append(100 * (area_poly / truth.true_area_mm2 - 1))
        mask_err.append(100 * (area_mask / truth.true_area_mm2 - 1))
        tilts.append(truth.tilt_deg)
    elapsed = time.perf_counter() - t0
    poly_abs, mask_abs = np.abs(poly_err), np.abs(mask_err)
    print(f"photos: {args.n} ({width}x{height}, tilt 0-{args.max_tilt:g} deg), marker missed: {missed}")
    print(f"tilt of measured photos: median {np.median(tilts):.1f} deg, max {np.max(tilts):.1f} deg")
    for name, err, abs_err in (("polygon", poly_err, poly_abs), ("mask", mask_err, mask_abs)):
        print(
            f"{name:8s} area error: median |e| {np.median(abs_err):.3f}%  p95 |e| "
            f"{np.percentile(abs_err, 95):.3f}%  max |e| {abs_err.max():.3f}%  bias {np.mean(err):+.3f}%"
        )
    print(f"time: {elapsed:.1f} s ({elapsed / args.n:.2f} s per photo incl. rendering)")


if __name__ == "__main__":
    main()

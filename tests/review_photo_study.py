"""A measured study whose items keep their original photo: a planar synthetic scene under a
perspective homography with a 1.75 mm² elliptical ulcer and two ruler dots 10 mm apart, so the
review frame is re-rectified from the photo at its native resolution (about 24 px/mm).

Written through the store API like ``test_review.make_study``; used by the view and browser tests.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from ulcerseg.calibration.rectify import rectify
from ulcerseg.geometry import RectifiedGrid
from ulcerseg.records import Calibration, Measurement, PhotoRecord, PhotoResult
from ulcerseg.store import Study

MODEL_PPM = 10.0
ULCER_AREA_MM2 = 1.75
ULCER_CENTRE_MM = (15.0, 12.0)
ULCER_A_MM = 0.9  # semi-axes of the ellipse (mm)
ULCER_B_MM = ULCER_AREA_MM2 / (math.pi * ULCER_A_MM)
RULER_MM = ((5.0, 24.0), (15.0, 24.0))  # two dots 10 mm apart on the plane
PHOTO_SIZE = (900, 760)  # width, height (px)
# marker-plane mm -> photo px: about 24 px/mm with a little perspective
H_MM_TO_PX = np.array([[24.0, 0.8, 150.0], [-0.6, 23.5, 120.0], [4e-5, 2e-5, 1.0]])
H_PX_TO_MM = np.linalg.inv(H_MM_TO_PX)
MODEL_GRID = RectifiedGrid((5.0, 2.0), MODEL_PPM, 240, 200)
# the photo without a usable marker: camera square to the plane, 20 px/mm, rotated 10 degrees
_C, _S = 20 * math.cos(math.radians(10)), 20 * math.sin(math.radians(10))
MARKERLESS_MM_TO_PX = np.array([[_C, -_S, 200.0], [_S, _C, 60.0], [0.0, 0.0, 1.0]])
MARKERLESS_PX_TO_MM = np.linalg.inv(MARKERLESS_MM_TO_PX)
SUBJECTS = ("SUBJ-2001", "SUBJ-2002", "SUBJ-2003")


def in_ulcer(x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
    """True where a marker-plane point lies inside the ulcer ellipse."""
    dx, dy = x_mm - ULCER_CENTRE_MM[0], y_mm - ULCER_CENTRE_MM[1]
    return (dx / ULCER_A_MM) ** 2 + (dy / ULCER_B_MM) ** 2 <= 1.0


def render_photo(seed: int = 0, markerless: bool = False) -> np.ndarray:
    """RGB photo (H, W, 3) of the scene, each pixel coloured by the plane point at its centre."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-3, 4, (PHOTO_SIZE[1], PHOTO_SIZE[0], 1))
    return np.clip(_scene(markerless).astype(np.int16) + noise, 0, 255).astype(np.uint8)


@functools.cache
def _scene(markerless: bool = False) -> np.ndarray:
    w, h = PHOTO_SIZE
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    pts = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    mm = (MARKERLESS_PX_TO_MM if markerless else H_PX_TO_MM) @ pts
    x, y = (mm[0] / mm[2]).reshape(h, w), (mm[1] / mm[2]).reshape(h, w)
    img = np.empty((h, w, 3), np.float64)
    img[:] = (214, 168, 148)
    # faint skin texture on the plane (so zoom shows detail), the ulcer, ruler dots
    img += 8 * (np.sin(x * 3.1) * np.sin(y * 2.3))[..., None]
    img[in_ulcer(x, y)] = (150, 38, 42)
    for cx, cy in RULER_MM:
        img[(x - cx) ** 2 + (y - cy) ** 2 <= 0.25**2] = (20, 20, 20)
    img[(np.abs(y - RULER_MM[0][1]) < 0.06) & (x > RULER_MM[0][0]) & (x < RULER_MM[1][0])] = (60, 60, 60)
    return np.clip(img, 0, 255).astype(np.uint8)


def model_mask(grid: RectifiedGrid = MODEL_GRID) -> np.ndarray:
    """The 'model's' mask: grid pixels whose centre lies in the ulcer."""
    u = np.arange(grid.width)[None, :]
    v = np.arange(grid.height)[:, None]
    return in_ulcer(grid.origin_mm[0] + u / grid.px_per_mm, grid.origin_mm[1] + v / grid.px_per_mm)


def make_photo_study(root: Path, n: int = 3, markerless: bool = False) -> dict:
    """OUT folder with ``n`` flagged photos of the scene (different noise), photos under root/in.

    ``markerless``: one more photo, measured as failed with ``no_marker`` (a manual-scale item);
    its key is ``info["markerless"]``.
    """
    out, inp = root / "out", root / "in"
    for d in ("rectified", "masks"):
        (out / d).mkdir(parents=True, exist_ok=True)
    info: dict = {"out": out, "in": inp, "photos": {}}
    h_flat = tuple(float(v) for v in (H_PX_TO_MM / H_PX_TO_MM[2, 2]).ravel())
    mask = model_mask()
    area = float(mask.sum()) / MODEL_PPM**2
    with Study.open(out) as study:
        run = study.start_run("0.1.0", "m" * 64, "c" * 64, {}, inp)
        for i in range(n):
            subject = SUBJECTS[i % len(SUBJECTS)]
            rel = f"{subject}/D0/photo.png"
            photo = render_photo(seed=i)
            (inp / rel).parent.mkdir(parents=True, exist_ok=True)
            meta = PngImagePlugin.PngInfo()
            meta.add_text("Subject", subject)
            meta.add_text("Date", "2024-03-05")
            Image.fromarray(photo).save(inp / rel, pnginfo=meta, compress_level=1)
            sha = hashlib.sha256((inp / rel).read_bytes()).hexdigest()
            key = sha[:16]
            rect = out / "rectified" / f"{key}.png"
            Image.fromarray(rectify(photo, H_PX_TO_MM, MODEL_GRID)).save(rect)
            mpath = out / "masks" / f"{key}.png"
            Image.fromarray(mask.astype(np.uint8) * 255).save(mpath)
            result = PhotoResult(
                photo=PhotoRecord(
                    path=inp / rel,
                    subject_id=subject,
                    ulcer_id="U1",
                    visit="D0",
                    study_day=0,
                    sha256=sha,
                    photo_date="2024-03-05",
                ),
                status="measured",
                calibration=Calibration(
                    marker_id=0,
                    corners_px=((0, 0), (1, 0), (1, 1), (0, 1)),
                    homography=h_flat,
                    mm_per_px=1 / 24.0,
                    tilt_deg=3.0,
                    residual_px=0.2,
                    side_mm=10.0,
                ),
                measurement=Measurement(
                    area_mm2=area,
                    perimeter_mm=5.0,
                    length_mm=1.8,
                    width_mm=1.2,
                    n_components=1,
                    mean_probability=0.6,
                    area_low_mm2=area * 0.9,
                    area_high_mm2=area * 1.1,
                    marker_distance_mm=10.0,
                ),
                flags=["low_confidence"],
                image_size=PHOTO_SIZE,
                mask_path=mpath,
                rectified_path=rect,
                rectified_origin_mm=MODEL_GRID.origin_mm,
                rectified_px_per_mm=MODEL_PPM,
            )
            study.add_result(run, result, rel)
            info["photos"][key] = {"sha": sha, "subject": subject, "area": area, "file": inp / rel}
        if markerless:
            rel = "SUBJ-2009/W4/photo.png"
            (inp / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(render_photo(seed=9, markerless=True)).save(inp / rel, compress_level=1)
            sha = hashlib.sha256((inp / rel).read_bytes()).hexdigest()
            record = PhotoRecord(inp / rel, "SUBJ-2009", "U1", "W4", 28, sha, "2024-04-02")
            study.add_result(
                run,
                PhotoResult(photo=record, status="failed", flags=["no_marker"], image_size=PHOTO_SIZE),
                rel,
            )
            info["markerless"] = sha[:16]
            info["photos"][sha[:16]] = {"sha": sha, "subject": "SUBJ-2009", "area": None, "file": inp / rel}
    return info

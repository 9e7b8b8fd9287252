"""Synthetic trial folders and flat photo sets with ground truth, written to disk.

Trial layout (what ``ulcerseg measure`` reads)::

    <root>/<subject>/<visit>/<ulcer_id>.jpg          photos, EXIF DateTimeOriginal = visit date
    <root>/ground_truth.csv                          one row per photo
    <root>/ground_truth_masks/<subject>_<visit>_<ulcer_id>.png   photo-frame masks (0/255)

Flat photo set (calibration benchmark)::

    <root>/photo_NNNN.jpg, <root>/ground_truth.csv, <root>/masks/photo_NNNN.png
"""

from __future__ import annotations

import io
import json
import logging
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ulcerseg.errors import InputError
from ulcerseg.geometry import apply_homography, fill_polygon
from ulcerseg.imageio import write_png
from ulcerseg.synth.finger import skin_tone
from ulcerseg.synth.render import (
    PhotoConfig,
    PhotoTruth,
    SynthPhoto,
    render_photo,
    render_scene_photo,
    sample_photo_scene,
)
from ulcerseg.synth.scene import Subject
from ulcerseg.synth.ulcer import UlcerLook, UlcerShape
from ulcerseg.tables import write_csv
from ulcerseg.visits import canonical_visit, visit_to_day

log = logging.getLogger(__name__)

GROUND_TRUTH_CSV = "ground_truth.csv"
TRIAL_MASK_DIR = "ground_truth_masks"
CSV_COLUMNS = (
    "subject_id",
    "ulcer_id",
    "visit",
    "study_day",
    "photo_date",
    "file",
    "mask_file",
    "true_area_mm2",
    "tilt_deg",
    "mm_per_px",
    "marker_distance_mm",
    "marker_corners_px",
    "jpeg_quality",
    "width_px",
    "height_px",
    "seed",
)
_EXIF_IFD = 0x8769
_TAG_DATETIME = 0x0132
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_DATETIME_DIGITIZED = 0x9004


def encode_jpeg(image: np.ndarray, quality: int, taken: datetime | None = None) -> bytes:
    """JPEG bytes of an RGB uint8 image, with EXIF DateTimeOriginal when ``taken`` is given."""
    pil = Image.fromarray(image, "RGB")
    kwargs: dict = {"quality": int(quality)}
    if taken is not None:
        stamp = taken.strftime("%Y:%m:%d %H:%M:%S")
        exif = Image.Exif()
        exif[_TAG_DATETIME] = stamp
        ifd = exif.get_ifd(_EXIF_IFD)
        ifd[_TAG_DATETIME_ORIGINAL] = stamp
        ifd[_TAG_DATETIME_DIGITIZED] = stamp
        kwargs["exif"] = exif.tobytes()
    buf = io.BytesIO()
    pil.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def resize_photo(photo: SynthPhoto, size: tuple[int, int]) -> SynthPhoto:
    """Downscale a photo (INTER_AREA) and transform its ground truth to the new pixel grid."""
    w0, h0 = photo.image.shape[1], photo.image.shape[0]
    w, h = size
    sx, sy = w / w0, h / h0
    # Pixel centres at integers: x_new = (x_old + 0.5) * s - 0.5.
    s = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    hom = s @ photo.truth.homography
    img = cv2.resize(photo.image, (w, h), interpolation=cv2.INTER_AREA)
    t = photo.truth
    poly_px = apply_homography(hom, t.polygon_mm) if len(t.polygon_mm) else np.zeros((0, 2))
    truth = replace(
        t,
        mask=fill_polygon((h, w), poly_px).astype(np.uint8) * 255,
        homography=hom / hom[2, 2],
        marker_corners_px=apply_homography(hom, np.array([[0, 0], [1, 0], [1, 1], [0, 1]]) * t.side_mm),
        mm_per_px=t.mm_per_px / float(np.sqrt(sx * sy)),
    )
    return SynthPhoto(img, truth)


@dataclass(frozen=True)
class Trajectory:
    """Relative ulcer area at a study day (1.0 = baseline); 0 means healed."""

    kind: str  # "healing" | "slow" | "stable" | "worsening"
    tau_days: float
    healed_below_mm2: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Trajectory:
        kind = str(rng.choice(["healing", "slow", "stable", "worsening"], p=[0.45, 0.25, 0.2, 0.1]))
        tau = {"healing": rng.uniform(14, 35), "slow": rng.uniform(45, 150)}.get(kind, 1e9)
        return cls(kind, float(tau), float(rng.uniform(1.0, 2.5)))

    def area(self, baseline_mm2: float, day: int, rng: np.random.Generator) -> float:
        if self.kind in ("healing", "slow"):
            a = baseline_mm2 * np.exp(-day / self.tau_days)
        elif self.kind == "worsening":
            a = baseline_mm2 * (1 + 0.012 * day)
        else:
            a = baseline_mm2
        if day > 0:
            a *= float(np.exp(rng.normal(0, 0.08)))
        return 0.0 if day > 0 and a < self.healed_below_mm2 else float(a)


def _row(truth: PhotoTruth, **extra: object) -> dict[str, object]:
    corners = " ".join(f"{v:.3f}" for v in truth.marker_corners_px.ravel())
    h, w = truth.mask.shape
    row = {
        "true_area_mm2": f"{truth.true_area_mm2:.4f}",
        "tilt_deg": f"{truth.tilt_deg:.3f}",
        "mm_per_px": f"{truth.mm_per_px:.6f}",
        "marker_distance_mm": f"{truth.marker_distance_mm:.3f}",
        "marker_corners_px": corners,
        "jpeg_quality": truth.jpeg_quality,
        "width_px": w,
        "height_px": h,
        "seed": truth.seed,
    }
    row.update(extra)
    return row


def _photo_seed(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


# rendered photos are held whole in memory (several float copies): 100 MP is already 10x a phone
MAX_PHOTO_PX = 100_000_000


def _check_trial_plan(
    n_subjects: int,
    visits: Sequence[str],
    ulcers_per_subject: tuple[int, int],
    photo_size: tuple[int, int],
    render_size: tuple[int, int] | None,
) -> None:
    """Raise InputError (one line) for a trial that cannot be written or would be empty."""
    if n_subjects < 1:
        raise InputError(f"synthetic trial: {n_subjects} subjects; need at least 1")
    if not visits:
        raise InputError("synthetic trial: no visit labels given (e.g. D0,W4,W8)")
    seen: dict[str, str] = {}
    for label in visits:
        canonical = canonical_visit(label)  # InputError for a label that is not D<n>/W<n>
        if canonical in seen:
            raise InputError(f"synthetic trial: visit {label!r} given twice (as {seen[canonical]!r})")
        seen[canonical] = label
    low, high = ulcers_per_subject
    if not 1 <= low <= high:
        raise InputError(f"synthetic trial: ulcers per subject {low},{high}; need 1 <= MIN <= MAX")
    _check_photo_size("synthetic trial: photo size", photo_size)
    if render_size is not None:
        _check_photo_size("synthetic trial: render size", render_size)


def _check_photo_size(what: str, size: tuple[int, int]) -> None:
    """InputError unless both sides are >= 64 px and the photo is at most MAX_PHOTO_PX."""
    if min(size) < 64 or size[0] * size[1] > MAX_PHOTO_PX:
        raise InputError(f"{what} {size[0]}x{size[1]} px; need sides >= 64 px and at most "
                         f"{MAX_PHOTO_PX // 1_000_000} MP")  # fmt: skip


def check_seed(what: str, seed: int) -> None:
    """InputError for a negative seed (numpy's generators take none: a raw ValueError)."""
    if not (isinstance(seed, numbers.Integral) and seed >= 0):
        raise InputError(f"{what}: seed {seed!r}; need an integer >= 0")


def _check_photo_config(what: str, config: PhotoConfig) -> None:
    """InputError for what ``synth photos`` refuses at its options: a photo size outside
    :func:`_check_photo_size`, a tilt outside 0-80 degrees, a marker side of 1 mm or less, a
    mm-per-px range that is not 0 < MIN <= MAX (finite)."""
    _check_photo_size(f"{what}: size", config.size)
    if not 0 <= config.max_tilt_deg <= 80:
        raise InputError(f"{what}: max_tilt_deg {config.max_tilt_deg!r}; need 0-80 degrees")
    if not (math.isfinite(config.side_mm) and config.side_mm > 1):
        raise InputError(f"{what}: marker side_mm {config.side_mm!r}; need a finite number > 1 mm")
    if config.mm_per_px_range is not None:
        lo, hi = config.mm_per_px_range
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise InputError(f"{what}: mm_per_px_range {lo!r},{hi!r}; need finite numbers 0 < MIN <= MAX")


def generate_trial(
    out_dir: str | Path,
    n_subjects: int = 2,
    visits: Sequence[str] = ("D0", "W4", "W8"),
    ulcers_per_subject: tuple[int, int] = (1, 2),
    photo_size: tuple[int, int] = (4000, 3000),
    seed: int = 0,
    render_size: tuple[int, int] | None = None,
    baseline_date: date = date(2025, 3, 3),
    config: PhotoConfig | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Path:
    """Write a synthetic trial folder (layout in the module docstring) and return its root.

    ``progress(1)`` is called after each photo; ``on_total(n)`` once, before the first, with the
    number of photos the trial will have (ulcers per subject are random).

    Each subject keeps its skin tone and finger width; each ulcer keeps its shape family and look
    across visits and follows a random trajectory (healing, slow, stable, worsening; healed ulcers
    leave a faint scar and an empty mask). ``render_size`` renders larger and downscales to
    ``photo_size`` (like a phone photo resized for sharing). The CSV ``seed`` is the photo's
    numpy seed (the trial ``seed`` and the photo's position fix it).
    """
    _check_trial_plan(n_subjects, visits, ulcers_per_subject, photo_size, render_size)
    check_seed("synthetic trial", seed)
    if config is not None:
        _check_photo_config("synthetic trial", replace(config, size=render_size or photo_size))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / TRIAL_MASK_DIR).mkdir(exist_ok=True)
    base_cfg = config or PhotoConfig()
    size = render_size or photo_size
    cfg = replace(base_cfg, size=(size[0], size[1]))
    days = [visit_to_day(v) for v in visits]
    trial_rng = np.random.default_rng([seed, 7])
    rows: list[dict[str, object]] = []
    polygons: dict[str, list[list[float]]] = {}
    # plan every subject and ulcer first (the same draws, in the same order, as rendering one
    # by one), so the number of photos is known before the first is rendered
    plan = []
    for _si in range(n_subjects):
        subject = Subject.random(trial_rng)
        n_ulcers = int(trial_rng.integers(ulcers_per_subject[0], ulcers_per_subject[1] + 1))
        ulcers = []
        for _ui in range(n_ulcers):
            shape = UlcerShape.random(trial_rng)
            traj = Trajectory.random(trial_rng)
            baseline = float(np.exp(trial_rng.uniform(np.log(4.0), np.log(40.0))))
            ulcers.append((shape, traj, baseline, UlcerLook.random(trial_rng, skin_tone(subject.skin_t))))
        plan.append((subject, ulcers))
    if on_total is not None:
        on_total(sum(len(u) for _, u in plan) * len(visits))
    for si, (subject, ulcers) in enumerate(plan):
        subject_id = f"S{si + 1:03d}"
        for ui, (shape, traj, baseline, base_look) in enumerate(ulcers):
            ulcer_id = f"U{ui + 1}"
            for vi, (visit, day) in enumerate(zip(visits, days, strict=True)):
                pseed = _photo_seed(seed, si, ui, vi)
                rng = np.random.default_rng(pseed)
                area = traj.area(baseline, day, rng)
                look = replace(base_look, texture_seed=base_look.texture_seed + vi)
                scene = sample_photo_scene(
                    rng,
                    cfg,
                    area_mm2=area,
                    shape=shape.evolve(rng, 0.15) if vi else shape,
                    look=look,
                    subject=subject,
                    healed_scar_area_mm2=0.4 * baseline,
                )
                photo = render_scene_photo(scene, rng, cfg, pseed)
                if render_size is not None and tuple(render_size) != tuple(photo_size):
                    photo = resize_photo(photo, photo_size)
                taken = datetime.combine(
                    baseline_date + timedelta(days=day), datetime.min.time()
                ) + timedelta(hours=int(rng.integers(8, 17)), minutes=int(rng.integers(0, 60)))
                rel = Path(subject_id) / visit / f"{ulcer_id}.jpg"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                (out / rel).write_bytes(encode_jpeg(photo.image, photo.truth.jpeg_quality, taken))
                mask_rel = Path(TRIAL_MASK_DIR) / f"{subject_id}_{visit}_{ulcer_id}.png"
                write_png(out / mask_rel, photo.truth.mask)
                rows.append(
                    _row(
                        photo.truth,
                        subject_id=subject_id,
                        ulcer_id=ulcer_id,
                        visit=visit,
                        study_day=day,
                        photo_date=taken.date().isoformat(),
                        file=rel.as_posix(),
                        mask_file=mask_rel.as_posix(),
                    )
                )
                polygons[rel.as_posix()] = np.round(photo.truth.polygon_mm, 5).tolist()
                if progress:
                    progress(1)
    write_csv(out / GROUND_TRUTH_CSV, rows, CSV_COLUMNS)
    (out / TRIAL_MASK_DIR / "polygons_mm.json").write_text(json.dumps(polygons), encoding="utf-8")
    log.info("wrote synthetic trial with %d photos to %s", len(rows), out)
    return out


def generate_photos(
    out_dir: str | Path,
    n: int,
    config: PhotoConfig | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``n`` independent photos ``photo_NNNN.jpg`` + ``masks/`` + ground_truth.csv.

    Photo ``i`` is ``render_photo(seed * 1_000_003 + i, config)``: reproducible one by one.
    The CSV ``file`` column is relative to ``out_dir``; ``polygons_mm.json`` holds the outlines.
    """
    config = config or PhotoConfig()
    if not (isinstance(n, numbers.Integral) and n >= 1):
        raise InputError(f"synthetic photos: {n!r} photos; need at least 1")
    check_seed("synthetic photos", seed)
    _check_photo_config("synthetic photos", config)
    out = Path(out_dir)
    width = max(4, len(str(n - 1)))
    rows: list[dict[str, object]] = []
    polygons: dict[str, list[list[float]]] = {}
    for i in range(n):
        pseed = seed * 1_000_003 + i
        photo = render_photo(pseed, config)  # InputError when no camera frames the scene
        (out / "masks").mkdir(parents=True, exist_ok=True)  # after it: nothing half-written
        name = f"photo_{i:0{width}d}"
        (out / f"{name}.jpg").write_bytes(encode_jpeg(photo.image, photo.truth.jpeg_quality))
        write_png(out / "masks" / f"{name}.png", photo.truth.mask)
        rows.append(_row(photo.truth, file=f"{name}.jpg", mask_file=f"masks/{name}.png"))
        polygons[f"{name}.jpg"] = np.round(photo.truth.polygon_mm, 5).tolist()
        if progress:
            progress(1)
    columns = [
        c for c in CSV_COLUMNS if c not in ("subject_id", "ulcer_id", "visit", "study_day", "photo_date")
    ]
    write_csv(out / GROUND_TRUTH_CSV, rows, columns)
    (out / "polygons_mm.json").write_text(json.dumps(polygons), encoding="utf-8")
    log.info("wrote %d synthetic photos to %s", n, out)
    return out

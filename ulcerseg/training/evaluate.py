"""Evaluate a model folder on a dataset: per-image and dataset-level overlap and area error.

Outputs (in ``out_dir``): ``per_image.csv``, ``summary.json`` and ``worst_cases.png`` (contact
sheet of the lowest-Dice images: ground truth outline green, prediction outline red, with a
legend saying so).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ulcerseg import __version__
from ulcerseg.config import MAX_SCALE, MIN_SCALE, TTA_MODES
from ulcerseg.errors import ConfigError, DatasetError, OutputError
from ulcerseg.imageio import write_png
from ulcerseg.metrics import Counts, counts, scores
from ulcerseg.rounding import round_rows
from ulcerseg.segmentation.backends import SegmentationBackend, open_backend
from ulcerseg.segmentation.inference import with_flip_tta
from ulcerseg.segmentation.model import ModelCard, load_card
from ulcerseg.tables import write_frame_csv
from ulcerseg.training.dataset import Sample, dataset_dirs, load_dataset, read_image, read_mask
from ulcerseg.training.predict import predict_image
from ulcerseg.training.provenance import dataset_sha256

log = logging.getLogger(__name__)

PER_IMAGE_FILE = "per_image.csv"
SUMMARY_FILE = "summary.json"
SHEET_FILE = "worst_cases.png"


@dataclass
class EvalResult:
    """Per-image rows (dicts) and dataset-level summary of one evaluation."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)


def split_record(card: ModelCard, dataset_name: str) -> dict[str, Any] | None:
    """The card's training record of ``dataset_name`` (None if not recorded)."""
    for rec in card.training.get("data", []):
        if rec.get("name") == dataset_name:
            return dict(rec)
    return None


def split_stems(card: ModelCard, dataset_name: str) -> list[str] | None:
    """Validation stems the card recorded for ``dataset_name`` (None if not recorded)."""
    rec = split_record(card, dataset_name)
    return None if rec is None else list(rec.get("val_stems", []))


def _refuse_output_in_data(out_dir: str | Path, data_dirs: Sequence[str | Path]) -> None:
    """OutputError when ``out_dir`` is inside a dataset folder: ``-o DATASET/images`` wrote
    per_image.csv, summary.json and worst_cases.png among the dataset's images."""
    out = Path(out_dir).resolve()
    for d in data_dirs:
        root = Path(d).resolve()
        if out.is_relative_to(root):
            raise OutputError(
                f"{out_dir}: output folder inside dataset folder {d}; its files would join the "
                "dataset (choose another -o)"
            )


def _warn_other_content(
    data_dir: str | Path, sha256: str, record: dict[str, Any], split_from: str | Path | None
) -> None:
    """Warn when a dataset is not the content the split was drawn from (another dataset of the
    same name was scored on the recorded stems without a word). A warning, not an error: a
    dataset.yaml added or edited since training changes the hash with the images unchanged, and
    README's benchmark command scores the shared FUSeg copy, which hashes differently from the
    default model's record."""
    recorded = record.get("sha256")
    if recorded and recorded != sha256:
        log.warning(
            "%s: dataset %r has SHA-256 %s, not the %s recorded in the model card of %s: other "
            "content than the model was trained and split on; the scores may include training images",
            data_dir,
            record.get("name"),
            sha256[:12],
            str(recorded)[:12],
            split_from,
        )


def summarize(rows: Sequence[dict[str, Any]], pooled: Counts) -> dict[str, Any]:
    """Dataset-level (pooled pixel) scores plus means/medians of the per-image scores."""
    s = scores(pooled)
    out: dict[str, Any] = {
        "n_images": len(rows),
        "dataset_dice": s["dice"],
        "dataset_iou": s["iou"],
        "dataset_precision": s["precision"],
        "dataset_recall": s["recall"],
        "dataset_area_error_pct": s["area_error_pct"],
    }
    for key in ("dice", "iou", "precision", "recall"):
        vals = np.array([r[key] for r in rows], dtype=float)
        out[f"mean_{key}"] = float(np.mean(vals)) if len(vals) else float("nan")
    errs = np.array([r["area_error_pct"] for r in rows], dtype=float)
    errs = errs[np.isfinite(errs)]
    out["median_abs_area_error_pct"] = float(np.median(np.abs(errs))) if len(errs) else float("nan")
    out["median_area_error_pct"] = float(np.median(errs)) if len(errs) else float("nan")
    return out


def _outline(mask: np.ndarray) -> np.ndarray:
    import cv2

    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8))) > 0


TRUTH_RGB = (0, 220, 0)  # ground-truth outline on the sheet
PREDICTION_RGB = (255, 0, 0)  # predicted outline on the sheet
_LEGEND_PX = 28


def render_contact_sheet(
    items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str]], thumb: int = 256
) -> np.ndarray:
    """RGB grid of thumbnails (image, ground-truth outline green, prediction outline red,
    caption) under a legend band saying which colour is which."""
    import cv2

    cols = max(1, min(4, len(items)))
    rows = (len(items) + cols - 1) // cols
    sheet = np.full((_LEGEND_PX + rows * (thumb + 24), cols * thumb, 3), 255, np.uint8)
    x = 6
    for colour, text in ((TRUTH_RGB, "ground truth"), (PREDICTION_RGB, "prediction")):
        cv2.rectangle(sheet, (x, 9), (x + 18, 19), colour, -1)
        cv2.putText(sheet, text, (x + 24, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 24 + cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] + 14
    if cols * thumb - x > 150:
        cv2.putText(sheet, "(lowest Dice first)", (x, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1,
                    cv2.LINE_AA)  # fmt: skip
    for k, (image, gt, pred, caption) in enumerate(items):
        h, w = gt.shape
        f = thumb / max(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        img = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        g = cv2.resize(gt.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        p = cv2.resize(pred.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        img[_outline(g)] = TRUTH_RGB
        img[_outline(p)] = PREDICTION_RGB
        r, c = divmod(k, cols)
        y0, x0 = _LEGEND_PX + r * (thumb + 24), c * thumb
        sheet[y0 : y0 + size[1], x0 : x0 + size[0]] = img
        cv2.putText(
            sheet,
            caption,
            (x0 + 4, y0 + thumb + 17),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return sheet


def contact_sheet(
    items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str]], path: Path, thumb: int = 256
) -> None:
    """Write :func:`render_contact_sheet` as a PNG (nothing for no items)."""
    if not items:
        return
    sheet = render_contact_sheet(items, thumb)
    write_png(path, sheet)


def _check_options(scale: float | None, threshold: float | None, tta: str, window: int = 1024) -> None:
    """ConfigError for what ``ulcerseg evaluate`` refuses at its options: a scale outside
    MIN_SCALE-MAX_SCALE (nan or 1e6 reached OpenCV), a threshold outside (0, 1) (2 scored an
    empty prediction everywhere) or an unknown test-time augmentation; and an inference window
    under 32 px (0 was a ValueError deep in the tiling)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 32:
        raise ConfigError(f"window: must be a whole number of px >= 32, not {window!r}")
    if scale is not None and not (math.isfinite(scale) and MIN_SCALE <= scale <= MAX_SCALE):
        raise ConfigError(f"scale: must be a finite number {MIN_SCALE:g}-{MAX_SCALE:g}, not {scale!r}")
    if threshold is not None and not 0 < threshold < 1:
        raise ConfigError(f"threshold: must be between 0 and 1 (both excluded), not {threshold!r}")
    if tta not in TTA_MODES:
        raise ConfigError(f"tta: unknown test-time augmentation {tta!r} (choose from {', '.join(TTA_MODES)})")


def evaluate(
    model: str | Path | SegmentationBackend,
    data_dirs: Sequence[str | Path] | str | Path,
    out_dir: str | Path | None = None,
    split_from: str | Path | None = None,
    backend: str = "auto",
    scale: float | None = None,
    window: int = 1024,
    worst: int = 12,
    progress: bool = False,
    threshold: float | None = None,
    tta: str = "none",
) -> EvalResult:
    """Evaluate ``model`` (folder or open backend) on ``data_dirs``.

    ``split_from`` (a model folder) restricts each dataset to the validation stems recorded in
    that model's card. ``scale`` resizes every image before inference; by default a dataset
    with known ``px_per_mm`` is resampled to the card's px per mm, others run at native size.
    ``threshold`` overrides the card's probability threshold; ``tta`` averages mirrored
    predictions (see :func:`ulcerseg.segmentation.inference.with_flip_tta`).
    """
    _check_options(scale, threshold, tta, window)
    data_dirs = dataset_dirs(data_dirs)
    if out_dir is not None:
        _refuse_output_in_data(out_dir, data_dirs)
    be = model if not isinstance(model, (str, Path)) else open_backend(model, backend)
    card = be.card
    split_card = load_card(split_from) if split_from is not None else None
    samples: list[tuple[str, Sample, float]] = []
    names: set[str] = set()
    datasets: list[dict[str, Any]] = []  # what summary.json records of each dataset
    for d in data_dirs:
        ds = load_dataset(d)
        if ds.name in names:  # its images would be counted twice in the pooled figures
            raise DatasetError(f"{d}: dataset name {ds.name!r} given twice (set name in dataset.yaml)")
        names.add(ds.name)
        sha = dataset_sha256(ds)
        chosen = list(ds.samples)
        if split_card is not None:
            rec = split_record(split_card, ds.name)
            if rec is None:
                raise DatasetError(
                    f"{d}: the model card of {split_from} records no split for dataset {ds.name!r}"
                )
            _warn_other_content(d, sha, rec, split_from)
            stems = list(rec.get("val_stems", []))
            by_stem = ds.by_stem()
            missing = [s for s in stems if s not in by_stem]
            if missing:
                raise DatasetError(f"{d}: split stem {missing[0]!r} from {split_from} not found")
            chosen = [by_stem[s] for s in stems]
        f = scale if scale is not None else ds.scale_to(card.px_per_mm)
        samples += [(ds.name, s, f) for s in chosen]
        datasets.append(
            {"name": ds.name, "sha256": sha, "px_per_mm": ds.px_per_mm, "scale": f, "n_images": len(chosen)}
        )
    if not samples:
        raise DatasetError("no images to evaluate")

    from tqdm import tqdm

    cut = threshold if threshold is not None else card.threshold
    predict = with_flip_tta(be.predict_proba, tta)
    rows: list[dict[str, Any]] = []
    tp = fp = fn = 0
    kept: list[tuple[float, int, np.ndarray, np.ndarray, np.ndarray]] = []
    for i, (name, s, f) in enumerate(tqdm(samples, desc="evaluate", disable=not progress)):
        image = read_image(s.image_path)
        gt = read_mask(s.mask_path)
        if gt.shape != image.shape[:2]:
            raise DatasetError(f"{s.mask_path}: mask size differs from its image")
        pred = predict_image(predict, image, f, window) >= cut
        c = counts(pred, gt)
        tp, fp, fn = tp + c.tp, fp + c.fp, fn + c.fn
        row = {"dataset": name, "stem": s.stem, "gt_px": c.gt_px, "pred_px": c.pred_px, **scores(c)}
        rows.append(row)
        if worst > 0:
            # keep only the current worst few images in memory
            kept.append((row["dice"], i, image, gt, pred))
            kept.sort(key=lambda k: (k[0], k[1]))
            del kept[worst:]
    summary = summarize(rows, Counts(tp, fp, fn))
    summary.update(
        {
            "model": card.name,
            "weights_sha256": be.sha256,
            "backend": type(be).__name__,
            "split_from": str(split_from) if split_from else None,
            "threshold": cut,
            "tta": tta,
            "data": [str(Path(d).resolve()) for d in data_dirs],
            "package_version": __version__,
            "datasets": datasets,  # content SHA-256 and the resize factor each was scored at
        }
    )
    result = EvalResult(rows, summary)
    if out_dir is not None:
        import pandas as pd

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # % to 0.1 like every CSV; scores keep 5 decimals
        write_frame_csv(out / PER_IMAGE_FILE, pd.DataFrame(round_rows(rows)), float_format="%.5f")
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        contact_sheet(
            [(im, g, p, f"{rows[i]['stem']}  Dice {d:.2f}") for d, i, im, g, p in kept],
            out / SHEET_FILE,
        )
        result.out_dir = out
        result.files = {
            k: str(out / v)
            for k, v in (("per_image", PER_IMAGE_FILE), ("summary", SUMMARY_FILE), ("sheet", SHEET_FILE))
        }
    return result


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable multi-line summary."""
    return "\n".join(
        [
            f"images: {summary['n_images']}  model: {summary['model']} "
            f"({summary['weights_sha256'][:12]}, {summary['backend']})  "
            f"threshold {summary['threshold']:g}  tta {summary.get('tta', 'none')}",
            f"dataset-level  Dice {summary['dataset_dice']:.4f}  IoU {summary['dataset_iou']:.4f}  "
            f"precision {summary['dataset_precision']:.4f}  recall {summary['dataset_recall']:.4f}  "
            f"area error {summary['dataset_area_error_pct']:+.1f}%",
            f"per-image mean Dice {summary['mean_dice']:.4f}  IoU {summary['mean_iou']:.4f}  "
            f"precision {summary['mean_precision']:.4f}  recall {summary['mean_recall']:.4f}",
            f"per-image area error: median {summary['median_area_error_pct']:+.1f}%, "
            f"median |error| {summary['median_abs_area_error_pct']:.1f}%",
        ]
    )

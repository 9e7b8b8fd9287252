"""Per-photo quality checks; each failed check adds a stable reason code (:class:`Flag`)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ulcerseg.config import QualityConfig
from ulcerseg.records import Calibration, Flag, Measurement, QualitySignals


def calibration_flags(cal: Calibration, config: QualityConfig) -> list[str]:
    """Flags about the marker: ambiguity, obliquity, native resolution, edge residual, bend."""
    flags: list[str] = []
    if cal.n_markers_found > 1:
        flags.append(Flag.AMBIGUOUS_MARKER)
    if cal.tilt_deg > config.max_tilt_deg:
        flags.append(Flag.MARKER_TOO_OBLIQUE)
    if 1.0 / cal.mm_per_px < config.min_photo_px_per_mm:
        flags.append(Flag.LOW_RESOLUTION)
    if math.isnan(cal.residual_px) or cal.residual_px > config.max_marker_residual_px:
        # bent sticker, heavy blur or failed edge fit: the scale itself is in doubt
        flags.append(Flag.MARKER_DISTORTED)
    if cal.bend > config.max_marker_bend:
        # bent over a rounded finger, photographed head on: straight edges, wrong scale
        flags.append(Flag.MARKER_DISTORTED)
    return sorted(set(flags))


def sharpness(gray: np.ndarray, valid: np.ndarray) -> float:
    """Variance of the Laplacian inside ``valid`` (rectified frame, so comparable across photos)."""
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    inner = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return float(lap[inner].var()) if inner.any() else 0.0


def blown_out_fraction(pixels: np.ndarray) -> float:
    """Fraction of ``pixels`` (N x 3 RGB, uint8) blown out to white: every channel >= 250.

    One saturated channel is not lost detail: the red channel of a vivid bed on light skin
    clips in a well-exposed photo while green and blue still draw the edge (on the end-to-end
    benchmark, "any channel" flagged 4.8% of photos as overexposed, wrong 19% of them against
    33% of the rest; "every channel" flags none of them)."""
    return float(np.mean(pixels.min(axis=1) >= 250)) if len(pixels) else 0.0


def image_flags(
    rgb: np.ndarray, valid: np.ndarray, config: QualityConfig, marker_white_luma: float | None = None
) -> list[str]:
    """Flags about the rectified image: blur and exposure (in ``valid``, the ulcer's
    neighbourhood).

    A dark neighbourhood is underexposure only where the marker's white paper is dark too
    (``marker_white_luma`` below ``config.min_marker_white_luma``; without it, the neighbourhood
    decides alone): deeply pigmented skin is dark in a well-exposed photo, the paper is not.
    Crushed blacks (``clipped_low``) are lost detail whatever the paper shows.
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    flags: list[str] = []
    if not valid.any():
        return flags
    if sharpness(gray, valid) < config.min_sharpness:
        flags.append(Flag.BLURRED)
    values = gray[valid]
    clipped_hi = blown_out_fraction(rgb[valid])
    clipped_lo = float(np.mean(values <= 5))
    mean = float(values.mean())
    if clipped_hi > config.max_clipped_fraction or mean > config.max_mean_luma:
        flags.append(Flag.OVEREXPOSED)
    paper_dark = marker_white_luma is None or not marker_white_luma >= config.min_marker_white_luma
    if clipped_lo > config.max_clipped_fraction or (mean < config.min_mean_luma and paper_dark):
        flags.append(Flag.UNDEREXPOSED)
    return flags


def mask_flags(
    measurement: Measurement, mask: np.ndarray, valid: np.ndarray, config: QualityConfig
) -> list[str]:
    """Flags about the segmentation: nothing found, low confidence, touching the border, distance."""
    if measurement.area_mm2 <= 0:
        return [Flag.NO_ULCER_FOUND]
    flags: list[str] = []
    band = (measurement.area_high_mm2 - measurement.area_low_mm2) / measurement.area_mm2
    if measurement.mean_probability < config.min_mean_probability or band > config.max_uncertainty_ratio:
        flags.append(Flag.LOW_CONFIDENCE)
    edge = np.zeros_like(valid)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    border = edge | (valid & ~cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool))
    border |= ~valid
    if np.any(mask & border):
        flags.append(Flag.MASK_AT_BORDER)
    if (
        measurement.marker_distance_mm is not None
        and measurement.marker_distance_mm > config.max_marker_distance_mm
    ):
        flags.append(Flag.MARKER_FAR_FROM_ULCER)
    return flags


def search_coverage(
    h_px_to_mm: np.ndarray,
    image_size: tuple[int, int],
    centre_mm: tuple[float, float],
    radius_mm: float,
    step_mm: float = 1.0,
) -> float:
    """Fraction (0-1) of the marker-plane disc of ``radius_mm`` around ``centre_mm`` that the
    photo shows: how much of where the ulcer can be was searched at all.

    ``h_px_to_mm`` maps photo px to marker-plane mm; the disc is sampled every ``step_mm``.
    Points that map behind the camera (beyond the plane's horizon) count as not shown.
    """
    if radius_mm <= 0:
        return 1.0
    offsets = np.arange(-radius_mm, radius_mm + step_mm / 2, step_mm)
    dx, dy = np.meshgrid(offsets, offsets)
    disc = dx**2 + dy**2 <= radius_mm**2
    points = np.stack([dx[disc] + centre_mm[0], dy[disc] + centre_mm[1], np.ones(int(disc.sum()))])
    h_mm_to_px = np.linalg.inv(h_px_to_mm)
    projected = h_mm_to_px @ points
    # the marker centre is in front of the camera: points on the other side of the horizon
    # have the opposite sign of w
    in_front = projected[2] * (h_mm_to_px @ np.array([*centre_mm, 1.0]))[2] > 0
    w = np.where(in_front, projected[2], 1.0)
    x, y = projected[0] / w, projected[1] / w
    width, height = image_size
    shown = in_front & (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    return float(shown.mean())


def is_desaturated(rgb: np.ndarray, max_chroma: float = 12.0) -> bool:
    """True for a photo without colour: a grayscale image stored as RGB.

    Chroma is max - min of the three channels (0-255); a colour photo of skin has tens, a
    desaturated one (JPEG noise aside) a few. True when the 99th percentile is below
    ``max_chroma``, on every 4th pixel of each axis.
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return True
    sample = rgb[::4, ::4, :3]
    if sample.size == 0:
        return False
    r, g, b = sample[..., 0], sample[..., 1], sample[..., 2]
    # channel by channel (~4x faster than reducing over a last axis of 3); max >= min: no overflow
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return float(np.percentile(chroma, 99)) < max_chroma


def ulcer_neighbourhood(
    mask: np.ndarray, valid: np.ndarray, exclude: np.ndarray, px_per_mm: float, radius_mm: float = 3.0
) -> np.ndarray:
    """Where image quality matters: the ulcer and ``radius_mm`` around it (rectified frame, bool).

    The marker and its white quiet zone (``exclude``) are never part of it: white paper and
    black squares are clipped by design. Without an ulcer, the whole searched region is used.
    """
    region = valid & ~exclude
    if not mask.any():
        return region
    reach = max(1, round(radius_mm * px_per_mm))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    near = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    return near & region


def dark_bed_fraction(
    rgb: np.ndarray,
    mask: np.ndarray,
    region: np.ndarray,
    px_per_mm: float,
    luma_ratio: float = 0.45,
    paper_luma: float | None = None,
    paper_ratio: float = 0.0,
) -> float:
    """Fraction (0-1) of ``mask`` that is dark: darker than ``luma_ratio`` x the median lightness
    of the ring 1-3 mm around it (CIE L*, rectified frame; ``region``: where the ring may lie,
    e.g. valid and off the marker), or with luma (0-255) below ``paper_ratio`` x ``paper_luma``
    (the marker's white paper, :func:`ulcerseg.segmentation.inference.marker_white_luma`).

    The skin beside the ulcer makes the rule independent of exposure, the paper of skin tone
    (on deeply pigmented skin the skin is nearly as dark as eschar). Black eschar and dry crust
    score high, red and yellow beds low. 0 without a mask, or with neither a ring nor a paper.
    """
    m = mask.astype(bool)
    if not m.any():
        return 0.0
    paper = paper_luma if paper_luma is not None and math.isfinite(paper_luma) and paper_ratio > 0 else None
    # px distance to the mask (one transform: ~3x faster than two 3-mm dilations)
    outside = (~m).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ring = (distance > 1.0 * px_per_mm) & (distance <= 3.0 * px_per_mm) & region
    if not ring.any() and paper is None:
        return 0.0
    dark = np.zeros(int(m.sum()), bool)
    if ring.any():
        lightness = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0]  # L* x 255/100: ratios are unaffected
        dark |= lightness[m] < luma_ratio * float(np.median(lightness[ring]))
    if paper is not None:
        dark |= cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[m] < paper_ratio * paper
    return float(dark.mean())


def boundary_margin(probability: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """Mean |probability - threshold| on the mask's boundary ring (1 px in and out).

    Near 0: the boundary lies where the network is undecided, so a small change of threshold
    or appearance moves it; a crisp map gives values near ``max(threshold, 1 - threshold)``.
    """
    if not mask.any():
        return 0.0
    m = mask.astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    ring = (cv2.dilate(m, k) - cv2.erode(m, k)).astype(bool)
    return float(np.abs(probability[ring] - threshold).mean())


def candidate_ambiguity(scores: tuple[float, ...] | list[float]) -> float:
    """Second-best candidate score over the best (0: one clear candidate, 1: a tie)."""
    ranked = sorted((s for s in scores if s > 0), reverse=True)
    return float(ranked[1] / ranked[0]) if len(ranked) > 1 else 0.0


def mask_disagreement(mask: np.ndarray, other: np.ndarray | None) -> float:
    """1 - Dice of two masks (0: identical, 1: disjoint); 0 without ``other`` or when both are empty."""
    if other is None:
        return 0.0
    total = int(mask.sum()) + int(other.sum())
    return 1.0 - 2.0 * int((mask & other).sum()) / total if total else 0.0


def quality_signals(
    rgb: np.ndarray,
    probability: np.ndarray,
    mask: np.ndarray,
    region: np.ndarray,
    threshold: float,
    measurement: Measurement,
    candidate_scores: tuple[float, ...] = (),
    body: np.ndarray | None = None,
    mirrored_mask: np.ndarray | None = None,
    own_mask: np.ndarray | None = None,
    search_coverage: float = 1.0,
    unconfirmed_candidate_mm2: float = 0.0,
    dark_bed: float = 0.0,
    marker_white_luma: float | None = None,
) -> QualitySignals:
    """Per-photo signals that predict area error (recorded, and compared with ``QualityConfig``).

    ``region``: :func:`ulcer_neighbourhood`; exposure and sharpness are measured there only.
    ``body``: ``segmentation.body.body_mask`` (on_body is 1 without); ``own_mask``: the crop's
    own mask (default ``mask``, which may come from the mean of both passes), compared with
    ``mirrored_mask`` (the mask found on the mirror image; disagreement 0 without);
    ``search_coverage``: :func:`search_coverage`, computed from the calibration;
    ``unconfirmed_candidate_mm2``: ``SegmentationOutput.unconfirmed_candidate_mm2``;
    ``dark_bed``: :func:`dark_bed_fraction`; ``marker_white_luma``:
    ``SegmentationOutput.marker_white_luma`` (None: recorded as NaN).
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    values = gray[region]
    area = measurement.area_mm2
    band = (measurement.area_high_mm2 - measurement.area_low_mm2) / area if area > 0 else float("nan")
    seen = bool(region.any())
    return QualitySignals(
        sharpness=sharpness(gray, region) if seen else 0.0,
        clipped_high=blown_out_fraction(rgb[region]) if seen else 0.0,
        clipped_low=float(np.mean(values <= 5)) if seen else 0.0,
        mean_luma=float(values.mean()) if seen else 0.0,
        mean_probability=measurement.mean_probability,
        band_ratio=band,
        boundary_margin=boundary_margin(probability, mask, threshold),
        ambiguity=candidate_ambiguity(candidate_scores),
        on_body=float(body[mask].mean()) if body is not None and mask.any() else 1.0,
        tta_disagreement=mask_disagreement(mask if own_mask is None else own_mask, mirrored_mask),
        area_mm2=area,
        search_coverage=search_coverage,
        unconfirmed_candidate_mm2=unconfirmed_candidate_mm2,
        dark_bed_fraction=dark_bed,
        marker_white_luma=float("nan") if marker_white_luma is None else marker_white_luma,
    )


def signal_flags(signals: QualitySignals, config: QualityConfig) -> list[str]:
    """Flags from :func:`quality_signals` beyond blur and exposure: boundary doubt, a rival
    candidate, a dark (necrotic) bed, and (nothing found) an ulcer site mostly outside the photo
    or an unconfirmed candidate."""
    flags: list[str] = []
    if signals.area_mm2 <= 0:
        # nothing found is a healing finding only where the photo shows where the ulcer can be
        if signals.search_coverage < config.min_search_coverage:
            flags.append(Flag.SEARCH_INCOMPLETE)
        if signals.unconfirmed_candidate_mm2 > 0:
            # a candidate the search-region pass saw and no full-resolution pass confirmed: the
            # network's answer depends on scale or context, so "no ulcer" is not conclusive
            flags.append(Flag.LOW_CONFIDENCE)
        return flags
    if signals.boundary_margin < config.min_boundary_margin:
        flags.append(Flag.LOW_CONFIDENCE)
    if signals.tta_disagreement > config.max_tta_disagreement:
        flags.append(Flag.LOW_CONFIDENCE)  # the mirror image gives another mask
    if signals.ambiguity > config.max_candidate_ambiguity or signals.on_body < config.min_on_body_fraction:
        flags.append(Flag.AMBIGUOUS_ULCER)  # a rival candidate, or what was measured lies off the body
    if signals.dark_bed_fraction > config.max_dark_bed_fraction:
        flags.append(Flag.DARK_BED)  # eschar or crust: outlined too small
    return sorted(set(flags))

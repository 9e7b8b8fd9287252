"""Per-photo quality checks; each failed check adds a stable reason code (:class:`Flag`)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ulcerseg.config import QualityConfig
from ulcerseg.records import Calibration, Flag, Measurement


def calibration_flags(cal: Calibration, config: QualityConfig) -> list[str]:
    """Flags about the marker: ambiguity, obliquity, native resolution, edge residual."""
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
    return sorted(set(flags))


def sharpness(gray: np.ndarray, valid: np.ndarray) -> float:
    """Variance of the Laplacian inside ``valid`` (rectified frame, so comparable across photos)."""
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    inner = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return float(lap[inner].var()) if inner.any() else 0.0


def image_flags(rgb: np.ndarray, valid: np.ndarray, config: QualityConfig) -> list[str]:
    """Flags about the rectified image: blur and exposure."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    flags: list[str] = []
    if not valid.any():
        return flags
    if sharpness(gray, valid) < config.min_sharpness:
        flags.append(Flag.BLURRED)
    values = gray[valid]
    clipped_hi = float(np.mean(rgb[valid].max(axis=1) >= 250))
    clipped_lo = float(np.mean(values <= 5))
    mean = float(values.mean())
    if clipped_hi > config.max_clipped_fraction or mean > config.max_mean_luma:
        flags.append(Flag.OVEREXPOSED)
    if clipped_lo > config.max_clipped_fraction or mean < config.min_mean_luma:
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


def is_desaturated(rgb: np.ndarray, max_chroma: float = 12.0) -> bool:
    """True for a photo without colour: a grayscale image stored as RGB.

    Chroma is max - min of the three channels (0-255); a colour photo of skin has tens, a
    desaturated one (JPEG noise aside) a few. True when the 99th percentile is below
    ``max_chroma``, on every 4th pixel of each axis.
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return True
    sample = rgb[::4, ::4, :3].astype(np.int16)
    if sample.size == 0:
        return False
    chroma = sample.max(axis=2) - sample.min(axis=2)
    return float(np.percentile(chroma, 99)) < max_chroma

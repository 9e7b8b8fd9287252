"""A pinhole camera looking at the marker plane: homography marker mm -> photo px.

The plane is tilted about a random in-plane axis (angle between plane normal and optical axis =
``tilt_deg``), rolled by a random angle, and the camera distance is solved so that the local
scale at the marker centre equals the sampled mm per px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ulcerseg.errors import InputError
from ulcerseg.geometry import apply_homography


@dataclass(frozen=True)
class Camera:
    """Homography marker-plane mm -> photo px (3x3), photo size (W, H), tilt (deg), mm/px at marker."""

    homography: np.ndarray
    size: tuple[int, int]
    tilt_deg: float
    mm_per_px: float
    focal_px: float


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def mm_per_px_at(h_mm_to_px: np.ndarray, point_mm: tuple[float, float]) -> float:
    """Local scale (mm per px, sqrt of the area ratio) of a homography at a marker-plane point."""
    x = np.array([point_mm[0], point_mm[1], 1.0])
    w = float(h_mm_to_px[2] @ x)
    det = abs(np.linalg.det(h_mm_to_px)) / abs(w) ** 3  # Jacobian determinant of a homography
    return float(1.0 / np.sqrt(det))


def make_camera(
    size: tuple[int, int],
    look_at_mm: tuple[float, float],
    marker_centre_mm: tuple[float, float],
    mm_per_px: float,
    tilt_deg: float,
    tilt_axis_rad: float,
    roll_rad: float,
    focal_px: float,
    principal_px: tuple[float, float],
) -> Camera:
    """Camera aimed at ``look_at_mm`` with the given tilt and roll, scaled to ``mm_per_px`` at the marker."""
    rz = np.array(
        [[np.cos(roll_rad), -np.sin(roll_rad), 0], [np.sin(roll_rad), np.cos(roll_rad), 0], [0, 0, 1]]
    )
    axis = np.array([np.cos(tilt_axis_rad), np.sin(tilt_axis_rad), 0.0])
    rot = rz @ _rodrigues(axis, np.radians(tilt_deg))
    k = np.array([[focal_px, 0, principal_px[0]], [0, focal_px, principal_px[1]], [0, 0, 1]])
    look = np.array([look_at_mm[0], look_at_mm[1], 0.0])
    z = focal_px * mm_per_px  # fronto-parallel guess, refined below
    h = np.eye(3)
    for _ in range(30):
        t = np.array([0, 0, z]) - rot @ look
        h = k @ np.c_[rot[:, 0], rot[:, 1], t]
        h = h / h[2, 2]
        ratio = mm_per_px / mm_per_px_at(h, marker_centre_mm)
        if abs(ratio - 1) < 1e-12:
            break
        z *= ratio
    tilt = float(np.degrees(np.arccos(np.clip(rot[2, 2], -1, 1))))
    return Camera(h, size, tilt, mm_per_px_at(h, marker_centre_mm), focal_px)


def sample_camera(
    rng: np.random.Generator,
    size: tuple[int, int],
    look_at_mm: tuple[float, float],
    marker_centre_mm: tuple[float, float],
    mm_per_px_range: tuple[float, float],
    max_tilt_deg: float,
    must_see_mm: np.ndarray,
    margin_frac: float = 0.03,
) -> Camera:
    """Random camera whose photo contains all ``must_see_mm`` points (N x 2) with a margin.

    Raises :class:`InputError` (one line) if no camera within the mm-per-px range frames
    them after many tries.
    """
    w, h = size
    lo, hi = mm_per_px_range
    for attempt in range(200):
        # Later attempts favour wider views so a far marker still fits in the frame.
        u = rng.uniform(min(0.9, attempt / 100), 1.0) if attempt >= 40 else rng.uniform(0, 1)
        mpp = float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))
        jitter = rng.normal(0, 2.0, 2)
        cam = make_camera(
            size,
            (look_at_mm[0] + jitter[0], look_at_mm[1] + jitter[1]),
            marker_centre_mm,
            mpp,
            float(rng.uniform(0, max_tilt_deg)),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0, 2 * np.pi)),
            float(w * rng.uniform(0.8, 1.25)),
            (w / 2 + rng.normal(0, 0.01 * w), h / 2 + rng.normal(0, 0.01 * h)),
        )
        pts = apply_homography(cam.homography, must_see_mm)
        m = margin_frac * min(w, h)
        x = np.c_[must_see_mm, np.ones(len(must_see_mm))] @ cam.homography.T
        if np.all(x[:, 2] > 0) and np.all((pts >= m) & (pts <= [w - 1 - m, h - 1 - m])):
            return cam
    raise InputError(
        f"no camera frames the scene at {lo:.4g}-{hi:.4g} mm/px in a {w}x{h} photo "
        "(a wider mm-per-px range, a larger photo or a smaller marker)"
    )

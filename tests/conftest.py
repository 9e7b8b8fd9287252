"""Shared fixtures: exact synthetic photos built from first principles, and test doubles.

These photos are deliberately independent of ``ulcerseg.synth`` so calibration and measurement
are checked against geometry computed here, not by the code under test.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from ulcerseg.segmentation.model import ModelCard

PLANE_PX_PER_MM = 40.0

# Property tests are derandomized: the same examples on every run and machine (a CI failure
# reproduces locally), no example database written into the checkout, no timing deadline
# (2 shared CPU cores). HYPOTHESIS_PROFILE=explore searches anew with more examples.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", max_examples=2000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass(frozen=True)
class TestPhoto:
    rgb: np.ndarray
    true_area_mm2: float  # of the drawn ulcer (pixel-exact count on the plane raster)
    h_mm_to_px: np.ndarray  # marker-plane mm -> photo px (ground truth)
    ulcer_centre_mm: tuple[float, float]


def camera_homography(
    tilt_deg: float, px_per_mm: float, size: tuple[int, int], rotation_deg: float = 0.0,
    centre_mm: tuple[float, float] = (5.0, 5.0),
) -> np.ndarray:  # fmt: skip
    """Pinhole camera looking at the marker plane tilted by ``tilt_deg`` about the y axis."""
    w, h = size
    f = 1.2 * max(w, h)
    distance = f / px_per_mm  # mm, so that the scale at the centre is px_per_mm
    th, rot = np.radians(tilt_deg), np.radians(rotation_deg)
    r_tilt = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]])
    r_rot = np.array([[np.cos(rot), -np.sin(rot), 0], [np.sin(rot), np.cos(rot), 0], [0, 0, 1]])
    r = r_tilt @ r_rot
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    g = k @ np.c_[r[:, 0], r[:, 1], [0, 0, distance]]
    shift = np.array([[1, 0, -centre_mm[0]], [0, 1, -centre_mm[1]], [0, 0, 1.0]])
    return g @ shift


def make_photo(
    tilt_deg: float = 0.0,
    px_per_mm: float = 12.0,
    size: tuple[int, int] = (640, 480),
    ulcer_radius_mm: tuple[float, float] = (2.5, 1.8),
    ulcer_offset_mm: tuple[float, float] = (18.0, 6.0),
    with_marker: bool = True,
    rotation_deg: float = 0.0,
    marker_id: int = 0,
    view_centre_mm: tuple[float, float] = (5.0, 5.0),
    skin_rgb: tuple[int, int, int] = (205, 160, 140),
    ulcer_rgb: tuple[int, int, int] = (170, 30, 35),
) -> TestPhoto:
    """A flat scene on the marker plane: skin-coloured card, 10 mm ArUco marker, red ulcer.

    The camera looks at ``view_centre_mm`` (marker plane; the marker centre by default)."""
    p = PLANE_PX_PER_MM
    lo = np.array([-25.0, -25.0])
    extent = 80.0
    n = int(extent * p)
    plane = np.full((n, n, 3), skin_rgb, np.uint8)  # skin tone, RGB
    if with_marker:
        side_px = int(10 * p)
        dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
        marker = cv2.aruco.generateImageMarker(dictionary, marker_id, side_px, borderBits=1)
        q = int(2.5 * p)
        y0 = x0 = int(-lo[0] * p)
        plane[y0 - q : y0 + side_px + q, x0 - q : x0 + side_px + q] = 255
        plane[y0 : y0 + side_px, x0 : x0 + side_px] = marker[..., None]
    cx, cy = ulcer_offset_mm
    ulcer = np.zeros((n, n), np.uint8)
    centre_px = (round((cx - lo[0]) * p * 16), round((cy - lo[1]) * p * 16))
    axes = (round(ulcer_radius_mm[0] * p * 16), round(ulcer_radius_mm[1] * p * 16))
    cv2.ellipse(ulcer, centre_px, axes, 20, 0, 360, 1, -1, cv2.LINE_8, shift=4)
    plane[ulcer > 0] = ulcer_rgb
    true_area = float(np.count_nonzero(ulcer)) / p**2
    # plane raster: pixel (i, j) centre is mm lo + (i + 0.5) / p  -> edges align with mm grid
    plane_to_mm = np.array([[1 / p, 0, lo[0]], [0, 1 / p, lo[1]], [0, 0, 1.0]])
    h_mm_to_px = camera_homography(tilt_deg, px_per_mm, size, rotation_deg, view_centre_mm)
    # OpenCV warps between pixel-centre coordinates: plane pixel i has its centre at
    # mm lo + (i + 0.5) / p; photo pixel centres are at integer px (the records.py convention)
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    m = h_mm_to_px @ plane_to_mm @ half
    rgb = cv2.warpPerspective(plane, m, size, flags=cv2.INTER_AREA, borderValue=(90, 90, 100))
    return TestPhoto(rgb, true_area, h_mm_to_px, (cx, cy))


class RednessBackend:
    """Test double of a segmentation network: foreground = strongly red pixels.

    Lets pipeline tests check the geometry end to end with a known, exact 'model'.
    """

    def __init__(self, px_per_mm: float = 10.0, tile_px: int = 64) -> None:
        self.card = ModelCard(name="redness-test-double", px_per_mm=px_per_mm, tile_px=tile_px)
        self.sha256 = "0" * 64
        self.calls = 0

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        assert tiles.dtype == np.uint8 and tiles.ndim == 4 and tiles.shape[1] % 32 == 0
        self.calls += 1
        t = tiles.astype(np.float32)
        redness = t[..., 0] - 0.5 * (t[..., 1] + t[..., 2])
        # 0.5 at the midpoint between skin (55) and ulcer (137) redness: unbiased edges
        return (1.0 / (1.0 + np.exp(-(redness - 96.0) / 8.0))).astype(np.float32)


@pytest.fixture
def redness_backend() -> RednessBackend:
    return RednessBackend()


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    path.write_bytes(enc.tobytes())
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real smp network with random weights: exercises the model-loading path quickly."""
    import torch

    from ulcerseg.segmentation.model import WEIGHTS_FILE, build_network, file_sha256, save_card

    out = tmp_path_factory.mktemp("tiny_model")
    card = ModelCard(
        name="tiny-random", encoder="resnet18", encoder_depth=3, decoder_channels=(16, 8, 4),
        px_per_mm=10.0, tile_px=64,
    )  # fmt: skip
    torch.manual_seed(0)
    net = build_network(card)
    torch.save(net.state_dict(), out / WEIGHTS_FILE)
    save_card(card.replace(weights_sha256=file_sha256(out / WEIGHTS_FILE)), out)
    return out


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium():
    """One system Chromium (Debian package, never downloaded) for every browser test."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "system chromium is required (apt-get install chromium)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


# --------------------------------------------------------------------------- blinding checks

_DATE_RE = re.compile(r"\b(19|20)\d\d[-:/.](0[1-9]|1[0-2])[-:/.](0[1-9]|[12]\d|3[01])")


def contains_date(text: str) -> bool:
    """True when ``text`` contains something that looks like a calendar date (YYYY-MM-DD)."""
    return _DATE_RE.search(text) is not None


def png_metadata_chunks(data: bytes) -> list[str]:
    """Names of PNG chunks other than the pixel/structure ones (eXIf, tEXt, iTXt, tIME, ...)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG stream"
    pos, out = 8, []
    allowed = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS"}
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        name = data[pos + 4 : pos + 8]
        if name not in allowed:
            out.append(name.decode("latin-1"))
        pos += 12 + length
    return out

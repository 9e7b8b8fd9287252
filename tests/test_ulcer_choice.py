"""Choosing the ulcer among candidate regions: body (skin) mask, distance to the marker."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ulcerseg.config import SegmentationConfig
from ulcerseg.geometry import RectifiedGrid
from ulcerseg.segmentation.body import body_mask, skin_mask
from ulcerseg.segmentation.candidates import rank_candidates

SKIN_TONES = [(242, 212, 194), (227, 186, 158), (199, 153, 120), (161, 115, 82), (115, 77, 54), (71, 46, 33)]
OFF_BODY = {
    "red cloth": (184, 23, 28),
    "magenta cloth": (199, 31, 122),
    "gauze": (237, 237, 230),
    "blue card": (46, 92, 184),
    "yellow card": (230, 204, 51),
    "green drape": (61, 122, 112),
}


def test_skin_of_every_tone_and_nothing_clearly_off_the_body() -> None:
    for tone in SKIN_TONES:
        assert skin_mask(np.full((4, 4, 3), tone, np.uint8)).all(), tone
    for name, colour in OFF_BODY.items():
        assert not skin_mask(np.full((4, 4, 3), colour, np.uint8)).any(), name


def test_an_ulcer_surrounded_by_skin_is_on_the_body() -> None:
    img = np.full((200, 300, 3), OFF_BODY["red cloth"], np.uint8)
    cv2.circle(img, (80, 100), 60, SKIN_TONES[2], -1)  # a fingertip on red cloth
    cv2.circle(img, (80, 100), 15, (150, 30, 40), -1)  # a dark red ulcer on it
    body = body_mask(img, px_per_mm=10.0)
    assert body[100, 80] and body[100, 30]
    assert not body[100, 250] and not body[10, 290]


def _coarse_scene() -> tuple[np.ndarray, np.ndarray, RectifiedGrid]:
    """Coarse frame 60 x 40 mm at 5 px/mm: a small ulcer on a finger, a big red cloth patch off it."""
    grid = RectifiedGrid((-25.0, -15.0), 5.0, 300, 200)
    img = np.full((200, 300, 3), OFF_BODY["gauze"], np.uint8)
    img[:, 200:] = OFF_BODY["red cloth"]
    cv2.circle(img, (90, 100), 40, SKIN_TONES[1], -1)
    prob = np.zeros((200, 300), np.float32)
    cv2.circle(prob, (90, 100), 12, 0.95, -1)  # the ulcer
    prob[:, 270:] = 0.6  # the network also likes the red cloth, with 5x the ulcer's mass
    return img, prob, grid


def test_the_ulcer_on_the_body_wins_over_a_bigger_red_cloth() -> None:
    img, prob, grid = _coarse_scene()
    cfg = SegmentationConfig()
    candidates = prob >= cfg.coarse_threshold
    by_mass = rank_candidates(prob, candidates, grid, cfg)
    assert by_mass[0].lo_mm[0] > 15  # probability mass alone picks the cloth (x > 29 mm)
    ranked = rank_candidates(prob, candidates, grid, cfg, img, (5.0, 5.0))
    assert ranked[0].hi_mm[0] < 15  # the ulcer around x = -7 mm
    assert ranked[0].weight == 1.0 and ranked[1].weight < 0.2


def test_candidates_far_from_the_marker_lose() -> None:
    grid = RectifiedGrid((-50.0, -50.0), 2.0, 200, 200)
    prob = np.zeros((200, 200), np.float32)
    cv2.circle(prob, (130, 100), 5, 0.9, -1)  # 15 mm from the marker centre at (5, 5)... roughly
    cv2.circle(prob, (10, 10), 7, 0.9, -1)  # a bigger one ~ 60 mm away
    cfg = SegmentationConfig()
    ranked = rank_candidates(prob, prob > 0.25, grid, cfg, None, (5.0, 5.0))
    assert ranked[0].lo_mm[0] > 0 and ranked[1].weight < 0.2


def test_group_scores_and_boxes_match_an_independent_computation() -> None:
    """Mass, body and distance weights and boxes of every group, against scipy.ndimage."""
    from scipy import ndimage

    cfg = SegmentationConfig()
    rng = np.random.default_rng(3)
    for trial in range(6):
        h, w = (int(v) for v in rng.integers(120, 400, 2))
        noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 5.0)
        prob = (noise - noise.min()) / (noise.max() - noise.min())
        prob64 = prob.astype(np.float64)  # the reference sums in float64 too
        candidates = prob >= 0.75
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        grid = RectifiedGrid((-20.0, -15.0), 7.5, w, h)
        centre = (3.0, 4.0)
        ranked = rank_candidates(prob, candidates, grid, cfg, image, centre)
        # the reference: groups as the module docstring defines them, one at a time
        reach = max(1, round(cfg.merge_distance_mm * grid.px_per_mm / 2))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        _, labels = cv2.connectedComponents(cv2.dilate(candidates.astype(np.uint8), kernel), connectivity=8)
        labels = np.where(candidates, labels, 0)
        body = body_mask(image, grid.px_per_mm)
        expected = []
        for g, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is None:
                continue
            mass = float(ndimage.sum_labels(prob64, labels, g))
            on_body = float(body[labels == g].mean())
            cy, cx = ndimage.center_of_mass(prob64, labels, g)
            d = np.hypot(cx / 7.5 - 20.0 - centre[0], cy / 7.5 - 15.0 - centre[1])
            weight = (0.1 + 0.9 * on_body) * np.exp(-max(d - cfg.candidate_max_distance_mm, 0.0) / 10.0)
            lo = np.array([box[1].start, box[0].start]) / 7.5 + (-20.0, -15.0) - cfg.crop_margin_mm
            hi = np.array([box[1].stop, box[0].stop]) / 7.5 + (-20.0, -15.0) + cfg.crop_margin_mm
            expected.append((mass * weight, weight, lo, hi))
        expected.sort(key=lambda e: -e[0])
        assert len(ranked) == len(expected) > 1, trial
        for cand, (score, weight, lo, hi) in zip(ranked, expected, strict=True):
            assert cand.score == pytest.approx(score, rel=1e-9)
            assert cand.weight == pytest.approx(weight, rel=1e-9)
            np.testing.assert_allclose(cand.lo_mm, lo, atol=1e-9)
            np.testing.assert_allclose(cand.hi_mm, hi, atol=1e-9)


@pytest.mark.parametrize("px_per_mm", [10.0, 20.0])
def test_the_body_closes_gaps_of_about_close_mm_whatever_the_px_per_mm(px_per_mm: float) -> None:
    # skin, a gauze-grey stripe across the whole image (never a hole), skin: a 1 mm stripe is
    # closed over (close_mm 1.5: the closing's disc reaches 0.75 mm from each side), a 3 mm one
    # is not. The gap is in mm of the marker plane: the same at 10 and 20 px/mm
    for gap_mm, closed in ((1.0, True), (3.0, False)):
        gap = round(gap_mm * px_per_mm)
        img = np.full((200, 200 + gap, 3), SKIN_TONES[2], np.uint8)
        img[:, 100 : 100 + gap] = (128, 128, 128)
        body = body_mask(img, px_per_mm)
        assert body[:, :100].all() and body[:, 100 + gap :].all()
        assert bool(body[50:150, 100 : 100 + gap].all()) is closed, (gap_mm, px_per_mm)

"""Choosing the ulcer among candidate regions: body (skin) mask, distance to the marker."""

from __future__ import annotations

import cv2
import numpy as np

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

"""Network passes of the segmentation stage: how many pixels go through the model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ulcerseg.geometry import RectifiedGrid
from ulcerseg.segmentation.inference import SINGLE_PASS_MAX_PX, _run_on_grid, predict_image, with_flip_tta


class CountingModel:
    """Stands in for a backend: probability = red channel / 255; records every batch shape."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        assert tiles.shape[1] % 32 == 0 and tiles.shape[2] % 32 == 0
        self.shapes.append(tiles.shape)
        return tiles[..., 0].astype(np.float32) / 255


def test_coarse_region_goes_through_the_network_in_one_pass() -> None:
    # a 90 mm search square at 7.5 px/mm: one 704 x 672 pass, not four overlapping 512 windows
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    h_px_to_mm = np.diag([0.1, 0.1, 1.0])  # 10 px per mm, marker at the photo origin
    grid = RectifiedGrid((5.0, 5.0), 7.5, 660, 675)
    backend = SimpleNamespace(card=SimpleNamespace(tile_px=256), predict_proba=CountingModel())
    out = _run_on_grid(backend, backend.predict_proba, photo, h_px_to_mm, grid, side_mm=10.0)
    assert backend.predict_proba.shapes == [(1, 704, 672, 3)]
    assert out.probability.shape == (675, 660)


def test_predict_image_in_one_pass_is_exact() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (675, 660, 3), dtype=np.uint8)
    model = CountingModel()
    prob = predict_image(model, image, SINGLE_PASS_MAX_PX)
    assert model.shapes == [(1, 704, 672, 3)]
    np.testing.assert_allclose(prob, image[..., 0] / 255, atol=1e-6)


def test_large_regions_still_use_blended_windows() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (1100, 700, 3), dtype=np.uint8)
    model = CountingModel()
    prob = predict_image(model, image, 512)
    assert len(model.shapes) > 1 and all(s[1:3] == (512, 512) for s in model.shapes)
    # the blend of identical per-pixel predictions reproduces them exactly: no seams
    np.testing.assert_allclose(prob, image[..., 0] / 255, atol=1e-5)


def test_a_tile_edge_counts_little_where_another_tile_covers_it_by_its_middle() -> None:
    # a model that is wrong only on each tile's outermost pixel ring (no context there): the
    # ramp weight (1 at a tile's edge, ~window/2 in its middle) keeps that out of the blend
    def edge_only(tiles: np.ndarray) -> np.ndarray:
        out = np.zeros(tiles.shape[:3], np.float32)
        out[:, [0, -1], :] = 1.0
        out[:, :, [0, -1]] = 1.0
        return out

    image = np.zeros((1100, 700, 3), np.uint8)
    prob = predict_image(edge_only, image, 512)
    # windows at rows 0, 256, 512, 588 and columns 0, 188: every inner pixel on some tile's
    # edge lies >= 76 px inside another tile (weight >= 77 against 1), so at most 1/78
    assert prob[1:-1, 1:-1].max() < 0.02
    # uniform weights would give a pixel on one tile's edge and another's middle 1/2
    assert prob[0, 300] == 1.0  # the image's own border is on every covering tile's edge


def test_a_region_larger_than_the_window_on_one_side_only_goes_through_windows() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (1100, 300, 3), dtype=np.uint8)
    model = CountingModel()
    prob = predict_image(model, image, 512)
    assert len(model.shapes) > 1 and all(s[1:3] == (512, 512) for s in model.shapes)
    np.testing.assert_allclose(prob, image[..., 0] / 255, atol=1e-5)


def test_a_window_that_is_not_a_multiple_of_32_is_rounded_down_to_one() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (1000, 700, 3), dtype=np.uint8)
    model = CountingModel()  # asserts tile sides are multiples of 32
    prob = predict_image(model, image, 500)
    assert all(s[1:3] == (480, 480) for s in model.shapes)
    np.testing.assert_allclose(prob, image[..., 0] / 255, atol=1e-5)


def test_flip_tta_mirrors_each_pass_back_and_averages_all_of_them() -> None:
    # a model that sees only position: it marks each tile's top-left pixel. Mirrored back, the
    # left-right pass marks the top-right pixel, the up-down pass the bottom-left, both the
    # bottom-right; the average gives each of them 1 / (number of passes)
    def top_left(tiles: np.ndarray) -> np.ndarray:
        out = np.zeros(tiles.shape[:3], np.float32)
        out[:, 0, 0] = 1.0
        return out

    tiles = np.zeros((2, 64, 96, 3), np.uint8)
    expected = {
        "hflip": {(0, 0): 0.5, (0, -1): 0.5},
        "flips": {(0, 0): 0.25, (0, -1): 0.25, (-1, 0): 0.25, (-1, -1): 0.25},
    }
    for mode, corners in expected.items():
        want = np.zeros((2, 64, 96), np.float32)
        for (y, x), value in corners.items():
            want[:, y, x] = value
        np.testing.assert_allclose(with_flip_tta(top_left, mode)(tiles), want, atol=1e-7)

"""Network passes of the segmentation stage: how many pixels go through the model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ulcerseg.geometry import RectifiedGrid
from ulcerseg.segmentation.inference import SINGLE_PASS_MAX_PX, _run_on_grid, predict_image


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

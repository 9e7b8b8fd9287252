"""One pixel rule for every polygon: exact areas, and review / importers / synth agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ulcerseg.annotations import load_annotation, rasterize_polygons, write_imagej_roi, write_labelme
from ulcerseg.geometry import (
    RectifiedGrid,
    apply_homography,
    fill_polygon,
    fill_polygons,
    polygon_area,
    signed_polygon_area,
)
from ulcerseg.review.decisions import mask_from_polygon


def test_axis_aligned_rectangles_give_their_exact_area() -> None:
    # 20 x 10 px with vertices on pixel centres and off them: always exactly 200 px
    for x0, y0 in [(10.0, 10.0), (10.5, 3.5), (0.25, 7.75), (3.0, 2.5)]:
        rect = np.array([[x0, y0], [x0 + 20, y0], [x0 + 20, y0 + 10], [x0, y0 + 10]])
        assert fill_polygon((40, 40), rect).sum() == 200
        assert polygon_area(rect) == 200.0
    # orientation does not matter
    assert fill_polygon((40, 40), rect[::-1]).sum() == 200
    assert signed_polygon_area(rect) == -signed_polygon_area(rect[::-1])


def test_triangles_and_circles_are_within_a_tight_tolerance() -> None:
    tri = np.array([[3.2, 4.1], [180.7, 20.3], [60.4, 150.9]])
    assert fill_polygon((200, 200), tri).sum() == pytest.approx(polygon_area(tri), rel=5e-3)
    for r in (4.0, 10.0, 40.0):
        th = np.linspace(0, 2 * np.pi, 720, endpoint=False)
        circle = np.c_[50.37 + r * np.cos(th), 49.81 + r * np.sin(th)]
        count = fill_polygon((100, 100), circle).sum()
        # lattice points in a disc: error O(r^(2/3)); 4 px rim of cv2.fillPoly would be ~2*pi*r
        assert abs(count - np.pi * r**2) <= 1.5 * r ** (2 / 3) + 2, r


def test_even_odd_holes_and_clipping() -> None:
    outer = np.array([[0.0, 0.0], [30.0, 0.0], [30.0, 30.0], [0.0, 30.0]])
    hole = np.array([[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0]])
    assert fill_polygons((40, 40), [outer, hole]).sum() == 900 - 100
    # partly outside the image: only pixels in the image count
    assert fill_polygon((10, 10), outer).sum() == 100
    assert not fill_polygon((10, 10), outer[:2]).any()


def test_review_importers_and_synth_fill_the_same_pixels(tmp_path: Path) -> None:
    th = np.linspace(0, 2 * np.pi, 37, endpoint=False)
    poly = np.c_[31.3 + 9.2 * np.cos(th) + 2 * np.cos(3 * th), 22.6 + 6.1 * np.sin(th)]
    shape = (48, 64)
    review = mask_from_polygon(poly.tolist(), shape)
    imported = rasterize_polygons([poly], shape) > 0
    reference = fill_polygon(shape, poly)
    assert np.array_equal(review, reference)
    assert np.array_equal(imported, reference)
    # the importers' file round trips (LabelMe JSON, ImageJ ROI) give the same pixels
    labelme = write_labelme(tmp_path / "a.json", [poly], shape)
    roi = write_imagej_roi(tmp_path / "a.roi", [poly])
    for path in (labelme, roi):
        assert np.array_equal(load_annotation(path, shape) > 0, reference), path.name
    # synth: mask of a marker-plane polygon through its camera homography
    from ulcerseg.synth.render import PhotoConfig, render_photo

    photo = render_photo(3, PhotoConfig(size=(320, 240)))
    t = photo.truth
    px = apply_homography(t.homography, t.polygon_mm)
    assert np.array_equal(t.mask > 0, fill_polygon(t.mask.shape, px))
    assert np.array_equal(rasterize_polygons([px], t.mask.shape) > 0, t.mask > 0)


def test_grid_maps_pixel_centres_to_mm() -> None:
    g = RectifiedGrid((-5.0, 2.0), 4.0, 30, 20)
    assert g.shape == (20, 30)
    np.testing.assert_allclose(apply_homography(g.px_to_mm(), [[0, 0], [4, 8]]), [[-5, 2], [-4, 4]])
    np.testing.assert_allclose(g.mm_to_px() @ g.px_to_mm(), np.eye(3))
    assert g.xs()[0, 4] == pytest.approx(-4.0) and g.ys()[8, 0] == pytest.approx(4.0)
    sub, rows, cols = g.sub(-4.0, 3.0, -3.0, 4.0)
    assert sub.origin_mm == (-4.0, 3.0) and (rows, cols) == (slice(4, 9), slice(4, 9))
    covering = RectifiedGrid.covering(0.0, 0.0, 10.0, 5.0, 2.0)
    assert (covering.width, covering.height) == (21, 11)


def test_apply_homography_accepts_nine_numbers_and_checks_the_horizon() -> None:
    h = np.array([[1.0, 0, 0], [0, 1, 0], [0.01, 0, 1]])
    np.testing.assert_allclose(apply_homography(h.ravel().tolist(), [[0, 0]]), [[0, 0]])
    with pytest.raises(ValueError, match="horizon"):
        apply_homography(h, [[-200.0, 0.0]], check_horizon=True)

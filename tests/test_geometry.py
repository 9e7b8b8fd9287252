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
    homography_jacobian,
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


def _zigzag(n: int, width: float, height: float) -> np.ndarray:
    """An n-vertex outline whose every edge spans the frame's height (the worst case for a
    rows x edges rasteriser)."""
    xs = np.linspace(0.5, width - 1.5, n // 2)
    top = np.c_[xs, np.full(n // 2, 0.5)]
    bottom = np.c_[xs + 0.5, np.full(n // 2, height - 1.5)]
    zig = np.empty((n, 2))
    zig[0::2], zig[1::2] = top, bottom
    return zig


def test_fill_memory_is_bounded_for_many_edges() -> None:
    # before: rows x edges float64 arrays, ~720 MB for this 178 KB request body
    import tracemalloc

    poly = _zigzag(10_000, 4000.0, 3000.0)
    tracemalloc.start()
    try:
        mask = fill_polygon((3000, 4000), poly)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100e6, peak / 1e6
    assert mask.any()


def _even_odd_reference(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Pixel-centre rule by brute force: a centre is inside when an odd number of edge crossings
    of its row (half-open in y) lie at or left of it."""
    vv, uu = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    inside = np.zeros(shape, bool)
    for poly in polygons:
        for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
            if y0 == y1:
                continue
            crosses = (vv >= min(y0, y1)) & (vv < max(y0, y1))
            x = x0 + (vv - y0) * (x1 - x0) / (y1 - y0)
            inside ^= crosses & (x <= uu)
    return inside


def test_banded_fill_is_the_unbanded_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    import ulcerseg.geometry as geometry

    rng = np.random.default_rng(7)
    shape = (61, 83)
    for _ in range(30):
        polygons = [
            rng.uniform(-5, 90, (int(rng.integers(3, 40)), 2)) * [1, 0.75]
            for _ in range(int(rng.integers(1, 4)))
        ]
        # some vertices on pixel centres and on rows exactly: the half-open cases
        polygons[0][::3] = np.round(polygons[0][::3])
        monkeypatch.setattr(geometry, "FILL_BAND_ELEMENTS", 1 << 30)
        whole = fill_polygons(shape, polygons)
        assert np.array_equal(whole, _even_odd_reference(shape, polygons))
        for budget in (1, 500, 3000):  # one row per band, a few rows, many rows
            monkeypatch.setattr(geometry, "FILL_BAND_ELEMENTS", budget)
            assert np.array_equal(fill_polygons(shape, polygons), whole), budget


def test_a_homography_with_a_nan_says_so_not_that_its_9_numbers_are_the_wrong_count() -> None:
    from ulcerseg.geometry import as_homography

    # before: "must be 9 finite numbers, got 9" for a NaN among the nine
    with pytest.raises(ValueError, match="got 1 not finite"):
        as_homography([1.0, 0.0, 0.0, 0.0, float("nan"), 0.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="got 8"):
        as_homography([1.0] * 8)
    assert as_homography("[1, 0, 0, 0, 1, 0, 0, 0, 1]").tolist() == np.eye(3).tolist()


def test_crop_and_sub_keep_the_mm_of_every_pixel_centre() -> None:
    g = RectifiedGrid((-5.0, 2.0), 4.0, 30, 20)
    c = g.crop(4, 8, 12, 16)  # columns 4..11, rows 8..15
    assert c.origin_mm == (-4.0, 4.0) and (c.width, c.height) == (8, 8)
    # a box between pixel centres: the sub-grid's centres reach past it on both sides
    sub, rows, cols = g.sub(-4.1, 3.1, -3.1, 3.9)
    # in px: x 3.6 .. 7.6, y 4.4 .. 7.6, so columns 3 .. 8 (x -4.25 .. -3.0), rows 4 .. 8 (y 3 .. 4)
    assert (rows, cols) == (slice(4, 9), slice(3, 9))
    assert sub.origin_mm == (-4.25, 3.0) and (sub.width, sub.height) == (6, 5)


def test_homography_jacobian_matches_finite_differences_for_one_point_and_many() -> None:
    h = np.array([[1.2, 0.1, 5.0], [-0.05, 0.9, -3.0], [1e-3, -2e-3, 1.0]])
    pts = np.array([[0.0, 0.0], [40.0, -25.0], [120.0, 80.0]])
    eps = 1e-5
    for p, jac in zip(pts, homography_jacobian(h, pts), strict=True):
        steps = np.eye(2) * eps
        diffs = [(apply_homography(h, p + d) - apply_homography(h, p - d))[0] / (2 * eps) for d in steps]
        numeric = np.stack(diffs, axis=1)  # column j: d(x, y) / d(point_j)
        np.testing.assert_allclose(jac, numeric, rtol=1e-6)
        np.testing.assert_array_equal(homography_jacobian(h, p), jac)  # one point: the same 2 x 2
    assert homography_jacobian(h, pts).shape == (3, 2, 2)


def test_a_huge_vertex_does_not_overflow_the_crossings() -> None:
    # before: row 2's crossing, 1.7e308 x (1 - 2 / 2.125) = 1e307 px, overflowed to -inf
    # (2 x -1.7e308), so the row was empty; rows 0-2 lie inside the triangle
    poly = np.array([[1.7e308, 0.0], [0.0, 2.125], [0.0, 0.0]])
    expected = np.zeros((12, 12), bool)
    expected[0:3] = True
    np.testing.assert_array_equal(fill_polygon((12, 12), poly), expected)
    # an edge from x = -1e307 to +1e307 over 20 rows: row 10's (10 - 0.5) x 2e307 overflowed to
    # inf, filling the row whose crossing is at -5e305 px; only row 11 (crossing +5e305) is in
    big = 1e307
    expected = np.zeros((12, 12), bool)
    expected[11] = True
    slanted = np.array([[-big, 0.5], [big, 20.5], [-big, 20.5]])
    np.testing.assert_array_equal(fill_polygon((12, 12), slanted), expected)
    # the small edges of a polygon with a huge vertex keep their precision: scaling every
    # coordinate by 2^-544 underflowed their products, and centre (0, 0), left of the crossing
    # at 0.0625 px, was taken
    mixed = fill_polygon((3, 3), np.array([[1.7e308, 0.0], [0.0, -0.125], [0.125, 0.125]]))
    assert mixed.tolist() == [[False, True, True], [False, False, False], [False, False, False]]

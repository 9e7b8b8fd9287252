"""Property tests of the measurement geometry against independent references.

References are computed here, never by the code under test: matplotlib's point-in-path test
and an exact rational (``fractions.Fraction``) crossing count for the pixel-centre fill, an
exact rational shoelace for polygon areas, finite differences and the chain rule for the
homography Jacobian, brute force over pixel corners for length and width, and closed-form
perimeters (Ramanujan) for the boundary length. Units: px on pixel grids (pixel centres at
integers), mm and mm² once divided by ``px_per_mm``.

Deterministic under the "ci" profile of conftest.py; ``HYPOTHESIS_PROFILE=explore`` searches
with 2000 examples per property.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from matplotlib.path import Path

from ulcerseg.geometry import (
    apply_homography,
    fill_polygon,
    fill_polygons,
    homography_jacobian,
    polygon_area,
    signed_polygon_area,
)
from ulcerseg.measure import area_interval, boundary_length, feret_length_width, mask_geometry

EPS = np.finfo(np.float64).eps


def examples(n: int) -> settings:
    """``n`` examples under the "ci" profile (the file runs in ~15 s); the loaded profile's own
    number where it asks for more (``explore``: 2000), which an explicit ``max_examples``
    would otherwise override."""
    asked = settings.default.max_examples
    return settings(max_examples=max(n, asked) if asked > 100 else n)


# --------------------------------------------------------------------------- strategies

grid_shapes = st.tuples(st.integers(1, 16), st.integers(1, 16))


def _coords(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _dyadic(lo: int, hi: int) -> st.SearchStrategy[float]:
    """Multiples of 1/8 px: vertices on pixel centres, on half pixels, edges through centres
    (the ties of the rule), and crossings float arithmetic computes on the right side of every
    integer (a crossing is a rational of denominator <= 8 x 8 x |dy| < 2^12, far from an
    integer by more than its rounding error, or exactly on it). Whole and half pixels are
    drawn as often as eighths, so that edges through centres are frequent."""
    return st.one_of(
        st.integers(lo, hi).map(float),
        st.integers(lo * 2, hi * 2).map(lambda k: k / 2),
        st.integers(lo * 8, hi * 8).map(lambda k: k / 8),
    )


def _polygon(coord: st.SearchStrategy[float], min_size: int = 1, max_size: int = 10):
    return st.lists(st.tuples(coord, coord), min_size=min_size, max_size=max_size).map(
        lambda pts: np.array(pts, np.float64).reshape(-1, 2)
    )


@st.composite
def star_polygons(draw: st.DrawFn, max_vertices: int = 24) -> np.ndarray:
    """A simple polygon, counter-clockwise with y up: vertices at increasing angles around a
    centre, at radii 0.3..1, no two consecutive ones half a turn or more apart (gaps of
    0.6..1 parts: at most 1 / 2.2 of the turn), so the centre is inside and every edge sees it
    on its left: star-shaped, no edge crosses another."""
    n = draw(st.integers(3, max_vertices))
    cuts = draw(st.lists(st.floats(0.6, 1.0), min_size=n, max_size=n))
    angles = 2 * np.pi * np.cumsum(cuts) / np.sum(cuts)
    radii = np.array(draw(st.lists(st.floats(0.3, 1.0), min_size=n, max_size=n)))
    return np.c_[radii * np.cos(angles), radii * np.sin(angles)]


# --------------------------------------------------------------------------- references


def _inside_mpl(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Pixel centres inside the polygons by matplotlib's crossing test, combined even-odd
    (XOR over polygons); its answer for a centre on an edge is unspecified."""
    vv, uu = np.mgrid[: shape[0], : shape[1]]
    centres = np.c_[uu.ravel(), vv.ravel()].astype(np.float64)
    inside = np.zeros(len(centres), bool)
    for poly in polygons:
        if len(poly) >= 3:
            inside ^= Path(poly).contains_points(centres, radius=0.0)
    return inside.reshape(shape)


def _clearance(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Distance (px) from every pixel centre to the nearest edge of the polygons."""
    vv, uu = np.mgrid[: shape[0], : shape[1]]
    c = np.c_[uu.ravel(), vv.ravel()].astype(np.float64)
    best = np.full(len(c), np.inf)
    for poly in polygons:
        if len(poly) < 3:
            continue
        for a, b in zip(poly, np.roll(poly, -1, axis=0), strict=True):
            d = b - a
            t = np.clip(((c - a) @ d) / max(float(d @ d), 1e-300), 0.0, 1.0)
            best = np.minimum(best, np.hypot(*(c - a - t[:, None] * d).T))
    return best.reshape(shape)


def _exact_rule(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """The pixel-centre rule in exact rational arithmetic on the float vertices: centre (u, v)
    is inside when an odd number of edges cross row v (half-open: min y <= v < max y, so a
    vertex on the row counts once) at x <= u (a centre on a left edge is in, on a right edge
    out: adjacent polygons sharing an edge never both take a pixel)."""
    return _exact_rule_and_margin(shape, polygons)[0]


def _exact_rule_and_margin(
    shape: tuple[int, int], polygons: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_exact_rule` and, per centre, whether float arithmetic may put a crossing of its
    row on the other side of it: the exact crossing lies within 16 eps x M px of the centre, M
    the largest coordinate of that edge (the formula x0 + (v - y0) dx / dy adds terms of at
    most M and 2M, each rounded to a few ulps)."""
    h, w = shape
    out = np.zeros(shape, bool)
    doubtful = np.zeros(shape, bool)
    edges = []
    for poly in polygons:
        if len(poly) < 3:
            continue
        pts = [(Fraction(float(x)), Fraction(float(y))) for x, y in poly]
        edges += list(zip(pts, pts[1:] + pts[:1], strict=True))
    for v in range(h):
        xs = []
        for (x0, y0), (x1, y1) in edges:
            if min(y0, y1) <= v < max(y0, y1):
                x = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
                xs.append((x, 16 * EPS * float(max(abs(x0), abs(x1), abs(y0), abs(y1)))))
        for u in range(w):
            out[v, u] = sum(x <= u for x, _ in xs) % 2 == 1
            doubtful[v, u] = any(abs(x - u) <= tol for x, tol in xs)
    return out, doubtful


def _shoelace_exact(poly: np.ndarray) -> Fraction:
    pts = [(Fraction(float(x)), Fraction(float(y))) for x, y in poly]
    if len(pts) < 3:
        return Fraction(0)
    return (
        sum(
            (x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True)),
            Fraction(0),
        )
        / 2
    )


def _shoelace_tolerance(poly: np.ndarray) -> float:
    """Rounding bound of a float shoelace sum: (n + 2) eps x the sum of |terms| (units²),
    the textbook bound for a sum of n products (Higham, gamma_n)."""
    x, y = poly[:, 0], poly[:, 1]
    terms = np.abs(x * np.roll(y, -1)) + np.abs(y * np.roll(x, -1))
    return (len(poly) + 2) * EPS * float(terms.sum()) + 1e-300


# --------------------------------------------------------------------------- fill


@examples(100)
@given(
    shape=grid_shapes,
    polygons=st.lists(_polygon(_coords(-4.0, 20.0), 1, 9), min_size=1, max_size=3),
)
def test_fill_sets_a_pixel_iff_its_centre_is_inside(shape, polygons) -> None:
    """Random simple and self-intersecting polygons, partly outside the grid, several combined
    even-odd: the mask is matplotlib's answer at every centre further than 1e-9 px from an edge
    (on an edge the rule's tie-break decides; see the exact test below). 1e-9 px is ~10^6 times
    the float rounding of a crossing at these coordinates (|x| < 30 px, eps x 30 ~ 7e-15 px)."""
    mask = fill_polygons(shape, polygons)
    assert mask.shape == shape and mask.dtype == bool
    clear = _clearance(shape, polygons) > 1e-9
    np.testing.assert_array_equal(mask[clear], _inside_mpl(shape, polygons)[clear])


@examples(100)
@given(
    shape=grid_shapes,
    polygons=st.lists(_polygon(_dyadic(-3, 18), 1, 8), min_size=1, max_size=3),
)
# a square with its corners on centres: its left and top edges' centres are in, right and bottom out
@example(shape=(6, 6), polygons=[np.array([[1.0, 1.0], [4.0, 1.0], [4.0, 4.0], [1.0, 4.0]])])
def test_fill_is_the_exact_pixel_centre_rule_with_ties(shape, polygons) -> None:
    """Vertices on a 1/8 px lattice: centres on edges and vertices on rows are common, and the
    mask must equal the rule computed exactly, ties included (collinear and repeated vertices,
    zero-area spikes, 1-2 point polygons)."""
    np.testing.assert_array_equal(fill_polygons(shape, polygons), _exact_rule(shape, polygons))


@examples(100)
@given(poly=_polygon(_dyadic(-3, 18), 3, 8), du=st.integers(0, 5), dv=st.integers(0, 5))
def test_fill_moves_with_the_polygon_by_whole_pixels(poly, du, dv) -> None:
    shape = (24, 24)
    moved = fill_polygon((shape[0] + dv, shape[1] + du), poly + np.array([du, dv]))
    np.testing.assert_array_equal(moved[dv:, du:], fill_polygon(shape, poly))


@examples(100)
@given(
    poly=_polygon(_coords(-4.0, 20.0), 0, 2)
    | _polygon(_coords(-4.0, 20.0), 1, 1).flatmap(
        # 3..8 points on one line through the first (collinear: no area)
        lambda p: st.lists(_coords(-3.0, 3.0), min_size=2, max_size=7).flatmap(
            lambda ts: _coords(-1.0, 1.0).flatmap(
                lambda dx: _coords(-1.0, 1.0).map(lambda dy: p + np.outer([0.0, *ts], [dx, dy]))
            )
        )
    ),
)
def test_fill_of_a_polygon_without_area_is_empty(poly) -> None:
    """Fewer than 3 vertices, or every vertex on one line: nothing is set. On a line through a
    pixel centre the two crossings of one row must round to the same side of it, which the
    float formula does not promise; hence the exact-rule test uses lattice vertices and this
    one only lines off the centres by more than rounding (1e-9 px)."""
    shape = (16, 16)
    clear = _clearance(shape, [poly]) > 1e-9 if len(poly) >= 3 else np.ones(shape, bool)
    assert not fill_polygon(shape, poly)[clear].any()
    assert polygon_area(poly) == pytest.approx(0.0, abs=_shoelace_tolerance(poly) if len(poly) else 0)


HUGE = st.sampled_from([1e15, 1e100, 1e154, 1e200, 1e300, 1.7e308])


@examples(100)
@given(
    poly=_polygon(_dyadic(-3, 10), 3, 6),
    big=HUGE,
    which=st.integers(0, 5),
    direction=st.sampled_from([(1, 0), (0, 1), (-1, -1), (1, -1), (1, 1)]),
)
# the shrunk failure: row 2's crossing at 1.6e307 px came out -inf (2 x -1.7e308 overflowed)
@example(poly=np.array([[0.0, 0.0], [0.0, 2.125], [0.0, 0.0]]), big=1.7e308, which=0, direction=(1, 0))
def test_fill_with_a_huge_vertex_is_still_the_rule(poly, big, which, direction) -> None:
    """One vertex pulled out to a huge coordinate (a polygon mapped near a homography's
    horizon, an imported annotation): no crash, no hang (the work is bounded by the grid, not
    by the coordinates), and the centres inside are the rule's wherever every crossing of the
    row is further from the centre than the float formula's rounding. That is a few ulps of
    the edge's largest coordinate M (|x0| <= M, |(v - y0) dx / dy| <= |dx| <= 2M on a
    crossing row): 16 eps M px. Before the fix a crossing overflowed to inf or NaN past ~1e150 px and
    whole rows came out wrong, however far their crossings were from the centres."""
    shape = (12, 12)
    poly = poly.copy()
    poly[which % len(poly)] = np.array(direction, np.float64) * big
    mask = fill_polygon(shape, poly)
    ref, doubtful = _exact_rule_and_margin(shape, [poly])
    np.testing.assert_array_equal(mask[~doubtful], ref[~doubtful])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fill_refuses_a_vertex_that_is_not_finite(bad: float) -> None:
    poly = np.array([[0.0, 0.0], [10.0, 0.0], [bad, 10.0]])
    with pytest.raises(ValueError, match="finite"):
        fill_polygon((8, 8), poly)
    # a polygon of 1-2 points is skipped before the check (it sets nothing either way)
    assert not fill_polygon((8, 8), poly[1:]).any()


@examples(60)
@given(
    poly=star_polygons(),
    radius_mm=st.floats(1.0, 6.0),
    centre=st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)),
    px_per_mm=st.sampled_from([1.0, 3.0, 10.0, 30.0]),
)
def test_filled_pixel_count_approaches_the_polygon_area(poly, radius_mm, centre, px_per_mm) -> None:
    """|count - area| <= sqrt(2) x perimeter + 3 x vertices (px², px): only pixels whose unit
    square meets the outline can differ from their covered fraction (each by < 1 px), and an
    edge of length L meets at most sqrt(2) L + 3 of them. The bound grows like the
    resolution, the area like its square: count / px_per_mm² converges to the area (mm²)."""
    poly_mm = poly * radius_mm
    poly_px = (poly_mm + radius_mm + 1.0 + np.array(centre)) * px_per_mm
    size = int(np.ceil((2 * radius_mm + 3) * px_per_mm))
    count = int(fill_polygon((size, size), poly_px).sum())
    area_px = polygon_area(poly_px)
    perimeter_px = float(np.hypot(*(np.roll(poly_px, -1, axis=0) - poly_px).T).sum())
    assert abs(count - area_px) <= math.sqrt(2) * perimeter_px + 3 * len(poly)
    # in mm²: the relative error bound shrinks as 1 / px_per_mm
    bound_mm2 = (math.sqrt(2) * perimeter_px + 3 * len(poly)) / px_per_mm**2
    assert count / px_per_mm**2 == pytest.approx(polygon_area(poly_mm), abs=bound_mm2)


# --------------------------------------------------------------------------- polygon areas


@examples(100)
@given(poly=_polygon(_coords(-1e4, 1e4), 0, 12))
def test_signed_area_is_the_exact_shoelace(poly) -> None:
    exact = _shoelace_exact(poly)
    assert abs(signed_polygon_area(poly) - float(exact)) <= _shoelace_tolerance(poly) if len(poly) else True
    assert polygon_area(poly) == abs(signed_polygon_area(poly))


@examples(100)
@given(poly=_polygon(_dyadic(-500, 500), 3, 12))
def test_area_agrees_with_opencv_on_lattice_vertices(poly) -> None:
    # 1/8 px lattice below 2^12: exact in float32, so OpenCV sees the same polygon
    ref = cv2.contourArea(poly.astype(np.float32))
    assert polygon_area(poly) == pytest.approx(ref, rel=1e-6, abs=1e-6)


@examples(100)
@given(
    poly=star_polygons(),
    scale=st.floats(0.01, 1000.0),
    angle=st.floats(0.0, 2 * np.pi),
    shift=st.tuples(_coords(-1e3, 1e3), _coords(-1e3, 1e3)),
    k=st.integers(0, 23),
)
def test_signed_area_sign_and_invariances(poly, scale, angle, shift, k) -> None:
    """Counter-clockwise (y up) is positive, clockwise negative; a rotation, a translation and
    a cyclic shift of the vertices keep it. Tolerance: the shoelace rounding bound of the
    moved polygon (a translation by T multiplies the terms by ~T / size, so the bound follows)."""
    p = poly * scale
    ref = signed_polygon_area(p)
    # reversed: the same products summed in another order
    assert ref > 0 and signed_polygon_area(p[::-1]) == pytest.approx(-ref, abs=2 * _shoelace_tolerance(p))
    c, s = np.cos(angle), np.sin(angle)
    moved = p @ np.array([[c, s], [-s, c]]) + np.array(shift)
    # rotating the vertices by float cos/sin moves them by ~eps x |p|: area change ~ 2 eps x
    # perimeter x |p|, below the shoelace bound of |p| x |p| terms
    tol = _shoelace_tolerance(moved) + _shoelace_tolerance(p)
    assert signed_polygon_area(moved) == pytest.approx(ref, abs=tol)
    shifted = np.roll(p, k % len(p), axis=0)
    assert signed_polygon_area(shifted) == pytest.approx(ref, abs=2 * _shoelace_tolerance(p))
    # quarter turns are exact: the same products, negated
    assert signed_polygon_area(np.c_[-p[:, 1], p[:, 0]]) == ref


# --------------------------------------------------------------------------- homographies


@st.composite
def homographies(draw: st.DrawFn) -> np.ndarray:
    """A camera-like homography: rotation, scales 0.2..5, shear, translation and a perspective
    row small enough that w = g x + h y + 1 stays in 0.6..1.4 over |x|, |y| <= 100."""
    th = draw(st.floats(0, 2 * np.pi))
    sx, sy = draw(st.floats(0.2, 5.0)), draw(st.floats(0.2, 5.0))
    shear = draw(st.floats(-0.5, 0.5))
    tx, ty = draw(_coords(-100, 100)), draw(_coords(-100, 100))
    g, h = draw(st.floats(-2e-3, 2e-3)), draw(st.floats(-2e-3, 2e-3))
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    a = rot @ np.array([[sx, shear], [0.0, sy]])
    m = np.array([[a[0, 0], a[0, 1], tx], [a[1, 0], a[1, 1], ty], [g, h, 1.0]])
    return m * draw(st.sampled_from([1.0, -2.5, 1e-3, 7e4]))  # a homography's scale is free


points = arrays(np.float64, st.tuples(st.integers(1, 8), st.just(2)), elements=_coords(-100.0, 100.0))


@examples(100)
@given(h=homographies(), pts=points)
def test_homography_then_its_inverse_is_the_identity(h, pts) -> None:
    """cond(H) <= ~1e5 here (scales 0.2..5 and a translation of 100 against the 1 of w),
    so the round trip is exact to ~cond x eps x |p| ~ 1e-9 mm at |p| = 100 mm."""
    back = apply_homography(np.linalg.inv(h), apply_homography(h, pts))
    np.testing.assert_allclose(back, pts, rtol=0, atol=1e-8)
    # 9 row-major numbers are the same matrix
    np.testing.assert_array_equal(apply_homography(h.ravel().tolist(), pts), apply_homography(h, pts))


@examples(100)
@given(h=homographies(), pts=points)
def test_homography_jacobian_matches_finite_differences(h, pts) -> None:
    """Central differences with step 1e-3: truncation error step² / 6 x |f'''| (f''' ~ 6 |J|
    |g, h|³ < 1e-7 |J|) and rounding eps x |f| / step (~1e-11 |J| at |f| ~ 1e3): both far
    below the tolerance of 1e-7 x |J| + 1e-9."""
    jac = homography_jacobian(h, pts)
    assert jac.shape == (len(pts), 2, 2)
    step = 1e-3
    for p, j in zip(pts, jac, strict=True):
        cols = [
            (apply_homography(h, p + d) - apply_homography(h, p - d))[0] / (2 * step)
            for d in np.eye(2) * step
        ]
        numeric = np.stack(cols, axis=1)  # column k: d(x, y) / d p_k
        np.testing.assert_allclose(j, numeric, rtol=0, atol=1e-7 * np.abs(j).max() + 1e-9)
        # one point (shape (2,)) gives the 2 x 2 of the same point
        np.testing.assert_allclose(homography_jacobian(h, p), j, rtol=1e-13, atol=0)


@examples(100)
@given(h1=homographies(), h2=homographies(), pts=points)
def test_homography_jacobian_chain_rule_and_inverse(h1, h2, pts) -> None:
    """J of H2 H1 at p is J_H2(H1 p) J_H1(p), and J of inv(H) at H p is inv(J_H(p))."""
    j1 = homography_jacobian(h1, pts)
    j2 = homography_jacobian(h2, apply_homography(h1, pts))
    composite = homography_jacobian(h2 @ h1, pts)
    np.testing.assert_allclose(composite, j2 @ j1, rtol=1e-7, atol=1e-9 * np.abs(composite).max())
    inv = homography_jacobian(np.linalg.inv(h1), apply_homography(h1, pts))
    np.testing.assert_allclose(inv @ j1, np.broadcast_to(np.eye(2), j1.shape), atol=1e-8)


@examples(100)
@given(h=homographies(), pts=points)
def test_a_small_square_maps_to_det_j_times_its_area(h, pts) -> None:
    """Area of the image of a square of side s centred on p = |det J(p)| s² + O(s⁴) (the
    first-order term cancels over a centred square): s = 1e-3 leaves ~1e-6 relative; float
    rounding of the shoelace at |p| ~ 100 is ~eps x 100² / s² ~ 1e-6 too: rtol 1e-5."""
    s = 1e-3
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * s / 2
    for p, j in zip(pts, homography_jacobian(h, pts), strict=True):
        image = apply_homography(h, p + square)
        assert polygon_area(image - image[0]) == pytest.approx(abs(np.linalg.det(j)) * s**2, rel=1e-5)


# --------------------------------------------------------------------------- masks

masks = arrays(bool, st.tuples(st.integers(1, 10), st.integers(1, 10)))


def _pixel_corners(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    c = np.c_[xs, ys].astype(np.float64)
    return (c[:, None, :] + np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])).reshape(-1, 2)


def _feret_brute_force(mask: np.ndarray) -> tuple[float, list[float]]:
    """Largest distance between two pixel corners (px) and the extent perpendicular to each
    pair at that distance (ties: several diameters, possibly several widths)."""
    c = np.unique(_pixel_corners(mask), axis=0)
    d2 = ((c[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    best = d2.max()
    widths = []
    for i, j in zip(*np.nonzero(d2 == best), strict=True):
        axis = (c[j] - c[i]) / np.sqrt(best)
        proj = c @ np.array([-axis[1], axis[0]])
        widths.append(float(proj.max() - proj.min()))
    return float(np.sqrt(best)), widths


@examples(100)
@given(mask=masks, px_per_mm=st.floats(0.5, 100.0), k=st.floats(0.25, 8.0))
def test_mask_area_is_the_pixel_count_in_mm2(mask, px_per_mm, k) -> None:
    g = mask_geometry(mask, px_per_mm)
    assert g.area_mm2 == pytest.approx(mask.sum() / px_per_mm**2, rel=1e-12)
    # the same pixels at k times the resolution: areas 1/k², lengths 1/k
    gk = mask_geometry(mask, px_per_mm * k)
    assert gk.area_mm2 == pytest.approx(g.area_mm2 / k**2, rel=1e-12)
    for a, b in [(gk.length_mm, g.length_mm), (gk.width_mm, g.width_mm), (gk.perimeter_mm, g.perimeter_mm)]:
        assert a == pytest.approx(b / k, rel=1e-12)
    from scipy import ndimage

    assert g.n_components == ndimage.label(mask, structure=np.ones((3, 3)))[1]
    if mask.any():
        ys, xs = np.nonzero(mask)
        assert g.centroid_px == pytest.approx((xs.mean(), ys.mean()))
    else:
        assert g == type(g)(0.0, 0.0, 0.0, 0.0, 0, None)


@examples(100)
@given(mask=masks)
def test_feret_length_and_width_over_pixel_corners(mask) -> None:
    """Length: the largest distance between two pixel CORNERS (a pixel covers its centre
    +/- 0.5 px; so one pixel measures sqrt(2), its diagonal); width: the mask's extent
    perpendicular to that diameter. Tolerance 1e-4 px: the code's hull is float32 (corners
    exact, the distances then rounded at ~1e-6 relative over <= 15 px). Several longest
    diameters (frequent on the lattice): the largest of their perpendicular extents."""
    length, width = feret_length_width(mask)
    if not mask.any():
        assert (length, width) == (0.0, 0.0)
        return
    ref_length, ref_widths = _feret_brute_force(mask)
    assert length == pytest.approx(ref_length, abs=1e-4)
    assert width == pytest.approx(max(ref_widths), abs=1e-4), ref_widths
    assert length >= width - 1e-9 and width > 0


@examples(100)
@given(mask=masks)
def test_length_and_width_do_not_depend_on_the_mask_orientation(mask) -> None:
    length, width = feret_length_width(mask)
    for moved in (np.rot90(mask), np.rot90(mask, 2), mask[::-1], mask[:, ::-1], mask.T):
        ml, mw = feret_length_width(moved)
        assert ml == pytest.approx(length, abs=1e-4)
        assert mw == pytest.approx(width, abs=1e-4)


def test_one_pixel_measures_its_diagonal() -> None:
    one = np.zeros((3, 3), bool)
    one[1, 1] = True
    assert feret_length_width(one) == pytest.approx((math.sqrt(2), math.sqrt(2)))
    g = mask_geometry(one, 10.0)
    assert (g.area_mm2, g.perimeter_mm, g.n_components) == (pytest.approx(0.01), 0.0, 1)


# --------------------------------------------------------------------------- perimeter


def _ramanujan(a: float, b: float) -> float:
    """Perimeter of an ellipse of semi-axes a, b (Ramanujan II, relative error < 1e-9 here)."""
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


CHAIN_BIAS_DISC = 8 / math.pi * (math.sqrt(2) - 1)
"""1.0548: the mean over directions of |cos| + (sqrt(2) - 1) |sin| (first octant), the length
of an 8-connected chain per unit length of a straight outline: the chain's limit / the true
perimeter of a disc. 1 along the axes, sqrt(1 + (sqrt(2) - 1)²) = 1.0824 at 22.5°."""
CHAIN_BIAS_MAX = math.sqrt(1 + (math.sqrt(2) - 1) ** 2)


def _ellipse_mask(a: float, b: float, angle: float, offset: tuple[float, float]) -> np.ndarray:
    n = int(2 * max(a, b) + 6)
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    cx, cy = n / 2 + offset[0], n / 2 + offset[1]
    c, s = math.cos(angle), math.sin(angle)
    x, y = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (x / a) ** 2 + (y / b) ** 2 <= 1


offsets = st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5))


@examples(40)
@given(r=st.floats(4.0, 120.0), offset=offsets)
def test_perimeter_of_a_disc(r, offset) -> None:
    """The chain through the centres of the boundary pixels follows the circle 0.5 px inside
    (radius r - 0.5) and is 8-connected, so it measures CHAIN_BIAS_DISC x 2 pi (r - 0.5):
    within 4 px of that (the rest is lattice noise: at most 3.2 px over r = 4..120 in steps
    of 0.22 px, centred on a pixel centre, a corner, an edge or at random)."""
    chain = boundary_length(_ellipse_mask(r, r, 0.0, offset))
    assert chain == pytest.approx(CHAIN_BIAS_DISC * 2 * math.pi * (r - 0.5), abs=4.0)


@examples(30)
@given(r_out=st.floats(10.0, 100.0), ratio=st.floats(0.3, 0.7), offset=offsets)
def test_perimeter_counts_the_boundary_of_a_hole(r_out, ratio, offset) -> None:
    """A ring: the outer chain runs 0.5 px inside the outer circle, the hole's 0.5 px outside
    the inner one, both 8-connected: CHAIN_BIAS_DISC x 2 pi ((R - 0.5) + (r + 0.5)) within
    6 px (two boundaries' lattice noise; observed -3.8..+2.2 px on 300 random rings)."""
    r_in = r_out * ratio
    ring = _ellipse_mask(r_out, r_out, 0.0, offset) & ~_ellipse_mask_like(r_out, r_in, offset)
    expected = CHAIN_BIAS_DISC * 2 * math.pi * ((r_out - 0.5) + (r_in + 0.5))
    assert boundary_length(ring) == pytest.approx(expected, abs=6.0)


def _ellipse_mask_like(r_frame: float, r: float, offset: tuple[float, float]) -> np.ndarray:
    """The disc of radius r on the frame (and centre) of :func:`_ellipse_mask` for r_frame."""
    n = int(2 * r_frame + 6)
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    return (xx - n / 2 - offset[0]) ** 2 + (yy - n / 2 - offset[1]) ** 2 <= r * r


@examples(40)
@given(
    a=st.floats(4.0, 120.0),
    ratio=st.floats(0.25, 1.0),
    angle=st.floats(0.0, math.pi),
    offset=offsets,
)
def test_perimeter_of_an_ellipse_is_bounded_by_the_chain_bias(a, ratio, angle, offset) -> None:
    """Ellipses with semi-axes >= 3 px: (P - pi) - 2 <= chain <= 1.0824 x P + 2 (px), P by
    Ramanujan. Below: the 0.5 px inset takes pi px off any convex outline (Steiner) and a
    chain is never shorter than the polygon through its points; above: no direction costs more
    than 1.0824 per unit. 2 px: lattice noise at small sizes (observed <= 1.7 px on discs)."""
    b = max(3.0, a * ratio)
    p = _ramanujan(a, b)
    chain = boundary_length(_ellipse_mask(a, b, angle, offset))
    assert p - math.pi - 2 <= chain <= CHAIN_BIAS_MAX * p + 2


def test_perimeter_converges_to_the_chain_bias_not_to_the_true_perimeter() -> None:
    """A disc of 2 mm radius at growing resolution: perimeter_mm approaches 1.0548 x 4 pi mm
    (+5.5%), not 4 pi: an 8-connected chain overestimates an oblique outline."""
    ratios = []
    for px_per_mm in (5.0, 10.0, 20.0, 40.0, 80.0):
        mask = _ellipse_mask(2.0 * px_per_mm, 2.0 * px_per_mm, 0.0, (0.13, -0.27))
        ratios.append(mask_geometry(mask, px_per_mm).perimeter_mm / (4 * math.pi))
    errors = [abs(r - CHAIN_BIAS_DISC) for r in ratios]
    assert errors[-1] < 0.01 and errors[-1] < errors[0]
    assert all(b <= a + 0.01 for a, b in itertools.pairwise(errors))


# --------------------------------------------------------------------------- area interval

areas = st.floats(0.01, 1e4)
bands = st.floats(0.0, 1e4)
quantiles = st.tuples(st.floats(-5.0, 0.0), st.floats(0.0, 5.0))


@examples(100)
@given(area=areas, lo=bands, hi=bands, floor=st.floats(0.0, 1.0), q=quantiles, k=st.floats(0.1, 10.0))
def test_area_interval_contains_the_area_and_widens_with_the_band(area, lo, hi, floor, q, k) -> None:
    """With q_low <= 0 <= q_high (the fitted constants are -2.966 and 3.462) the interval holds
    the area; a wider band never narrows it; a negative band counts as none; the interval is in
    the units of the area (scaling area and band by k scales it by k). What it does past
    q_high x s > 709 (a band over ~200 x the area at the fitted q_high): exp overflows, and
    the upper end is inf (with numpy's overflow warning), still above the area."""
    with np.errstate(over="ignore"):
        low, high = area_interval(area, lo, hi, floor, *q)
        wider = area_interval(area, lo, hi + 1.0, floor, *q)
    assert 0.0 <= low <= area <= high
    assert wider[0] <= low and wider[1] >= high
    if hi < lo:  # a looser band smaller than the tighter one: no band
        assert (low, high) == area_interval(area, 0.0, 0.0, floor, *q)
    if math.isfinite(high * k):
        with np.errstate(over="ignore"):
            scaled = area_interval(area * k, lo * k, hi * k, floor, *q)
        assert scaled == pytest.approx((low * k, high * k), rel=1e-9)


@given(band=st.tuples(bands, bands), floor=st.floats(0.0, 1.0), q=quantiles)
def test_area_interval_of_no_area_is_zero(band, floor, q) -> None:
    assert area_interval(0.0, *band, floor, *q) == (0.0, 0.0)

import numpy as np
import pytest

from ulcerseg.measure import feret_length_width, mask_geometry
from ulcerseg.segmentation.postprocess import ulcer_mask


def test_rectangle_geometry_is_exact() -> None:
    mask = np.zeros((100, 100), bool)
    mask[20:30, 10:50] = True  # 40 x 10 px
    g = mask_geometry(mask, px_per_mm=10.0)
    assert g.area_mm2 == pytest.approx(4.0)
    assert g.length_mm == pytest.approx(np.hypot(40, 10) / 10)  # the diagonal is the longest chord
    assert g.n_components == 1
    assert g.perimeter_mm == pytest.approx(10.0, rel=0.05)


def test_perimeter_is_the_boundary_length_through_pixel_centres() -> None:
    from skimage.measure import perimeter

    yy, xx = np.mgrid[:200, :200]
    disk = (xx - 100) ** 2 + (yy - 100) ** 2 <= 40**2
    ring = disk & ((xx - 100) ** 2 + (yy - 100) ** 2 > 20**2)
    for mask in (disk, ring):  # smooth masks: scikit-image's 4-neighbourhood perimeter
        assert mask_geometry(mask, 1.0).perimeter_mm == pytest.approx(perimeter(mask, 4), rel=1e-6)
    # the hole's boundary counts: a ring has more perimeter than its disk
    assert mask_geometry(ring, 2.0).perimeter_mm > mask_geometry(disk, 2.0).perimeter_mm * 1.4
    line = np.zeros((10, 40), bool)
    line[5, 5:35] = True  # 30 px long, 1 px wide: both sides, pixel centre to centre
    assert mask_geometry(line, 10.0).perimeter_mm == pytest.approx(2 * 29 / 10)
    two = np.zeros((50, 50), bool)
    two[5:15, 5:15] = two[30:40, 30:40] = True  # every component counts
    assert mask_geometry(two, 1.0).perimeter_mm == pytest.approx(2 * 4 * 9)
    assert mask_geometry(np.zeros((5, 5), bool), 1.0).perimeter_mm == 0.0


def test_length_and_perpendicular_width_of_a_rotated_ellipse() -> None:
    import cv2

    mask = np.zeros((300, 300), np.uint8)
    cv2.ellipse(mask, (150, 150), (100, 15), 30, 0, 360, 1, -1)  # 200 x 30 px, rotated 30°
    length, width = feret_length_width(mask)
    assert length == pytest.approx(201, abs=2)  # +1: pixel extent, not centre to centre
    assert width == pytest.approx(31, abs=2)


def test_empty_mask() -> None:
    g = mask_geometry(np.zeros((10, 10), bool), 10.0)
    assert g.area_mm2 == 0 and g.n_components == 0 and g.centroid_px is None


def test_postprocess_drops_small_and_far_components_and_fills_holes() -> None:
    prob = np.zeros((200, 200), np.float32)
    prob[50:90, 50:90] = 0.9  # main ulcer, 16 mm² at 10 px/mm
    prob[65:75, 65:75] = 0.1  # a hole inside it
    prob[50:60, 95:100] = 0.8  # fragment 0.5 mm from the main one: kept
    prob[150:154, 150:154] = 0.95  # speck of 0.16 mm²: dropped (min area)
    prob[150:180, 10:40] = 0.7  # separate blob far away: not the ulcer
    mask = ulcer_mask(prob, 0.5, 10.0, min_area_mm2=0.3, merge_distance_mm=3.0)
    assert mask[70, 70]  # hole filled
    assert mask[55, 97]  # nearby fragment kept
    assert not mask[152, 152] and not mask[160, 20]
    assert mask.sum() == 40 * 40 + 10 * 5


def test_postprocess_respects_exclusion() -> None:
    prob = np.full((50, 50), 0.9, np.float32)
    exclude = np.zeros_like(prob, bool)
    exclude[:, :25] = True
    mask = ulcer_mask(prob, 0.5, 10.0, 0.3, 3.0, exclude=exclude)
    assert not mask[:, :25].any() and mask[:, 25:].all()


def test_fill_holes_and_label_sums_agree_with_scipy() -> None:
    import cv2
    from scipy import ndimage

    from ulcerseg.segmentation.postprocess import fill_holes, label_sums

    rng = np.random.default_rng(0)
    for _ in range(100):
        mask = rng.random((int(rng.integers(1, 50)), int(rng.integers(1, 50)))) < rng.uniform(0.2, 0.8)
        np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        values = rng.random(mask.shape).astype(np.float32)
        index = np.arange(1, n)
        expected = ndimage.sum_labels(values, labels, index)
        np.testing.assert_allclose(label_sums(values, labels, n)[index], expected)
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False  # a hole
    assert fill_holes(ring).sum() == 25


def test_an_excluded_region_inside_the_mask_is_not_filled_as_a_hole() -> None:
    # foreground all around the marker's exclusion: filling holes counted the marker (16 mm²)
    prob = np.zeros((200, 200), np.float32)
    prob[40:160, 40:160] = 0.9
    exclude = np.zeros((200, 200), bool)
    exclude[80:120, 80:120] = True
    mask = ulcer_mask(prob, 0.5, 10.0, min_area_mm2=0.3, merge_distance_mm=3.0, exclude=exclude)
    assert not (mask & exclude).any()
    assert mask.sum() == 120 * 120 - 40 * 40


def test_measure_ulcer_gives_the_marker_distance_and_the_band_in_mm() -> None:
    from ulcerseg.measure import measure_ulcer

    mask = np.zeros((60, 80), bool)
    mask[20:30, 10:50] = True  # 40 x 10 px at 10 px/mm: centroid px (29.5, 24.5)
    tight = np.zeros_like(mask)
    tight[21:29, 15:45] = True  # 30 x 8 = 240 px: 2.4 mm²
    loose = np.zeros_like(mask)
    loose[18:32, 8:52] = True  # 44 x 14 = 616 px: 6.16 mm²
    prob = np.where(mask, 0.8, 0.1).astype(np.float32)
    # centroid in mm: (-3 + 2.95, 5 + 2.45) = (-0.05, 7.45); the marker centre 4 mm left, 3 mm
    # down of it: a 3-4-5 triangle
    m = measure_ulcer(prob, mask, (tight, loose), 10.0, origin_mm=(-3.0, 5.0), marker_centre_mm=(3.95, 4.45))
    assert m.marker_distance_mm == pytest.approx(5.0)
    assert m.area_mm2 == pytest.approx(4.0)
    assert (m.area_low_mm2, m.area_high_mm2) == pytest.approx((2.4, 6.16))
    assert m.mean_probability == pytest.approx(0.8)


def test_components_below_the_minimum_area_are_dropped_even_beside_the_ulcer() -> None:
    # 10 px/mm, minimum 0.3 mm² = 30 px; both fragments lie 0.2 mm from the main component
    prob = np.zeros((60, 60), np.float32)
    prob[10:30, 10:30] = 0.9  # main, 400 px
    prob[10:15, 32:38] = 0.9  # 5 x 6 = 30 px: exactly the minimum, kept
    prob[20:24, 32:39] = 0.9  # 4 x 7 = 28 px: below it, dropped
    mask = ulcer_mask(prob, 0.5, 10.0, min_area_mm2=0.3, merge_distance_mm=3.0)
    assert mask.sum() == 400 + 30
    assert mask[12, 35] and not mask[22, 35]
    lone = np.zeros((60, 60), np.float32)
    lone[20:24, 20:27] = 0.9  # 28 px alone: no ulcer
    assert not ulcer_mask(lone, 0.5, 10.0, min_area_mm2=0.3, merge_distance_mm=3.0).any()


def test_a_probability_equal_to_the_threshold_is_foreground() -> None:
    prob = np.zeros((40, 40), np.float32)
    prob[10:20, 10:20] = 0.5  # exactly the threshold (0.5 is exact in float32)
    assert ulcer_mask(prob, 0.5, 10.0, min_area_mm2=0.3, merge_distance_mm=3.0).sum() == 100


def test_the_main_component_has_the_largest_probability_mass_not_the_largest_area() -> None:
    prob = np.zeros((100, 100), np.float32)
    prob[5:20, 5:20] = 0.55  # 225 px, mass 123.75
    prob[70:82, 70:82] = 0.95  # 144 px, mass 136.8: the ulcer; 5 mm away, beyond the merge distance
    mask = ulcer_mask(prob, 0.5, 10.0, min_area_mm2=0.3, merge_distance_mm=3.0)
    assert mask.sum() == 144 and mask[75, 75] and not mask[10, 10]


def test_a_fragment_touching_the_ulcer_at_a_corner_is_part_of_it() -> None:
    # components are 8-connected: a 16 px block (under the 30 px minimum on its own) that
    # touches the ulcer only diagonally belongs to it
    prob = np.zeros((60, 60), np.float32)
    prob[10:30, 10:30] = 0.9
    prob[30:34, 30:34] = 0.9  # pixel (30, 30) touches (29, 29) at a corner
    mask = ulcer_mask(prob, 0.5, 10.0, min_area_mm2=0.3, merge_distance_mm=0.1)
    assert mask.sum() == 400 + 16


def test_width_does_not_depend_on_which_of_two_equal_diameters_comes_first() -> None:
    # longest diameters of sqrt(13) px along (3, 2) and (2, 3), perpendicular extents 3.33 and
    # 3.61 px: before, the width was the first diameter's, 3.61 px for the mask and 3.33 px
    # for it mirrored
    mask = np.array([[0, 0, 1], [1, 1, 1], [0, 1, 1]], bool)
    widths = {round(feret_length_width(m)[1], 9) for m in (mask, mask[::-1], mask[:, ::-1], np.rot90(mask))}
    assert widths == {round(np.sqrt(13), 9)}
    assert feret_length_width(mask)[0] == pytest.approx(np.sqrt(13))

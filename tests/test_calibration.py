import numpy as np
import pytest
from conftest import make_photo

from ulcerseg.annotations import mask_area_mm2
from ulcerseg.calibration.marker import calibrate
from ulcerseg.calibration.rectify import rectify, search_grid
from ulcerseg.errors import CalibrationError
from ulcerseg.geometry import RectifiedGrid, apply_homography

MARKER_MM = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)


@pytest.mark.parametrize(("tilt", "rotation"), [(0, 0), (30, 17), (45, -40)])
def test_corners_scale_and_tilt(tilt: float, rotation: float) -> None:
    photo = make_photo(tilt_deg=tilt, rotation_deg=rotation, px_per_mm=20, size=(1280, 960))
    cal = calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)
    true = apply_homography(photo.h_mm_to_px, MARKER_MM)
    assert np.abs(np.asarray(cal.corners_px) - true).max() < 0.3  # px
    assert cal.tilt_deg == pytest.approx(tilt, abs=1.5)
    assert cal.residual_px < 0.5
    assert cal.n_markers_found == 1


@pytest.mark.parametrize("tilt", [0, 45])
def test_area_of_a_photo_mask_in_the_marker_plane(tilt: float) -> None:
    photo = make_photo(tilt_deg=tilt, px_per_mm=20, size=(1280, 960))
    cal = calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)
    rgb = photo.rgb.astype(int)
    red_mask = (rgb[..., 0] - rgb[..., 1]) > 70
    area = mask_area_mm2(red_mask, np.asarray(cal.homography).reshape(3, 3))
    assert area == pytest.approx(photo.true_area_mm2, rel=0.02)


def test_no_marker_raises() -> None:
    photo = make_photo(with_marker=False)
    with pytest.raises(CalibrationError, match="no marker"):
        calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)


def test_marker_with_other_id_is_not_accepted() -> None:
    photo = make_photo(marker_id=7)
    with pytest.raises(CalibrationError):
        calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)
    assert calibrate(photo.rgb, "DICT_4X4_50", (7,), 10.0).marker_id == 7


def test_rectify_maps_the_ulcer_to_its_marker_plane_position() -> None:
    photo = make_photo(tilt_deg=35, px_per_mm=15, size=(960, 720), ulcer_offset_mm=(18, 6))
    h = np.linalg.inv(photo.h_mm_to_px)
    grid = RectifiedGrid((-5.0, -5.0), 10.0, 350, 250)
    out = rectify(photo.rgb, h, grid)
    red = (out[..., 0].astype(int) - out[..., 1]) > 70
    ys, xs = np.nonzero(red)
    cx, cy = grid.origin_mm[0] + xs.mean() / 10, grid.origin_mm[1] + ys.mean() / 10
    assert (cx, cy) == pytest.approx((18.0, 6.0), abs=0.15)
    assert red.sum() / 100 == pytest.approx(photo.true_area_mm2, rel=0.05)


def test_search_grid_is_clipped_to_the_photo() -> None:
    photo = make_photo(px_per_mm=12, size=(640, 480))
    h = np.linalg.inv(photo.h_mm_to_px)
    grid = search_grid(h, (640, 480), (5, 5), radius_mm=500, px_per_mm=5)
    # the photo spans 640/12 x 480/12 mm
    assert grid.width / 5 == pytest.approx(640 / 12, abs=1)
    assert grid.height / 5 == pytest.approx(480 / 12, abs=1)

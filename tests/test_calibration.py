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
    with pytest.raises(CalibrationError, match=r"no marker of DICT_4X4_50 with ID in \[0\] found$"):
        calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)


def test_marker_with_other_id_is_not_accepted() -> None:
    photo = make_photo(marker_id=7)
    # the reason names what it saw, so a site can tell a wrong sheet or config from no marker
    with pytest.raises(CalibrationError, match=r"found \(seen: ID 7, which marker.ids does not accept\)"):
        calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)
    assert calibrate(photo.rgb, "DICT_4X4_50", (7,), 10.0).marker_id == 7


def test_a_mirrored_marker_is_named_in_the_reason() -> None:
    # a front camera's mirror image: ID 0 does not read as itself mirrored (IDs 8, 9, 17, 47 do)
    mirrored = np.ascontiguousarray(make_photo(marker_id=0).rgb[:, ::-1])
    with pytest.raises(CalibrationError, match="seen mirrored"):
        calibrate(mirrored, "DICT_4X4_50", (0,), 10.0)


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


def test_search_region_of_a_photo_that_shows_the_planes_horizon() -> None:
    # at 70° the far side of the photo looks above the marker plane's horizon: those px see no
    # plane point in front of the camera (the homography maps them to mirrored points), which
    # once shrank the search grid to a sliver 48 mm from the marker (a 14 mm² ulcer measured 0)
    from conftest import camera_homography

    from ulcerseg.calibration.rectify import valid_region

    h_mm_to_px = camera_homography(70, 20, (1280, 960))
    h = np.linalg.inv(h_mm_to_px)
    grid = search_grid(h, (1280, 960), (5, 5), radius_mm=45, px_per_mm=5)
    assert grid.origin_mm[0] == pytest.approx(-40) and grid.width >= 440  # to x = 48.6 mm, the photo's edge
    assert (grid.origin_mm[1], grid.height) == (-40, 450)
    # valid: grid px whose plane point is in front of the camera, between the photo's px centres
    ys, xs = np.mgrid[: grid.height, : grid.width]
    mm = np.c_[grid.origin_mm[0] + xs.ravel() / 5, grid.origin_mm[1] + ys.ravel() / 5, np.ones(xs.size)]
    hom = mm @ h_mm_to_px.T
    px = hom[:, :2] / hom[:, 2:]
    seen = (hom[:, 2] > 0) & (px >= 0).all(axis=1) & (px[:, 0] <= 1279) & (px[:, 1] <= 959)
    valid = valid_region(h, (1280, 960), grid)
    assert np.count_nonzero(valid.ravel() != seen) <= 2  # grid px exactly on the footprint's edge
    assert valid.mean() > 0.5


@pytest.mark.parametrize("grid_px_per_mm", [30.0, 10.0, 5.0])
def test_rectify_keeps_positions_when_it_shrinks_the_photo_first(grid_px_per_mm: float) -> None:
    # a photo at 40 px/mm is shrunk before the warp when the grid is coarser than 20 px/mm; the
    # shrunk px were mapped as i / s instead of (i + 0.5) / s - 0.5 (OpenCV's centre alignment),
    # which moved the rectified image by 0.5 photo px at 10 px/mm and 1.5 at 5 px/mm
    yy, xx = np.mgrid[:800, :800]
    blob = 255 * np.exp(-((xx - 400.0) ** 2 + (yy - 300.0) ** 2) / (2 * 40.0**2))
    h = np.diag([1 / 40, 1 / 40, 1.0])  # photo px -> mm
    grid = RectifiedGrid((0.0, 0.0), grid_px_per_mm, int(20 * grid_px_per_mm), int(20 * grid_px_per_mm))
    out = rectify(blob.astype(np.float32), h, grid).astype(np.float64)
    ys, xs = np.mgrid[: grid.height, : grid.width]
    centre_mm = ((out * xs).sum() / out.sum(), (out * ys).sum() / out.sum())
    assert np.array(centre_mm) / grid_px_per_mm == pytest.approx((10.0, 7.5), abs=0.002)  # 0.08 photo px


def test_marker_corners_found_on_a_preview_are_in_photo_px() -> None:
    # a preview's px centres are aligned with the photo's: preview px c is photo px
    # (c + 0.5) / s - 0.5; c / s put every corner (1 / s - 1) / 2 = 1 photo px up and left at s = 1/3
    from ulcerseg.calibration.marker import detect_markers
    from ulcerseg.imageio import make_preview

    bias = []
    for rotation in (10, 40, 70):
        photo = make_photo(px_per_mm=30, size=(2400, 1800), rotation_deg=rotation, view_centre_mm=(6, 5))
        preview = make_preview(photo.rgb, 800)
        assert preview.scale == pytest.approx(1 / 3)
        found = detect_markers(photo.rgb, "DICT_4X4_50", (0,), preview=preview)
        bias.append((found.corners_px[0] - apply_homography(photo.h_mm_to_px, MARKER_MM)).mean(axis=0))
    assert np.abs(np.mean(bias, axis=0)).max() < 0.2  # photo px


def test_local_scale_is_the_geometric_mean_of_both_axes_and_tilt_their_ratio() -> None:
    from ulcerseg.calibration.marker import local_scale_and_tilt

    # an affine view: 20 px per mm along x, 10 along y (a plane tilted by arccos(1/2) = 60°)
    px_per_mm, tilt = local_scale_and_tilt(np.diag([20.0, 10.0, 1.0]), np.array([5.0, 5.0]))
    assert px_per_mm == pytest.approx(np.sqrt(20.0 * 10.0))
    assert tilt == pytest.approx(60.0)


def test_the_marker_homography_maps_its_corners_tl_tr_br_bl_to_the_square() -> None:
    from ulcerseg.calibration.marker import marker_homography

    corners = np.array([[100.0, 50.0], [300.0, 80.0], [280.0, 260.0], [90.0, 240.0]])  # TL, TR, BR, BL
    h = marker_homography(corners, 12.0)
    expected = [[0, 0], [12, 0], [12, 12], [0, 12]]  # x along the top edge, y down the left one
    np.testing.assert_allclose(apply_homography(h, corners), expected, atol=1e-4)


def test_a_calibration_of_a_reduced_copy_in_photo_px_scales_corners_scale_and_residual() -> None:
    from ulcerseg.calibration.marker import in_photo_frame
    from ulcerseg.geometry import reduced_to_photo
    from ulcerseg.records import Calibration

    corners = ((10.0, 10.0), (110.0, 10.0), (110.0, 110.0), (10.0, 110.0))  # 100 px for 10 mm
    cal = Calibration(
        marker_id=0, corners_px=corners, homography=tuple(np.eye(3).ravel()), mm_per_px=0.1,
        tilt_deg=0.0, residual_px=0.4, side_mm=10.0, n_markers_found=1,
    )  # fmt: skip
    out = in_photo_frame(cal, reduced_to_photo(2.0))  # copy px c is photo px 2c + 0.5
    np.testing.assert_allclose(out.corners_px, [[20.5, 20.5], [220.5, 20.5], [220.5, 220.5], [20.5, 220.5]])
    assert out.mm_per_px == pytest.approx(10.0 / 200.0)
    assert out.residual_px == pytest.approx(0.8)  # 0.4 copy px are 0.8 photo px
    assert (out.tilt_deg, out.marker_id) == (0.0, 0)


def test_the_largest_of_several_accepted_markers_comes_first() -> None:
    import cv2

    from ulcerseg.calibration.aruco import aruco_dictionary
    from ulcerseg.calibration.marker import detect_markers

    canvas = np.full((500, 700), 255, np.uint8)
    d = aruco_dictionary("DICT_4X4_50")
    canvas[50:170, 50:170] = cv2.aruco.generateImageMarker(d, 3, 120)  # small, top left
    canvas[200:440, 350:590] = cv2.aruco.generateImageMarker(d, 5, 240)  # large
    found = detect_markers(np.dstack([canvas] * 3), "DICT_4X4_50", (3, 5))
    assert found.ids == (5, 3)
    assert np.linalg.norm(found.corners_px[0][1] - found.corners_px[0][0]) == pytest.approx(240, abs=2)
    both = calibrate(np.dstack([canvas] * 3), "DICT_4X4_50", (3, 5), 10.0)
    assert (both.marker_id, both.n_markers_found) == (5, 2)  # two in view: ambiguous_marker
    assert calibrate(np.dstack([canvas] * 3), "DICT_4X4_50", (3,), 10.0).n_markers_found == 1


@pytest.mark.parametrize("name", ["CORNER_REFINE_SUBPIX", "DICT_9X9_1", "dict_4x4_50"])
def test_only_an_opencv_dict_name_is_a_marker_dictionary(name: str) -> None:
    """``CORNER_REFINE_SUBPIX`` is an int constant of cv2.aruco too (1): taken as a dictionary
    code it silently meant DICT_4X4_100. Only a DICT_* name of OpenCV is a dictionary."""
    from ulcerseg.calibration.aruco import aruco_dictionary
    from ulcerseg.errors import ConfigError

    with pytest.raises(ConfigError, match="is not an OpenCV ArUco dictionary"):
        aruco_dictionary(name, "cfg.yaml")


def _sticker_on_a_finger(radius_mm: float | None, px_per_mm: float = 12.0, marker_id: int = 0) -> np.ndarray:
    """A 10 mm marker (3 mm white border) on skin, photographed head on (orthographic), wrapped
    around a finger of ``radius_mm`` whose axis runs along the photo's y axis (None: flat).

    A point at arc length s from the marker's centre line lies R sin(s / R) across the photo:
    the outer edges stay straight lines, the middle cells image wider than the outer ones."""
    import cv2

    from ulcerseg.calibration.aruco import marker_cells

    p = 40.0  # px per mm of the printed sticker
    cells = marker_cells("DICT_4X4_50", marker_id)
    cell_px = int(10 * p) // cells.shape[0]
    sticker = np.full((int(16 * p), int(16 * p)), 255, np.uint8)  # sticker mm -3..13
    marker = np.where(np.kron(cells, np.ones((cell_px, cell_px))) > 0, 20, 255).astype(np.uint8)
    q = int(3 * p)
    sticker[q : q + marker.shape[0], q : q + marker.shape[1]] = marker
    side_mm = marker.shape[0] / p  # 9.9 mm: whole cells of the 40 px/mm raster
    w, h, ss = 300, 240, 4  # photo px; supersampled
    v, u = np.mgrid[0 : h * ss, 0 : w * ss]
    x = ((u + 0.5) / ss - 0.5 - w / 2) / px_per_mm  # mm across the photo from the marker centre
    y = ((v + 0.5) / ss - 0.5 - h / 2) / px_per_mm
    s = x if radius_mm is None else radius_mm * np.arcsin(np.clip(x / radius_mm, -1, 1))
    map_x = ((s + side_mm / 2 + 3) * p - 0.5).astype(np.float32)
    map_y = ((y + side_mm / 2 + 3) * p - 0.5).astype(np.float32)
    img = cv2.remap(sticker, map_x, map_y, cv2.INTER_LINEAR, borderValue=170)
    img = cv2.GaussianBlur(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), (0, 0), 0.7)
    return np.dstack([img] * 3)


def test_a_sticker_bent_over_a_finger_is_marker_distorted() -> None:
    """Bent over a finger of 8 mm radius and photographed head on, the sticker's outer edges
    stay straight (edge residual ~0 px, far under max_marker_residual_px) while its corners lie
    6% closer across the finger: areas came out 7% too large (10% with the perspective of a
    phone at 8 cm) with no flag. Its cells show the bend (the middle ones image wider)."""
    from ulcerseg.config import QualityConfig
    from ulcerseg.quality import calibration_flags
    from ulcerseg.records import Flag

    cfg = QualityConfig()
    bent = calibrate(_sticker_on_a_finger(8.0), "DICT_4X4_50", (0,), 9.9)
    assert bent.residual_px < 0.5 * cfg.max_marker_residual_px  # straight edges: not seen before
    assert (bent.mm_per_px * 12.0) ** -2 < 0.95  # the corners' scale: areas > 5% too large
    assert bent.bend > cfg.max_marker_bend
    assert Flag.MARKER_DISTORTED in calibration_flags(bent, cfg)
    flat = calibrate(_sticker_on_a_finger(None), "DICT_4X4_50", (0,), 9.9)
    assert flat.mm_per_px * 12.0 == pytest.approx(1.0, abs=0.005)
    assert flat.bend < 0.3 * cfg.max_marker_bend
    assert calibration_flags(flat, cfg) == []
    # a finger of 30 mm radius (a palm, a thumb's side): areas ~0.5% off, not flagged
    mild = calibrate(_sticker_on_a_finger(30.0), "DICT_4X4_50", (0,), 9.9)
    assert calibration_flags(mild, cfg) == []


def test_the_bend_of_every_marker_of_the_default_dictionary_is_measured_when_flat() -> None:
    """A flat marker never reads as bent, whatever its cells; the edges of DICT_4X4_50 ID 17 (one
    white square) cannot tell a bend across its columns from blur, so only its rows count."""
    import cv2

    from ulcerseg.calibration.aruco import marker_cells
    from ulcerseg.calibration.marker import cell_bend

    corners = np.array([[39.5, 39.5], [159.5, 39.5], [159.5, 159.5], [39.5, 159.5]])
    for marker_id in range(50):
        cells = marker_cells("DICT_4X4_50", marker_id)
        img = np.full((200, 200), 230, np.uint8)
        img[40:160, 40:160] = np.where(np.kron(cells, np.ones((20, 20))) > 0, 20, 230)
        bend = cell_bend(cv2.GaussianBlur(img, (0, 0), 1.0), corners, cells)
        assert 0 <= bend < 0.005, marker_id


def test_the_bend_reads_about_the_area_error_of_the_corners_scale() -> None:
    """cell_bend is about the relative area error of the corners' scale (mutation round 7, K10:
    the edge shifts taken as half of what they are read 0.37-0.54 of it). Orthographic, a
    sticker of side 9.9 mm on a finger of radius R images 2 R sin(4.95 / R) wide: its corners
    give areas at its centre (1:1) 4.95 / (R sin(4.95 / R)) - 1 too large."""
    for radius in (8.0, 10.0, 12.0):
        area_error = 4.95 / (radius * np.sin(4.95 / radius)) - 1
        bend = calibrate(_sticker_on_a_finger(radius), "DICT_4X4_50", (0,), 9.9).bend
        assert 0.6 * area_error < bend < 1.5 * area_error, radius


def test_a_hair_or_a_glint_on_a_flat_marker_does_not_read_as_a_bend() -> None:
    """Edges a hair crosses or a glint covers are left out of the bend's fit (mutation round 7,
    K7: one fit with them read 0.013-0.024 on flat marker 0); cells under BEND_MIN_CELL_PX px
    are not measured (K1)."""
    import cv2

    from ulcerseg.calibration.aruco import marker_cells
    from ulcerseg.calibration.marker import cell_bend
    from ulcerseg.config import QualityConfig

    cells = marker_cells("DICT_4X4_50", 0)
    corners = np.array([[39.5, 39.5], [159.5, 39.5], [159.5, 159.5], [39.5, 159.5]])
    img = np.full((200, 200), 230, np.uint8)
    img[40:160, 40:160] = np.where(np.kron(cells, np.ones((20, 20))) > 0, 20, 230)
    hair, glint = img.copy(), img.copy()
    cv2.line(hair, (40, 70), (160, 125), 20, 2)
    cv2.circle(glint, (100, 100), 6, 255, -1)
    for spoiled in (hair, glint):
        bend = cell_bend(cv2.GaussianBlur(spoiled, (0, 0), 1.0), corners, cells)
        assert 0 <= bend < 0.3 * QualityConfig().max_marker_bend
    n = cells.shape[0]
    for cell_px, measured in ((3, False), (4, True)):
        side = cell_px * n
        small = np.full((side + 20, side + 20), 230, np.uint8)
        small[10 : 10 + side, 10 : 10 + side] = np.where(
            np.kron(cells, np.ones((cell_px, cell_px))) > 0, 20, 230
        )
        at = np.array([[9.5, 9.5], [9.5 + side, 9.5], [9.5 + side, 9.5 + side], [9.5, 9.5 + side]])
        assert np.isfinite(cell_bend(small, at, cells)) == measured, cell_px

"""Manual annotation formats: round trips, pixel conventions, areas and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import roifile
from PIL import Image

from ulcerseg.annotations import (
    AnnotationError,
    load_annotation,
    mask_area_mm2,
    mask_to_polygons,
    polygon_area_mm2,
    rasterize_polygons,
    read_annotation,
    warp_mask_to_rectified,
    write_annotation,
    write_imagej_roi,
    write_labelme,
)
from ulcerseg.errors import UlcersegError
from ulcerseg.geometry import RectifiedGrid, apply_homography

SHAPE = (240, 320)  # photo (h, w) px
# Photo px -> marker-plane mm with perspective (about 0.05 mm/px, i.e. 20 px/mm).
H_PERSPECTIVE = np.array([[0.05, 0.008, -4.0], [-0.004, 0.055, -3.0], [2e-4, 3e-4, 1.0]])
A_MM, B_MM = 3.0, 2.0  # semi-axes of the drawn ellipse on the marker plane
TRUE_AREA_MM2 = np.pi * A_MM * B_MM  # 18.85 mm²


def ellipse_photo_polygon(h: np.ndarray = H_PERSPECTIVE, n: int = 2000) -> np.ndarray:
    """An ellipse of known area drawn on the marker plane, seen in the photo (px)."""
    centre = apply_homography(h, np.array([[160.0, 120.0]]))[0]
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    mm = np.c_[centre[0] + A_MM * np.cos(t), centre[1] + B_MM * np.sin(t)]
    return apply_homography(np.linalg.inv(h), mm)


def test_polygon_area_is_exact_under_perspective() -> None:
    poly = ellipse_photo_polygon()
    assert polygon_area_mm2(poly, H_PERSPECTIVE) == pytest.approx(TRUE_AREA_MM2, rel=1e-4)
    # The same photo polygon read with a pure scale of 0.1 mm/px: px² area / 100.
    xs, ys = poly[:, 0], poly[:, 1]
    shoelace_px = 0.5 * abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))
    scale = np.diag([0.1, 0.1, 1.0])
    assert polygon_area_mm2(poly, scale.ravel().tolist()) == pytest.approx(shoelace_px / 100)


def test_mask_area_matches_pixel_count_for_pure_scale() -> None:
    mask = np.zeros(SHAPE, np.uint8)
    mask[50:90, 100:160] = 255  # 40 x 60 px = 2400 px
    area = mask_area_mm2(mask, np.diag([0.1, 0.1, 1.0]), px_per_mm=20)
    assert area == pytest.approx(2400 * 0.01, rel=0.01)


@pytest.mark.parametrize("suffix", [".png", ".roi", ".zip", ".json"])
def test_drawn_ellipse_round_trips_each_format_within_1_percent(tmp_path: Path, suffix: str) -> None:
    mask = rasterize_polygons([ellipse_photo_polygon()], SHAPE)
    path = write_annotation(tmp_path / f"photo{suffix}", mask)
    ann = read_annotation(path, SHAPE)
    assert ann.kind == {".png": "mask", ".json": "labelme"}.get(suffix, "roi")
    assert ann.area_mm2(H_PERSPECTIVE) == pytest.approx(TRUE_AREA_MM2, rel=0.01)
    # The mask read back is (almost) the mask written: outlines run half-way between pixels.
    differing = np.count_nonzero(ann.mask != mask)
    assert differing <= 0.005 * np.count_nonzero(mask)
    loaded = load_annotation(path, SHAPE)
    assert loaded.dtype == np.uint8 and loaded.shape == SHAPE
    assert set(np.unique(loaded).tolist()) == {0, 255}


@pytest.mark.parametrize("suffix", [".roi", ".zip", ".json"])
def test_vector_polygon_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    poly = ellipse_photo_polygon()
    if suffix == ".json":
        path = write_labelme(tmp_path / "p.json", [poly], SHAPE)
    else:
        path = write_imagej_roi(tmp_path / f"p{suffix}", [poly])
    ann = read_annotation(path, SHAPE)
    assert ann.polygons is not None and len(ann.polygons) == 1
    np.testing.assert_allclose(ann.polygons[0], poly, atol=2e-3)
    assert ann.area_mm2(H_PERSPECTIVE) == pytest.approx(TRUE_AREA_MM2, rel=1e-3)


def test_mask_with_hole_round_trips_through_roi_and_roiset(tmp_path: Path) -> None:
    mask = rasterize_polygons([ellipse_photo_polygon()], SHAPE)
    mask[110:125, 150:170] = 0  # a hole inside the ellipse
    assert len(mask_to_polygons(mask)) == 2
    for suffix in (".roi", ".zip"):
        ann = read_annotation(write_annotation(tmp_path / f"hole{suffix}", mask), SHAPE)
        assert np.count_nonzero(ann.mask != mask) <= 0.005 * np.count_nonzero(mask), suffix
        scale = np.diag([0.1, 0.1, 1.0])
        assert ann.area_mm2(scale) == pytest.approx(np.count_nonzero(mask) / 100, rel=0.01)


def test_imagej_shapes_follow_pixel_corner_convention(tmp_path: Path) -> None:
    # Rectangle bounds are pixel edges: left=10..right=50 covers pixels 10..49.
    rect = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=10, top=20, right=50, bottom=40)
    rect.tofile(tmp_path / "rect.roi")
    ann = read_annotation(tmp_path / "rect.roi", SHAPE)
    expected = np.zeros(SHAPE, np.uint8)
    expected[20:40, 10:50] = 255
    assert np.array_equal(ann.mask, expected)
    assert ann.area_mm2(np.diag([0.1, 0.1, 1.0])) == pytest.approx(40 * 20 / 100)

    # Integer traced (wand) and polygon outlines run along pixel edges: pixels 10..14 x 20..24.
    expected = np.zeros(SHAPE, np.uint8)
    expected[20:25, 10:15] = 255
    for roitype in (roifile.ROI_TYPE.TRACED, roifile.ROI_TYPE.POLYGON):
        roi = roifile.ImagejRoi.frompoints(np.array([[10, 20], [15, 20], [15, 25], [10, 25]]))
        roi.roitype = roitype
        roi.tofile(tmp_path / f"{roitype.name}.roi")
        ann = read_annotation(tmp_path / f"{roitype.name}.roi", SHAPE)
        assert np.array_equal(ann.mask, expected), roitype
        assert ann.area_mm2(np.eye(3)) == pytest.approx(25.0)

    # Oval inscribed in the 40 x 20 px box: area pi * 20 * 10 px².
    oval = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.OVAL, left=100, top=50, right=140, bottom=70)
    oval.tofile(tmp_path / "oval.roi")
    area = read_annotation(tmp_path / "oval.roi", SHAPE).area_mm2(np.diag([0.1, 0.1, 1.0]))
    assert area == pytest.approx(np.pi * 20 * 10 / 100, rel=1e-3)


def test_roiset_of_two_ulcer_parts_is_their_union(tmp_path: Path) -> None:
    a = np.array([[10.0, 10.0], [30.0, 10.0], [30.0, 30.0], [10.0, 30.0]])
    b = a + 100.0
    path = write_imagej_roi(tmp_path / "set.zip", [a, b])
    ann = read_annotation(path, SHAPE)
    assert len(ann.groups) == 2
    assert ann.area_mm2(np.eye(3)) == pytest.approx(2 * 400.0)


def test_png_mask_variants_are_accepted(tmp_path: Path) -> None:
    m01 = np.zeros(SHAPE, np.uint8)
    m01[5:10, 5:10] = 1
    Image.fromarray(m01).save(tmp_path / "m01.png")
    rgb = np.repeat((m01 * 255)[..., None], 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    for name in ("m01.png", "rgb.png"):
        mask = load_annotation(tmp_path / name, SHAPE)
        assert np.count_nonzero(mask) == 25 and mask.max() == 255


def test_warp_mask_to_rectified_frame(tmp_path: Path) -> None:
    # 0.1 mm/px photo; rectified frame at 20 px/mm starting at (2 mm, 3 mm).
    h = np.diag([0.1, 0.1, 1.0])
    mask = np.zeros(SHAPE, np.uint8)
    mask[40:60, 30:50] = 255  # photo x 30..49 -> 3.0..4.9 mm; y 40..59 -> 4.0..5.9 mm
    rect = warp_mask_to_rectified(mask, h, RectifiedGrid((2.0, 3.0), 20.0, 100, 100))
    ys, xs = np.nonzero(rect)
    assert np.count_nonzero(rect) / 20.0**2 == pytest.approx(4.0, rel=0.05)
    assert xs.min() == pytest.approx((3.0 - 0.05 - 2.0) * 20, abs=1.5)
    assert ys.min() == pytest.approx((4.0 - 0.05 - 3.0) * 20, abs=1.5)


# --------------------------------------------------------------------------- bad inputs


def test_non_binary_mask_is_rejected_naming_the_file(tmp_path: Path) -> None:
    arr = np.zeros(SHAPE, np.uint8)
    arr[0, 0], arr[1, 1] = 128, 255
    Image.fromarray(arr).save(tmp_path / "grey.png")
    with pytest.raises(AnnotationError, match=r"grey\.png.*not binary"):
        load_annotation(tmp_path / "grey.png", SHAPE)


def test_mask_of_another_size_is_rejected(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(AnnotationError, match=r"small\.png.*20x10"):
        load_annotation(tmp_path / "small.png", SHAPE)


def test_roi_outside_the_image_is_rejected(tmp_path: Path) -> None:
    poly = np.array([[10.0, 10.0], [400.0, 10.0], [400.0, 30.0]])  # x beyond width 320
    write_imagej_roi(tmp_path / "big.roi", [poly])
    with pytest.raises(AnnotationError, match=r"big\.roi.*outside the 320x240"):
        load_annotation(tmp_path / "big.roi", SHAPE)


def test_labelme_for_another_image_size_is_rejected(tmp_path: Path) -> None:
    poly = np.array([[10.0, 10.0], [40.0, 10.0], [40.0, 30.0]])
    write_labelme(tmp_path / "other.json", [poly], (480, 640))
    with pytest.raises(AnnotationError, match=r"other\.json.*640x480.*320x240"):
        load_annotation(tmp_path / "other.json", SHAPE)


@pytest.mark.parametrize("name", ["bad.png", "bad.roi", "bad.zip", "bad.json", "bad.txt"])
def test_unreadable_files_give_one_line_errors(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"\x00garbage" * 3)
    with pytest.raises(UlcersegError) as info:
        load_annotation(tmp_path / name, SHAPE)
    message = str(info.value)
    assert name in message and "\n" not in message


def test_labelme_rectangle_and_circle_shapes(tmp_path: Path) -> None:
    doc = {
        "shapes": [
            {"shape_type": "rectangle", "points": [[10, 10], [30, 20]], "label": "u"},
            {"shape_type": "circle", "points": [[200, 100], [210, 100]], "label": "u"},
        ],
        "imageHeight": SHAPE[0],
        "imageWidth": SHAPE[1],
    }
    (tmp_path / "shapes.json").write_text(json.dumps(doc))
    ann = read_annotation(tmp_path / "shapes.json", SHAPE)
    assert ann.area_mm2(np.eye(3)) == pytest.approx(20 * 10 + np.pi * 100, rel=1e-3)


def test_rounded_rectangle_is_measured_with_its_rounded_corners(tmp_path: Path) -> None:
    """ImageJ's rounded rectangle (corner diameter ``rounded_rect_arc_size``): 40 x 30 px with
    20 px corners is 1200 - (4 - pi) x 10² px², not the sharp rectangle's 1200 (+7.7%)."""
    roi = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=10, top=20, right=50, bottom=50)
    roi.rounded_rect_arc_size = 20
    roi.tofile(tmp_path / "round.roi")
    area = read_annotation(tmp_path / "round.roi", SHAPE).area_mm2(np.eye(3))
    assert area == pytest.approx(1200 - (4 - np.pi) * 100, rel=1e-4)


def test_a_composite_roi_with_curves_is_an_annotation_error_not_a_crash(tmp_path: Path) -> None:
    """roifile cannot flatten a composite ROI's Bezier segments (NotImplementedError): the file
    gets a one-line reason (a row of issues.csv), and the QA run goes on."""
    path = np.array([0, 30, 20, 1, 70, 20, 3, 75, 30, 75, 40, 70, 50, 1, 30, 50, 4], np.float32)
    roi = roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.RECT, left=30, top=20, right=76, bottom=51,
        multi_coordinates=path, shape_roi_size=len(path),
    )  # fmt: skip
    roi.tofile(tmp_path / "curved.roi")
    with pytest.raises(AnnotationError, match=r"curved\.roi: cannot read an ImageJ ROI's outline"):
        read_annotation(tmp_path / "curved.roi", SHAPE)


@pytest.mark.parametrize(
    "doc",
    [
        {"shapes": 5},
        {"shapes": [5]},
        {"shapes": [{"points": 5}]},
        {"shapes": [{"points": [["x", 1], [2, 2], [3, 3]]}]},
        {"shapes": [{"points": [[float("nan"), 1], [2, 2], [3, 3]]}]},
    ],
)
def test_malformed_labelme_is_an_annotation_error(tmp_path: Path, doc: dict) -> None:
    """A LabelMe file with the wrong structure stopped `qa` and `dataset import` with a
    traceback; it is a one-line reason naming the file."""
    import json

    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"bad\.json: "):
        read_annotation(path, SHAPE)


@pytest.mark.parametrize("subtype", [roifile.ROI_SUBTYPE.TEXT, roifile.ROI_SUBTYPE.IMAGE])
def test_a_text_or_image_roi_in_a_roiset_refuses_the_file(tmp_path: Path, subtype: int) -> None:
    """ImageJ stores a text label (and an image overlay) as a RECT ROI: its box was summed
    into the ulcer area with no issue row. The RoiSet is refused, naming the ROI."""
    path = tmp_path / "set.zip"
    write_imagej_roi(path, [np.array([[60.0, 60.0], [90.0, 60.0], [90.0, 90.0], [60.0, 90.0]])])
    label = roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.RECT, subtype=subtype, left=10, top=10, right=50, bottom=30, name="U1"
    )
    label.text = "U1"
    label.tofile(path)
    with pytest.raises(AnnotationError, match=r"set\.zip: ImageJ ROI #2 'U1' is an? (text|image)"):
        read_annotation(path, SHAPE)


def test_an_annotation_without_an_area_shape_is_an_error_not_0_mm2(tmp_path: Path) -> None:
    """A LabelMe file of only lines/points, or a 2-point polygon ROI, was measured as 0 mm²
    (a healed ulcer) with only a warning on stderr. No shapes at all stays an empty (healed)
    annotation, as write_labelme writes an empty mask."""
    lines = {"shapes": [
        {"shape_type": "line", "points": [[10, 10], [50, 40]]},
        {"shape_type": "point", "points": [[30, 30]]},
        {"shape_type": "polygon", "points": [[60, 60], [90, 60]]},
    ]}  # fmt: skip
    (tmp_path / "lines.json").write_text(json.dumps(lines))
    with pytest.raises(AnnotationError, match=r"lines\.json: no LabelMe shape is an area \(line of 2 point"):
        read_annotation(tmp_path / "lines.json", SHAPE)
    roifile.ImagejRoi.frompoints(np.array([[10.0, 10.0], [40.0, 30.0]])).tofile(tmp_path / "two.roi")
    with pytest.raises(AnnotationError, match=r"two\.roi: ImageJ ROI #1 '[^']+' has 2 point\(s\), no area"):
        read_annotation(tmp_path / "two.roi", SHAPE)
    write_labelme(tmp_path / "healed.json", [], SHAPE)
    assert read_annotation(tmp_path / "healed.json", SHAPE).area_mm2(np.eye(3)) == 0.0


def test_a_self_intersecting_outline_is_an_error(tmp_path: Path) -> None:
    """A bowtie outline was measured by the shoelace formula as ~0 mm² (its two loops wind
    opposite ways); which loop is the ulcer is a guess, so the file is refused."""
    bowtie = np.array([[10.0, 10.0], [50.0, 50.0], [50.0, 10.0], [10.0, 50.0]])
    roifile.ImagejRoi.frompoints(bowtie).tofile(tmp_path / "bow.roi")
    expected = (
        r"bow\.roi: ImageJ ROI #1 .* crosses itself at \(29\.5, 29\.5\) px \(self_intersecting_outline\)"
    )
    with pytest.raises(AnnotationError, match=expected):
        read_annotation(tmp_path / "bow.roi", SHAPE)
    # a figure 8 through one of its own vertices (integer clicks)
    eight = np.array([[10, 10], [30, 30], [50, 50], [50, 10], [30, 30], [10, 50]], float)
    write_labelme(tmp_path / "eight.json", [eight], SHAPE)
    with pytest.raises(AnnotationError, match=r"shape #1 \(polygon\) crosses itself at \(30\.0, 30\.0\)"):
        read_annotation(tmp_path / "eight.json", SHAPE)
    # two loops touching at a vertex, both winding the same way (a wand trace of pixels that
    # meet diagonally) are no crossing: both areas count
    touching = np.array([[10, 10], [30, 30], [50, 10], [50, 50], [30, 30], [10, 50]], float)
    write_labelme(tmp_path / "touch.json", [touching], SHAPE)
    assert read_annotation(tmp_path / "touch.json", SHAPE).area_mm2(np.eye(3)) == pytest.approx(800.0)


def _mapped_shoelace_mm2(corners_px: np.ndarray, h: np.ndarray) -> float:
    """Area (mm²) of a photo-frame polygon mapped by ``h``, by hand: homogeneous divide, shoelace."""
    hom = np.c_[corners_px, np.ones(len(corners_px))] @ np.asarray(h, np.float64).T
    x, y = hom[:, 0] / hom[:, 2], hom[:, 1] / hom[:, 2]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_rectangle_rois_are_measured_from_their_pixel_edges_under_perspective(tmp_path: Path) -> None:
    """An ImageJ rectangle's bounds are pixel edges: left=10..right=50, top=20..bottom=40 is, in
    the photo frame (centres at integers), the outline x 9.5..49.5, y 19.5..39.5. Under a
    perspective map a half-pixel shift moves the mm² (an affine one would hide it). A sub-pixel
    rectangle (xd, yd, widthd, heightd) spans xd..xd + widthd: 10.25..40.75, 20.5..32.75 in
    ImageJ coordinates, so 9.75..40.25, 20..32.25 px."""
    rect = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=10, top=20, right=50, bottom=40)
    rect.tofile(tmp_path / "rect.roi")
    area = read_annotation(tmp_path / "rect.roi", SHAPE).area_mm2(H_PERSPECTIVE)
    corners = np.array([[9.5, 19.5], [49.5, 19.5], [49.5, 39.5], [9.5, 39.5]])
    assert area == pytest.approx(_mapped_shoelace_mm2(corners, H_PERSPECTIVE), rel=1e-9)

    sub = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=10, top=20, right=41, bottom=33)
    sub.options |= roifile.ROI_OPTIONS.SUB_PIXEL_RESOLUTION
    sub.xd, sub.yd, sub.widthd, sub.heightd = 10.25, 20.5, 30.5, 12.25
    sub.tofile(tmp_path / "sub.roi")
    area = read_annotation(tmp_path / "sub.roi", SHAPE).area_mm2(H_PERSPECTIVE)
    corners = np.array([[9.75, 20.0], [40.25, 20.0], [40.25, 32.25], [9.75, 32.25]])
    assert area == pytest.approx(_mapped_shoelace_mm2(corners, H_PERSPECTIVE), rel=1e-9)
    assert read_annotation(tmp_path / "sub.roi", SHAPE).area_mm2(np.eye(3)) == pytest.approx(30.5 * 12.25)


def test_labelme_rectangle_lies_where_drawn_and_a_circle_radius_is_the_distance(tmp_path: Path) -> None:
    """LabelMe points are (x, y) at pixel centres (no shift): the rectangle from (10.5, 20.5) to
    (60.5, 30.5) holds the pixel centres x 11..60, y 21..30. A circle is its centre and a point
    on it: (100, 120) and (103, 124) give radius 5 (a 3-4-5 triangle), area 25 pi px²."""
    rect = {"shape_type": "rectangle", "points": [[10.5, 20.5], [60.5, 30.5]], "label": "u"}
    circle = {"shape_type": "circle", "points": [[100, 120], [103, 124]], "label": "u"}
    for name, shape in (("rect", rect), ("circle", circle)):
        doc = {"shapes": [shape], "imageHeight": SHAPE[0], "imageWidth": SHAPE[1]}
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    expected = np.zeros(SHAPE, np.uint8)
    expected[21:31, 11:61] = 255
    assert np.array_equal(read_annotation(tmp_path / "rect.json", SHAPE).mask, expected)
    ann = read_annotation(tmp_path / "circle.json", SHAPE)
    assert ann.area_mm2(np.eye(3)) == pytest.approx(25 * np.pi, rel=1e-4)
    assert ann.mask[120, 104] and ann.mask[124, 100] and not ann.mask[120, 106] and not ann.mask[126, 100]


def test_overlapping_labelme_shapes_are_measured_as_their_union(tmp_path: Path) -> None:
    """Two 20 x 20 px squares sharing a 10 x 20 px strip: the ulcer is their union, 30 x 20 =
    600 px² (6 mm² at 0.1 mm/px), not the 800 px² of the two areas added."""
    a = [[9.5, 9.5], [29.5, 9.5], [29.5, 29.5], [9.5, 29.5]]
    b = [[19.5, 9.5], [39.5, 9.5], [39.5, 29.5], [19.5, 29.5]]
    write_labelme(tmp_path / "two.json", [np.array(a), np.array(b)], SHAPE)
    ann = read_annotation(tmp_path / "two.json", SHAPE)
    assert np.count_nonzero(ann.mask) == 600
    assert ann.area_mm2(np.diag([0.1, 0.1, 1.0])) == pytest.approx(6.0, rel=0.01)


def test_outlines_are_checked_against_width_for_x_and_height_for_y(tmp_path: Path) -> None:
    """x runs to width - 1 and y to height - 1: on the 320 x 240 px photo an outline reaching
    x = 300 fits (wider than the height), and on a 240 x 320 px (portrait) one it does not."""
    poly = np.array([[250.0, 10.0], [300.0, 10.0], [300.0, 40.0], [250.0, 40.0]])
    write_labelme(tmp_path / "wide.json", [poly], SHAPE)
    assert np.count_nonzero(read_annotation(tmp_path / "wide.json", SHAPE).mask) == 50 * 30
    portrait = (SHAPE[1], SHAPE[0])
    write_labelme(tmp_path / "tall.json", [poly], portrait)
    with pytest.raises(AnnotationError, match="outside the 240x320"):
        read_annotation(tmp_path / "tall.json", portrait)

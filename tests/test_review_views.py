"""Review view: the reviewed region re-rectified from the original photo at its native
resolution, outlines mapped by a scale factor only, the whole photo for context, no metadata."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import png_metadata_chunks
from PIL import Image
from review_photo_study import (
    H_PX_TO_MM,
    MODEL_GRID,
    MODEL_PPM,
    ULCER_AREA_MM2,
    ULCER_CENTRE_MM,
    in_ulcer,
    make_photo_study,
    model_mask,
)
from test_review import Client, cfg, make_study, serving

from ulcerseg.calibration.marker import local_scale_and_tilt
from ulcerseg.geometry import RectifiedGrid
from ulcerseg.geometry import signed_polygon_area as shoelace_area
from ulcerseg.review.decisions import list_decisions
from ulcerseg.review.masks import mask_from_review_polygons
from ulcerseg.review.server import ReviewApp
from ulcerseg.review.views import MAX_REVIEW_PX_PER_MM, review_grid
from ulcerseg.store import connect


def _serve(out: Path) -> Iterator[tuple[Client, ReviewApp]]:
    app = ReviewApp.load(out, cfg())
    with serving(app) as base:
        # a personal token per server: reader names are unique in a study
        yield (
            Client(
                base,
                app.add_reader(f"Dr P {uuid.uuid4().hex[:6]}"),
                app,
            ),
            app,
        )


@pytest.fixture(scope="module")
def photo_study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_photo_study(tmp_path_factory.mktemp("views"), n=2)


@pytest.fixture
def served(photo_study: dict) -> Iterator[tuple[Client, ReviewApp]]:
    yield from _serve(photo_study["out"])


def _png(raw: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def _area(polys: list) -> float:
    return abs(sum(shoelace_area(np.asarray(p)) for p in polys))


def test_review_grid_resolution_is_native_capped_and_never_below_the_model():
    model = RectifiedGrid((1.0, 2.0), 10.0, 200, 150)
    assert review_grid(model, 24.0).px_per_mm == 24.0
    assert (review_grid(model, 24.0).width, review_grid(model, 24.0).height) == (480, 360)
    assert review_grid(model, 65.0).px_per_mm == MAX_REVIEW_PX_PER_MM
    assert review_grid(model, 6.0).px_per_mm == 10.0  # never below the model's
    assert review_grid(model, None) == model
    assert review_grid(model, 24.0).origin_mm == model.origin_mm  # same plane, same origin


def test_view_is_native_resolution_and_outline_maps_by_scale_only(served):
    client, app = served
    item = app.items[0]
    status, view = client.json(f"/view/{item.key}.json")
    assert status == 200
    centre = (
        MODEL_GRID.origin_mm[0] + (MODEL_GRID.width - 1) / 2 / MODEL_PPM,
        MODEL_GRID.origin_mm[1] + (MODEL_GRID.height - 1) / 2 / MODEL_PPM,
    )
    native, _ = local_scale_and_tilt(np.linalg.inv(H_PX_TO_MM), np.asarray(centre))
    assert view["native"] and view["px_per_mm"] == pytest.approx(native)
    assert 20 < view["px_per_mm"] < 30 and view["model_px_per_mm"] == MODEL_PPM
    f = view["factor"]
    assert (view["width"], view["height"]) == (round(240 * f), round(200 * f))
    # the outline is the model mask's 0.5 iso-line, scaled: its area is the pixel count's
    # (less the corners the iso-line cuts), whichever frame it is measured in
    mask = model_mask()
    f_area = _area(view["contours"]) / view["px_per_mm"] ** 2
    assert f_area == pytest.approx(mask.sum() / MODEL_PPM**2, rel=0.01)
    model_contours = np.asarray(view["contours"][0]) / f
    assert _area([model_contours]) / MODEL_PPM**2 == pytest.approx(f_area, rel=1e-9)
    assert _area(view["contours"]) / view["px_per_mm"] ** 2 == pytest.approx(ULCER_AREA_MM2, rel=0.05)

    status, raw, headers = client.request(f"/view/{item.key}/review.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert png_metadata_chunks(raw) == []
    img = _png(raw)
    assert img.shape[:2] == (view["height"], view["width"])
    # the re-rectified image shows the ulcer exactly where the outline says, at review px/mm
    u = np.arange(view["width"])[None, :]
    v = np.arange(view["height"])[:, None]
    o = MODEL_GRID.origin_mm
    truth = in_ulcer(o[0] + u / view["px_per_mm"], o[1] + v / view["px_per_mm"])
    red = (img[..., 0].astype(int) - img[..., 1]) > 70
    assert (red == truth).mean() > 0.998
    assert truth.sum() / view["px_per_mm"] ** 2 == pytest.approx(ULCER_AREA_MM2, rel=0.03)


def test_whole_photo_view_maps_the_review_frame_onto_the_photo(served, photo_study: dict):
    client, app = served
    item = app.items[0]
    _, view = client.json(f"/view/{item.key}.json")
    status, raw, _ = client.request(f"/view/{item.key}/photo.png")
    assert status == 200 and png_metadata_chunks(raw) == []
    shown = _png(raw)
    original = np.asarray(Image.open(photo_study["photos"][item.key]["file"]).convert("RGB"))
    scale = view["photo"]["scale"]
    assert shown.shape[1] == round(original.shape[1] * scale)
    m = np.asarray(view["photo"]["review_to_photo"]).reshape(3, 3)
    # the ulcer centre in review px lands on the ulcer centre in the photo
    p = view["px_per_mm"]
    o = MODEL_GRID.origin_mm
    c_review = np.array([(ULCER_CENTRE_MM[0] - o[0]) * p, (ULCER_CENTRE_MM[1] - o[1]) * p, 1])
    x, y, w = m @ c_review
    h_mm_to_px = np.linalg.inv(H_PX_TO_MM)
    cx, cy, cw = h_mm_to_px @ np.array([*ULCER_CENTRE_MM, 1.0])
    assert (x / w, y / w) == pytest.approx((cx / cw * scale, cy / cw * scale), abs=1e-6)


def test_without_the_original_photo_the_stored_image_is_shown(tmp_path: Path):
    study = make_study(tmp_path)  # its photos do not exist on disk
    for client, app in _serve(study["out"]):
        item = app.items[0]
        status, view = client.json(f"/view/{item.key}.json")
        assert status == 200 and not view["native"] and view["factor"] == 1.0 and view["photo"] is None
        status, raw, _ = client.request(f"/view/{item.key}/review.png")
        assert status == 200 and png_metadata_chunks(raw) == []
        assert np.array_equal(_png(raw), np.asarray(Image.open(item.rectified_path).convert("RGB")))
        assert client.request(f"/view/{item.key}/photo.png")[0] == 404
        assert client.request("/view/0123456789abcdef.json")[0] == 404
        assert client.request("/view/../../etc/passwd")[0] == 404
        assert client.request(f"/view/{item.key}.json", token=False)[0] == 401


def test_a_changed_photo_is_not_used(tmp_path: Path):
    study = make_photo_study(tmp_path, n=1)
    ((key, photo),) = study["photos"].items()
    Image.new("RGB", (900, 760), "white").save(photo["file"])  # replaced after measuring
    for client, _ in _serve(study["out"]):
        _, view = client.json(f"/view/{key}.json")
        assert not view["native"] and view["photo"] is None


def test_review_frame_polygon_becomes_the_model_mask_by_pixel_centres():
    # a 20 x 10 model-px rectangle (edges half-way between pixel centres), drawn at 2.5x
    f = 2.5
    rect = np.array([[4.5, 3.5], [24.5, 3.5], [24.5, 13.5], [4.5, 13.5]]) * f
    mask = mask_from_review_polygons([rect.tolist()], 10.0 * f, 10.0, (40, 40))
    assert mask.sum() == 200  # not 21 x 11
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (5, 24, 4, 13)


@pytest.mark.parametrize(
    "body",
    [
        {"polygons": [[[0, 0], [1, 1]]], "px_per_mm": 25},  # too few vertices
        {"polygons": [[["a", 0], [1, 1], [2, 0]]], "px_per_mm": 25},
        {"polygons": [[[0, 0], [10, 0], [10, 10]]], "px_per_mm": "x"},
        {"polygons": [[[0, 0], [10, 0], [10, 10]]], "px_per_mm": -3},
        {"polygons": [[[0, 0], [1e6, 0], [10, 10]]], "px_per_mm": 25},  # outside the frame
        {"polygons": "nope", "px_per_mm": 25},
    ],
)
def test_bad_review_polygons_are_refused(served, body):
    client, app = served
    session = client.json("/api/session", {"assessor": "Dr P"})[1]["session_id"]
    status, raw, _ = client.request(
        "/api/decision", {"key": app.items[0].key, "action": "correct", "session_id": session, **body}
    )
    assert status == 400 and "error" in json.loads(raw)


def test_correction_in_review_px_is_measured_in_the_model_frame(tmp_path: Path):
    study = make_photo_study(tmp_path, n=1)
    for client, app in _serve(study["out"]):
        item = app.items[0]
        _, view = client.json(f"/view/{item.key}.json")
        p = view["px_per_mm"]
        # a 3 mm x 2 mm rectangle near the ulcer, in review px (edges off the model's pixel centres)
        cx, cy = (ULCER_CENTRE_MM[0] - 5.0 + 0.03) * p, (ULCER_CENTRE_MM[1] - 2.0 + 0.03) * p
        dx, dy = 1.5 * p, p
        poly = [[cx - dx, cy - dy], [cx + dx, cy - dy], [cx + dx, cy + dy], [cx - dx, cy + dy]]
        session = client.json("/api/session", {"assessor": "Dr P"})[1]["session_id"]
        status, res = client.json(
            "/api/decision",
            {"key": item.key, "action": "correct", "session_id": session, "polygons": [poly], "px_per_mm": p},
        )
        assert status == 409 and res["error"] == "needs_confirmation"  # 6 mm² against 1.75 mm²
        status, res = client.json(
            "/api/decision",
            {
                "key": item.key,
                "action": "correct",
                "session_id": session,
                "polygons": [poly],
                "px_per_mm": p,
                "confirm": True,
            },
        )
        assert status == 200
        assert res["area_after_mm2"] == pytest.approx(6.0, rel=1e-9)
    (row,) = list_decisions(connect(study["out"] / "study.sqlite"))
    saved = np.asarray(Image.open(study["out"] / row["corrected_mask_file"])) > 0
    assert saved.shape == (MODEL_GRID.height, MODEL_GRID.width)
    assert saved.sum() == 600  # 30 x 20 model px whose centres lie inside
    ys, xs = np.nonzero(saved)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (86, 115, 91, 110)


def test_the_area_scale_of_a_correction_is_the_servers_not_the_clients(tmp_path: Path):
    """px_per_mm turns review px into mm²: only the review frame's (or the model's) is taken;
    another scale, a denormal one or a 400-digit integer is a 400, never a stored area or a 500."""
    study = make_photo_study(tmp_path, n=1)
    for client, app in _serve(study["out"]):
        item = app.items[0]
        _, view = client.json(f"/view/{item.key}.json")
        p = view["px_per_mm"]
        assert p != 10.0  # the review frame is finer than the model's 10 px/mm here
        square = [[10, 10], [60, 10], [60, 60], [10, 60]]
        session = client.json("/api/session", {"assessor": "Dr P"})[1]["session_id"]
        base = {"key": item.key, "action": "correct", "session_id": session, "confirm": True}
        for scale in (p * 0.5, 5e-324, 10**400, float(p) + 1.0):
            body = {**base, "polygons": [square], "px_per_mm": scale}
            status, raw, _ = client.request("/api/decision", body)
            assert status == 400 and "error" in json.loads(raw), scale
        status, res = client.json("/api/decision", {**base, "polygons": [square], "px_per_mm": p})
        assert status == 200 and res["area_after_mm2"] == pytest.approx(50 * 50 / p**2, rel=0.05)
    assert len(list_decisions(connect(study["out"] / "study.sqlite"))) == 1


def test_review_polygons_are_bounded_by_the_frames_width_in_x_and_height_in_y():
    """A model frame 80 px wide and 40 px high (shape (40, 80)): a rectangle out to x = 70.5 lies
    inside it (pixel centres x 61..70, y 11..20: 100 px); one down to y = 60 lies below it."""
    from ulcerseg.errors import DecisionError

    wide = [[60.5, 10.5], [70.5, 10.5], [70.5, 20.5], [60.5, 20.5]]
    assert mask_from_review_polygons([wide], 10.0, 10.0, (40, 80)).sum() == 100
    low = [[10.5, 50.5], [20.5, 50.5], [20.5, 60.0], [10.5, 60.0]]
    with pytest.raises(DecisionError, match="outside"):
        mask_from_review_polygons([low], 10.0, 10.0, (40, 80))


def test_a_corrected_mask_png_counts_opaque_bright_pixels_only():
    """Ulcer is alpha >= 128 and brightest channel >= 128: of a 3 x 1 RGBA PNG, the opaque white
    pixel is ulcer, the transparent white one (erased with a transparent brush) and the opaque
    black one are not."""
    from ulcerseg.review.masks import mask_from_png

    rgba = np.array([[[255, 255, 255, 255], [255, 255, 255, 0], [0, 0, 0, 255]]], np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    assert mask_from_png(buf.getvalue(), (1, 3)).tolist() == [[True, False, False]]


def test_a_16_bit_grey_mask_png_is_refused_not_clipped():
    """Pillow converts 16-bit grey by clipping at 255, not scaling: a visually black mask (200 of
    65535) read as all ulcer (before). It is refused; 16-bit RGB, which Pillow scales, is read."""
    import cv2

    from ulcerseg.errors import DecisionError
    from ulcerseg.review.masks import mask_from_png

    grey = io.BytesIO()
    Image.fromarray(np.full((2, 3), 200, np.uint16)).save(grey, format="PNG")
    with pytest.raises(DecisionError, match="I;16 PNG; save it with 8 bits"):
        mask_from_png(grey.getvalue(), (2, 3))
    rgb16 = np.zeros((2, 3, 3), np.uint16)
    rgb16[0, 0] = 65535
    rgb16[1, 1] = 200
    ok, png = cv2.imencode(".png", rgb16)
    assert ok
    assert mask_from_png(png.tobytes(), (2, 3)).tolist() == [[True, False, False], [False, False, False]]

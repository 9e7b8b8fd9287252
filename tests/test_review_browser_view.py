"""The review screen in a real headless Chromium (Playwright, system browser) on a study whose
photos are on disk: zoom onto a 1.75 mm² ulcer at the photo's native resolution, edit a contour
and get the exact polygon's area, two-step endpoint decisions, back/forward and progress, undo.

Screenshots of the screens (used by the README) are written to docs/img/ when
ULCERSEG_DOCS_SCREENSHOTS=1.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page
from review_photo_study import (
    MARKERLESS_MM_TO_PX,
    MODEL_GRID,
    MODEL_PPM,
    RULER_MM,
    ULCER_A_MM,
    ULCER_AREA_MM2,
    ULCER_B_MM,
    ULCER_CENTRE_MM,
    make_photo_study,
)
from test_review import cfg, serving
from test_review_browser import review_to_client

from ulcerseg.geometry import signed_polygon_area as shoelace_area
from ulcerseg.review.decisions import list_decisions
from ulcerseg.review.export import export_final
from ulcerseg.review.items import ManualItem
from ulcerseg.review.server import ReviewApp
from ulcerseg.store.review import add_reader

# README screenshots: written to docs/img/ with ULCERSEG_DOCS_SCREENSHOTS=1, else to a temp folder
# (so an ordinary test run leaves the checkout unchanged)
DOCS_IMG = (
    Path(__file__).resolve().parents[1] / "docs" / "img"
    if os.environ.get("ULCERSEG_DOCS_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "ulcerseg-review-screens"
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ReviewApp, dict]]:
    study = make_photo_study(tmp_path, n=3)
    app = ReviewApp.load(study["out"], cfg())
    with serving(app) as base:
        yield base, app, study


def _open(browser: Browser, base: str, app: ReviewApp, name: str = "Dr View") -> Page:
    page = browser.new_page(viewport={"width": 1200, "height": 860})
    tokens = app.__dict__.setdefault("test_tokens", {})  # one personal token per reader name
    if name not in tokens:
        tokens[name] = app.add_reader(name, adjudicator=app.adjudicate)
    page.goto(f"{base}/?token={tokens[name]}")
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    return page


def _spm(page: Page) -> float:
    return float(page.get_attribute("#view", "data-screen-px-per-mm") or "nan")


def _key(page: Page) -> str:
    return page.get_attribute("#view", "data-key") or ""


def _shot(page: Page, name: str) -> None:
    """Screenshot for the README, palette PNG (small: well under 300 KB)."""
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    raw = page.screenshot(clip={"x": 0, "y": 0, "width": 1100, "height": 860})
    img = Image.open(io.BytesIO(raw)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    img.save(DOCS_IMG / name, optimize=True)


def _ulcer_review_px(page: Page) -> tuple[float, float, float]:
    """(u, v) of the ulcer centre in review px and the review px/mm."""
    p = page.evaluate("() => window.reviewView.view.px_per_mm")
    o = MODEL_GRID.origin_mm
    return (ULCER_CENTRE_MM[0] - o[0]) * p, (ULCER_CENTRE_MM[1] - o[1]) * p, p


def _press_settled(page: Page, key: str) -> None:
    """Press ``key``, wait until its request answered (a message is shown); fail on an error."""
    page.evaluate("() => { document.getElementById('message').textContent = ''; }")
    page.keyboard.press(key)
    page.wait_for_function("() => document.getElementById('message').textContent !== ''", timeout=5_000)
    assert page.get_attribute("#message", "class") != "error", page.text_content("#message")


def _decisions(study: dict) -> list:
    return list_decisions(sqlite3.connect(study["out"] / "study.sqlite"))


def test_zoom_onto_a_small_ulcer_at_native_resolution(chromium: Browser, served):
    base, app, _ = served
    page = _open(chromium, base, app)
    try:
        view = page.evaluate("() => window.reviewView.view")
        # the image is the photo's own resolution on the marker plane, not the model's 10 px/mm
        assert view["native"] and view["px_per_mm"] > 20 and view["model_px_per_mm"] == 10
        assert page.evaluate("() => window.reviewView.imageSize") == [view["width"], view["height"]]
        fit = _spm(page)
        assert fit >= 20  # opened fitted to the ulcer

        # zoom out (wheel, '-' key, button), back in ('+' key, button), fit again ('f')
        box = page.locator("#view").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, 500)
        page.wait_for_function(
            "s => Number(document.getElementById('view').dataset.screenPxPerMm) < s", arg=fit
        )
        after_wheel = _spm(page)
        page.keyboard.press("-")
        assert _spm(page) == pytest.approx(after_wheel / 1.5)
        page.click("#z-out")
        page.keyboard.press("+")
        page.click("#z-in")
        assert _spm(page) == pytest.approx(after_wheel)
        page.keyboard.press("f")
        assert _spm(page) == pytest.approx(fit)
        page.click("#z-in")
        spm = _spm(page)
        assert spm >= 20

        # the scale bar follows the zoom
        bar_mm = float(page.get_attribute("#view", "data-scale-bar-mm") or "nan")
        bar_px = float(page.get_attribute("#view", "data-scale-bar-px") or "nan")
        assert bar_px == pytest.approx(bar_mm * spm, rel=1e-3) and bar_px >= 60

        # what is on screen: the ulcer's red pixels, outline hidden, measure 1.75 mm² at spm
        page.keyboard.press("o")
        assert not page.is_checked("#outline")
        shot = np.asarray(Image.open(io.BytesIO(page.locator("#view").screenshot())).convert("RGB"))
        red = (shot[..., 0].astype(int) - shot[..., 1]) > 70
        assert red.sum() / spm**2 == pytest.approx(ULCER_AREA_MM2, rel=0.05)
        xs = np.nonzero(red)[1]
        assert xs.max() - xs.min() >= 2 * 0.9 * 20  # 1.8 mm wide: >= 36 screen px at >= 20 px/mm

        # pan: dragging moves the image by the drag
        u, v, _ = _ulcer_review_px(page)
        before = review_to_client(page, u, v)
        page.mouse.move(box["x"] + 100, box["y"] + 100)
        page.mouse.down()
        page.mouse.move(box["x"] + 160, box["y"] + 130, steps=4)
        page.mouse.up()
        after = review_to_client(page, u, v)
        assert (after[0] - before[0], after[1] - before[1]) == pytest.approx((60, 30), abs=0.5)
        page.keyboard.press("f")

        # outline back on at a lower opacity, screenshot of the plane view
        page.keyboard.press("o")
        page.eval_on_selector("#opacity", "e => { e.value = '70'; e.dispatchEvent(new Event('input')); }")
        _shot(page, "review-zoom.png")

        # the whole photo for context, and back
        page.keyboard.press("w")
        page.wait_for_function("() => window.reviewView.layer === 'photo'")
        assert _spm(page) > 0
        page.keyboard.press("0")
        _shot(page, "review-photo.png")
        page.keyboard.press("w")
        page.wait_for_function("() => window.reviewView.layer === 'review'")
        assert _spm(page) == pytest.approx(fit)
    finally:
        page.close()


def _ring(cx: float, cy: float, r: float, n: int) -> list[list[float]]:
    return [
        [cx + r * math.cos(2 * math.pi * k / n), cy + r * math.sin(2 * math.pi * k / n)] for k in range(n)
    ]


def test_edit_a_contour_and_get_the_polygons_area(chromium: Browser, served):
    base, app, study = served
    page = _open(chromium, base, app, "Dr Edit")
    try:
        key = _key(page)
        page.keyboard.press("e")
        # the proposal becomes editable vertices; its area is shown
        start = page.evaluate("() => window.reviewView.polygons")
        assert len(start) == 1 and len(start[0]) > 8
        assert float(page.text_content("#m-edit-area") or "nan") == pytest.approx(ULCER_AREA_MM2, rel=0.03)
        # saving the unchanged proposal is not a correction
        page.keyboard.press("s")
        assert "unchanged" in (page.text_content("#message") or "") and _key(page) == key

        # trace from scratch: a hexagon of radius 1.4 mm around the ulcer (its centre off the
        # model's pixel grid, as a hand-drawn outline is: vertices on pixel centres are degenerate)
        u, v, p = _ulcer_review_px(page)
        poly = _ring(u + 0.037 * p, v + 0.021 * p, 1.4 * p, 6)
        page.keyboard.press("c")
        for q in poly:
            page.mouse.click(*review_to_client(page, *q))
        page.keyboard.press("Enter")
        # move vertex 0 outwards by 0.4 mm
        page.mouse.move(*review_to_client(page, *poly[0]))
        page.mouse.down()
        moved = [poly[0][0] + 0.4 * p, poly[0][1]]
        page.mouse.move(*review_to_client(page, *moved), steps=3)
        page.mouse.up()
        poly[0] = moved
        # add a vertex: drag the middle of edge 1-2 outwards by 0.3 mm
        mid = [(poly[1][0] + poly[2][0]) / 2, (poly[1][1] + poly[2][1]) / 2]
        page.mouse.move(*review_to_client(page, *mid))
        page.mouse.down()
        added = [mid[0], mid[1] + 0.3 * p]
        page.mouse.move(*review_to_client(page, *added), steps=3)
        page.mouse.up()
        poly.insert(2, added)
        # delete vertex 4 (right-click)
        page.mouse.click(*review_to_client(page, *poly[4]), button="right")
        del poly[4]

        got = page.evaluate("() => window.reviewView.polygons")
        assert len(got) == 1 and np.allclose(np.asarray(got[0]), np.asarray(poly), atol=0.5)
        exact = abs(shoelace_area(np.asarray(poly))) / p**2
        shown = float(page.text_content("#m-edit-area") or "nan")
        assert shown == pytest.approx(exact, rel=0.02)
        _shot(page, "review-edit.png")
        page.keyboard.press("s")
        # more than 50 % above the proposal's area: saved only after a second, explicit step
        page.wait_for_selector("#confirm:not([hidden])")
        assert _decisions(study) == []
        page.keyboard.press("y")
        page.wait_for_function("k => document.getElementById('view').dataset.key !== k", arg=key)
    finally:
        page.close()
    (row,) = _decisions(study)
    assert row["action"] == "correct" and row["photo_sha256"][:16] == key
    assert row["area_after_mm2"] == pytest.approx(exact, rel=0.02)


def test_confirm_healed_takes_two_steps_and_navigation_keeps_count(chromium: Browser, served):
    base, app, study = served
    page = _open(chromium, base, app, "Dr Heal")
    try:
        first = _key(page)
        assert page.get_attribute("#progress", "data-decided") == "0"
        page.keyboard.press("h")
        page.wait_for_selector("#confirm:not([hidden])")
        assert "HEALED" in (page.text_content("#confirm-text") or "")
        page.keyboard.press("h")  # pressing the shortcut again does not confirm
        page.keyboard.press("Enter")  # nor does Enter
        assert page.is_visible("#confirm") and _decisions(study) == []
        page.keyboard.press("Escape")
        assert page.is_hidden("#confirm") and _decisions(study) == [] and _key(page) == first
        _shot_dialog = page.click
        page.click("#b-healed")
        page.wait_for_selector("#confirm:not([hidden])")
        _shot(page, "review-confirm.png")
        _shot_dialog("#confirm-yes")
        page.wait_for_function("k => document.getElementById('view').dataset.key !== k", arg=first)
        assert [d["action"] for d in _decisions(study)] == ["confirm_healed"]
        assert page.get_attribute("#progress", "data-decided") == "1"

        # skip and forward do not count; back returns to the decided item and shows the decision
        second = _key(page)
        page.keyboard.press("k")
        page.wait_for_function("k => document.getElementById('view').dataset.key !== k", arg=second)
        assert page.get_attribute("#progress", "data-decided") == "1"
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("k => document.getElementById('view').dataset.key === k", arg=second)
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("k => document.getElementById('view').dataset.key === k", arg=first)
        assert "confirm_healed" in (page.text_content("#m-mine") or "")
        page.keyboard.press("l")
        assert "confirm_healed" in (page.text_content("#mine-list") or "")
        assert page.get_attribute("#progress", "data-decided") == "1"
    finally:
        page.close()


def test_undo_restores_the_previous_final_value(chromium: Browser, served):
    base, app, study = served
    page = _open(chromium, base, app, "Dr Undo")
    try:
        key = _key(page)
        automated = app.by_key[key].area_mm2
        page.keyboard.press("a")
        page.wait_for_function("k => document.getElementById('view').dataset.key !== k", arg=key)
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("k => document.getElementById('view').dataset.key === k", arg=key)
        page.keyboard.press("e")
        page.keyboard.press("c")
        u, v, p = _ulcer_review_px(page)
        for q in _ring(u, v, 2.0 * p, 8):
            page.mouse.click(*review_to_client(page, *q))
        page.keyboard.press("Enter")
        page.keyboard.press("s")
        # the area grows by more than 50 %: the server asks for a second, explicit step
        page.wait_for_selector("#confirm:not([hidden])")
        assert "confirm" in (page.text_content("#confirm-text") or "")
        page.keyboard.press("y")
        page.wait_for_function("k => document.getElementById('view').dataset.key !== k", arg=key)
        rows = {r["photo_sha256"][:16]: r for r in csv.DictReader(export_final(study["out"], cfg()).open())}
        assert float(rows[key]["final_area_mm2"]) > 2 * automated
        _press_settled(page, "u")
        page.wait_for_function(
            "k => document.getElementById('view').dataset.key === k", arg=key, timeout=5_000
        )
        assert "accept" in (page.text_content("#m-mine") or "")
    finally:
        page.close()
    rows = {r["photo_sha256"][:16]: r for r in csv.DictReader(export_final(study["out"], cfg()).open())}
    assert float(rows[key]["final_area_mm2"]) == pytest.approx(automated)
    assert [d["action"] for d in _decisions(study)][:2] == ["accept", "correct"]  # appended, never edited


@pytest.fixture
def markerless(tmp_path: Path) -> Iterator[tuple[str, ReviewApp, dict]]:
    study = make_photo_study(tmp_path, n=1, markerless=True)
    app = ReviewApp.load(study["out"], cfg())
    with serving(app) as base:
        yield base, app, study


def _manual_trace(page: Page, study: dict) -> float:
    """On the manual-scale item: mark the ruler dots (10 mm), trace the ulcer; the shown area."""
    for _ in range(3):
        if _key(page) == study["markerless"]:
            break
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "k => document.getElementById('view').dataset.key === k", arg=study["markerless"]
        )
    page.wait_for_selector("#scale-panel:not([hidden])")
    assert page.evaluate("() => window.reviewView.layer") == "photo"
    assert page.is_disabled("#b-accept") and page.is_disabled("#b-edit")
    scale = page.evaluate("() => window.reviewView.view.photo.scale")

    def client(mm: tuple[float, float]) -> tuple[float, float]:
        x, y, w = MARKERLESS_MM_TO_PX @ np.array([mm[0], mm[1], 1.0])
        return page.evaluate(
            "([x, y]) => window.reviewView.layerToClient(x, y)", [x / w * scale, y / w * scale]
        )

    for dot in RULER_MM:
        page.mouse.click(*client(dot))
    page.fill("#scale-mm", "10")
    n = 48
    for k in range(n):
        t = 2 * math.pi * k / n
        c = ULCER_CENTRE_MM
        page.mouse.click(*client((c[0] + ULCER_A_MM * math.cos(t), c[1] + ULCER_B_MM * math.sin(t))))
    page.keyboard.press("Enter")
    page.keyboard.press("f")  # zoom onto the tracing
    _shot(page, "review-manual-scale.png")
    return float(page.text_content("#scale-area") or "nan")


def test_manual_scale_on_a_photo_without_marker_measures_the_area(chromium: Browser, markerless):
    base, app, study = markerless
    item = app.manual_by_key[study["markerless"]]
    assert isinstance(item, ManualItem)  # no marker: no marker-plane frame, the whole photo only
    page = _open(chromium, base, app, "Dr Scale")
    try:
        shown = _manual_trace(page, study)
        assert shown == pytest.approx(ULCER_AREA_MM2, rel=0.03)
        # 20 photo px per mm, to the click precision (1 screen px at about 0.8 screen px per photo px)
        shown_scale = (page.text_content("#scale-value") or "").split()
        assert shown_scale[1:] == ["photo", "px/mm"] and float(shown_scale[0]) == pytest.approx(
            20.0, rel=0.01
        )
    finally:
        page.close()


def test_manual_scale_measurement_is_saved_as_manual(chromium: Browser, markerless):
    base, app, study = markerless
    page = _open(chromium, base, app, "Dr Scale")
    try:
        _manual_trace(page, study)
        page.keyboard.press("s")
        # a value no marker calibrated: saved only after a second, explicit step that states it
        page.wait_for_selector("#confirm:not([hidden])")
        assert "manual scale" in (page.text_content("#confirm-text") or "") and _decisions(study) == []
        page.keyboard.press("y")
        page.wait_for_function("() => /saved/.test(document.getElementById('message').textContent)")
    finally:
        page.close()
    (row,) = [d for d in _decisions(study) if d["photo_sha256"][:16] == study["markerless"]]
    assert row["area_after_mm2"] == pytest.approx(ULCER_AREA_MM2, rel=0.03)
    final = {r["photo_sha256"][:16]: r for r in csv.DictReader(export_final(study["out"], cfg()).open())}
    assert final[study["markerless"]]["scale_source"] == "manual"


def test_adjudication_shows_each_readers_outline_in_its_colour(chromium: Browser, tmp_path: Path):
    from ulcerseg.review.decisions import record_decision
    from ulcerseg.review.masks import remeasure_mask

    study = make_photo_study(tmp_path, n=1)
    item = ReviewApp.load(study["out"], cfg()).items[0]
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    add_reader(conn, "Dr A"), add_reader(conn, "Dr B")
    record_decision(conn, study["out"], item, "Dr A", "accept")
    bigger = np.zeros((MODEL_GRID.height, MODEL_GRID.width), bool)
    bigger[88:113, 83:118] = True  # a 3.5 x 2.5 mm box around the ulcer
    record_decision(conn, study["out"], item, "Dr B", "correct", corrected_mask=bigger)
    app = ReviewApp.load(study["out"], cfg(), adjudicate=True)
    with serving(app) as base:
        page = _open(chromium, base, app, "Dr Judge")
        try:
            view = page.evaluate("() => window.reviewView.view")
            readings = {r["assessor"]: r for r in view["readings"]}
            assert set(readings) == {"Dr A", "Dr B"}
            assert readings["Dr A"]["contours"] == view["contours"]  # accepted: the proposal
            p = view["px_per_mm"]
            b_area = _area_mm2(readings["Dr B"]["contours"], p)
            assert b_area == pytest.approx(remeasure_mask(bigger, MODEL_PPM)["area_mm2"], rel=0.01)
            legend = page.text_content("#legend") or ""
            assert "model proposal" in legend and "Dr A: accept" in legend and "Dr B: correct" in legend
            # Dr B's outline is drawn in its legend colour where its corner is
            colours = page.eval_on_selector_all("#legend .swatch", "els => els.map(e => e.style.background)")
            b_colour = colours[1 + view["readings"].index(readings["Dr B"])]
            rgb = tuple(int(c) for c in b_colour.removeprefix("rgb(").removesuffix(")").split(","))
            shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
            box = page.locator("#view").bounding_box()
            assert box is not None
            top = min(readings["Dr B"]["contours"][0], key=lambda q: q[1])
            x, y = review_to_client(page, *top)
            patch = shot[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4]
            assert (np.abs(patch - np.asarray(rgb)).sum(axis=2) < 60).any()
            _shot(page, "review-adjudicate.png")
        finally:
            page.close()


def _area_mm2(polys: list, px_per_mm: float) -> float:
    return abs(sum(shoelace_area(np.asarray(q)) for q in polys)) / px_per_mm**2

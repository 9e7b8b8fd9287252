"""End to end in a real headless Chromium (Playwright, system browser): authenticate, accept one
item, correct one contour, mark one not assessable; the database and the export reflect exactly
that, and nothing on the page unblinds the assessor."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import CHROMIUM_ARGS, contains_date
from PIL import Image
from playwright.sync_api import Browser, Page
from test_review import PPM, SUBJECTS, cfg, make_study, serving

from ulcerseg.review.decisions import list_decisions
from ulcerseg.review.export import export_final
from ulcerseg.review.server import ReviewApp
from ulcerseg.store.review import add_reader

ARGS = CHROMIUM_ARGS


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ReviewApp, dict]]:
    study = make_study(tmp_path)
    app = ReviewApp.load(study["out"], cfg())
    # personal tokens: the reader's name comes from the token, not from the name typed in
    app.token = app.add_reader("Dr Browser")  # type: ignore[attr-defined]
    app.brush_token = app.add_reader("Dr Brush")  # type: ignore[attr-defined]
    with serving(app) as base:
        yield base, app, study


def model_to_client(page: Page, u: float, v: float) -> tuple[float, float]:
    """Page coordinates of a model-frame (stored mask) pixel under the current zoom and pan."""
    x, y = page.evaluate("([u, v]) => window.reviewView.modelToClient(u, v)", [u, v])
    return x, y


def review_to_client(page: Page, u: float, v: float) -> tuple[float, float]:
    """Page coordinates of a review-frame pixel under the current zoom and pan."""
    x, y = page.evaluate("([u, v]) => window.reviewView.reviewToClient(u, v)", [u, v])
    return x, y


def _current_key(page: Page) -> str:
    return page.get_attribute("#view", "data-key") or ""


def _wait_next(page: Page, old_key: str) -> None:
    page.wait_for_function(
        "k => document.getElementById('view').dataset.key !== k || !document.getElementById('done').hidden",
        arg=old_key,
        timeout=10_000,
    )


def _confirm_if_asked(page: Page, old_key: str) -> None:
    """Answer yes when the server asks to confirm (an area change > 50%), then wait for the next item."""
    page.wait_for_function(
        "k => document.getElementById('view').dataset.key !== k || !document.getElementById('done').hidden"
        " || !document.getElementById('confirm').hidden",
        arg=old_key,
        timeout=10_000,
    )
    if page.is_visible("#confirm"):
        page.keyboard.press("y")
    _wait_next(page, old_key)


def test_review_in_browser(chromium: Browser, served, tmp_path: Path):
    base, app, study = served
    with chromium.new_context(
        viewport={"width": 1200, "height": 900}
    ) as browser:  # on the session's Chromium
        try:
            page = browser.new_page()
            # without the token nothing is served
            res = page.goto(base + "/")
            assert res is not None and res.status == 401
            res = page.goto(f"{base}/?token={app.token}")
            assert res is not None and res.status == 200
            # the reader's name comes from the token: nothing to type, nothing to get wrong
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            assert (page.text_content("#who") or "") == "reader: Dr Browser"
            seen_html = [page.content()]
            assert page.is_hidden("#m-readings-wrap")  # a reader never sees other readings

            # 1) accept with the keyboard shortcut
            key_accept = _current_key(page)
            page.keyboard.press("a")
            _wait_next(page, key_accept)
            seen_html.append(page.content())

            # 2) correct the contour: clear, draw a polygon, save
            key_correct = _current_key(page)
            page.keyboard.press("e")
            page.keyboard.press("c")
            u0, v0, u1, v1 = 20, 20, 60, 50  # rectified px
            for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1)):
                page.mouse.click(*model_to_client(page, u, v))
            page.keyboard.press("Enter")
            shown = float(page.text_content("#m-edit-area") or "nan")
            expected_mm2 = (u1 - u0) * (v1 - v0) / PPM**2
            assert shown == pytest.approx(expected_mm2, rel=0.08)
            page.keyboard.press("s")
            _confirm_if_asked(page, key_correct)
            seen_html.append(page.content())

            # 3) not assessable with a reason
            key_na = _current_key(page)
            page.keyboard.press("n")
            page.select_option("#na-reason", "image blurred")
            page.keyboard.press("Enter")
            # an endpoint-changing action takes a second, explicit step (Enter does not confirm)
            page.wait_for_selector("#confirm:not([hidden])", timeout=5_000)
            page.keyboard.press("Enter")
            assert page.is_visible("#confirm") and _current_key(page) == key_na
            page.keyboard.press("y")
            _wait_next(page, key_na)
            seen_html.append(page.content())
            assert page.is_hidden("#na-panel") and page.is_hidden("#edit-panel")
            page.screenshot(path=str(tmp_path / "review.png"))
        finally:
            browser.close()

    assert len({key_accept, key_correct, key_na}) == 3
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    rows = list_decisions(conn)
    assert [(r["photo_sha256"][:16], r["action"]) for r in rows] == [
        (key_accept, "accept"),
        (key_correct, "correct"),
        (key_na, "not_assessable"),
    ]
    assert {r["assessor"] for r in rows} == {"Dr Browser"}
    assert len({r["session_id"] for r in rows}) == 1 and rows[0]["session_id"]
    assert rows[0]["area_after_mm2"] == pytest.approx(app.by_key[key_accept].area_mm2)
    assert rows[1]["area_after_mm2"] == pytest.approx(expected_mm2, rel=0.08)
    saved = np.asarray(Image.open(study["out"] / rows[1]["corrected_mask_file"])) > 0
    assert saved.sum() / PPM**2 == pytest.approx(rows[1]["area_after_mm2"])
    ys, xs = np.nonzero(saved)  # the polygon landed where it was drawn, in rectified px
    assert abs(xs.min() - u0) <= 1 and abs(xs.max() - u1) <= 1
    assert abs(ys.min() - v0) <= 1 and abs(ys.max() - v1) <= 1
    assert rows[2]["reason"] == "image blurred" and rows[2]["area_after_mm2"] is None

    final = list(csv.DictReader(export_final(study["out"], cfg()).open()))
    reviewed = {r["photo_sha256"][:16]: r for r in final if r["final_source"] == "review"}
    assert set(reviewed) == {key_accept, key_correct, key_na}
    assert reviewed[key_accept]["review_action"] == "accept"
    assert float(reviewed[key_correct]["final_area_mm2"]) == pytest.approx(rows[1]["area_after_mm2"])
    assert reviewed[key_na]["status"] == "not_assessable"
    assert all(r["reviewer"] == "Dr Browser" for r in reviewed.values())
    assert all(r["reviewer"] == "" for r in final if r["photo_sha256"][:16] not in reviewed)

    # blinded: nothing shown carried a real subject ID or a date
    blob = "\n".join(seen_html)
    assert not any(s in blob for s in SUBJECTS)
    assert not contains_date(blob)


def test_brush_add_and_erase(chromium: Browser, served):
    base, app, study = served
    with chromium.new_context(
        viewport={"width": 1200, "height": 900}
    ) as browser:  # on the session's Chromium
        try:
            page = browser.new_page()
            page.goto(f"{base}/?token={app.brush_token}")
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            key = _current_key(page)
            page.keyboard.press("e")
            page.keyboard.press("c")
            page.keyboard.press("b")
            page.eval_on_selector("#t-size", "e => { e.value = '4'; }")

            def at(u: float, v: float) -> tuple[float, float]:
                return model_to_client(page, u, v)

            # a horizontal stroke from u=10 to u=50 at v=30, then erase its middle
            page.mouse.move(*at(10, 30))
            page.mouse.down()
            for u in range(10, 51, 5):
                page.mouse.move(*at(u, 30))
            page.mouse.up()
            page.keyboard.press("x")
            page.mouse.click(*at(30, 30))
            page.keyboard.press("s")
            _confirm_if_asked(page, key)
        finally:
            browser.close()
    (row,) = list_decisions(sqlite3.connect(study["out"] / "study.sqlite"))
    assert row["action"] == "correct" and row["assessor"] == "Dr Brush"
    m = np.asarray(Image.open(study["out"] / row["corrected_mask_file"])) > 0
    assert m[30, 12] and m[30, 48]  # painted by the stroke
    assert not m[30, 30]  # erased
    assert not m[10, 30] and not m[50, 30]  # brush radius 4 px: nothing far from the stroke
    assert row["area_after_mm2"] == pytest.approx(m.sum() / PPM**2)


def test_adjudicator_sees_the_readings_and_settles_the_photo(chromium: Browser, tmp_path: Path):
    from ulcerseg.review.decisions import decision_role, record_decision
    from ulcerseg.review.export import export_final

    study = make_study(tmp_path)
    reader_app = ReviewApp.load(study["out"], cfg())
    item = reader_app.items[0]
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    add_reader(conn, "Dr A"), add_reader(conn, "Dr B")
    record_decision(conn, study["out"], item, "Dr A", "accept")
    record_decision(conn, study["out"], item, "Dr B", "not_assessable", reason="blurred")
    app = ReviewApp.load(study["out"], cfg(), adjudicate=True)
    app.token = app.add_reader("Dr Judge", adjudicator=True)  # type: ignore[attr-defined]
    with serving(app) as base, chromium.new_context(viewport={"width": 1200, "height": 900}) as browser:
        try:
            page = browser.new_page()
            page.goto(f"{base}/?token={app.token}")
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            assert _current_key(page) == item.key
            assert (page.text_content("#who") or "").startswith("adjudicator")
            assert page.is_visible("#m-readings")
            readings = page.text_content("#m-readings") or ""
            assert "Dr A: accept" in readings and "Dr B: not_assessable (blurred)" in readings
            # each reading has its own colour in the legend of the zoomable view
            assert page.is_visible("#legend")
            legend = page.text_content("#legend") or ""
            assert "model proposal" in legend and "Dr A: accept" in legend and "Dr B" in legend
            assert not any(s in page.content() for s in SUBJECTS)
            page.keyboard.press("a")
            page.wait_for_selector("#done:not([hidden])", timeout=10_000)
        finally:
            browser.close()
    last = list_decisions(conn)[-1]
    assert last["assessor"] == "Dr Judge" and decision_role(last) == "adjudicator"
    rows = {r["photo_sha256"]: r for r in csv.DictReader(export_final(study["out"], cfg()).open())}
    assert rows[item.photo_sha256]["final_source"] == "adjudication"
    assert float(rows[item.photo_sha256]["final_area_mm2"]) == pytest.approx(item.area_mm2)

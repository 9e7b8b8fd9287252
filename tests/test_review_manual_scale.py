"""Manual scale (issue 10): a flagged photo without a usable marker is measured from two points of
a known length and a traced outline, recorded with scale_source=manual in every export."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_review import Client, cfg, make_study, serving

from ulcerseg.records import PhotoRecord, PhotoResult
from ulcerseg.review.export import export_final
from ulcerseg.review.server import ReviewApp
from ulcerseg.store import Study

PX_PER_MM = 20.0  # the synthetic photo's true scale
A_PX, B_PX = 90.0, 60.0  # ellipse semi-axes (px)
CX, CY = 320.0, 200.0
TRUE_AREA_MM2 = np.pi * A_PX * B_PX / PX_PER_MM**2  # 42.41 mm²
TICKS = ((100.0, 420.0), (300.0, 420.0))  # 200 px = 10 mm on the printed ruler


def _markerless_photo(root: Path) -> tuple[PhotoRecord, str]:
    """A photo of a skin patch with an elliptic ulcer and a 10 mm ruler, but no marker, written
    under ``root/in``: its record and path relative to ``root/in``."""
    img = np.full((480, 640, 3), (205, 160, 140), np.uint8)
    yy, xx = np.mgrid[:480, :640]
    img[((xx - CX) / A_PX) ** 2 + ((yy - CY) / B_PX) ** 2 <= 1] = (150, 40, 40)
    for x, y in TICKS:
        img[int(y) - 10 : int(y) + 10, int(x) - 1 : int(x) + 2] = 0
    rel = "SUBJ-1003/D0/p.png"
    path = root / "in" / rel
    path.parent.mkdir(parents=True)
    Image.fromarray(img).save(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    record = PhotoRecord(
        path=path, subject_id="SUBJ-1003", ulcer_id="U1", visit="D0", study_day=0, sha256=sha
    )
    return record, rel


def _store_failed(root: Path, out: Path, record: PhotoRecord, rel: str, flags=(), retryable=False) -> None:
    """A run of ``out`` in which the photo failed (status failed, so it needs review)."""
    with Study.open(out) as study:
        run = study.start_run("0.1.0", "m" * 64, "c" * 64, {}, root / "in")
        result = PhotoResult(
            photo=record,
            status="failed",
            messages=["no marker found"],
            image_size=(640, 480),
            flags=list(flags),
        )
        result.retryable = retryable
        study.add_result(run, result, rel)


def _add_markerless_photo(root: Path, out: Path) -> str:
    """:func:`_markerless_photo`, on which the pipeline failed; its SHA-256."""
    record, rel = _markerless_photo(root)
    _store_failed(root, out, record, rel)
    return record.sha256


def _trace(n: int = 72, jitter: float = 0.5, seed: int = 0) -> list[list[float]]:
    """An assessor's tracing of the ulcer edge: n clicks within +-jitter px of the true edge."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    xs = CX + A_PX * np.cos(t) + rng.uniform(-jitter, jitter, n)
    ys = CY + B_PX * np.sin(t) + rng.uniform(-jitter, jitter, n)
    return np.c_[xs, ys].tolist()


def test_manual_scale_measures_a_markerless_photo_within_3_percent(tmp_path: Path):
    study = make_study(tmp_path)
    out = study["out"]
    sha = _add_markerless_photo(tmp_path, out)
    app = ReviewApp.load(out, cfg())
    assert [it.photo_sha256 for it in app.manual_items] == [sha]
    with serving(app) as base:
        client = Client(base, app.add_reader("Dr M"), app)
        listing = client.json("/api/items")[1]
        [entry] = [i for i in listing["items"] if i["manual_scale"]]
        key = entry["key"]
        status, item = client.json(f"/api/item/{key}")
        assert status == 200 and item["manual_scale"] is True and item["photo_width_px"] == 640
        assert "SUBJ" not in str(item)
        body = {"key": key, "points": [list(p) for p in TICKS], "length_mm": 10.0, "polygon": _trace()}
        # validation: points outside the photo, too close, a bad length
        for bad in (
            {**body, "points": [[100, 420], [700, 420]]},
            {**body, "points": [[100, 420], [101, 420]]},
            {**body, "length_mm": -1},
            {**body, "length_mm": "10"},
            {**body, "polygon": [[1, 1], [2, 2]]},
            {**body, "length_mm": 1000.0},  # 0.2 px/mm: a 12-MP photo 20 m wide (before: 200x the area)
            {**body, "length_mm": 10**400},  # a JSON integer no float holds (OverflowError: a 500)
            {**body, "points": [[10**400, 420], [400, 420]]},
        ):
            assert client.json("/api/manual-scale", bad)[0] == 400, bad
        # the manual-scale endpoint does not measure photos that have a rectified frame
        assert client.json("/api/manual-scale", {**body, "key": app.items[0].key})[0] == 400
        # the browser's field names (scale_points, frame) are the same request
        assert client.json("/api/manual-scale", {**body, "frame": "review"})[0] == 400
        # a markerless photo is not accepted or corrected through /api/decision ...
        assert client.json("/api/decision", {"key": key, "action": "accept"})[0] == 400
        # ... but it can be marked not assessable (with its confirmation step)
        na = {"key": key, "action": "not_assessable", "reason": "no ruler visible"}
        assert client.json("/api/decision", na)[0] == 409
        saved = client.json("/api/decision", {**na, "confirm": True})[1]
        assert saved["action"] == "not_assessable"
        # undo names what it withdraws: another decision_id than the last one is refused
        assert client.json("/api/undo", {"key": key, "decision_id": "0" * 16})[0] == 400
        assert client.json("/api/undo", {"key": key, "decision_id": saved["decision_id"]})[0] == 200
        body = {**body, "scale_points": body.pop("points"), "frame": "photo", "action": "correct"}
        # a value no marker calibrated: the first request only asks, naming the area it would save
        status, asked = client.json("/api/manual-scale", body)
        assert status == 409 and asked["error"] == "needs_confirmation", asked
        assert asked["changes"]["area_after_mm2"] == pytest.approx(TRUE_AREA_MM2, rel=0.03)
        assert "manual scale" in asked["message"] and client.json("/api/items")[1]["n_done"] == 0
        status, res = client.json("/api/manual-scale", {**body, "confirm": True})
        assert status == 200, res
        assert res["scale_source"] == "manual" and res["mm_per_px"] == pytest.approx(1 / PX_PER_MM)
        assert res["area_after_mm2"] == pytest.approx(TRUE_AREA_MM2, rel=0.03)
        assert client.json("/api/items")[1]["n_done"] == 1
    rows = {r["photo_sha256"]: r for r in csv.DictReader(export_final(out, cfg()).open())}
    r = rows[sha]
    assert r["final_source"] == "review" and r["scale_source"] == "manual"
    assert float(r["final_area_mm2"]) == pytest.approx(TRUE_AREA_MM2, rel=0.03)
    assert r["automated_area_mm2"] == ""
    assert {x["scale_source"] for k, x in rows.items() if k != sha and x["final_area_mm2"]} == {"marker"}


def test_manual_area_is_exact_for_a_pixel_aligned_rectangle():
    from ulcerseg.review.decisions import manual_area

    got = manual_area([[0, 0], [0, 100]], 5.0, [[10, 10], [50, 10], [50, 30], [10, 30]], (640, 480))
    assert got["n_px"] == 40 * 20 and got["area_mm2"] == pytest.approx(800 * 0.05**2)


def test_manual_area_refuses_a_scale_or_an_outline_no_finger_photo_has():
    """Before: any scale with the points 5 px apart and a length up to 1000 mm, and any outline,
    were saved: 1000 mm over 5 px outlined the whole photo as 7.7e10 mm², the visit's final value."""
    from ulcerseg.errors import DecisionError
    from ulcerseg.review.decisions import MAX_MANUAL_AREA_MM2, manual_area

    photo = [[0, 0], [1600, 0], [1600, 1200], [0, 1200]]
    with pytest.raises(DecisionError, match=r"0\.005 px/mm .* check the two points and the length"):
        manual_area([[0, 0], [5, 0]], 1000.0, photo, (1600, 1200))
    with pytest.raises(DecisionError, match=r"1\.2e\+03 px/mm"):
        manual_area([[0, 0], [600, 0]], 0.5, [[1, 1], [9, 1], [9, 9]], (1600, 1200))
    # 10 px/mm (1 mm over 10 px) is a plausible scale; the whole 160 x 120 mm photo is no ulcer
    with pytest.raises(DecisionError, match="more than 2500 mm²"):
        manual_area([[0, 0], [10, 0]], 1.0, photo, (1600, 1200))
    side = int((MAX_MANUAL_AREA_MM2**0.5) * 10) - 1  # just under the cap, in px at 10 px/mm
    square = [[0, 0], [side, 0], [side, side], [0, side]]
    assert manual_area([[0, 0], [10, 0]], 1.0, square, (1600, 1200))["area_mm2"] <= MAX_MANUAL_AREA_MM2
    assert manual_area([[0, 0], [5, 0]], 2.5, [[1, 1], [9, 1], [9, 9]], (1600, 1200))["mm_per_px"] == 0.5


def test_manual_scale_outline_is_rasterised_outside_the_app_lock(tmp_path: Path, monkeypatch):
    # before: the outline was filled under app.lock, so one long outline stalled every
    # other reader's decision for as long as it took
    import ulcerseg.review.decisions as decisions
    import ulcerseg.review.server as server

    study = make_study(tmp_path)
    _add_markerless_photo(tmp_path, study["out"])
    app = ReviewApp.load(study["out"], cfg())
    locked_while_filling: list[bool] = []
    real = decisions.manual_area

    def spy(*args, **kwargs):
        locked_while_filling.append(app.lock.locked())
        return real(*args, **kwargs)

    monkeypatch.setattr(decisions, "manual_area", spy)
    monkeypatch.setattr(server, "manual_area", spy, raising=False)
    with serving(app) as base:
        client = Client(base, app.add_reader("Dr M"), app)
        key = app.manual_items[0].key
        body = {"key": key, "points": [list(p) for p in TICKS], "length_mm": 10.0, "polygon": _trace()}
        status, res = client.json("/api/manual-scale", {**body, "confirm": True})
        assert status == 200, res
        assert res["area_after_mm2"] == pytest.approx(TRUE_AREA_MM2, rel=0.03)
    assert locked_while_filling == [False]


def test_markerless_bytes_at_two_paths_or_no_longer_there_are_not_served_twice(tmp_path: Path):
    # before: every row became a manual item, so a copy of a markerless photo at a second path
    # listed one key twice (the reader's list and counts doubled it, and "next" from the second
    # entry led back to the first), and a photo marked missing was still served
    import shutil
    import sqlite3

    study = make_study(tmp_path)
    out = study["out"]
    sha = _add_markerless_photo(tmp_path, out)
    copy = tmp_path / "in" / "SUBJ-1003" / "W4" / "p.png"
    copy.parent.mkdir(parents=True)
    shutil.copy(tmp_path / "in" / "SUBJ-1003" / "D0" / "p.png", copy)
    record = PhotoRecord(
        path=copy, subject_id="SUBJ-1003", ulcer_id="U1", visit="W4", study_day=28, sha256=sha
    )
    with Study.open(out) as s:
        run = s.start_run("0.1.0", "m" * 64, "c" * 64, {}, tmp_path / "in")
        s.add_result(
            run, PhotoResult(photo=record, status="failed", image_size=(640, 480)), "SUBJ-1003/W4/p.png"
        )
    app = ReviewApp.load(out, cfg())
    assert [it.photo_sha256 for it in app.manual_items] == [sha]
    keys = [it.key for it in app.order("Dr M")]
    assert len(keys) == len(set(keys))
    # both paths marked missing (the files may be back since): nothing to serve
    conn = sqlite3.connect(out / "study.sqlite")
    with conn:
        conn.execute("UPDATE photos SET missing_since = '2026-01-01' WHERE photo_sha256 = ?", (sha,))
    conn.close()
    assert ReviewApp.load(out, cfg()).manual_items == []


def test_a_photo_whose_outputs_failed_is_measured_again_not_offered_for_manual_scale(tmp_path: Path):
    # before: a write_error row (marker found, outputs not written: disk full) has no rectified
    # file, so it became a manual-scale item, and a hand-set scale could replace a measurement
    # that the next `measure` makes
    from ulcerseg.records import Flag

    study = make_study(tmp_path)
    out = study["out"]
    record, rel = _markerless_photo(tmp_path)
    _store_failed(tmp_path, out, record, rel, flags=[Flag.WRITE_ERROR], retryable=True)
    sha = record.sha256
    app = ReviewApp.load(out, cfg())
    assert sha not in {it.photo_sha256 for it in app.manual_items}
    # the same photo failed on its marker is a manual-scale item
    _store_failed(tmp_path, out, record, rel, flags=[Flag.NO_MARKER])
    assert sha in {it.photo_sha256 for it in ReviewApp.load(out, cfg()).manual_items}


def test_record_decision_refuses_to_correct_a_manual_scale_item(tmp_path: Path) -> None:
    """A photo without a marker has no rectified frame to correct in: record_decision names the
    manual scale (it read ``px_per_mm``/``proposed_mask`` of the item, an AttributeError)."""
    import sqlite3

    from ulcerseg.errors import DecisionError
    from ulcerseg.review.decisions import record_decision
    from ulcerseg.review.items import ManualItem

    item = ManualItem("0" * 16, "0" * 64, "S1", "U1", "D0", "P-1", "U-1", tmp_path / "p.png", 64, 48, ())
    with pytest.raises(DecisionError, match="manual scale"):
        record_decision(sqlite3.connect(":memory:"), tmp_path, item, "reader1", "correct",
                        corrected_mask=np.ones((48, 64), bool))  # fmt: skip
    assert not (tmp_path / "review").exists()

"""Review decisions through the API: confirmation step, undo, corrections, progress, per-reader
order; and one truth for the endpoint: heal, final_visits.csv and the report agree after every
decision, with flagged unreviewed photos pending review (issue 10)."""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_review import PPM, Client, _disc, cfg, make_study, serving

from ulcerseg.cli import main
from ulcerseg.healing import heal_study
from ulcerseg.review.export import export_final, write_report
from ulcerseg.review.report import REPORT_COLUMNS
from ulcerseg.review.server import ReviewApp


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Client, ReviewApp, dict]]:
    study = make_study(tmp_path)
    app = ReviewApp.load(study["out"], cfg())
    with serving(app) as base:
        yield Client(base, app.add_reader("Dr A"), app), app, study


def _square(side_px: int, x0: int = 5, y0: int = 5) -> list[list[int]]:
    return [[x0, y0], [x0 + side_px, y0], [x0 + side_px, y0 + side_px], [x0, y0 + side_px]]


def test_endpoint_changing_actions_need_confirmation(served):
    client, app, _ = served
    it = app.items[0]
    for action, extra, status_after in (
        ("confirm_healed", {}, "healed"),
        ("not_assessable", {"reason": "blurred"}, "not_assessable"),
    ):
        status, body = client.json("/api/decision", {"key": it.key, "action": action, **extra})
        assert status == 409 and body["error"] == "needs_confirmation"
        assert body["changes"]["action"] == action and body["changes"]["status_after"] == status_after
        saved = client.json("/api/my-decisions")[1]["decisions"]
        assert [d["action"] for d in saved] == (["confirm_healed"] if action == "not_assessable" else [])
        status, body = client.json(
            "/api/decision", {"key": it.key, "action": action, "confirm": True, **extra}
        )
        assert status == 200 and body["action"] == action
    # accept needs no second step
    assert client.json("/api/decision", {"key": it.key, "action": "accept"})[0] == 200


def test_big_area_change_needs_confirmation_and_identical_correction_is_accept(served):
    client, app, _study = served
    it = app.items[0]
    proposal = it.proposed_mask()
    assert proposal is not None
    n = int(proposal.sum())
    # +123 %: asks first
    status, body = client.json("/api/decision", {"key": it.key, "action": "correct", "polygon": _square(40)})
    assert status == 409 and body["changes"]["change_pct"] > 50
    status, body = client.json(
        "/api/decision", {"key": it.key, "action": "correct", "polygon": _square(40), "confirm": True}
    )
    assert status == 200 and body["area_after_mm2"] == pytest.approx(40 * 40 / PPM**2)
    # a small change (one row of pixels less) is saved at once
    import base64
    import io

    from PIL import Image

    smaller = proposal.copy()
    smaller[np.nonzero(smaller.any(axis=1))[0][0]] = False
    buf = io.BytesIO()
    Image.fromarray(smaller.astype(np.uint8) * 255).save(buf, format="PNG")
    status, body = client.json(
        "/api/decision",
        {"key": it.key, "action": "correct", "mask_png": base64.b64encode(buf.getvalue()).decode()},
    )
    assert status == 200 and body["action"] == "correct"
    assert body["area_after_mm2"] == pytest.approx(smaller.sum() / PPM**2)
    # the proposal itself, sent back as a "correction": recorded as accept, no mask file
    buf = io.BytesIO()
    Image.fromarray(proposal.astype(np.uint8) * 255).save(buf, format="PNG")
    status, body = client.json(
        "/api/decision",
        {"key": it.key, "action": "correct", "mask_png": base64.b64encode(buf.getvalue()).decode()},
    )
    assert status == 200 and body["action"] == "accept"
    assert body["area_after_mm2"] == pytest.approx(it.area_mm2) == pytest.approx(n / PPM**2)


def test_polygon_is_filled_by_pixel_centres():
    from ulcerseg.review.masks import mask_from_polygon

    m = mask_from_polygon([[10, 10], [30, 10], [30, 20], [10, 20]], (72, 96))
    assert m.sum() == 200  # 20 x 10 px, not the 21 x 11 of cv2.fillPoly
    # a disc of radius 20 px: the pixel count is within 1 % of pi r^2
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    disc = mask_from_polygon(np.c_[48 + 20 * np.cos(t), 36 + 20 * np.sin(t)].tolist(), (72, 96))
    assert disc.sum() == pytest.approx(np.pi * 400, rel=0.01)


def test_undo_progress_my_decisions_and_navigation(served):
    client, app, _ = served
    _, listing = client.json("/api/items")
    keys = [i["key"] for i in listing["items"]]
    assert listing["n_done"] == 0 and listing["n_items"] == len(keys) == 4
    # skipping (moving on without a decision) does not count as done
    _, item1 = client.json(f"/api/item/{keys[1]}")
    assert item1["index"] == 1 and item1["prev_key"] == keys[0] and item1["next_key"] == keys[2]
    assert client.json("/api/items")[1]["n_done"] == 0
    assert client.json("/api/undo", {})[0] == 400  # nothing to undo
    client.json("/api/decision", {"key": keys[0], "action": "accept"})
    client.json("/api/decision", {"key": keys[1], "action": "accept"})
    status, body = client.json(
        "/api/decision", {"key": keys[1], "action": "correct", "polygon": _square(9), "confirm": True}
    )
    assert status == 200
    corrected = body["decision_id"]
    listing = client.json("/api/items")[1]
    assert listing["n_done"] == 2 and [i["done"] for i in listing["items"]] == [True, True, False, False]
    # undo: a new audit entry; the decision that counts becomes the previous one (accept)
    status, body = client.json("/api/undo", {})
    assert status == 200 and body["undone_decision_id"] == corrected and body["key"] == keys[1]
    mine = client.json("/api/my-decisions")[1]["decisions"]
    assert [(d["action"], d["standing"]) for d in mine] == [
        ("accept", True),
        ("accept", True),
        ("correct", False),  # undone
        ("undo", False),  # the undo entry itself (history), never a standing decision
    ]
    assert [d["index"] for d in mine] == [0, 1, 1, 1]
    app_final = {r["photo_sha256"][:16]: r for r in csv.DictReader(export_final(app.out_dir, cfg()).open())}
    assert app_final[keys[1]]["review_action"] == "accept"
    # undo twice more: nothing of keys[1] stands, it is not done any more
    client.json("/api/undo", {})
    listing = client.json("/api/items")[1]
    assert listing["n_done"] == 1 and listing["items"][1]["done"] is False
    from ulcerseg.review.decisions import list_decisions
    from ulcerseg.store import connect

    conn = connect(app.out_dir / "study.sqlite")
    actions = [d["action"] for d in list_decisions(conn)]
    assert actions == ["accept", "accept", "correct", "undo", "undo"]  # nothing edited, only appended


def test_each_reader_has_an_own_order(served):
    client, app, _ = served
    orders = {}
    for name in ("R1", "R2", "R3", "R4", "R5"):
        c = client.reader(name)
        orders[name] = [i["key"] for i in c.json("/api/items")[1]["items"]]
        assert orders[name] == [i["key"] for i in c.json("/api/items")[1]["items"]]  # stable
        assert sorted(orders[name]) == sorted(it.key for it in app.items)
    assert len({tuple(o) for o in orders.values()}) > 1


def _report_rows(text: str) -> dict[tuple[str, str], dict[str, str]]:
    out = {}
    for block in re.split(r"<h2>", text)[1:]:
        subject = html.unescape(block.split(" / ", 1)[0])
        for tr in re.findall(r"<tr>((?:<td>.*?</td>)+)</tr>", block):
            cells = [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr)]
            row = dict(zip(REPORT_COLUMNS, cells, strict=True))
            out[(subject, row["visit"])] = row
    return out


def _fmt(value: str) -> str:
    return "" if value == "" else f"{float(value):.2f}"


def _check_agreement(out: Path) -> int:
    """heal, final_visits.csv and the report say the same per visit; returns the pending count."""
    heal_study(out, cfg())
    healing = {(r["subject_id"], r["visit"]): r for r in csv.DictReader((out / "healing.csv").open())}
    final = {(r["subject_id"], r["visit"]): r for r in csv.DictReader(export_final(out, cfg()).open())}
    report = _report_rows(write_report(out, cfg()).read_text())
    assert set(healing) == set(final) == set(report)
    for k, f in final.items():
        h, r = healing[k], report[k]
        assert h["status"] == f["status"] == r["status"], k
        assert _fmt(h["area_mm2"]) == _fmt(f["final_area_mm2"]) == r["final_area_mm2"], k
        assert f["final_source"] == r["final_source"], k
        if f["final_source"] == "pending_review":
            assert f["final_area_mm2"] == ""
    return sum(1 for f in final.values() if f["final_source"] == "pending_review")


def test_heal_final_and_report_agree_after_every_decision(served):
    client, app, study = served
    out = study["out"]
    by_visit = {(it.subject_id, it.visit): it for it in app.items}
    d0, w2, w4 = (by_visit[("SUBJ-1001", v)] for v in ("D0", "W2", "W4"))
    other_w4 = by_visit[("SUBJ-1002", "W4")]
    assert _check_agreement(out) == 4  # every flagged photo waits for review
    runner = CliRunner()
    res = runner.invoke(main, ["review", "export-final", str(out)])
    assert res.exit_code == 1 and "4 flagged visit(s) pending review" in res.output
    assert (out / "final_visits.csv").is_file()  # written, but the command says it is not final
    assert runner.invoke(main, ["review", "export-final", str(out), "--allow-pending"]).exit_code == 0
    res = runner.invoke(main, ["review", "report", str(out)])
    assert res.exit_code == 1 and "pending review" in res.output
    assert "Not final: 4 flagged" in (out / "report" / "report.html").read_text()

    steps = [
        ("/api/decision", {"key": d0.key, "action": "accept"}, 3),
        ("/api/decision", {"key": w2.key, "action": "correct", "polygon": _square(20), "confirm": True}, 2),
        (
            "/api/decision",
            {"key": w4.key, "action": "not_assessable", "reason": "blurred", "confirm": True},
            1,
        ),
        ("/api/undo", {}, 2),  # W4 is pending again
        ("/api/decision", {"key": w4.key, "action": "confirm_healed", "confirm": True}, 1),
        ("/api/decision", {"key": other_w4.key, "action": "accept"}, 0),
    ]
    for path, body, pending in steps:
        status, reply = client.json(path, body)
        assert status == 200, reply
        assert _check_agreement(out) == pending, (path, body)
    final = {(r["subject_id"], r["visit"]): r for r in csv.DictReader((out / "final_visits.csv").open())}
    assert final[("SUBJ-1001", "W4")]["status"] == "healed"
    assert float(final[("SUBJ-1001", "W2")]["final_area_mm2"]) == pytest.approx(4.0)
    assert final[("SUBJ-1001", "W2")]["scale_source"] == "marker"
    assert runner.invoke(main, ["review", "export-final", str(out)]).exit_code == 0
    assert runner.invoke(main, ["review", "report", str(out)]).exit_code == 0
    res = runner.invoke(main, ["heal", str(out)])
    assert res.exit_code == 0 and "healed 1" in res.output


def test_disc_helper_is_the_study_mask():
    assert _disc(5).sum() > 0  # keeps the shared helper import honest


def test_unconfirmed_or_unrecorded_correction_leaves_no_mask_file(served, monkeypatch):
    # before: the mask PNG was written before the confirmation check, so every 409 (and a
    # failed insert) left a file in review/masks/ that no decision names
    import sqlite3

    import ulcerseg.review.decisions as decisions

    client, app, study = served
    it = app.items[0]
    masks = study["out"] / "review" / "masks"
    body = {"key": it.key, "action": "correct", "polygon": _square(40)}
    for _ in range(3):
        status, res = client.json("/api/decision", body)
        assert status == 409 and res["error"] == "needs_confirmation"
    assert not masks.exists() or not any(masks.iterdir())

    def failing_insert(conn, row):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(decisions, "insert_decision", failing_insert)
    assert client.json("/api/decision", {**body, "confirm": True})[0] == 500
    assert not masks.exists() or not any(masks.iterdir())
    monkeypatch.undo()
    status, res = client.json("/api/decision", {**body, "confirm": True})
    assert status == 200
    [saved] = [d for d in app.decisions() if d["action"] == "correct"]
    assert [p.relative_to(study["out"]).as_posix() for p in masks.iterdir()] == [saved["corrected_mask_file"]]


def test_only_an_active_registered_reader_in_the_role_can_record_a_decision(tmp_path: Path):
    import sqlite3

    from ulcerseg.errors import DecisionError
    from ulcerseg.review.decisions import list_decisions, record_decision
    from ulcerseg.store.review import add_reader, revoke_reader

    study = make_study(tmp_path)
    item = ReviewApp.load(study["out"], cfg()).items[0]
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    add_reader(conn, "Dr A"), add_reader(conn, "Dr Adj", role="adjudicator"), add_reader(conn, "Dr Gone")
    revoke_reader(conn, "Dr Gone")
    refused = [
        ("mallory", "reader", "is not an active registered reader"),  # was: counted as a review
        ("Dr Gone", "reader", "is not an active registered reader"),
        ("Dr A", "adjudicator", "registered as reader, not adjudicator"),
        ("Dr Adj", "reader", "registered as adjudicator, not reader"),
    ]
    for name, role, why in refused:
        with pytest.raises(DecisionError, match=why):
            record_decision(conn, study["out"], item, name, "accept", role=role)
    assert list_decisions(conn) == []
    record_decision(conn, study["out"], item, "Dr A", "accept")
    assert [d["assessor"] for d in list_decisions(conn)] == ["Dr A"]

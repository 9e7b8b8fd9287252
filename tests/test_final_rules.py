"""The final per-visit table's rules: a visit is as final as its least final photo.

A visit counts as pending while readers disagree about one of its photos or any of its photos
waits for review (a failed photo included), and its other photos never make it "healed"; a
reader's reject healed on any photo forbids "healed"; measured photos on both sides of the
healed limit leave the visit pending; ``reference_visit`` names what the changes refer to.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ulcerseg.cli import main
from ulcerseg.healing import HealingConfig
from ulcerseg.records import Calibration, Measurement, PhotoRecord, PhotoResult
from ulcerseg.review.final import FINAL_COLUMNS, final_visit_rows, pending_count
from ulcerseg.store import Study
from ulcerseg.store.review import add_reader
from ulcerseg.visits import visit_to_day

CFG = HealingConfig()


def row(sha: str, visit: str, area: float | None, flags: str = "", status: str = "measured") -> dict:
    """A per-photo row as ``Study.latest_measurements`` gives it (flagged or failed: needs review)."""
    return {
        "photo_sha256": sha,
        "subject_id": "S1",
        "ulcer_id": "U1",
        "visit": visit,
        "study_day": visit_to_day(visit),
        "status": status,
        "needs_review": int(bool(flags) or status != "measured"),
        "flags": flags,
        "area_mm2": area,
        "area_low_mm2": None,
        "area_high_mm2": None,
        "photo_date": None,
    }


def dec(sha: str, who: str, action: str, area: float | None = None) -> dict:
    return {
        "decision_id": f"{sha}-{who}-{action}",
        "photo_sha256": sha,
        "assessor": who,
        "action": action,
        "area_after_mm2": area,
        "reason": None,
        "decided_at": "2024-05-01T10:00:00",
        "details": None,
    }


def visits(rows: list[dict], decisions: list[dict]) -> tuple[dict[str, dict[str, Any]], int]:
    final, _ = final_visit_rows(rows, decisions, CFG)
    return {r["visit"]: r for r in final}, pending_count(final)


def test_unresolved_disagreement_counts_as_pending():
    rows = [row("a0", "D0", 10.0), row("a1", "W4", 3.0, "low_confidence")]
    decisions = [dec("a1", "r1", "accept", 3.0), dec("a1", "r2", "not_assessable")]
    v, n = visits(rows, decisions)
    assert v["W4"]["final_source"] == "unresolved_disagreement" and v["W4"]["final_area_mm2"] is None
    assert n == 1
    # settled by an adjudicator: nothing pending
    adjudication = dict(dec("a1", "adj", "accept", 3.0), details=json.dumps({"role": "adjudicator"}))
    v, n = visits(rows, [*decisions, adjudication])
    assert v["W4"]["final_source"] == "adjudication" and n == 0


def test_photo_pending_review_holds_the_whole_visit():
    # W4: an unflagged 0.3 mm² photo, an unreviewed low-confidence 12 mm² photo, a failed photo
    rows = [
        row("b0", "D0", 10.0),
        row("b1", "W4", 0.3),
        row("b2", "W4", 12.0, "low_confidence"),
        row("b3", "W4", None, "unreadable_file", status="failed"),
    ]
    v, n = visits(rows, [])
    w4 = v["W4"]
    assert w4["status"] == "not_assessable" and w4["final_area_mm2"] is None
    assert w4["final_source"] == "pending_review" and w4["photo_sha256"] in {"b2", "b3"}
    assert w4["time_to_healing_days"] is None and n == 1
    # the flagged photo settled, the failed one still waits: the visit still waits
    v, n = visits(rows, [dec("b2", "r1", "not_assessable")])
    assert v["W4"]["final_source"] == "pending_review" and v["W4"]["photo_sha256"] == "b3" and n == 1
    assert v["W4"]["status"] == "not_assessable"
    # both settled by a reader: the measured photo counts
    v, n = visits(rows, [dec("b2", "r1", "not_assessable"), dec("b3", "r1", "not_assessable")])
    assert v["W4"]["status"] == "healed" and v["W4"]["final_area_mm2"] == 0.3 and n == 0
    assert v["W4"]["final_source"] == "automated" and v["W4"]["photo_sha256"] == "b1"


def test_disputed_photo_holds_the_whole_visit():
    rows = [row("c0", "D0", 10.0), row("c1", "W4", 0.3), row("c2", "W4", 5.0, "low_confidence")]
    decisions = [dec("c2", "r1", "accept", 5.0), dec("c2", "r2", "not_assessable")]
    v, n = visits(rows, decisions)
    assert v["W4"]["final_source"] == "unresolved_disagreement" and v["W4"]["status"] == "not_assessable"
    assert v["W4"]["final_area_mm2"] is None and n == 1


def test_reject_healed_on_any_photo_forbids_healed():
    # the lower median (0.2, accepted) used to win over the reader's reject on the other photo
    rows = [
        row("e0", "D0", 10.0),
        row("e1", "W4", 0.2, "low_confidence"),
        row("e2", "W4", 0.3, "low_confidence"),
    ]
    decisions = [dec("e1", "r1", "accept", 0.2), dec("e2", "r1", "reject_healed", 0.3)]
    v, n = visits(rows, decisions)
    assert v["W4"]["status"] != "healed"
    # the photos disagree (one accepted below the limit, one rejected): a reader settles it
    assert v["W4"]["final_source"] == "pending_review" and v["W4"]["final_area_mm2"] is None and n == 1
    # reject on both: one side, not healed, no longer pending
    v, n = visits(rows, [*decisions, dec("e1", "r1", "reject_healed", 0.2)])
    assert v["W4"]["status"] == "improving" and v["W4"]["final_area_mm2"] == 0.2 and n == 0


def test_measured_photos_on_both_sides_of_the_healed_limit_are_pending():
    rows = [row("f0", "D0", 10.0), row("f1", "W4", 0.3), row("f2", "W4", 6.0)]
    v, n = visits(rows, [])
    assert v["W4"]["status"] == "not_assessable" and v["W4"]["final_area_mm2"] is None
    assert v["W4"]["final_source"] == "pending_review" and n == 1
    # a reader's decision settles it: the small photo does not show the ulcer
    v, n = visits(rows, [dec("f1", "r1", "not_assessable")])
    assert v["W4"]["final_area_mm2"] == 6.0 and v["W4"]["status"] == "improving" and n == 0
    # photos on one side keep the (lower) median
    v, n = visits([row("g0", "D0", 10.0), row("g1", "W4", 0.3), row("g2", "W4", 0.4)], [])
    assert v["W4"]["status"] == "healed" and v["W4"]["final_area_mm2"] == 0.3 and n == 0


def test_reference_visit_column_names_what_changes_refer_to():
    assert FINAL_COLUMNS[-2:] == ("reference_visit", "healing_config_sha256")  # appended in order
    assert FINAL_COLUMNS.index("config_sha256") == 31  # the columns before it keep their places
    # baseline not assessable (a reader said so): changes refer to W2, and the table says so
    rows = [row("m0", "D0", 10.0, "grayscale"), row("m1", "W2", 2.0), row("m2", "W4", 1.0)]
    v, _ = visits(rows, [dec("m0", "r1", "not_assessable")])
    assert v["W4"]["change_from_baseline_pct"] == pytest.approx(-50.0)
    assert {r["reference_visit"] for r in v.values()} == {"W2"}
    v, _ = visits([row("k0", "D0", 10.0), row("k1", "W4", 5.0)], [])
    assert {r["reference_visit"] for r in v.values()} == {"D0"}


# --------------------------------------------------------------------------------------------
# end to end through the store and the CLI
# --------------------------------------------------------------------------------------------


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _result(out: Path, visit: str, sha: str, area: float | None, flags: tuple[str, ...]) -> PhotoResult:
    rect = out / "rectified" / f"{sha[:16]}.png"
    rect.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40, 3), 180, np.uint8)).save(rect)
    record = PhotoRecord(
        path=out.parent / "in" / "S1" / visit / "U1.jpg",
        subject_id="S1",
        ulcer_id="U1",
        visit=visit,
        study_day=visit_to_day(visit),
        sha256=sha,
    )
    calibration = Calibration(
        marker_id=0,
        corners_px=((0, 0), (1, 0), (1, 1), (0, 1)),
        homography=(1, 0, 0, 0, 1, 0, 0, 0, 1),
        mm_per_px=0.1,
        tilt_deg=5.0,
        residual_px=0.2,
        side_mm=10.0,
    )
    m = None if area is None else Measurement(area, 1, 1, 1, 1, 0.9, area * 0.9, area * 1.1, 20.0)
    return PhotoResult(
        photo=record,
        status="measured",
        calibration=calibration,
        measurement=m,
        flags=list(flags),
        image_size=(400, 300),
        rectified_path=rect,
        rectified_origin_mm=(0.0, 0.0),
        rectified_px_per_mm=10.0,
    )


def test_export_final_exits_1_and_lists_visits_while_readers_disagree(tmp_path: Path):
    from ulcerseg.healing.config import ReviewSettings
    from ulcerseg.review.decisions import build_items, record_decision, salt_for

    out = tmp_path / "out"
    out.mkdir()
    with Study.open(out) as st:
        run = st.start_run("0.1", "m" * 64, "c" * 64, {}, tmp_path / "in")
        st.add_result(run, _result(out, "D0", _sha("d0"), 10.0, ()), "S1/D0/U1.jpg")
        st.add_result(run, _result(out, "W4", _sha("w4"), 3.0, ("low_confidence",)), "S1/W4/U1.jpg")
        items = build_items(st.latest_measurements(), out, salt_for(st.conn), ReviewSettings())
        (item,) = items
        add_reader(st.conn, "r1"), add_reader(st.conn, "r2")
        record_decision(st.conn, out, item, "r1", "accept")
        record_decision(st.conn, out, item, "r2", "not_assessable", reason="blurred")
    dest = tmp_path / "final.csv"
    res = CliRunner().invoke(main, ["review", "export-final", str(out), "-o", str(dest)])
    assert res.exit_code == 1, res.output
    assert "1 flagged visit(s) pending review" in res.output
    assert "S1 U1 W4: unresolved_disagreement" in res.output
    with dest.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == FINAL_COLUMNS
        final = {r["visit"]: r for r in reader}
    assert final["W4"]["final_source"] == "unresolved_disagreement" and final["W4"]["final_area_mm2"] == ""
    assert final["W4"]["reference_visit"] == "D0"
    res = CliRunner().invoke(main, ["review", "export-final", str(out), "-o", str(dest), "--allow-pending"])
    assert res.exit_code == 0, res.output


def test_heal_agrees_with_the_final_table_and_disagreeing_photos_are_served(tmp_path: Path):
    """heal holds the visit a photo waits for review in, as export-final does (healing.csv said
    W4 healed from the other photo); and an unflagged photo of a visit whose photos fall on
    both sides of the healed limit is served for review, the only way to settle that visit."""
    from ulcerseg.healing import heal_study
    from ulcerseg.review.server import ReviewApp

    out = tmp_path / "out"
    out.mkdir()
    with Study.open(out) as st:
        run = st.start_run("0.1", "m" * 64, "c" * 64, {}, tmp_path / "in")
        st.add_result(run, _result(out, "D0", _sha("d0"), 10.0, ()), "S1/D0/U1.jpg")
        st.add_result(run, _result(out, "W4", _sha("w4a"), 0.3, ()), "S1/W4/U1.jpg")
        st.add_result(run, _result(out, "W4", _sha("w4b"), 12.0, ("low_confidence",)), "S1/W4/U1b.jpg")
        st.add_result(run, _result(out, "W8", _sha("w8a"), 0.2, ()), "S1/W8/U1.jpg")
        st.add_result(run, _result(out, "W8", _sha("w8b"), 6.0, ()), "S1/W8/U1b.jpg")
    healed = {u.visit: u for ulcer in heal_study(out, CFG) for u in ulcer.visits}
    assert healed["W4"].status != "healed" and healed["W4"].area_mm2 is None
    dest = tmp_path / "final.csv"
    CliRunner().invoke(main, ["review", "export-final", str(out), "-o", str(dest)])
    with dest.open(newline="", encoding="utf-8") as fh:
        final = {r["visit"]: r for r in csv.DictReader(fh)}
    for visit in ("W4", "W8"):
        assert final[visit]["final_source"] == "pending_review" and final[visit]["final_area_mm2"] == ""
        assert final[visit]["status"] == healed[visit].status == "not_assessable"
    served = {item.photo_sha256 for item in ReviewApp.load(out, CFG).items}
    # W4's unflagged photo too (its other photo, 12 mm², is on the other side); W8's carry no flag
    assert served == {_sha("w4a"), _sha("w4b"), _sha("w8a"), _sha("w8b")}


def test_one_decision_on_a_duplicated_photo_gives_no_visit_a_value(tmp_path: Path):
    """The same bytes filed at W4 and W8 are one review item (decisions are per bytes): one
    reader's accept of 0.2 mm² made both visits healed, and a 'confirmed' healing from a single
    photo. Until the wrong copy is removed, neither visit has a final value (pending, exit 1)."""
    from ulcerseg.healing import heal_study
    from ulcerseg.healing.config import ReviewSettings
    from ulcerseg.review.decisions import build_items, record_decision, salt_for

    out = tmp_path / "out"
    out.mkdir()
    with Study.open(out) as st:
        run = st.start_run("0.1", "m" * 64, "c" * 64, {}, tmp_path / "in")
        st.add_result(run, _result(out, "D0", _sha("d0"), 10.0, ()), "S1/D0/U1.jpg")
        for visit in ("W4", "W8"):
            st.add_result(run, _result(out, visit, _sha("copy"), 0.2, ()), f"S1/{visit}/U1.jpg")
    with Study.open(out) as st:
        rows = st.latest_measurements()
        assert all("duplicate_photo" in r["flags"] for r in rows if r["visit"] != "D0")
        (item,) = build_items(rows, out, salt_for(st.conn), ReviewSettings())
        add_reader(st.conn, "r1")
        record_decision(st.conn, out, item, "r1", "accept")
    healed = {v.visit: v for ulcer in heal_study(out, CFG) for v in ulcer.visits}
    assert healed["W4"].status == healed["W8"].status == "not_assessable"
    dest = tmp_path / "final.csv"
    res = CliRunner().invoke(main, ["review", "export-final", str(out), "-o", str(dest)])
    assert res.exit_code == 1 and "S1 U1 W8: duplicate_photo" in res.output
    with dest.open(newline="", encoding="utf-8") as fh:
        final = {r["visit"]: r for r in csv.DictReader(fh)}
    assert final["W4"]["final_source"] == final["W8"]["final_source"] == "duplicate_photo"
    assert final["W4"]["final_area_mm2"] == final["W8"]["final_area_mm2"] == ""


def test_a_photo_found_but_never_measured_stays_in_every_table(tmp_path: Path):
    """A run killed after finding the photos: the unmeasured photo was in no table (not in
    measurements.csv, not unresolved, not in the final table, which exited 0)."""
    from ulcerseg.healing import heal_study

    out = tmp_path / "out"
    out.mkdir()
    found = [("D0", _sha("d0")), ("W4", _sha("w4")), ("W8", _sha("w8"))]
    with Study.open(out) as st:
        inp = tmp_path / "in" / "S1"
        records = [
            (f"S1/{v}/U1.jpg", PhotoRecord(inp / v / "U1.jpg", "S1", "U1", v, visit_to_day(v), sha))
            for v, sha in found
        ]
        st.reconcile(records)
        run = st.start_run("0.1", "m" * 64, "c" * 64, {}, tmp_path / "in")
        for visit, sha in found[:2]:
            area = 10.0 if visit == "D0" else 4.0
            st.add_result(run, _result(out, visit, sha, area, ()), f"S1/{visit}/U1.jpg")
        st.export_csv()
        assert [(r["visit"], r["status"]) for r in st.unresolved()] == [("W8", "unmeasured")]
    with (out / "measurements.csv").open(newline="", encoding="utf-8") as fh:
        rows = {r["visit"]: r for r in csv.DictReader(fh)}
    assert rows["W8"]["status"] == "unmeasured" and rows["W8"]["flags"] == "not_measured"
    assert rows["W8"]["area_mm2"] == ""
    healed = {v.visit: v for ulcer in heal_study(out, CFG) for v in ulcer.visits}
    assert healed["W8"].status == "not_assessable"
    dest = tmp_path / "final.csv"
    res = CliRunner().invoke(main, ["review", "export-final", str(out), "-o", str(dest)])
    assert res.exit_code == 1 and "S1 U1 W8: pending_review" in res.output


def test_the_relative_area_tolerance_is_of_the_larger_reading():
    from ulcerseg.review.rules import find_disagreements

    # both beyond 0.5 mm²; 1.05 / 11.05 = 9.5% is within the 10% tolerance, 1.2 / 11.2 = 10.7% not
    decisions = [dec("near", "A", "correct", 10.0), dec("near", "B", "correct", 11.05),
                 dec("far", "A", "correct", 10.0), dec("far", "B", "correct", 11.2)]  # fmt: skip
    assert [(d["photo_sha256"], d["reason"]) for d in find_disagreements(decisions, CFG)] == [("far", "area")]


def test_an_accepted_area_drops_the_models_band():
    from ulcerseg.healing import compute_healing
    from ulcerseg.review.rules import final_rows

    # the model's band 0.3 .. 4.0 mm² straddles the healed limit (near_threshold); once a reader
    # accepts 3.0 mm² the band, which was the model's doubt, no longer counts
    rows = [row("base", "D0", 10.0), row("w2", "W2", 3.0, flags="low_confidence")]
    rows[1].update(area_low_mm2=0.3, area_high_mm2=4.0)
    fr = final_rows(rows, [dec("w2", "A", "accept", 3.0)], CFG)
    accepted = fr.rows[1]
    assert (accepted["area_low_mm2"], accepted["area_high_mm2"], accepted["reviewed"]) == (None, None, True)
    (ulcer,) = compute_healing(fr.rows, CFG)
    w2 = {v.visit: v for v in ulcer.visits}["W2"]
    assert w2.status == "improving" and "near_threshold" not in w2.healing_flags
    assert compute_healing(rows, CFG)[0].visits[1].healing_flags == ["near_threshold"]  # before review


def test_confirm_healed_vouches_for_a_flagged_photos_area():
    from ulcerseg.healing import compute_healing
    from ulcerseg.review.rules import final_rows

    # grayscale blocks a photo's area; the reader who confirms healed vouches for the photo
    rows = [row("base", "D0", 10.0), row("w2", "W2", 0.3, flags="grayscale")]
    fr = final_rows(rows, [dec("w2", "A", "confirm_healed")], CFG)
    assert fr.rows[1]["healed_override"] is True and fr.rows[1]["reviewed"] is True
    (ulcer,) = compute_healing(fr.rows, CFG)
    w2 = {v.visit: v for v in ulcer.visits}["W2"]
    assert (w2.status, w2.area_mm2) == ("healed", 0.3)
    assert w2.change_from_baseline_mm2 == pytest.approx(0.3 - 10.0)


def test_a_photo_whose_area_the_rules_do_not_use_is_no_value_not_automated():
    """An unflagged photo (nothing to review) carrying a flag that makes its area unusable
    (``grayscale``, in ``unassessable_flags``): the visit has no final value, so its source is
    ``none``, never ``automated`` beside an empty final area; nor is it pending."""
    unusable = dict(row("a" * 64, "D0", 5.0, flags="grayscale"), needs_review=0)
    got, pending = visits([unusable], [])
    assert got["D0"]["final_area_mm2"] is None and got["D0"]["automated_area_mm2"] == 5.0
    assert got["D0"]["final_source"] == "none" and got["D0"]["scale_source"] == "" and pending == 0


def test_an_accepted_area_is_the_reviewed_area_as_well_as_the_final_one():
    """accept keeps the automated area: the reader vouched for it, so reviewed_area_mm2 shows
    it (as for a correction), with the reader and the action."""
    rows = [row("base", "D0", 10.0), row("w2", "W2", 3.0, flags="low_confidence")]
    got, pending = visits(rows, [dec("w2", "A", "accept", 3.0)])
    w2 = got["W2"]
    assert (w2["reviewed_area_mm2"], w2["final_area_mm2"], w2["automated_area_mm2"]) == (3.0, 3.0, 3.0)
    assert (w2["final_source"], w2["review_action"], w2["reviewer"], pending) == ("review", "accept", "A", 0)
    assert got["D0"]["reviewed_area_mm2"] is None and got["D0"]["final_source"] == "automated"

"""Healing status rules and longitudinal flags on hand-made series."""

from __future__ import annotations

from pathlib import Path

import pytest

from ulcerseg.errors import ConfigError, InputError
from ulcerseg.healing import (
    HealingConfig,
    compute_healing,
    healing_config_from_dict,
    load_healing_config,
    visit_to_day,
)

SCHEDULE = ("D0", "W2", "W4", "W8")


def series(
    areas: dict[str, float | None],
    subject: str = "S001",
    ulcer: str = "U1",
    flags: dict[str, str] | None = None,
    dates: dict[str, str] | None = None,
) -> list[dict]:
    flags = flags or {}
    dates = dates or {}
    return [
        {
            "photo_sha256": f"{subject}{ulcer}{visit}",
            "subject_id": subject,
            "ulcer_id": ulcer,
            "visit": visit,
            "study_day": visit_to_day(visit),
            "photo_date": dates.get(visit),
            "status": "measured" if area is not None else "failed",
            "area_mm2": area,
            "area_low_mm2": None if area is None else area * 0.95,
            "area_high_mm2": None if area is None else area * 1.05,
            "flags": flags.get(visit, ""),
        }
        for visit, area in areas.items()
    ]


def cfg(**kw) -> HealingConfig:
    base = {"schedule": SCHEDULE, "near_threshold_area_mm2": 0.1, "near_threshold_pct": 2.0}
    base.update(kw)
    return HealingConfig(**base)


def by_visit(rows, config=None):
    (ulcer,) = compute_healing(rows, config or cfg())
    return ulcer, {v.visit: v for v in ulcer.visits}


def test_visit_to_day():
    assert visit_to_day("D0") == 0
    assert visit_to_day("D3") == 3
    assert visit_to_day("W4") == 28
    assert visit_to_day("W16") == 112
    with pytest.raises(InputError, match="'week4'"):
        visit_to_day("week4")


def test_status_rules_and_changes():
    ulcer, v = by_visit(series({"D0": 20.0, "W2": 19.0, "W4": 10.0, "W8": 0.2}))
    assert v["D0"].status == "baseline"  # the reference visit itself, not "stable"
    assert v["W2"].status == "stable"  # -5% is within +-20%
    assert v["W4"].status == "improving"
    assert v["W8"].status == "healed"
    assert v["W4"].change_from_baseline_mm2 == pytest.approx(-10.0)
    assert v["W4"].change_from_baseline_pct == pytest.approx(-50.0)
    assert v["W4"].change_from_previous_mm2 == pytest.approx(-9.0)
    assert v["W4"].change_from_previous_pct == pytest.approx(-9.0 / 19.0 * 100)
    assert ulcer.time_to_healing_days == 56
    assert ulcer.time_to_confirmed_healing_days is None  # no visit after W8
    # slope by least squares over days (0, 14, 28, 56) in mm²/week, negative = shrinking,
    # the same sign as change_from_baseline
    days = [0, 14, 28, 56]
    areas = [20.0, 19.0, 10.0, 0.2]
    md, ma = sum(days) / 4, sum(areas) / 4
    slope = sum((d - md) * (a - ma) for d, a in zip(days, areas, strict=True)) / sum(
        (d - md) ** 2 for d in days
    )
    assert ulcer.healing_rate_mm2_per_week == pytest.approx(7 * slope)
    assert ulcer.healing_rate_mm2_per_week < 0
    assert all(r.healing_rate_mm2_per_week == ulcer.healing_rate_mm2_per_week for r in v.values())
    assert ulcer.flags == []
    # a growing ulcer: both change and rate positive
    ulcer, v = by_visit(series({"D0": 10.0, "W2": 12.0, "W4": 14.0}))
    assert v["W4"].change_from_baseline_mm2 > 0 and ulcer.healing_rate_mm2_per_week > 0


def test_worsening_and_stable_thresholds():
    _, v = by_visit(series({"D0": 10.0, "W2": 12.5, "W4": 11.0, "W8": 8.1}))
    assert v["W2"].status == "worsening"  # +25%
    assert v["W4"].status == "stable"  # +10%
    assert v["W8"].status == "stable"  # -19%


def test_healed_requires_confidence():
    rows = series({"D0": 10.0, "W2": 0.3}, flags={"W2": "low_confidence"})
    _, v = by_visit(rows, cfg(schedule=("D0", "W2")))
    assert v["W2"].status == "not_assessable"  # issue 13: a flagged small area is no evidence
    rows = series({"D0": 10.0, "W2": 0.3})
    _, v = by_visit(rows, cfg(schedule=("D0", "W2")))
    assert v["W2"].status == "healed"


def test_healed_limit_applies_to_the_area_as_the_tables_show_it():
    # before: 0.504 mm² (shown 0.50) was open while 0.496 mm² (shown 0.50) was healed
    from ulcerseg.rounding import round_row

    config = cfg(schedule=("D0", "W2", "W4", "W8"))
    _, v = by_visit(series({"D0": 10.0, "W2": 0.504, "W4": 0.496, "W8": 0.506}), config)
    shown = {k: round_row({"area_mm2": r.area_mm2})["area_mm2"] for k, r in v.items()}
    assert shown == {"D0": 10.0, "W2": 0.5, "W4": 0.5, "W8": 0.51}
    assert (v["W2"].status, v["W4"].status) == ("healed", "healed")
    assert v["W8"].status == "recurred"  # 0.51 shown: above the limit
    # an open ulcer's baseline just above the limit as shown stays a usable reference
    _, v = by_visit(series({"D0": 0.506, "W2": 0.504}), cfg(schedule=("D0", "W2")))
    assert v["D0"].status == "baseline" and v["W2"].status == "healed"
    _, v = by_visit(series({"D0": 0.504, "W2": 0.2}), cfg(schedule=("D0", "W2")))
    assert "baseline_not_measurable" in v["D0"].healing_flags


def test_change_thresholds_apply_to_the_change_as_the_tables_show_it():
    """Baseline 10.00 mm² and 8.004 mm² (shown 8.00, change -20.0%) was "stable", while the same
    table listed -20.0% as improving on other rows; +19.96% (shown +20.0%) likewise."""
    from ulcerseg.rounding import round_row

    _, v = by_visit(series({"D0": 10.0, "W2": 8.004, "W4": 11.996, "W8": 8.006}))
    shown = {k: round_row({"change_from_baseline_pct": r.change_from_baseline_pct}) for k, r in v.items()}
    assert [shown[k]["change_from_baseline_pct"] for k in ("W2", "W4", "W8")] == [-20.0, 20.0, -19.9]
    assert (v["W2"].status, v["W4"].status, v["W8"].status) == ("improving", "worsening", "stable")


def test_recurred_and_healed_then_reappeared():
    ulcer, v = by_visit(series({"D0": 10.0, "W2": 0.0, "W4": 0.1, "W8": 3.0}))
    assert v["W2"].status == "healed"
    assert v["W4"].status == "healed"
    assert v["W8"].status == "recurred"
    assert "healed_then_reappeared" in v["W8"].healing_flags
    assert "healed_then_reappeared" not in v["W4"].healing_flags
    assert ulcer.time_to_healing_days == 14
    assert ulcer.time_to_confirmed_healing_days == 14


def test_confirmed_healing_needs_consecutive_healed_visits():
    ulcer, _ = by_visit(series({"D0": 10.0, "W2": 0.0, "W4": 2.0, "W8": 0.0}))
    assert ulcer.time_to_healing_days == 14
    assert ulcer.time_to_confirmed_healing_days is None


def test_not_assessable_when_unmeasured_or_flagged():
    rows = series({"D0": 10.0, "W2": None, "W4": 9.0, "W8": 8.0}, flags={"W4": "no_marker"})
    rows[3]["flags"] = "unreadable_file"
    _, v = by_visit(rows)
    assert v["W2"].status == "not_assessable"
    assert v["W4"].status == "not_assessable"
    assert v["W4"].area_mm2 is None
    assert v["W8"].status == "not_assessable"
    # a blurred photo is still assessable (flagged for review, not discarded)
    _, v = by_visit(series({"D0": 10.0, "W2": 5.0}, flags={"W2": "blurred"}), cfg(schedule=()))
    assert v["W2"].status == "improving"


def test_change_from_previous_skips_unmeasured_visit():
    _, v = by_visit(series({"D0": 10.0, "W2": None, "W4": 6.0, "W8": 4.0}))
    assert v["W4"].change_from_previous_mm2 == pytest.approx(-4.0)
    assert v["W8"].change_from_previous_mm2 == pytest.approx(-2.0)


def test_flag_implausible_jump():
    _, v = by_visit(series({"D0": 5.0, "W2": 30.0, "W4": 28.0, "W8": 25.0}))
    assert "implausible_jump" in v["W2"].healing_flags
    assert "implausible_jump" not in v["W4"].healing_flags
    # shrinking is judged by its own, looser factor
    _, v = by_visit(series({"D0": 30.0, "W2": 6.0, "W4": 2.0, "W8": 1.0}))
    assert all("implausible_jump" not in r.healing_flags for r in v.values())
    _, v = by_visit(series({"D0": 30.0, "W2": 2.0, "W4": 2.0, "W8": 2.0}))
    assert "implausible_jump" in v["W2"].healing_flags
    # shrinking to the healed range is healing, not a jump
    _, v = by_visit(series({"D0": 30.0, "W2": 0.0, "W4": 0.0, "W8": 0.0}))
    assert all("implausible_jump" not in r.healing_flags for r in v.values())


def test_flag_missing_visit():
    ulcer, v = by_visit(series({"D0": 10.0, "W4": 9.0}))
    assert set(v) == {"D0", "W2", "W4"}  # W8 is after the subject's last visit
    assert v["W2"].status == "not_assessable"
    assert v["W2"].healing_flags == ["missing_visit"]
    assert v["W2"].photo_sha256 is None
    assert "missing_visit" in ulcer.flags
    _, v = by_visit(series({"D0": 10.0, "W4": 9.0}), cfg(missing_visits_after_last=True))
    assert "missing_visit" in v["W8"].healing_flags


def test_flag_baseline_not_measurable_uses_first_measured_as_reference():
    ulcer, v = by_visit(series({"D0": None, "W2": 10.0, "W4": 5.0, "W8": 5.0}))
    assert all("baseline_not_measurable" in r.healing_flags for r in v.values())
    assert ulcer.baseline_visit == "D0"
    assert ulcer.reference_visit == "W2"
    assert v["W4"].change_from_baseline_pct == pytest.approx(-50.0)
    assert v["W4"].status == "improving"
    _, v = by_visit(series({"D0": 10.0, "W2": 10.0, "W4": 5.0, "W8": 5.0}))
    assert all("baseline_not_measurable" not in r.healing_flags for r in v.values())


def test_zero_area_at_baseline_is_a_failed_measurement_not_healing():
    # an enrolled ulcer is open at baseline: 0 mm² there means it was not found
    ulcer, v = by_visit(series({"D0": 0.0, "W2": 6.0, "W4": 3.0, "W8": 0.0}))
    assert v["D0"].status == "not_assessable"
    assert "baseline_not_measurable" in v["D0"].healing_flags
    assert v["D0"].change_from_baseline_pct is None
    assert ulcer.reference_visit == "W2"
    # the reference standing in for the failed baseline is labelled as one (it read "stable" at a
    # change of 0.0 from itself); not "recurred": nothing healed before
    assert v["W2"].status == "baseline" and v["W2"].change_from_baseline_pct == 0.0
    assert v["W4"].status == "improving" and v["W4"].change_from_baseline_pct == pytest.approx(-50.0)
    assert v["W8"].status == "healed"
    assert ulcer.time_to_healing_days == 56


def test_visits_before_the_baseline_are_compared_with_nothing():
    """With baseline_visit W4, D0 got a status against the later baseline (the sample trial's
    S002 U1 D0 "worsening", +359%); an ulcer whose W4 waits for review got reference_visit D0, a
    visit before the baseline, and D0 read "stable" at 0.0. Now a visit before the baseline is
    not_assessable with before_baseline (its area kept, no change from baseline), and the
    reference is a visit from the baseline on, labelled "baseline"."""
    w4 = cfg(baseline_visit="W4")
    ulcer, v = by_visit(series({"D0": 7.53, "W4": 1.64, "W8": 1.2}), w4)
    assert (ulcer.baseline_visit, ulcer.reference_visit) == ("W4", "W4")
    assert v["D0"].status == "not_assessable" and v["D0"].area_mm2 == 7.53
    assert v["D0"].healing_flags == ["before_baseline"] and v["D0"].change_from_baseline_pct is None
    assert v["W2"].status == "not_assessable" and v["W2"].healing_flags == [
        "missing_visit",
        "before_baseline",
    ]
    assert v["W4"].status == "baseline" and v["W4"].change_from_previous_mm2 == pytest.approx(1.64 - 7.53)
    assert v["W8"].status == "improving" and v["W8"].change_from_baseline_pct == pytest.approx(-26.8, abs=0.1)
    # the baseline waits for review: the reference is the next open visit, never D0
    rows = series({"D0": 18.31, "W4": 18.0, "W8": 17.63})
    rows[1]["review_pending"] = True
    ulcer, v = by_visit(rows, w4)
    assert (ulcer.baseline_visit, ulcer.reference_visit) == ("W4", "W8")
    assert v["D0"].status == "not_assessable" and "before_baseline" in v["D0"].healing_flags
    assert v["D0"].change_from_baseline_pct is None
    assert v["W4"].status == "not_assessable" and "before_baseline" not in v["W4"].healing_flags
    assert v["W8"].status == "baseline" and v["W8"].change_from_baseline_pct == 0.0
    assert all("baseline_not_measurable" in r.healing_flags for r in v.values())
    # a reader's confirm healed does not give a visit before the baseline a status either
    rows = series({"D0": 0.3, "W4": 10.0, "W8": 0.2})
    rows[0]["healed_override"] = True
    ulcer, v = by_visit(rows, w4)
    assert v["D0"].status == "not_assessable" and v["W8"].status == "healed"
    assert ulcer.time_to_healing_days == 56
    # every visit of the ulcer before the baseline (the subject left before W4): no baseline
    both = [*series({"D0": 5.0}, subject="S001"), *series({"D0": 6.0, "W4": 6.0}, subject="S002")]
    res = {u.subject_id: u for u in compute_healing(both, cfg(baseline_visit="W4", schedule=()))}
    assert res["S001"].reference_visit is None and res["S001"].baseline_visit == "W4"
    (row,) = res["S001"].visits
    assert row.status == "not_assessable"
    assert row.healing_flags == ["baseline_not_measurable", "before_baseline"]


def test_the_reference_of_an_ulcer_without_a_baseline_photo_is_labelled_baseline():
    """An ulcer that appeared after the baseline (no D0 photo) had its reference visit labelled
    "stable" at a change of 0.0 from itself; the README says "baseline" on the reference visit."""
    rows = [*series({"D0": 10.0, "W2": 9.0}, ulcer="U1"), *series({"W2": 8.0, "W4": 4.0}, ulcer="U2")]
    res = {u.ulcer_id: {v.visit: v for v in u.visits} for u in compute_healing(rows, cfg())}
    u2 = res["U2"]
    assert u2["D0"].status == "not_assessable" and u2["D0"].healing_flags[0] == "missing_visit"
    assert u2["W2"].status == "baseline" and u2["W2"].reference_visit == "W2"
    assert u2["W4"].status == "improving" and u2["W4"].change_from_baseline_pct == pytest.approx(-50.0)
    assert res["U1"]["D0"].status == "baseline" and res["U1"]["W2"].status == "stable"


def test_flag_near_threshold():
    c = cfg(near_threshold_area_mm2=0.1, near_threshold_pct=2.0)
    # area near the healed limit (0.55 vs 0.5), % change near -20 (-21%), band straddling 0.5
    rows = series({"D0": 10.0, "W2": 0.55, "W4": 7.9, "W8": 3.0})
    rows[1]["area_mm2"] = 0.55
    rows[2]["area_mm2"] = 7.9
    rows[3].update(area_mm2=3.0, area_low_mm2=0.3, area_high_mm2=4.0)
    _, v = by_visit(rows, c)
    assert "near_threshold" in v["W2"].healing_flags
    assert "near_threshold" in v["W4"].healing_flags
    assert "near_threshold" in v["W8"].healing_flags
    assert "near_threshold" not in v["D0"].healing_flags
    rows = series({"D0": 10.0, "W2": 5.0, "W4": 3.0, "W8": 1.0})
    _, v = by_visit(rows, c)
    assert all("near_threshold" not in r.healing_flags for r in v.values())


def test_id_order_key_reads_digit_runs_as_numbers_and_is_total():
    from ulcerseg.ids import id_order_key

    ids = ["U10", "U2", "U1", "U01", "Ua", "U1b", "2", "10"]
    assert sorted(ids, key=id_order_key) == ["2", "10", "U01", "U1", "U1b", "U2", "U10", "Ua"]
    assert sorted(reversed(ids), key=id_order_key) == sorted(ids, key=id_order_key)


def test_cardinal_ulcer_tie_goes_to_the_lowest_ulcer_id_as_read():
    def cardinal(*ulcers: tuple[str, float | None]) -> str:
        rows = [r for u, a in ulcers for r in series({"D0": a, "W2": 4.0}, ulcer=u)]
        (chosen,) = [u.ulcer_id for u in compute_healing(rows, cfg(schedule=("D0", "W2"))) if u.is_cardinal]
        return chosen

    assert cardinal(("U1", 8.0), ("U2", 8.0)) == "U1"  # equal baseline areas
    assert cardinal(("U2", 8.0), ("U1", 8.0)) == "U1"  # whatever order the rows come in
    assert cardinal(("U10", 8.0), ("U2", 8.0)) == "U2"  # read as numbers, not as text
    assert cardinal(("U3", None), ("U2", None)) == "U2"  # no baseline measured at all
    assert cardinal(("U1", None), ("U2", 0.5)) == "U2"  # a measured baseline beats none


def test_flag_date_inconsistent():
    dates = {"D0": "2024-01-01", "W2": "2024-01-16", "W4": "2024-02-20", "W8": "2024-02-26"}
    _, v = by_visit(series({"D0": 10.0, "W2": 9.0, "W4": 8.0, "W8": 7.0}, dates=dates))
    assert "date_inconsistent" not in v["W2"].healing_flags  # 15 vs 14 days
    assert "date_inconsistent" in v["W4"].healing_flags  # 50 vs 28 days
    assert "date_inconsistent" not in v["W8"].healing_flags  # 56 vs 56
    assert "date_inconsistent" not in v["D0"].healing_flags


def test_cardinal_ulcer_designation():
    rows = series({"D0": 5.0, "W2": 4.0}, ulcer="U1") + series({"D0": 12.0, "W2": 9.0}, ulcer="U2")
    c = cfg(schedule=("D0", "W2"))
    res = {u.ulcer_id: u for u in compute_healing(rows, c)}
    assert res["U2"].is_cardinal and res["U2"].cardinal_source == "largest_baseline"
    assert not res["U1"].is_cardinal
    assert all(v.is_cardinal for v in res["U2"].visits)
    res = {u.ulcer_id: u for u in compute_healing(rows, cfg(schedule=(), cardinal_ulcers={"S001": "U1"}))}
    assert res["U1"].is_cardinal and res["U1"].cardinal_source == "config"
    for r in rows:
        r["cardinal"] = "yes" if r["ulcer_id"] == "U1" else ""
    res = {u.ulcer_id: u for u in compute_healing(rows, c)}
    assert res["U1"].is_cardinal and res["U1"].cardinal_source == "manifest"


def test_the_configs_cardinal_ulcer_overrides_the_manifests_with_a_warning(caplog):
    rows = series({"D0": 5.0, "W2": 4.0}, ulcer="U1") + series({"D0": 12.0, "W2": 9.0}, ulcer="U2")
    for r in rows:
        r["cardinal"] = 1 if r["ulcer_id"] == "U1" else 0  # as study.sqlite stores the mark
    with caplog.at_level("WARNING"):
        res = {u.ulcer_id: u for u in compute_healing(rows, cfg(schedule=(), cardinal_ulcers={"S001": "U2"}))}
    assert res["U2"].is_cardinal and res["U2"].cardinal_source == "config"
    assert "the healing config's cardinal ulcer U2 is used; the manifest marks U1" in caplog.text
    # a photo no longer at its path keeps the mark of the manifest that listed it: not read
    for r in rows:
        r["status"] = "missing" if r["ulcer_id"] == "U1" else "measured"
    res = {u.ulcer_id: u for u in compute_healing(rows, cfg(schedule=()))}
    assert res["U2"].cardinal_source == "largest_baseline" and not res["U1"].is_cardinal


def test_a_failed_photos_cardinal_mark_counts_and_a_config_choice_is_said_whatever_else_is_marked(caplog):
    """Only a missing photo's mark is not read: a photo whose measurement failed is still the
    manifest's designation (mutation round 7, H2). The config's choice is said over any other
    mark, also where the rows mark its ulcer and another one (H4)."""
    rows = series({"D0": None}, ulcer="U1") + series({"D0": 12.0}, ulcer="U2")
    for r in rows:
        r["status"] = "failed" if r["ulcer_id"] == "U1" else "measured"
        r["cardinal"] = 1 if r["ulcer_id"] == "U1" else 0
    res = {u.ulcer_id: u for u in compute_healing(rows, cfg(schedule=()))}
    assert res["U1"].is_cardinal and res["U1"].cardinal_source == "manifest"
    assert not res["U2"].is_cardinal
    for r in rows:
        r["cardinal"] = 1  # rows from the Python API may mark two ulcers
    with caplog.at_level("WARNING"):
        res = {u.ulcer_id: u for u in compute_healing(rows, cfg(schedule=(), cardinal_ulcers={"S001": "U1"}))}
    assert res["U1"].cardinal_source == "config"
    assert "the healing config's cardinal ulcer U1 is used; the manifest marks U1, U2" in caplog.text


def test_a_cardinal_ulcer_the_study_has_no_photo_of_is_flagged_on_its_subject():
    rows = series({"D0": 5.0, "W2": 4.0}, ulcer="U1") + series({"D0": 6.0}, subject="S002")
    res = compute_healing(rows, cfg(schedule=(), cardinal_ulcers={"S001": "U9"}))  # a typo for U1
    s001 = [v for u in res if u.subject_id == "S001" for v in u.visits]
    assert s001 and all("cardinal_ulcer_missing" in v.healing_flags and not v.is_cardinal for v in s001)
    (s002,) = (u for u in res if u.subject_id == "S002")  # other subjects: their own rule
    assert s002.is_cardinal and "cardinal_ulcer_missing" not in s002.visits[0].healing_flags


def test_a_cardinal_subject_the_study_has_no_photo_of_is_said(caplog):
    """cardinal_ulcers {S01: U1} (a typo for S001) left S001 to the largest-ulcer rule without a word."""
    rows = series({"D0": 5.0}, ulcer="U1") + series({"D0": 6.0}, ulcer="U2")
    with caplog.at_level("WARNING", logger="ulcerseg.healing.rules"):
        res = compute_healing(rows, cfg(schedule=(), cardinal_ulcers={"S01": "U1"}))
    assert [u.ulcer_id for u in res if u.is_cardinal] == ["U2"]  # the rule of a subject not named
    (warning,) = [r.getMessage() for r in caplog.records if "cardinal_ulcers" in r.getMessage()]
    assert "names subject(s) S01, which have no photos" in warning and "its subjects: S001" in warning


def test_cardinal_ulcers_in_the_config_match_ids_whatever_their_unicode_form():
    import unicodedata

    # discovery stores IDs in NFC; a config typed decomposed (NFD, e.g. pasted from a macOS
    # folder name) still names that subject, instead of its largest ulcer silently counting
    subject = unicodedata.normalize("NFC", "Sé01")
    rows = series({"D0": 10.0}, subject=subject, ulcer="U1") + series(
        {"D0": 3.0}, subject=subject, ulcer="U2"
    )
    typed = {unicodedata.normalize("NFD", subject) + " ": unicodedata.normalize("NFD", "U2")}
    res = {u.ulcer_id: u for u in compute_healing(rows, healing_config_from_dict({"cardinal_ulcers": typed}))}
    assert res["U2"].is_cardinal and res["U2"].cardinal_source == "config" and not res["U1"].is_cardinal
    with pytest.raises(ConfigError, match="given twice"):  # two spellings of one subject
        healing_config_from_dict(
            {"cardinal_ulcers": {subject: "U1", unicodedata.normalize("NFD", subject): "U2"}}
        )


def test_cardinal_ulcers_written_with_leading_zeros_keep_them(tmp_path: Path):
    # YAML reads 001 as the integer 1 (and 010 as 8): the config named subject 001, the study
    # had no subject 1, and its largest ulcer silently became the cardinal one
    path = tmp_path / "healing.yaml"
    path.write_text("cardinal_ulcers: {001: 01, 010: 02}\ndate_window_days: 010\n", encoding="utf-8")
    c = load_healing_config(path)
    assert c.cardinal_ulcers == {"001": "01", "010": "02"}
    assert c.date_window_days == 8 and type(c.date_window_days) is int  # numbers as YAML reads them
    rows = series({"D0": 3.0}, subject="001", ulcer="01") + series({"D0": 9.0}, subject="001", ulcer="02")
    res = {u.ulcer_id: u for u in compute_healing(rows, c)}
    assert res["01"].is_cardinal and res["01"].cardinal_source == "config" and not res["02"].is_cardinal


def test_a_baseline_visit_no_photo_of_the_study_has_is_an_error_not_a_silent_fallback():
    rows = series({"W4": 5.0, "W8": 0.0})
    why = r"baseline_visit 'W2' is no visit of the study \(its visits: W4, W8\)"
    with pytest.raises(InputError, match=why):
        compute_healing(rows, cfg(schedule=(), baseline_visit="W2"))
    # an ulcer without a baseline photo in a study that has the baseline: healing as before
    rows += series({"D0": 8.0}, ulcer="U2")
    (u1,) = (u for u in compute_healing(rows, cfg(schedule=())) if u.ulcer_id == "U1")
    assert [v.visit for v in u1.visits] == ["D0", "W4", "W8"]
    assert "missing_visit" in u1.visits[0].healing_flags


def test_several_photos_per_visit_use_median():
    rows = series({"D0": 10.0, "W2": 4.0})
    extra = dict(rows[1], photo_sha256="x2", area_mm2=6.0)
    extra3 = dict(rows[1], photo_sha256="x3", area_mm2=5.0)
    _, v = by_visit([*rows, extra, extra3], cfg(schedule=()))
    assert v["W2"].n_photos == 3
    assert v["W2"].area_mm2 == 5.0
    assert v["W2"].photo_sha256 == "x3"


def test_config_validation(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown key 'healed_limit'"):
        healing_config_from_dict({"healed_limit": 1.0}, "x.yaml")
    with pytest.raises(ConfigError, match="'improving_min_reduction_pct'"):
        healing_config_from_dict({"improving_min_reduction_pct": "lots"}, "x.yaml")
    with pytest.raises(ConfigError, match="'schedule'"):
        healing_config_from_dict({"schedule": ["D0", "month3"]}, "x.yaml")
    with pytest.raises(ConfigError, match=r"review\.colour"):
        healing_config_from_dict({"review": {"colour": "red"}}, "x.yaml")
    path = tmp_path / "h.yaml"
    path.write_text("healed_max_area_mm2: -1\n")
    with pytest.raises(ConfigError, match=r"h\.yaml.*healed_max_area_mm2"):
        load_healing_config(path)
    # the shipped config loads and equals the built-in defaults (used when it is not installed)
    shipped = load_healing_config(Path(__file__).parent.parent / "configs" / "healing.yaml")
    assert shipped == HealingConfig()
    assert shipped.schedule == ()  # no protocol named: the study's visits are expected
    assert shipped.review.show_visit_label is False
    with pytest.raises(AttributeError):
        shipped.healed_max_area_mm2 = 1.0  # type: ignore[misc]


def test_config_refuses_values_that_would_never_apply() -> None:
    """A misspelt flag in unassessable_flags silently never matched (a no_marker photo's visit
    was then no longer held as not assessable by it), and a reduction over 100% made
    'improving' unreachable; both loaded without a word."""
    with pytest.raises(ConfigError) as info:
        healing_config_from_dict({"unassessable_flags": ["no_marker", "no_markr"]}, "x.yaml")
    msg = str(info.value)
    assert msg.startswith("x.yaml: key 'unassessable_flags': unknown flag 'no_markr'") and "\n" not in msg
    with pytest.raises(ConfigError, match=r"x\.yaml: key 'improving_min_reduction_pct' must be <= 100"):
        healing_config_from_dict({"improving_min_reduction_pct": 150}, "x.yaml")
    ok = healing_config_from_dict({"unassessable_flags": ["no_marker"], "improving_min_reduction_pct": 100})
    assert ok.unassessable_flags == ("no_marker",)


def test_config_refuses_thresholds_in_the_wrong_units(tmp_path: Path) -> None:
    """healed_max_area_mm2: 50 (a value in other units) loaded without a word and called every
    measured ulcer healed (the sample trial's S001 U1 at W8, 17.63 mm², 3.7% below baseline) and
    every measured baseline not assessable, exit 0; a change threshold written as a fraction
    (0.2 for 20%) sorted noise into improving; a disagreement tolerance of 100% or more never
    found a disagreement in area. Each is now a one-line error naming the key and the value."""
    path = tmp_path / "h.yaml"
    path.write_text("healed_max_area_mm2: 50\n")
    with pytest.raises(ConfigError) as info:
        load_healing_config(path)
    msg = str(info.value)
    assert msg == (
        f"{path}: key 'healed_max_area_mm2' must be between 0 and 2 mm² (the largest area a healed "
        "ulcer may still measure), got 50.0"
    )
    for raw, key in [
        ({"healed_max_area_mm2": 2.01}, "'healed_max_area_mm2' must be between 0 and 2 mm²"),
        ({"improving_min_reduction_pct": 0.2}, "'improving_min_reduction_pct' must be at least 1"),
        ({"worsening_min_increase_pct": 0.5}, "'worsening_min_increase_pct' must be at least 1"),
        ({"review": {"disagreement_area_tolerance_pct": 100}}, "'review.disagreement_area_tolerance_pct'"),
    ]:
        with pytest.raises(ConfigError) as info:
            healing_config_from_dict(raw, "x.yaml")
        assert str(info.value).startswith(f"x.yaml: key {key}") and "\n" not in str(info.value), raw
    # the edges of the ranges load
    ok = healing_config_from_dict(
        {"healed_max_area_mm2": 2, "improving_min_reduction_pct": 1, "worsening_min_increase_pct": 1}
    )
    assert ok.healed_max_area_mm2 == 2.0 and ok.worsening_min_increase_pct == 1.0
    assert healing_config_from_dict({"healed_max_area_mm2": 0}).healed_max_area_mm2 == 0.0
    assert healing_config_from_dict({"review": {"disagreement_area_tolerance_pct": 99.9}})


def test_config_refuses_a_baseline_visit_outside_its_schedule() -> None:
    """A protocol whose reference visit is not one of its visits loaded without a word."""
    with pytest.raises(ConfigError) as info:
        healing_config_from_dict({"schedule": ["D0", "W2", "W4"], "baseline_visit": "W3"}, "x.yaml")
    assert str(info.value).startswith("x.yaml: key 'baseline_visit' 'W3' is not one of the visits")
    ok = healing_config_from_dict({"schedule": ["d0", "W02", "W4"], "baseline_visit": "W2"})
    assert ok.baseline_visit == "W2"  # labels compared as discovery reports them
    assert healing_config_from_dict({"baseline_visit": "W3"}).schedule == ()  # no protocol named


def test_review_overrides():
    # an assessor-vouched area ignores the low-confidence flag that would forbid "healed"
    rows = series({"D0": 10.0, "W2": 0.3}, flags={"W2": "low_confidence"})
    rows[1]["reviewed"] = True
    _, v = by_visit(rows, cfg(schedule=()))
    assert v["W2"].status == "healed"
    # confirm healed wins over the area rule; reject healed forbids it
    rows = series({"D0": 10.0, "W2": 2.0, "W4": 0.1})
    rows[1]["healed_override"] = True
    rows[2]["healed_override"] = False
    ulcer, v = by_visit(rows, cfg(schedule=()))
    assert v["W2"].status == "healed"
    assert v["W2"].change_from_baseline_pct == pytest.approx(-80.0)
    assert v["W4"].status == "improving"
    assert ulcer.time_to_healing_days == 14
    # a reviewed not-assessable photo (area removed) is not assessable
    rows = series({"D0": 10.0, "W2": 5.0})
    rows[1]["area_mm2"] = None
    _, v = by_visit(rows, cfg(schedule=()))
    assert v["W2"].status == "not_assessable"


def test_schedule_from_study_unless_protocol_named():
    rows = [
        *series({"D0": 10.0, "W4": 9.0, "W8": 8.0}, subject="S001"),
        *series({"D0": 12.0, "W8": 11.0}, subject="S002"),
    ]
    # no protocol named: the visits present in the study (D0, W4, W8) are expected; nobody had W2
    res = {u.subject_id: {v.visit: v for v in u.visits} for u in compute_healing(rows, cfg(schedule=()))}
    assert set(res["S001"]) == {"D0", "W4", "W8"}
    assert set(res["S002"]) == {"D0", "W4", "W8"}
    assert res["S002"]["W4"].healing_flags == ["missing_visit"]
    assert res["S002"]["W4"].study_day == 28 and res["S002"]["W4"].status == "not_assessable"
    assert all("missing_visit" not in v.healing_flags for v in res["S001"].values())
    # a protocol named in the config: its visits are expected, W2 included
    res = {
        u.subject_id: {v.visit: v for v in u.visits} for u in compute_healing(rows, cfg(schedule=SCHEDULE))
    }
    assert res["S001"]["W2"].healing_flags == ["missing_visit"]
    assert set(res["S002"]) == {"D0", "W2", "W4", "W8"}
    # the packaged defaults name no protocol
    assert HealingConfig().schedule == ()


def test_baseline_status_only_on_measurable_reference():
    _, v = by_visit(series({"D0": 10.0, "W2": 9.5}))
    assert v["D0"].status == "baseline" and v["W2"].status == "stable"
    assert v["D0"].change_from_baseline_mm2 == 0.0
    _, v = by_visit(series({"D0": None, "W2": 10.0, "W4": 10.0}))
    assert v["D0"].status == "not_assessable"


def test_csv_rounding_rule():
    from ulcerseg.rounding import csv_decimals, round_row

    row = {
        "area_mm2": 12.345678,
        "change_from_baseline_mm2": -1.5300000000000011,
        "change_from_baseline_pct": 0.07500000000000018,
        "healing_rate_mm2_per_week": -0.123456,
        "perimeter_mm": 3.14159,
        "study_day": 14,
        "is_cardinal": True,
        "area_low_mm2": None,
        "flags": "blurred",
        "change_from_previous_pct": -0.04,
    }
    out = round_row(row)
    assert out["area_mm2"] == 12.35
    assert out["change_from_baseline_mm2"] == -1.53
    assert out["change_from_baseline_pct"] == 0.1
    assert out["healing_rate_mm2_per_week"] == -0.12
    assert str(out["change_from_previous_pct"]) == "0.0"  # no "-0.0"
    assert out["perimeter_mm"] == 3.14159 and out["study_day"] == 14 and out["is_cardinal"] is True
    assert out["area_low_mm2"] is None and out["flags"] == "blurred"
    assert row["area_mm2"] == 12.345678  # the input is not modified
    assert [csv_decimals(c) for c in ("area_mm2", "x_pct", "healing_rate_mm2_per_week")] == [2, 1, 2]


def test_csv_rounding_of_a_data_frame_writes_no_negative_zero():
    import pandas as pd

    from ulcerseg.rounding import round_frame

    frame = pd.DataFrame({"area_mm2": [-0.001, 1.234], "change_pct": [-0.04, 12.34], "visit": ["D0", "W2"]})
    out = round_frame(frame)
    assert out.to_csv(index=False).splitlines() == ["area_mm2,change_pct,visit", "0.0,0.0,D0", "1.23,12.3,W2"]
    assert frame["area_mm2"][0] == -0.001  # the input is not modified


def test_deprecated_healing_key_is_accepted_with_a_message(caplog: pytest.LogCaptureFixture) -> None:
    from ulcerseg.healing.config import HealingConfig, healing_config_from_dict

    with caplog.at_level("WARNING"):
        cfg = healing_config_from_dict({"low_confidence_flags": ["low_confidence"]}, "old.yaml")
    assert cfg == HealingConfig()
    assert "old.yaml: 'low_confidence_flags' is deprecated and ignored" in caplog.text
    with pytest.raises(ConfigError, match="low_confidence_flagz"):
        healing_config_from_dict({"low_confidence_flagz": []}, "typo.yaml")


def test_visit_on_hold_has_no_value_and_no_status_from_its_other_photos():
    from ulcerseg.healing.rules import VisitHold, visit_holds

    base = series({"D0": 10.0, "W2": 0.3})
    c = cfg(schedule=())
    # a second W2 photo that waits for review (flagged, undecided: no value) holds the visit
    waiting = dict(base[1], photo_sha256="w", area_mm2=None, status="failed", review_pending=True)
    ulcer, v = by_visit([*base, waiting], c)
    assert v["W2"].status == "not_assessable" and v["W2"].area_mm2 is None
    assert v["W2"].photo_sha256 == "w" and ulcer.time_to_healing_days is None
    assert visit_holds([*base, waiting], c) == {("S001", "U1", "W2"): VisitHold.REVIEW_PENDING}
    # measured photos on both sides of the healed limit: no side is taken
    big = dict(base[1], photo_sha256="big", area_mm2=6.0)
    _, v = by_visit([*base, big], c)
    assert v["W2"].status == "not_assessable" and v["W2"].area_mm2 is None
    assert visit_holds([*base, big], c) == {("S001", "U1", "W2"): VisitHold.PHOTOS_DISAGREE}
    # a reader's reject healed on the larger photo puts both on one side: no longer on hold
    rejected = dict(base[1], photo_sha256="r", area_mm2=0.4, healed_override=False)
    _, v = by_visit([*base, rejected], c)
    assert v["W2"].status == "not_assessable" and visit_holds([*base, rejected], c)
    both = [base[0], dict(base[1], healed_override=False), rejected]
    _, v = by_visit(both, c)
    assert v["W2"].status == "improving" and v["W2"].area_mm2 == 0.3 and visit_holds(both, c) == {}


def test_reject_healed_on_any_photo_of_the_visit_forbids_healed():
    # the rejected photo is not the representative (lower median) one: its reject still counts
    base = series({"D0": 10.0, "W2": 0.2, "W4": 13.0})
    other = dict(base[1], photo_sha256="x", area_mm2=0.3, healed_override=False)
    ulcer, v = by_visit([*base, other], cfg(schedule=()))
    assert v["W2"].status == "not_assessable"  # a reader must settle which photo is right
    assert ulcer.time_to_healing_days is None
    assert v["W4"].status == "worsening"  # not "recurred": nothing healed before


def test_a_failed_photo_is_never_healed_whatever_area_it_carries():
    # a photo measured and then failed (e.g. its outputs could not be written) keeps its area;
    # without a reader's review it is no evidence, even where its flag is not a blocking one
    rows = series({"D0": 10.0, "W2": 8.0, "W4": 0.3})
    rows[2]["status"] = "failed"
    ulcer, v = by_visit(rows, cfg(unassessable_flags=()))
    assert v["W4"].status == "not_assessable" and v["W4"].area_mm2 is None
    assert ulcer.time_to_healing_days is None
    rows[2]["reviewed"] = True  # an assessor vouched for the area
    ulcer, v = by_visit(rows, cfg(unassessable_flags=()))
    assert v["W4"].status == "healed" and ulcer.time_to_healing_days == 28


def test_a_photo_dated_too_early_is_date_inconsistent_too():
    dates = {"D0": "2024-01-01", "W2": "2024-01-15", "W4": "2024-01-19"}  # W4 taken day 18, not 28
    _, v = by_visit(series({"D0": 10.0, "W2": 9.0, "W4": 8.0}, dates=dates))
    assert "date_inconsistent" in v["W4"].healing_flags
    assert "date_inconsistent" not in v["W2"].healing_flags


def test_a_visit_on_the_subjects_last_day_is_missing_for_an_ulcer_without_it():
    # the subject's last visit (W4, day 28) has a photo of U1 only: U2 missed it
    rows = series({"D0": 10.0, "W2": 9.0, "W4": 8.0}, ulcer="U1") + series({"D0": 6.0, "W2": 5.0}, ulcer="U2")
    res = {u.ulcer_id: {v.visit: v for v in u.visits} for u in compute_healing(rows, cfg())}
    assert res["U2"]["W4"].healing_flags == ["missing_visit"]
    assert "W8" not in res["U2"]  # after the subject's last visit


def test_an_implausible_jump_is_more_than_the_factor():
    _, v = by_visit(series({"D0": 2.0, "W2": 8.0, "W4": 32.5}))  # x4 exactly, then x4.06
    assert "implausible_jump" not in v["W2"].healing_flags
    assert "implausible_jump" in v["W4"].healing_flags
    _, v = by_visit(series({"D0": 20.0, "W2": 2.0, "W4": 0.6}), cfg(implausible_shrink_factor=10.0))
    assert "implausible_jump" not in v["W2"].healing_flags  # / 10 exactly


def test_healing_csv_rows_write_booleans_as_0_1_and_flag_lists_joined(tmp_path: Path):
    """healing.csv: one row per ulcer and visit, ``is_cardinal`` 1 or 0 (never True/False),
    flag lists ';'-joined, the heal run in each row."""
    import csv

    from ulcerseg.healing.table import flat_rows, write_healing_csv

    rows = series({"D0": 10.0, "W2": 6.0}, ulcer="U1") + series({"D0": 4.0, "W2": 3.0}, ulcer="U2")
    rows[1]["flags"] = "blurred;low_confidence"
    flat = flat_rows(compute_healing(rows, cfg()), "heal-1")
    # the cardinal ulcer: the largest baseline area (U1, 10 mm² at D0)
    assert [(r["ulcer_id"], r["visit"], r["is_cardinal"]) for r in flat if r["visit"] in ("D0", "W2")] == [
        ("U1", "D0", 1), ("U1", "W2", 1), ("U2", "D0", 0), ("U2", "W2", 0)
    ]  # fmt: skip
    with write_healing_csv(flat, tmp_path / "healing.csv").open(newline="") as fh:
        written = [r for r in csv.DictReader(fh) if r["visit"] in ("D0", "W2")]
    assert [r["is_cardinal"] for r in written] == ["1", "1", "0", "0"]
    assert {r["heal_run"] for r in written} == {"heal-1"}
    assert written[1]["photo_flags"] == "blurred;low_confidence"


def test_a_visit_before_the_reference_is_compared_with_nothing():
    """With the baseline unmeasured, W2 (0.3 mm², a reader rejected healed) was compared with the
    later reference W4 (10 mm²): "improving" at -97% while the ulcer grew; without any open
    visit it read "stable" from nothing. Found by a property test (tests/test_prop_healing.py)."""
    rows = series({"D0": None, "W2": 0.3, "W4": 10.0, "W8": 7.0})
    rows[1]["healed_override"] = False
    ulcer, v = by_visit(rows)
    assert ulcer.reference_visit == "W4"
    assert v["W2"].status == "not_assessable" and v["W2"].change_from_baseline_pct is None
    assert v["W2"].change_from_baseline_mm2 is None and v["W2"].area_mm2 == 0.3
    assert v["W4"].status == "baseline" and v["W8"].status == "improving"
    # no open visit at all: nothing to compare with
    ulcer, v = by_visit(rows[:2], cfg(schedule=()))
    assert ulcer.reference_visit is None and v["W2"].status == "not_assessable"
    # a healed visit needs no reference, but gets no change from a later one
    rows = series({"D0": None, "W2": 0.0, "W4": 10.0})
    ulcer, v = by_visit(rows, cfg(schedule=()))
    assert v["W2"].status == "healed" and v["W2"].change_from_baseline_pct is None
    assert v["W4"].status == "recurred" and ulcer.time_to_healing_days == 14


def test_the_photo_that_stands_for_a_visit_does_not_depend_on_the_row_order():
    """Two W4 photos of 0.0 mm² (no ulcer found), one of them also blurred: the first row stood
    for the visit, so W4 was healed or not_assessable by file name order. Among equal areas the
    photo whose quality checks passed stands for it; otherwise the lowest photo SHA-256, as for
    a visit without a usable area or waiting for review. Found by a property test."""
    base = series({"D0": 10.0, "W4": 0.0}, flags={"W4": "no_ulcer_found"})
    other = dict(base[1], photo_sha256="a", flags="no_ulcer_found;blurred")
    c = cfg(schedule=())
    for rows in ([*base, other], [base[0], other, base[1]]):
        ulcer, v = by_visit(rows, c)
        assert v["W4"].status == "healed" and v["W4"].photo_sha256 == base[1]["photo_sha256"]
        assert ulcer.time_to_healing_days == 28
    # no usable area, or waiting for review: the same photo whatever the order
    failed = [dict(base[1], photo_sha256=s, status="failed", area_mm2=None) for s in ("b", "a")]
    for rows in ([base[0], *failed], [base[0], *failed[::-1]]):
        assert by_visit(rows, c)[1]["W4"].photo_sha256 == "a"
    pending = [dict(base[1], photo_sha256=s, review_pending=True) for s in ("b", "a")]
    for rows in ([base[0], *pending], [base[0], *pending[::-1]]):
        assert by_visit(rows, c)[1]["W4"].photo_sha256 == "a"

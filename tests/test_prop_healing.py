"""Differential property tests of the healing rules (``compute_healing``).

An independent oracle, written from the README ("Outputs", the ``healing.csv`` bullet and the
column table), ``configs/healing.yaml`` and the docstring of ``compute_healing``, is compared
with the code on small random studies; metamorphic properties need no oracle. Where the
documentation is silent the oracle follows the code, and says so in a comment (``# code:``).
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, replace
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

from ulcerseg.healing import HealingConfig, compute_healing, visit_to_day
from ulcerseg.ids import id_order_key

# examples per test in the derandomized "ci" profile; HYPOTHESIS_PROFILE=explore keeps its own
EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"


def examples(n: int) -> int:
    return settings().max_examples if EXPLORE else n


VISITS = ("D0", "W2", "W4", "W8", "W12", "W16")
# areas around the healed limit (0.5, as shown to 0.01 mm²) and around +-20% of 10 mm²
AREAS = (
    0.0,
    0.3,
    0.496,
    0.5,
    0.504,
    0.506,
    0.6,
    2.0,
    7.9,
    7.996,
    8.0,
    8.004,
    8.006,
    10.0,
    11.996,
    12.0,
    12.5,
    25.0,
)


# --- strategy ------------------------------------------------------------------------------
# flags of a photo: none, the finding of a healed ulcer, quality flags, unassessable ones
FLAG_SETS = (
    "",
    "",
    "",
    "no_ulcer_found",
    "no_ulcer_found",
    "blurred",
    "low_confidence",
    "no_ulcer_found;low_confidence",
    "search_incomplete",
    "dark_bed",
    "no_marker",
    "unreadable_file",
)
# review state of a photo: mostly none (and shrinking to none)
REVIEW = (
    *([{}] * 12),
    {"reviewed": True},
    {"review_pending": True},
    {"healed_override": True},
    {"healed_override": False},
    {"reviewed": True, "healed_override": False},
)


@st.composite
def photos(draw: st.DrawFn) -> dict[str, Any]:
    # 10 mm² a baseline often; 8.004 and 11.996 are -19.96% and +19.96% of it (shown +-20.0%)
    area = draw(
        st.one_of(
            st.sampled_from((10.0, 10.0, 8.004, 11.996, *AREAS)),
            st.none(),
            st.floats(0, 30, allow_subnormal=False),
        )
    )
    row: dict[str, Any] = {
        "area_mm2": area,
        "status": draw(st.sampled_from(("measured", "measured", "measured", "failed"))),
        "flags": draw(st.sampled_from(FLAG_SETS)),
    }
    row.update(draw(st.sampled_from(REVIEW)))
    return row


@st.composite
def studies(draw: st.DrawFn) -> tuple[list[dict[str, Any]], HealingConfig]:
    rows: list[dict[str, Any]] = []
    for s in range(draw(st.integers(1, 3))):
        subject = f"S00{s + 1}"
        ulcers = draw(st.lists(st.sampled_from(("U1", "U2", "U10")), min_size=1, max_size=3, unique=True))
        marked = draw(st.sampled_from((None, *ulcers)))  # the manifest's cardinal ulcer, if any
        for ulcer in ulcers:
            for visit in VISITS:
                same = draw(st.booleans())  # photos of one visit with one area (0.0 twice)
                for i in range(draw(st.sampled_from((0, 1, 1, 1, 2, 3)))):
                    row = draw(photos())
                    if same and i:
                        row["area_mm2"] = rows[-1]["area_mm2"]
                    row.update(subject_id=subject, ulcer_id=ulcer, visit=visit, study_day=visit_to_day(visit))
                    if ulcer == marked:
                        row["cardinal"] = 1
                    rows.append(row)
    baseline = draw(st.sampled_from(("D0", "D0", "W2")))
    assume(any(r["visit"] == baseline for r in rows))
    for i, row in enumerate(rows):
        row["photo_sha256"] = f"p{i:03d}"
    cfg = HealingConfig(
        baseline_visit=baseline,
        schedule=draw(st.sampled_from(((), VISITS))),
        missing_visits_after_last=draw(st.booleans()),
        cardinal_ulcers=draw(st.sampled_from(({}, {"S001": "U1"}, {"S002": "U10"}))),
    )
    return rows, cfg


# --- oracle --------------------------------------------------------------------------------
def shown(area: float) -> float:
    return round(area, 2)


def value(p: dict[str, Any], cfg: HealingConfig) -> float | None:
    """The area the rules use of one photo: none when unmeasured, failed or not assessable,
    unless an assessor reviewed (vouched for) the area."""
    flags = set(filter(None, p["flags"].split(";")))
    if p["area_mm2"] is None or (
        not p.get("reviewed") and (p["status"] != "measured" or flags & set(cfg.unassessable_flags))
    ):
        return None
    return p["area_mm2"]


def visit_value(ps: list[dict[str, Any]], cfg: HealingConfig) -> tuple[float | None, bool | None, bool]:
    """(area, the readers' healed decision, healed evidence of a small area) of one visit."""
    limit = cfg.healed_max_area_mm2
    decisions = {p.get("healed_override") for p in ps} - {None}
    # code: a reader's confirm/reject healed puts a photo on its side of the limit even where
    # its area is not used (README: silent)
    sides = {
        p["healed_override"] if p.get("healed_override") is not None else shown(p["area_mm2"]) <= limit
        for p in ps
        if value(p, cfg) is not None or p.get("healed_override") is not None
    }
    if not ps or any(p.get("review_pending") for p in ps) or len(sides) > 1:
        return None, None, False  # waits for a reader, or photos on both sides: no value
    decision = False if False in decisions else (True if decisions else None)  # any reject wins

    def evidence(p: dict[str, Any]) -> bool:  # of healing, from a small area
        return bool(p.get("reviewed")) or set(filter(None, p["flags"].split(";"))) <= {"no_ulcer_found"}

    # the lower median; among equal areas the photo that is evidence (README: silent)
    valued = sorted(
        (p for p in ps if value(p, cfg) is not None), key=lambda p: (p["area_mm2"], not evidence(p))
    )
    if not valued:
        return None, decision, False
    rep = valued[(len(valued) - 1) // 2]
    return rep["area_mm2"], decision, evidence(rep)


def oracle(rows: list[dict[str, Any]], cfg: HealingConfig) -> dict[tuple[str, str], dict[str, Any]]:
    study_visits = {r["visit"] for r in rows}
    expected = set(cfg.schedule) or study_visits
    base_day = visit_to_day(cfg.baseline_visit)
    limit = cfg.healed_max_area_mm2
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for s in {r["subject_id"] for r in rows}:
        srows = [r for r in rows if r["subject_id"] == s]
        last = max(visit_to_day(r["visit"]) for r in srows)
        for u in {r["ulcer_id"] for r in srows}:
            by_visit: dict[str, list[dict[str, Any]]] = {}
            for r in srows:
                if r["ulcer_id"] == u:
                    by_visit.setdefault(r["visit"], []).append(r)
            visits = set(by_visit) | {
                v for v in expected if cfg.missing_visits_after_last or visit_to_day(v) <= last
            }
            order = sorted(visits, key=visit_to_day)
            vals = {v: visit_value(by_visit.get(v, []), cfg) for v in order}
            # the reference: the baseline visit, else the first visit from it on, with an open
            # (above the healed limit) area: an enrolled ulcer is open, 0 there is a failed measurement
            ref = next(
                (
                    v
                    for v in order
                    if visit_to_day(v) >= base_day and (vals[v][0] or 0) > 0 and shown(vals[v][0]) > limit
                ),
                None,
            )
            status: dict[str, str] = {}
            pct: dict[str, float | None] = {}
            healed_before = False
            for v in order:
                area, decision, evidence = vals[v]
                day = visit_to_day(v)
                # changes refer to the reference, for visits from it on
                pct[v] = (
                    None
                    if area is None or ref is None or day < visit_to_day(ref)
                    else (area - vals[ref][0]) / vals[ref][0] * 100
                )
                small = area is not None and shown(area) <= limit
                if (
                    day < base_day
                    or (v == cfg.baseline_visit and ref != v and decision is not True)
                    or not by_visit.get(v)
                ):
                    status[v], pct[v] = (
                        "not_assessable",
                        None,
                    )  # before the baseline, a failed baseline, no photo
                elif decision is True:
                    status[v] = "healed"  # code: the reader's confirmation wins, also without an area
                elif v == ref and not healed_before:
                    status[v] = "baseline"
                elif area is None:
                    status[v] = "not_assessable"
                elif small and decision is None:
                    status[v] = "healed" if evidence else "not_assessable"  # no evidence: in review
                elif healed_before and not small:
                    status[v] = "recurred"  # code: also on the reference visit (README: "baseline")
                elif pct[v] is None:
                    status[v] = "not_assessable"  # nothing to compare with
                elif round(pct[v], 1) <= -cfg.improving_min_reduction_pct:
                    status[v] = "improving"
                elif round(pct[v], 1) >= cfg.worsening_min_increase_pct:
                    status[v] = "worsening"
                else:
                    status[v] = "stable"
                healed_before = healed_before or status[v] == "healed"
            healed_days = [visit_to_day(v) for v in order if status[v] == "healed"]
            confirmed = [visit_to_day(a) for a, b in pairwise(order) if status[a] == status[b] == "healed"]
            out[(s, u)] = {
                "status": status,
                "pct": pct,
                "missing": [v for v in order if v not in by_visit],
                "reference_visit": ref,
                "time_to_healing_days": min(healed_days, default=None),
                "time_to_confirmed_healing_days": min(confirmed, default=None),
                "baseline_area": vals[cfg.baseline_visit][0] if cfg.baseline_visit in vals else None,
            }
        # the cardinal ulcer: the config's, else the manifest's, else the largest baseline area
        ulcers = sorted({u for (ss, u) in out if ss == s}, key=id_order_key)
        marked = sorted(
            {r["ulcer_id"] for r in srows if r.get("cardinal") and r["status"] != "missing"}, key=id_order_key
        )
        if s in cfg.cardinal_ulcers:
            chosen = cfg.cardinal_ulcers[s] if cfg.cardinal_ulcers[s] in ulcers else None
        elif marked:
            chosen = marked[0]
        else:
            measured = [u for u in ulcers if out[(s, u)]["baseline_area"] is not None]
            chosen = max(
                measured or ulcers, key=lambda u: (out[(s, u)]["baseline_area"] or 0.0, -ulcers.index(u))
            )
        for u in ulcers:
            out[(s, u)]["is_cardinal"] = u == chosen
    return out


def brief(rows: list[dict[str, Any]], cfg: HealingConfig) -> str:
    """One line per photo, for a failing example."""
    keys = ("reviewed", "review_pending", "healed_override", "cardinal")
    lines = [
        f"baseline {cfg.baseline_visit} schedule {cfg.schedule} "
        f"after_last {cfg.missing_visits_after_last} cardinal {cfg.cardinal_ulcers}"
    ]
    for r in rows:
        extra = " ".join(f"{k}={r[k]}" for k in keys if k in r)
        lines.append(
            f"{r['subject_id']} {r['ulcer_id']} {r['visit']} {r['area_mm2']} {r['status']} "
            f"[{r['flags']}] {extra}"
        )
    return "\n".join(lines)


def observed(rows: list[dict[str, Any]], cfg: HealingConfig) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for u in compute_healing(rows, cfg):
        out[(u.subject_id, u.ulcer_id)] = {
            "status": {v.visit: v.status for v in u.visits},
            "pct": {v.visit: v.change_from_baseline_pct for v in u.visits},
            "missing": [v.visit for v in u.visits if "missing_visit" in v.healing_flags],
            "reference_visit": u.reference_visit,
            "time_to_healing_days": u.time_to_healing_days,
            "time_to_confirmed_healing_days": u.time_to_confirmed_healing_days,
            "is_cardinal": u.is_cardinal,
            "rows": u.visits,
        }
    return out


# --- differential properties ----------------------------------------------------------------
@settings(max_examples=examples(150))
@given(studies())
def test_status_reference_times_and_cardinal_follow_the_documented_rules(study) -> None:
    rows, cfg = study
    note(brief(rows, cfg))
    want, got = oracle(rows, cfg), observed(rows, cfg)
    assert set(want) == set(got)
    for key, w in want.items():
        g = got[key]
        for field in (
            "status",
            "missing",
            "reference_visit",
            "time_to_healing_days",
            "time_to_confirmed_healing_days",
            "is_cardinal",
        ):
            assert g[field] == w[field], (key, field, g["status"])
        for v, p in w["pct"].items():
            if p is None:
                assert g["pct"][v] is None, (key, v, g["status"])
            else:
                assert g["pct"][v] == pytest.approx(p, abs=1e-9), (key, v)
        # changes: this visit minus the reference, negative = shrinking
        rows_of = {r.visit: r for r in g["rows"]}
        for r in g["rows"]:
            if r.change_from_baseline_pct is not None:
                ref = rows_of[w["reference_visit"]]
                assert r.change_from_baseline_mm2 == pytest.approx(r.area_mm2 - ref.area_mm2, abs=1e-9), (
                    key,
                    r.visit,
                )


# --- metamorphic properties (no oracle) -----------------------------------------------------
def results(rows: list[dict[str, Any]], cfg: HealingConfig) -> dict[tuple[str, str], dict[str, Any]]:
    return {(u.subject_id, u.ulcer_id): asdict(u) for u in compute_healing(rows, cfg)}


def differences(
    a: dict[tuple[str, str], dict[str, Any]], b: dict[tuple[str, str], dict[str, Any]]
) -> list[Any]:
    """What differs between two results, field by field (for a failing example)."""
    out: list[Any] = [k for k in set(a) ^ set(b)]
    for key in set(a) & set(b):
        out += [(key, f, a[key][f], b[key][f]) for f in a[key] if f != "visits" and a[key][f] != b[key][f]]
        for va, vb in zip(a[key]["visits"], b[key]["visits"], strict=True):
            out += [(key, va["visit"], f, va[f], vb[f]) for f in va if va[f] != vb[f]]
    return out


@settings(max_examples=examples(40))
@given(studies(), st.randoms(use_true_random=False))
def test_the_order_of_the_rows_changes_nothing(study, rnd: random.Random) -> None:
    rows, cfg = study
    note(brief(rows, cfg))
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert not differences(results(shuffled, cfg), results(rows, cfg))


@settings(max_examples=examples(40))
@given(studies())
def test_renaming_a_subject_or_adding_one_changes_nothing_for_the_others(study) -> None:
    rows, cfg = study
    note(brief(rows, cfg))
    before = results(rows, cfg)
    renamed = [dict(r, subject_id="S009") if r["subject_id"] == "S001" else r for r in rows]
    after = results(
        renamed,
        replace(
            cfg, cardinal_ulcers={("S009" if s == "S001" else s): u for s, u in cfg.cardinal_ulcers.items()}
        ),
    )
    for (s, u), res in before.items():
        moved = after[("S009" if s == "S001" else s, u)]
        if s == "S001":  # the renamed subject itself: the same but for its ID
            moved = {k: v for k, v in moved.items() if k not in ("subject_id", "visits")} | {
                "visits": [dict(v, subject_id="S001") for v in moved["visits"]],
                "subject_id": "S001",
            }
        assert moved == res, (s, u)
    # a new subject's photos (at visits the study already has) change nothing for the others
    extra = [
        dict(r, subject_id="S099", photo_sha256=f"x{i}")
        for i, r in enumerate(rows)
        if r["subject_id"] == "S001"
    ]
    extra[-1]["area_mm2"] = 0.0 if extra[-1]["area_mm2"] else 25.0
    last = max(rows, key=lambda r: r["study_day"])  # and one at the study's last visit
    extra.append(
        {k: v for k, v in last.items() if k != "cardinal"} | {"subject_id": "S099", "photo_sha256": "x_last"}
    )
    grown = results([*rows, *extra], cfg)
    assert not differences({k: v for k, v in grown.items() if k[0] != "S099"}, before)


def unused(r: dict[str, Any], cfg: HealingConfig) -> bool:
    """A photo whose area is not used: none measured, or failed / not assessable, unreviewed."""
    return value(r, cfg) is None


@settings(max_examples=examples(40))
@given(studies())
def test_healed_needs_an_unflagged_measured_photo_or_a_reader(study) -> None:
    rows, cfg = study
    note(brief(rows, cfg))
    for u in compute_healing(rows, cfg):
        for v in u.visits:
            ps = [
                r
                for r in rows
                if (r["subject_id"], r["ulcer_id"], r["visit"]) == (u.subject_id, u.ulcer_id, v.visit)
            ]
            if v.status != "healed" or any(p.get("healed_override") is True for p in ps):
                continue  # README: silent on a reader's confirm healed; the code lets it win
            # no photo of the visit flagged (but no_ulcer_found) and unreviewed, or unmeasured
            rep = next(p for p in ps if p["photo_sha256"] == v.photo_sha256)
            flags = set(filter(None, rep["flags"].split(";")))
            assert rep.get("reviewed") or flags <= {"no_ulcer_found"}, v.visit
            assert not unused(rep, cfg), v.visit
            assert not all(unused(p, cfg) for p in ps), v.visit
            assert v.area_mm2 is not None and round(v.area_mm2, 2) <= cfg.healed_max_area_mm2


@settings(max_examples=examples(40))
@given(studies(), st.sampled_from((0.5, 2.0, 4.0, 8.0)))
def test_scaling_an_ulcers_areas_keeps_its_changes_in_percent(study, k: float) -> None:
    """With every area above the healed limit before and after (areas under 1.2 mm² dropped), a
    factor of 2**n (exact in floating point) keeps each status and change in %."""
    rows, cfg = study
    rows = [dict(r, area_mm2=None) if (r["area_mm2"] or 0) < 1.2 else r for r in rows]
    note(brief(rows, cfg))
    scaled = [
        dict(r, area_mm2=r["area_mm2"] * k) if r["subject_id"] == "S001" and r["area_mm2"] is not None else r
        for r in rows
    ]
    before, after = results(rows, cfg), results(scaled, cfg)
    for key, res in before.items():
        for v, w in zip(res["visits"], after[key]["visits"], strict=True):
            assert (v["status"], v["change_from_baseline_pct"]) == (
                w["status"],
                w["change_from_baseline_pct"],
            ), (key, v["visit"])

"""The healing rules (pure): per-photo rows -> :class:`UlcerHealing` per subject and ulcer.

Areas are mm² in the marker plane; days are study days (``D<n>`` = n, ``W<n>`` = 7n).

A visit with several photos has a value only when its photos agree: a photo waiting for review
(row key ``review_pending``) or measured photos on both sides of the healed limit put the whole
visit on hold (:class:`VisitHold`: no value, ``not_assessable``), since the value the median
would pick may be the wrong one; a reader's ``reject_healed`` on any photo forbids ``healed``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any

from ulcerseg.errors import InputError
from ulcerseg.healing.config import HealingConfig
from ulcerseg.healing.records import HealingFlag, HealingStatus, UlcerHealing, VisitHealing
from ulcerseg.ids import id_order_key
from ulcerseg.rounding import as_shown
from ulcerseg.visits import visit_to_day

__all__ = ["VisitHold", "compute_healing", "expected_visits", "visit_holds"]

log = logging.getLogger(__name__)


def _split_flags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [f for f in (p.strip() for p in value.split(";")) if f]
    return [str(f) for f in value if str(f)]


def _to_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _parse_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")).date()
    except ValueError:
        log.warning("ignoring unparseable photo_date %r", value)
        return None


@dataclass
class _Photo:
    sha: str | None
    area: float | None
    low: float | None
    high: float | None
    flags: list[str]
    photo_date: str | None
    assessable: bool
    healed_override: bool | None = None  # assessor confirmed (True) or rejected (False) healed
    reviewed: bool = False  # an assessor vouched for the area: quality flags no longer count
    pending: bool = False  # waits for a review decision (flagged and undecided, or disputed)


def _photo_from_row(row: Mapping[str, Any], cfg: HealingConfig) -> _Photo:
    flags = _split_flags(row.get("flags"))
    area = _to_float(row.get("area_mm2"))
    failed = str(row.get("status") or "measured") != "measured"
    reviewed = bool(row.get("reviewed"))
    blocked = bool(set(flags) & set(cfg.unassessable_flags)) and not reviewed
    assessable = area is not None and (reviewed or not failed) and not blocked
    override = row.get("healed_override")
    return _Photo(
        sha=row.get("photo_sha256"),
        area=area if assessable else None,
        low=_to_float(row.get("area_low_mm2")),
        high=_to_float(row.get("area_high_mm2")),
        flags=flags,
        photo_date=str(row["photo_date"]) if row.get("photo_date") else None,
        assessable=assessable,
        healed_override=None if override is None else bool(override),
        reviewed=reviewed,
        pending=bool(row.get("review_pending")),
    )


class VisitHold(StrEnum):
    """Why a visit that has photos gets no value (``not_assessable``) until a reader acts."""

    REVIEW_PENDING = "review_pending"  # one of its photos waits for review or adjudication
    PHOTOS_DISAGREE = "photos_disagree"  # measured photos on both sides of the healed limit


def _representative(photos: list[_Photo]) -> _Photo:
    """The photo of a visit whose area is the (lower) median; an unassessable one if none.

    Whatever order the rows come in: among equal areas (two 0.0 mm² photos of a healed ulcer)
    the one that is evidence of healing stands for the visit, then the lowest SHA-256. The first
    row did, so one of no_ulcer_found and one also blurred made the visit healed or
    not_assessable by file name order."""
    measured = sorted((p for p in photos if p.assessable), key=lambda p: (p.area or 0.0, *_photo_order(p)))
    if measured:
        return measured[(len(measured) - 1) // 2]
    return min(photos, key=_photo_order)


def _photo_order(photo: _Photo) -> tuple[bool, str]:
    """Tie-break among a visit's photos: evidence of healing first, then the SHA-256."""
    return not _healed_evidence_photo(photo), photo.sha or ""


def within_healed_limit(area_mm2: float, limit_mm2: float) -> bool:
    """True when an area is at or below the healed limit as the tables show it (to 0.01 mm²,
    :func:`ulcerseg.rounding.as_shown`): a table never lists 0.50 mm² as healed on one visit
    and as open on another (0.496 and 0.504 mm² both read 0.50). The difference is far below
    a pixel of the fine pass (0.01 mm² at 10 px/mm)."""
    return as_shown("area_mm2", area_mm2) <= limit_mm2


def _healed_side(photo: _Photo, limit: float) -> bool:
    """Which side of the healed limit a photo is on; a reader's confirm/reject healed decides."""
    if photo.healed_override is not None:
        return photo.healed_override
    return photo.area is not None and within_healed_limit(photo.area, limit)


def _visit_photo(photos: list[_Photo], cfg: HealingConfig) -> tuple[_Photo, VisitHold | None]:
    """The photo that stands for a visit, and why the visit is on hold (None: it has a value).

    A photo waiting for review holds the visit even beside a measured one: it may show the
    ulcer the other photo missed (a failed photo is pending until a reader settles it). Photos
    on both sides of the healed limit hold it too: the median would silently pick a side.
    """
    pending = [p for p in photos if p.pending]
    if pending:
        return min(pending, key=_photo_order), VisitHold.REVIEW_PENDING
    rep = _representative(photos)
    limit = cfg.healed_max_area_mm2
    sides = {_healed_side(p, limit) for p in photos if p.assessable or p.healed_override is not None}
    return rep, (VisitHold.PHOTOS_DISAGREE if len(sides) > 1 else None)


def _visit_override(photos: list[_Photo]) -> bool | None:
    """The readers' healed decision for a visit: any standing reject forbids healed."""
    overrides = {p.healed_override for p in photos if p.healed_override is not None}
    if False in overrides:
        return False
    return True if True in overrides else None


# per-photo flags that are the finding of a healed ulcer, not a failed quality check
_HEALED_FINDINGS = frozenset({"no_ulcer_found"})


def _healed_evidence_photo(photo: _Photo) -> bool:
    """A small area is evidence of healing only from a measured photo (marker found) whose
    quality checks all passed, or whose area an assessor reviewed."""
    return photo.assessable and (photo.reviewed or not (set(photo.flags) - _HEALED_FINDINGS))


def _healed_evidence(row: VisitHealing, rep: _Photo | None) -> bool:
    """:func:`_healed_evidence_photo` of the photo standing for the visit."""
    return rep is not None and _healed_evidence_photo(rep)


def _pct(delta: float, ref: float) -> float | None:
    return None if ref <= 0 else 100.0 * delta / ref


def _slope_per_week(days: Sequence[float], areas: Sequence[float]) -> float | None:
    """Least-squares slope of area (mm²) over time in mm² per week; None for < 2 distinct days."""
    if len(days) < 2 or len(set(days)) < 2:
        return None
    n = len(days)
    md = sum(days) / n
    ma = sum(areas) / n
    sxx = sum((d - md) ** 2 for d in days)
    sxy = sum((d - md) * (a - ma) for d, a in zip(days, areas, strict=True))
    return 7.0 * sxy / sxx


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y", "x", "cardinal"}
    return bool(value)


def _ulcer_visits(
    subject: str,
    ulcer: str,
    by_visit: dict[str, list[_Photo]],
    day_of: dict[str, int],
    subject_last_day: int,
    schedule: Mapping[str, int],
    cfg: HealingConfig,
    baseline_day: int,
) -> UlcerHealing:
    # expected visits (the protocol's, see expected_visits) that have no photo become
    # not-assessable placeholder rows flagged missing_visit
    missing: set[str] = set()
    for label, day in schedule.items():
        if label not in by_visit and (cfg.missing_visits_after_last or day <= subject_last_day):
            missing.add(label)
            day_of.setdefault(label, day)
    labels = sorted({*by_visit, *missing}, key=lambda v: (day_of[v], v))

    rows: list[VisitHealing] = []
    reps: dict[str, _Photo | None] = {}
    holds: dict[str, VisitHold | None] = {}
    for label in labels:
        photos = by_visit.get(label, [])
        rep, hold = _visit_photo(photos, cfg) if photos else (None, None)
        reps[label], holds[label] = rep, hold
        valued = rep is not None and rep.assessable and hold is None
        row = VisitHealing(
            subject_id=subject,
            ulcer_id=ulcer,
            visit=label,
            study_day=day_of[label],
            status=HealingStatus.NOT_ASSESSABLE.value,
            photo_sha256=rep.sha if rep else None,
            n_photos=len(photos),
            photo_date=rep.photo_date if rep else None,
            area_mm2=rep.area if rep and valued else None,
            area_low_mm2=rep.low if rep and valued else None,
            area_high_mm2=rep.high if rep and valued else None,
            photo_flags=list(rep.flags) if rep else [],
        )
        if label in missing:
            row.healing_flags.append(HealingFlag.MISSING_VISIT.value)
        rows.append(row)

    # baseline: the configured visit if present, else the first visit from its study day on
    # (none when every visit of the ulcer came before it). An ulcer enrolled at baseline is open
    # by definition, so a baseline area at or below the healed limit means the measurement
    # failed (e.g. the ulcer was not found), not that it healed. Visits before the baseline
    # (baseline_visit W4: D0) are compared with nothing: the changes and statuses start there
    limit = cfg.healed_max_area_mm2
    base_day = day_of.get(cfg.baseline_visit, baseline_day)
    before = {r.visit for r in rows if r.study_day < base_day}
    baseline = next((r for r in rows if r.visit == cfg.baseline_visit), None)
    if baseline is None:
        baseline = next((r for r in rows if r.visit not in before), None)

    def open_area(r: VisitHealing) -> bool:
        return r.area_mm2 is not None and not within_healed_limit(r.area_mm2, limit)

    baseline_ok = baseline is not None and open_area(baseline)
    # the changes refer to the baseline, else to the first open area after it (never before it)
    after = [r for r in rows if r.visit not in before]
    reference = baseline if baseline_ok else next((r for r in after if open_area(r)), None)
    # visits the changes from baseline are of: the reference and those after it. A visit between
    # an unmeasurable baseline and the reference is compared with nothing, as one before the
    # baseline is: against the later reference, 0.3 mm² before an open 10 mm² read "improving"
    compared = set() if reference is None else {r.visit for r in rows[rows.index(reference) :]}

    healed_before = False
    prev: VisitHealing | None = None
    for row in rows:
        rep = reps[row.visit]
        if not baseline_ok:
            row.healing_flags.append(HealingFlag.BASELINE_NOT_MEASURABLE.value)
        pre = row.visit in before
        if pre:
            row.healing_flags.append(HealingFlag.BEFORE_BASELINE.value)
        if holds[row.visit] is not None:
            # no status from the other photos while one waits for a reader (or they disagree)
            row.status = HealingStatus.NOT_ASSESSABLE.value
            continue
        override = _visit_override(by_visit.get(row.visit, []))
        area = row.area_mm2
        if row is baseline and not baseline_ok and override is not True:
            row.status = HealingStatus.NOT_ASSESSABLE.value  # failed baseline: no change figures
            continue
        if area is not None:
            if reference is not None and reference.area_mm2 is not None and row.visit in compared:
                row.change_from_baseline_mm2 = area - reference.area_mm2
                row.change_from_baseline_pct = _pct(row.change_from_baseline_mm2, reference.area_mm2)
            if prev is not None and prev.area_mm2 is not None:
                row.change_from_previous_mm2 = area - prev.area_mm2
                row.change_from_previous_pct = _pct(row.change_from_previous_mm2, prev.area_mm2)
                lo, hi = sorted((prev.area_mm2, area))
                factor = (
                    cfg.implausible_jump_factor if area > prev.area_mm2 else cfg.implausible_shrink_factor
                )
                if not within_healed_limit(lo, limit) and hi / lo > factor:
                    row.healing_flags.append(HealingFlag.IMPLAUSIBLE_JUMP.value)
        if pre:
            # no status (a reader's confirm healed included) before the baseline; the area and
            # the change from the previous visit stay, so the baseline's jump from it is seen
            row.status = HealingStatus.NOT_ASSESSABLE.value
            if area is not None:
                prev = row
            continue
        pct = row.change_from_baseline_pct
        # the thresholds apply to the change as healing.csv shows it (0.1%), as the healed
        # limit does to the area: -19.96% reads -20.0% and is improving, never "stable"
        shown_pct = None if pct is None else as_shown("change_from_baseline_pct", pct)
        if override is True:
            # the assessor's confirmation wins, even where no area could be measured
            row.status = HealingStatus.HEALED.value
        elif row is reference and not healed_before:
            # the reference itself: the baseline, or the later visit standing in for a baseline
            # that could not be measured (not "stable" at a change of 0.0 from itself)
            row.status = HealingStatus.BASELINE.value
        elif area is None:
            row.status = HealingStatus.NOT_ASSESSABLE.value
            continue
        elif within_healed_limit(area, limit) and override is not False and not _healed_evidence(row, rep):
            # a small area from a flagged photo (low confidence, grayscale, blurred...) is not
            # evidence of healing: not assessable, and the photo is in review
            row.status = HealingStatus.NOT_ASSESSABLE.value
            continue
        elif within_healed_limit(area, limit) and override is not False:
            row.status = HealingStatus.HEALED.value
        elif healed_before and not within_healed_limit(area, limit):
            row.status = HealingStatus.RECURRED.value
            row.healing_flags.append(HealingFlag.HEALED_THEN_REAPPEARED.value)
        elif shown_pct is not None and shown_pct <= -cfg.improving_min_reduction_pct:
            row.status = HealingStatus.IMPROVING.value
        elif shown_pct is not None and shown_pct >= cfg.worsening_min_increase_pct:
            row.status = HealingStatus.WORSENING.value
        elif pct is None:
            # no reference to compare with (none, or a later one): no change, so no status from
            # one (a rejected healed 0.3 mm² read "stable"). The reference's area is open, never 0
            row.status = HealingStatus.NOT_ASSESSABLE.value
        else:
            row.status = HealingStatus.STABLE.value
        if row.status == HealingStatus.HEALED.value:
            healed_before = True
        if area is None:
            continue

        near = abs(area - limit) <= cfg.near_threshold_area_mm2
        if rep is not None and rep.low is not None and rep.high is not None:
            near = near or (min(rep.low, rep.high) <= limit < max(rep.low, rep.high))
        if pct is not None:
            m = cfg.near_threshold_pct
            near = near or abs(pct + cfg.improving_min_reduction_pct) <= m
            near = near or abs(pct - cfg.worsening_min_increase_pct) <= m
        if near:
            row.healing_flags.append(HealingFlag.NEAR_THRESHOLD.value)
        prev = row

    # photo dates vs study days, both relative to the baseline
    base_date = _parse_date(baseline.photo_date) if baseline is not None else None
    if base_date is None:
        base_date_row = next((r for r in rows if _parse_date(r.photo_date)), None)
    else:
        base_date_row = baseline
    if base_date_row is not None:
        d0 = _parse_date(base_date_row.photo_date)
        assert d0 is not None
        for row in rows:
            d = _parse_date(row.photo_date)
            if d is None or row is base_date_row:
                continue
            offset = (d - d0).days - (row.study_day - base_date_row.study_day)
            if abs(offset) > cfg.date_window_days:
                row.healing_flags.append(HealingFlag.DATE_INCONSISTENT.value)

    healed_days = [r for r in rows if r.status == HealingStatus.HEALED.value]
    tth = healed_days[0].study_day if healed_days else None
    confirmed = None
    for a, b in pairwise(rows):
        if a.status == b.status == HealingStatus.HEALED.value:
            confirmed = a.study_day
            break
    measured = [r for r in rows if r.area_mm2 is not None]
    slope = _slope_per_week([r.study_day for r in measured], [r.area_mm2 or 0.0 for r in measured])
    ulcer_flags = sorted({f for r in rows for f in r.healing_flags})
    summary = UlcerHealing(
        subject_id=subject,
        ulcer_id=ulcer,
        visits=rows,
        baseline_visit=baseline.visit if baseline is not None else cfg.baseline_visit,
        reference_visit=reference.visit if reference else None,
        time_to_healing_days=tth,
        time_to_confirmed_healing_days=confirmed,
        healing_rate_mm2_per_week=slope,  # negative = shrinking, like change_from_baseline
        flags=ulcer_flags,
    )
    for row in rows:
        row.baseline_visit = summary.baseline_visit
        row.reference_visit = summary.reference_visit
        row.time_to_healing_days = tth
        row.time_to_confirmed_healing_days = confirmed
        row.healing_rate_mm2_per_week = summary.healing_rate_mm2_per_week
        row.healing_flags = sorted(set(row.healing_flags), key=row.healing_flags.index)
    return summary


def visit_holds(
    rows: Iterable[Mapping[str, Any]], config: HealingConfig | None = None
) -> dict[tuple[str, str, str], VisitHold]:
    """Visits on hold, by (subject_id, ulcer_id, visit), from the rows :func:`compute_healing`
    takes (pure): the same rule that leaves them without a value there."""
    cfg = config or HealingConfig()
    by_visit: dict[tuple[str, str, str], list[_Photo]] = {}
    for row in rows:
        key = (str(row.get("subject_id") or ""), str(row.get("ulcer_id") or ""), str(row.get("visit") or ""))
        by_visit.setdefault(key, []).append(_photo_from_row(row, cfg))
    out: dict[tuple[str, str, str], VisitHold] = {}
    for key, photos in by_visit.items():
        hold = _visit_photo(photos, cfg)[1]
        if hold is not None:
            out[key] = hold
    return out


def expected_visits(cfg: HealingConfig, study_days: Mapping[str, int]) -> dict[str, int]:
    """Visits every ulcer is expected to have (label -> study day).

    The protocol schedule when the config names one (``schedule``), else the visits present in
    the study (``study_days``: every visit label seen in any subject), so a visit no subject had
    is never reported missing.
    """
    if cfg.schedule:
        return {label: visit_to_day(label) for label in cfg.schedule}
    return dict(study_days)


def compute_healing(
    rows: Iterable[Mapping[str, Any]], config: HealingConfig | None = None
) -> list[UlcerHealing]:
    """Healing per subject and ulcer from per-photo rows (pure; rows are not modified).

    Each row needs ``subject_id``, ``ulcer_id``, ``visit`` and may carry ``study_day`` (else
    derived from the visit label), ``photo_date`` (ISO), ``area_mm2`` (None when not measured),
    ``area_low_mm2``/``area_high_mm2``, ``status``, ``flags`` (";"-joined or list),
    ``photo_sha256``, ``cardinal`` (manifest designation, truthy; not read from a row of status
    ``missing``), and from review
    ``reviewed`` (area vouched for by an assessor: quality flags are ignored) and
    ``healed_override`` (True/False: assessor confirmed/rejected healed; a reject on any photo
    of a visit forbids healed there) and ``review_pending`` (truthy: the photo waits for a review
    decision). Several photos of one ulcer at one visit are summarised by the photo with the
    (lower) median area, unless the visit is on hold (:func:`visit_holds`): no value then.
    """
    cfg = config or HealingConfig()
    groups: dict[tuple[str, str], dict[str, list[_Photo]]] = {}
    day_of: dict[tuple[str, str], dict[str, int]] = {}
    last_day: dict[str, int] = {}
    study_days: dict[str, int] = {}
    manifest_cardinal: dict[str, set[str]] = {}
    for row in rows:
        subject = str(row.get("subject_id") or "")
        ulcer = str(row.get("ulcer_id") or "")
        visit = str(row.get("visit") or "")
        if not subject or not ulcer or not visit:
            raise InputError(
                f"photo {row.get('photo_sha256') or row.get('file')!r}: subject_id, ulcer_id "
                "and visit are required for healing"
            )
        day_raw = row.get("study_day")
        day = int(day_raw) if day_raw not in (None, "") else visit_to_day(visit)
        key = (subject, ulcer)
        groups.setdefault(key, {}).setdefault(visit, []).append(_photo_from_row(row, cfg))
        day_of.setdefault(key, {})[visit] = day
        study_days[visit] = min(study_days.get(visit, day), day)
        last_day[subject] = max(last_day.get(subject, day), day)
        if _truthy(row.get("cardinal")) and row.get("status") != "missing":
            # a photo no longer at its path keeps the mark of the manifest that listed it
            manifest_cardinal.setdefault(subject, set()).add(ulcer)

    if study_days and cfg.baseline_visit not in study_days:
        # each ulcer falls back to its first visit when it lacks the baseline visit (an ulcer
        # that appeared later); a baseline no photo of the study has is a wrong config
        visits = ", ".join(sorted(study_days, key=lambda v: (study_days[v], v)))
        raise InputError(
            f"healing config: baseline_visit {cfg.baseline_visit!r} is no visit of the study "
            f"(its visits: {visits})"
        )
    schedule = expected_visits(cfg, study_days)
    results = [
        _ulcer_visits(
            s,
            u,
            groups[(s, u)],
            dict(day_of[(s, u)]),
            last_day[s],
            schedule,
            cfg,
            study_days[cfg.baseline_visit],
        )
        for s, u in sorted(groups)
    ]
    _designate_cardinal(results, cfg, manifest_cardinal)
    return results


def _designate_cardinal(
    results: list[UlcerHealing], cfg: HealingConfig, manifest: dict[str, set[str]]
) -> None:
    by_subject: dict[str, list[UlcerHealing]] = {}
    for u in results:
        by_subject.setdefault(u.subject_id, []).append(u)
    for subject, ulcers in by_subject.items():
        chosen: UlcerHealing | None = None
        source = ""
        if subject in cfg.cardinal_ulcers:
            wanted = cfg.cardinal_ulcers[subject]
            chosen = next((u for u in ulcers if u.ulcer_id == wanted), None)
            source = "config"
            if manifest.get(subject, {wanted}) != {wanted}:
                log.warning(
                    "subject %s: the healing config's cardinal ulcer %s is used; the manifest marks %s",
                    subject, wanted, ", ".join(sorted(manifest[subject])),
                )  # fmt: skip
            if chosen is None:
                log.warning("healing config: cardinal ulcer %s of subject %s has no photos", wanted, subject)
                for u in ulcers:
                    for v in u.visits:
                        v.healing_flags.append(HealingFlag.CARDINAL_ULCER_MISSING.value)
        elif subject in manifest:
            if len(manifest[subject]) > 1:
                raise InputError(
                    f"subject {subject}: manifest marks several cardinal ulcers {sorted(manifest[subject])}"
                )
            wanted = next(iter(manifest[subject]))
            chosen = next(u for u in ulcers if u.ulcer_id == wanted)
            source = "manifest"
        else:

            def baseline_area(u: UlcerHealing) -> float:
                base = next((v for v in u.visits if v.visit == u.baseline_visit), None)
                return base.area_mm2 if base and base.area_mm2 is not None else -1.0

            # largest baseline area; a tie (or no measured baseline at all) goes to the lowest
            # ulcer ID as read (U2 before U10): max() keeps the first of equal maxima
            chosen = max(sorted(ulcers, key=lambda u: id_order_key(u.ulcer_id)), key=baseline_area)
            source = "largest_baseline"
        for u in ulcers:
            u.is_cardinal = u is chosen
            u.cardinal_source = source if u is chosen else ""
            for v in u.visits:
                v.is_cardinal = u.is_cardinal
                v.cardinal_source = u.cardinal_source
    absent = sorted(set(cfg.cardinal_ulcers) - set(by_subject))
    if absent and by_subject:
        # a typo ("S01" for "S001") left the real subject to the largest-ulcer rule without a
        # word; the config may also name the whole trial's subjects while this study holds a site
        log.warning(
            "healing config: cardinal_ulcers names subject(s) %s, which have no photos in this study "
            "(a typo? its subjects: %s)",
            ", ".join(absent[:10]) + (" ..." if len(absent) > 10 else ""),
            ", ".join(sorted(by_subject)[:10]) + (" ..." if len(by_subject) > 10 else ""),
        )

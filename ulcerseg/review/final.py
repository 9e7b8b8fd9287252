"""The final per-visit table (``final_visits.csv``): the trial's endpoint after review.

Final values: the counting assessor decision per photo wins over the automated value (accept
keeps it, correct replaces it, not assessable removes it, confirm/reject healed overrides the
status); healing status and flags are then recomputed on the final values. With double reading
the counting decision is the latest reading when the readers agree, the latest adjudication when
they disagreed, and none (no value, ``final_source = unresolved_disagreement``) while a
disagreement waits for adjudication (:func:`ulcerseg.review.decisions.final_decisions`).
A flagged photo that nobody has decided yet is ``final_source = pending_review`` with no value
(:func:`ulcerseg.review.rules.final_rows`, the same rows ``heal`` computes healing from).

A visit is as final as its least final photo: while any of its photos is pending review or
disputed, the visit has no value (never a status from its other photos) and names that photo;
photos on both sides of the healed limit leave it ``pending_review`` too
(:func:`ulcerseg.healing.rules.visit_holds`). Both kinds of visit count as pending.
``reference_visit`` names the visit the changes from baseline are computed against (a later
one when the baseline could not be measured).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ulcerseg.errors import PendingReviewError
from ulcerseg.healing import (
    PROVENANCE_COLUMNS,
    HealingConfig,
    UlcerHealing,
    compute_healing,
    healing_config_sha256,
)
from ulcerseg.healing.rules import VisitHold, visit_holds
from ulcerseg.review.decisions import list_decisions, open_study
from ulcerseg.review.outputs import healing_config, write_csv
from ulcerseg.review.rules import (
    DUPLICATE_PHOTO,
    PENDING_REVIEW,
    Action,
    apply_decisions,
    decision_details,
    final_rows,
)
from ulcerseg.rounding import round_rows

__all__ = [
    "FINAL_COLUMNS",
    "PENDING_SOURCES",
    "PendingReviewError",
    "apply_decisions",
    "export_final",
    "final_visit_rows",
    "pending_count",
    "pending_in_table",
    "pending_visits",
]

log = logging.getLogger(__name__)

FINAL_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "ulcer_id",
    "is_cardinal",
    "cardinal_source",
    "visit",
    "study_day",
    "photo_date",
    "photo_sha256",
    "n_photos",
    "automated_area_mm2",
    "reviewed_area_mm2",
    "final_area_mm2",
    "final_source",
    "scale_source",
    "review_action",
    "review_reason",
    "reviewer",
    "reviewed_at",
    "n_assessors",
    "status",
    "change_from_baseline_mm2",
    "change_from_baseline_pct",
    "change_from_previous_mm2",
    "change_from_previous_pct",
    "photo_flags",
    "healing_flags",
    "time_to_healing_days",
    "time_to_confirmed_healing_days",
    "healing_rate_mm2_per_week",
    "package_version",
    "model_sha256",
    "config_sha256",
    "reference_visit",  # appended: the columns before it keep their order (a public interface)
    "healing_config_sha256",  # the healing rules the statuses come from (as in healing.csv)
)

UNRESOLVED = "unresolved_disagreement"
PENDING_SOURCES: frozenset[str] = frozenset({PENDING_REVIEW, UNRESOLVED, DUPLICATE_PHOTO})
"""``final_source`` values of a visit without a final value that waits for a reader."""


def final_visit_rows(
    rows: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    config: HealingConfig,
) -> tuple[list[dict[str, Any]], list[UlcerHealing]]:
    """Final per-visit rows (columns :data:`FINAL_COLUMNS`) and the recomputed healing.

    Values come from :func:`ulcerseg.review.rules.final_rows` (the same rows ``heal`` uses).
    ``scale_source``: ``manual`` for a value measured with a hand-set scale, ``marker`` for
    any other value, empty without a value. A visit on hold names the photo that waits for
    review; one whose photos disagree on healed is ``pending_review``.
    """
    fr = final_rows(rows, decisions, config)
    final = fr.final
    by_sha = {str(r.get("photo_sha256")): r for r in rows}
    # the healing rules hold a visit while any of its photos waits for a reader
    healing_rows = [
        dict(r, review_pending=fr.source.get(str(r.get("photo_sha256"))) in PENDING_SOURCES) for r in fr.rows
    ]
    results = compute_healing(healing_rows, config)
    holds = visit_holds(healing_rows, config)
    rules = healing_config_sha256(config)
    out: list[dict[str, Any]] = []
    for ulcer in results:
        for v in ulcer.visits:
            auto = by_sha.get(v.photo_sha256 or "")
            f = final.get(v.photo_sha256 or "")
            d = f.decision if f is not None else None
            flat = asdict(v)
            reviewed_area = None
            if d is not None and d["action"] in (Action.ACCEPT, Action.CORRECT):
                reviewed_area = d["area_after_mm2"]
            source = fr.source.get(v.photo_sha256 or "", "none")
            if holds.get((v.subject_id, v.ulcer_id, v.visit)) == VisitHold.PHOTOS_DISAGREE:
                source = PENDING_REVIEW  # a reader must say which photo shows the ulcer
            elif source == "automated" and v.area_mm2 is None:
                source = "none"
            scale = ""
            if v.area_mm2 is not None:
                manual = d is not None and decision_details(d).get("scale_source") == "manual"
                scale = "manual" if manual else "marker"
            out.append(
                {
                    **{k: flat[k] for k in FINAL_COLUMNS if k in flat},
                    "is_cardinal": int(v.is_cardinal),
                    "automated_area_mm2": auto.get("area_mm2") if auto else None,
                    **{k: auto.get(k) if auto else None for k in PROVENANCE_COLUMNS},
                    "reviewed_area_mm2": reviewed_area,
                    "final_area_mm2": v.area_mm2,
                    "final_source": source,
                    "scale_source": scale,
                    "review_action": d["action"] if d else None,
                    "review_reason": d["reason"] if d else None,
                    "reviewer": d["assessor"] if d else None,
                    "reviewed_at": d["decided_at"] if d else None,
                    "n_assessors": f.n_readers if f is not None else 0,
                    "photo_flags": ";".join(v.photo_flags),
                    "healing_flags": ";".join(v.healing_flags),
                    "healing_config_sha256": rules,
                }
            )
    return out, results


def pending_visits(final: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Visit rows whose final value waits for a reader: pending review or a disagreement."""
    return [r for r in final if r.get("final_source") in PENDING_SOURCES]


def pending_in_table(path: str | Path) -> list[dict[str, str]]:
    """:func:`pending_visits` of a written final table (``final_visits.csv``), as its text."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return [dict(r) for r in pending_visits(list(csv.DictReader(fh)))]


def pending_count(final: Sequence[Mapping[str, Any]]) -> int:
    """Number of visit rows whose final value waits for a reader (:func:`pending_visits`)."""
    return len(pending_visits(final))


def export_final(
    out_dir: str | Path,
    config: HealingConfig | str | Path | None = None,
    path: str | Path | None = None,
    allow_pending: bool = True,
) -> Path:
    """Write the final per-visit CSV for statisticians (default OUT/final_visits.csv).

    With ``allow_pending=False`` nothing is written while any visit is pending review or
    disputed (:func:`pending_count`; :class:`PendingReviewError`, naming the count).
    """
    cfg = healing_config(config)
    with open_study(out_dir, for_reading=True) as (conn, rows):
        decisions = list_decisions(conn)
    final, _ = final_visit_rows(rows, decisions, cfg)
    n = pending_count(final)
    if n and not allow_pending:
        raise PendingReviewError(
            f"{n} flagged visit(s) pending review or adjudication: review them first, or pass --allow-pending"
        )
    dest = Path(path) if path else Path(out_dir) / "final_visits.csv"
    log.info("final table: %d visit rows (%d pending review) -> %s", len(final), n, dest)
    return write_csv(round_rows(final), FINAL_COLUMNS, dest)

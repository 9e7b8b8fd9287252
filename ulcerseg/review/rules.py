"""The review rules (pure): roles, actions, disagreements and the decision that counts per photo.

Decisions are dicts as stored (``photo_sha256``, ``assessor``, ``action``, ``area_after_mm2``,
``details``...), in the order they were made. An ``undo`` row (``details.undoes`` names a
decision_id) withdraws that decision: every rule below sees only :func:`effective_decisions`.

One truth for the endpoint (:func:`final_rows`): a photo's final value is the decision that
counts, else the automated value when the photo is not flagged; a flagged photo without a
decision is ``pending_review`` and has no value. ``heal``, ``final_visits.csv`` and the report
all compute healing from these rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ulcerseg.healing.config import HealingConfig
from ulcerseg.healing.rules import within_healed_limit
from ulcerseg.records import Flag
from ulcerseg.store.review import decision_details

__all__ = [
    "ADJUDICATOR",
    "MISSING_PHOTO",
    "PENDING_REVIEW",
    "READER",
    "ROLES",
    "Action",
    "FinalDecision",
    "FinalRows",
    "apply_decisions",
    "decision_details",
    "decision_role",
    "effective_decisions",
    "final_decisions",
    "final_rows",
    "find_disagreements",
    "latest_reads",
]


READER, ADJUDICATOR = "reader", "adjudicator"
ROLES = (READER, ADJUDICATOR)


class Action(StrEnum):
    """What an assessor decided about one photo."""

    ACCEPT = "accept"
    NOT_ASSESSABLE = "not_assessable"
    CONFIRM_HEALED = "confirm_healed"
    REJECT_HEALED = "reject_healed"
    CORRECT = "correct"
    UNDO = "undo"  # withdraws the assessor's last decision (details.undoes); made by /api/undo only


PENDING_REVIEW = "pending_review"
"""``final_source`` of a flagged photo that no assessor has decided yet (no final value)."""
MISSING_PHOTO = "missing_photo"
"""``final_source`` of a photo no longer at its path (status ``missing``): no final value, even
when an assessor decided it while it was there; the decision counts again where the same bytes
are found (a moved photo)."""
DUPLICATE_PHOTO = "duplicate_photo"
"""``final_source`` of bytes present at several paths of the study (no final value, whatever
was decided): one decision cannot say which visit or ulcer the photo belongs to; removing the
wrong copy and measuring again settles it."""


def decision_role(decision: Mapping[str, Any]) -> str:
    """``reader`` or ``adjudicator`` (from the decision's ``details`` JSON)."""
    return ADJUDICATOR if decision_details(decision).get("role") == ADJUDICATOR else READER


def effective_decisions(decisions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The decisions that still stand, in order: undo rows and the decisions they undo removed."""
    undone = set()
    for d in decisions:
        if d.get("action") == Action.UNDO:
            target = decision_details(d).get("undoes")
            if target:
                undone.add(str(target))
    return [
        dict(d) for d in decisions if d.get("action") != Action.UNDO and d.get("decision_id") not in undone
    ]


def latest_reads(decisions: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Latest standing reader decision per (photo_sha256, assessor) among ``decisions`` (pure)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for d in effective_decisions(decisions):
        if decision_role(d) == READER:
            out[(d["photo_sha256"], d["assessor"])] = dict(d)
    return out


def _areas_differ(a: float | None, b: float | None, config: HealingConfig) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    limit = config.healed_max_area_mm2
    if within_healed_limit(a, limit) != within_healed_limit(b, limit):
        return True  # one reading heals the ulcer, the other does not: whoever read last must not decide
    settings = config.review
    diff = abs(a - b)
    rel = 100.0 * diff / max(abs(a), abs(b)) if max(abs(a), abs(b)) > 0 else 0.0
    return diff > settings.disagreement_area_tolerance_mm2 and (
        rel > settings.disagreement_area_tolerance_pct or math.isinf(rel)
    )


# accept/correct both mean "this area is right": compare them by area, not by action name
_MEASURE_ACTIONS = {Action.ACCEPT.value, Action.CORRECT.value}


def find_disagreements(decisions: Sequence[Mapping[str, Any]], config: HealingConfig) -> list[dict[str, Any]]:
    """Pairs of readers whose latest decisions on a photo differ in kind or in area (pure).

    Two areas differ when they lie on either side of the healed limit
    (``config.healed_max_area_mm2``, compared as shown), or when both the absolute (mm²) and
    the relative (%) tolerance of ``config.review`` are exceeded.
    ``adjudicated`` says whether an adjudicator has decided the photo since.
    """
    adjudicated = {
        d["photo_sha256"] for d in effective_decisions(decisions) if decision_role(d) == ADJUDICATOR
    }
    by_photo: dict[str, list[dict[str, Any]]] = {}
    for (sha, _), d in sorted(latest_reads(decisions).items()):
        by_photo.setdefault(sha, []).append(d)
    out: list[dict[str, Any]] = []
    for sha, ds in by_photo.items():
        for i, a in enumerate(ds):
            for b in ds[i + 1 :]:
                kind_a = "measure" if a["action"] in _MEASURE_ACTIONS else a["action"]
                kind_b = "measure" if b["action"] in _MEASURE_ACTIONS else b["action"]
                why = []
                if kind_a != kind_b:
                    why.append("action")
                if _areas_differ(a["area_after_mm2"], b["area_after_mm2"], config):
                    why.append("area")
                if why:
                    out.append(
                        {
                            "photo_sha256": sha,
                            "assessor_a": a["assessor"],
                            "action_a": a["action"],
                            "area_a_mm2": a["area_after_mm2"],
                            "assessor_b": b["assessor"],
                            "action_b": b["action"],
                            "area_b_mm2": b["area_after_mm2"],
                            "reason": "+".join(why),
                            "adjudicated": sha in adjudicated,
                        }
                    )
    return out


@dataclass(frozen=True)
class FinalDecision:
    """The decision that counts for one photo, and where it comes from.

    ``source``: ``review`` (one reader, or readers who agree: the latest reading counts),
    ``adjudication`` (the latest adjudicator decision overrides the readers) or
    ``unresolved_disagreement`` (readers disagree and nobody has adjudicated: no value).
    """

    decision: dict[str, Any] | None
    source: str
    n_readers: int


def final_decisions(
    decisions: Sequence[Mapping[str, Any]], config: HealingConfig
) -> dict[str, FinalDecision]:
    """Per photo sha256, the decision that gives its reviewed value (pure; decisions in order).

    Undone decisions do not count (:func:`effective_decisions`).
    """
    readers: dict[str, set[str]] = {}
    latest_read: dict[str, dict[str, Any]] = {}
    latest_adjudication: dict[str, dict[str, Any]] = {}
    decisions = effective_decisions(decisions)
    for d in decisions:
        sha = d["photo_sha256"]
        if decision_role(d) == ADJUDICATOR:
            latest_adjudication[sha] = dict(d)
        else:
            latest_read[sha] = dict(d)
            readers.setdefault(sha, set()).add(d["assessor"])
    open_disputes = {r["photo_sha256"] for r in find_disagreements(decisions, config)}
    out: dict[str, FinalDecision] = {}
    for sha in latest_read.keys() | latest_adjudication.keys():
        n = len(readers.get(sha, ()))
        if sha in latest_adjudication:
            out[sha] = FinalDecision(latest_adjudication[sha], "adjudication", n)
        elif sha in open_disputes:
            out[sha] = FinalDecision(None, "unresolved_disagreement", n)
        else:
            out[sha] = FinalDecision(latest_read[sha], "review", n)
    return out


def apply_decisions(
    rows: Sequence[Mapping[str, Any]],
    latest: Mapping[str, Mapping[str, Any]],
    no_value: frozenset[str] | set[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Per-photo rows with the counting decision applied (pure).

    accept keeps the area, correct replaces it, not assessable removes it, confirm/reject
    healed overrides the status. Photos in ``no_value`` (a disagreement waiting for
    adjudication, or a flagged photo pending review) have no area: an unreviewed or disputed
    value must not enter the analysis silently.
    """
    out = []
    for row in rows:
        r = dict(row)
        sha = str(row.get("photo_sha256"))
        d = latest.get(sha)
        if row.get("status") == "missing":
            # no longer in the study: a value (or a healing) must not rest on a photo the
            # trial cannot show, whatever was decided while it was there
            r["area_mm2"] = None
            r["area_low_mm2"] = r["area_high_mm2"] = None
        elif sha in no_value:
            r["area_mm2"] = None
            r["area_low_mm2"] = r["area_high_mm2"] = None
            # the healing rules hold the photo's whole visit (heal, the final table and the
            # report alike): its other photos must not give the visit a status meanwhile
            r["review_pending"] = True
        elif d is not None:
            action = d["action"]
            if action == Action.NOT_ASSESSABLE:
                r["area_mm2"] = None
            elif action in (Action.ACCEPT, Action.CORRECT):
                r["area_mm2"] = d["area_after_mm2"]
                r["reviewed"] = True
                r["area_low_mm2"] = r["area_high_mm2"] = None  # the band was for the model
            elif action == Action.CONFIRM_HEALED:
                r["healed_override"] = True
                r["reviewed"] = True
            elif action == Action.REJECT_HEALED:
                r["healed_override"] = False
        out.append(r)
    return out


@dataclass(frozen=True)
class FinalRows:
    """The per-photo rows the endpoint is computed from, and where each value comes from.

    ``rows``: input rows with the counting decisions applied (for ``compute_healing``);
    ``final``: the counting decision per photo sha256; ``source``: per photo sha256,
    ``review`` | ``adjudication`` | ``unresolved_disagreement`` | ``pending_review`` |
    ``automated`` | ``none`` (no value and nothing to review).
    """

    rows: list[dict[str, Any]]
    final: dict[str, FinalDecision]
    source: dict[str, str]

    @property
    def pending(self) -> list[str]:
        """sha256 of the flagged photos that wait for a review decision."""
        return sorted(sha for sha, s in self.source.items() if s == PENDING_REVIEW)


def _flagged(row: Mapping[str, Any]) -> bool:
    try:
        return bool(int(row.get("needs_review") or 0))
    except (TypeError, ValueError):
        return False


def final_rows(
    rows: Sequence[Mapping[str, Any]], decisions: Sequence[Mapping[str, Any]], config: HealingConfig
) -> FinalRows:
    """The one truth for the endpoint (pure): final per-photo values from measurements + decisions.

    Final value = the decision that counts (:func:`final_decisions`), else the automated value
    for an unflagged photo; a flagged photo (``needs_review``) with no decision is
    ``pending_review`` and has no value, like an unresolved disagreement; a photo no longer at
    its path (status ``missing``) has none either (``missing_photo``).
    """
    final = final_decisions(decisions, config)
    latest = {sha: f.decision for sha, f in final.items() if f.decision is not None}
    present = {str(r.get("photo_sha256")) for r in rows if r.get("status") != "missing"}
    source: dict[str, str] = {}
    for row in rows:
        sha = str(row.get("photo_sha256"))
        f = final.get(sha)
        if sha not in present:
            source[sha] = MISSING_PHOTO
        elif row.get("status") == "missing":
            continue  # the bytes are at another path too: that row says where they come from
        elif Flag.DUPLICATE_PHOTO.value in str(row.get("flags") or "").split(";"):
            # decisions are per bytes: a reader's accept of one copy would give every visit and
            # ulcer holding the same file a value (a "confirmed" healing from a single photo)
            source[sha] = DUPLICATE_PHOTO
        elif f is not None:
            source[sha] = f.source
        elif _flagged(row):
            source[sha] = PENDING_REVIEW
        elif row.get("area_mm2") is not None:
            source[sha] = "automated"
        else:
            source[sha] = "none"
    no_value = {
        sha for sha, s in source.items() if s in (PENDING_REVIEW, "unresolved_disagreement", DUPLICATE_PHOTO)
    }
    return FinalRows(apply_decisions(rows, latest, no_value), final, source)

"""The review rules (pure): roles, actions, disagreements and the decision that counts per photo.

Decisions are dicts as stored (``photo_sha256``, ``assessor``, ``action``, ``area_after_mm2``,
``details``...), in the order they were made.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ulcerseg.healing.config import ReviewSettings

__all__ = [
    "ADJUDICATOR",
    "READER",
    "ROLES",
    "Action",
    "FinalDecision",
    "decision_role",
    "final_decisions",
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


def decision_role(decision: Mapping[str, Any]) -> str:
    """``reader`` or ``adjudicator`` (from the decision's ``details`` JSON)."""
    raw = decision.get("details")
    if not raw:
        return READER
    try:
        details = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError):
        return READER
    return ADJUDICATOR if details.get("role") == ADJUDICATOR else READER


def latest_reads(decisions: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Latest reader decision per (photo_sha256, assessor) among ``decisions`` (pure)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for d in decisions:
        if decision_role(d) == READER:
            out[(d["photo_sha256"], d["assessor"])] = dict(d)
    return out


def _areas_differ(a: float | None, b: float | None, settings: ReviewSettings) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    diff = abs(a - b)
    rel = 100.0 * diff / max(abs(a), abs(b)) if max(abs(a), abs(b)) > 0 else 0.0
    return diff > settings.disagreement_area_tolerance_mm2 and (
        rel > settings.disagreement_area_tolerance_pct or math.isinf(rel)
    )


# accept/correct both mean "this area is right": compare them by area, not by action name
_MEASURE_ACTIONS = {Action.ACCEPT.value, Action.CORRECT.value}


def find_disagreements(
    decisions: Sequence[Mapping[str, Any]], settings: ReviewSettings
) -> list[dict[str, Any]]:
    """Pairs of readers whose latest decisions on a photo differ in kind or in area (pure).

    An area differs when both the absolute (mm²) and the relative (%) tolerance are exceeded.
    ``adjudicated`` says whether an adjudicator has decided the photo since.
    """
    adjudicated = {d["photo_sha256"] for d in decisions if decision_role(d) == ADJUDICATOR}
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
                if _areas_differ(a["area_after_mm2"], b["area_after_mm2"], settings):
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
    decisions: Sequence[Mapping[str, Any]], settings: ReviewSettings
) -> dict[str, FinalDecision]:
    """Per photo sha256, the decision that gives its reviewed value (pure; decisions in order)."""
    readers: dict[str, set[str]] = {}
    latest_read: dict[str, dict[str, Any]] = {}
    latest_adjudication: dict[str, dict[str, Any]] = {}
    for d in decisions:
        sha = d["photo_sha256"]
        if decision_role(d) == ADJUDICATOR:
            latest_adjudication[sha] = dict(d)
        else:
            latest_read[sha] = dict(d)
            readers.setdefault(sha, set()).add(d["assessor"])
    open_disputes = {r["photo_sha256"] for r in find_disagreements(decisions, settings)}
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

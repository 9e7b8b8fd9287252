"""Assessor decisions: append-only audit table, review items, re-measurement, disagreements.

Table ``review_decisions`` (own table in study.sqlite) is append-only: SQLite triggers abort
any UPDATE or DELETE, and every decision is committed in its own transaction before the
server answers, so a killed server loses no submitted decision.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ulcerseg.errors import InputError, UlcersegError
from ulcerseg.geometry import fill_polygon
from ulcerseg.healing import ReviewSettings
from ulcerseg.measure import mask_geometry
from ulcerseg.review.blinding import get_or_create_salt, subject_pseudonym, ulcer_pseudonym

__all__ = [
    "Action",
    "DecisionError",
    "FinalDecision",
    "ReviewItem",
    "build_items",
    "decision_role",
    "disagreements",
    "ensure_schema",
    "final_decisions",
    "find_disagreements",
    "latest_reads",
    "list_decisions",
    "mask_from_png",
    "mask_from_polygon",
    "open_study",
    "record_decision",
    "remeasure_mask",
]

log = logging.getLogger(__name__)

KEY_RE = re.compile(r"^[0-9a-f]{16}$")


class DecisionError(UlcersegError):
    """A submitted decision is invalid (unknown item/action, missing reason, bad mask)."""


READER, ADJUDICATOR = "reader", "adjudicator"
ROLES = (READER, ADJUDICATOR)


class Action(StrEnum):
    """What an assessor decided about one photo."""

    ACCEPT = "accept"
    NOT_ASSESSABLE = "not_assessable"
    CONFIRM_HEALED = "confirm_healed"
    REJECT_HEALED = "reject_healed"
    CORRECT = "correct"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id TEXT NOT NULL UNIQUE,
    photo_sha256 TEXT NOT NULL,
    assessor TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT,
    area_before_mm2 REAL,
    area_after_mm2 REAL,
    corrected_mask_file TEXT,
    session_id TEXT,
    details TEXT
);
CREATE INDEX IF NOT EXISTS review_decisions_photo ON review_decisions (photo_sha256);
CREATE TRIGGER IF NOT EXISTS review_decisions_no_update BEFORE UPDATE ON review_decisions
BEGIN SELECT RAISE(ABORT, 'review_decisions is append-only'); END;
CREATE TRIGGER IF NOT EXISTS review_decisions_no_delete BEFORE DELETE ON review_decisions
BEGIN SELECT RAISE(ABORT, 'review_decisions is append-only'); END;
CREATE TABLE IF NOT EXISTS review_sessions (
    session_id TEXT PRIMARY KEY,
    assessor TEXT NOT NULL,
    started_at TEXT NOT NULL
);
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the review tables and triggers if missing (never touches other tables)."""
    conn.executescript(_SCHEMA)


@contextmanager
def open_study(out_dir: str | Path) -> Iterator[tuple[sqlite3.Connection, list[dict[str, Any]]]]:
    """Open OUT/study.sqlite through the store; yield (connection, latest measurement rows)."""
    from ulcerseg.store import Study  # the lead's module

    out_dir = Path(out_dir)
    if not (out_dir / "study.sqlite").is_file():
        raise InputError(f"{out_dir}: no study.sqlite (run `ulcerseg measure` first)")
    with Study.open(out_dir) as study:
        ensure_schema(study.conn)
        yield study.conn, [dict(r) for r in study.latest_measurements()]


# --------------------------------------------------------------------------------------------
# review items
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewItem:
    """One photo to review. ``key`` is the first 16 hex chars of the photo's sha256."""

    key: str
    photo_sha256: str
    subject_id: str
    ulcer_id: str
    visit: str
    subject_pseudonym: str
    ulcer_pseudonym: str
    area_mm2: float | None
    px_per_mm: float
    rectified_path: Path
    mask_path: Path | None
    flags: tuple[str, ...]
    needs_review: bool

    def public(self, settings: ReviewSettings, proposed_status: str | None) -> dict[str, Any]:
        """Blinded JSON view: pseudonyms, area and flags; no real IDs, dates or file paths."""
        out: dict[str, Any] = {
            "key": self.key,
            "subject": self.subject_pseudonym,
            "ulcer": self.ulcer_pseudonym,
            "area_mm2": self.area_mm2,
            "px_per_mm": self.px_per_mm,
            "flags": list(self.flags),
            "has_mask": self.mask_path is not None,
            # only healed / not healed: the full trend (improving, worsening) could bias
            "proposed_status": None
            if proposed_status is None
            else ("healed" if proposed_status == "healed" else "not healed"),
        }
        if settings.show_visit_label:
            out["visit"] = self.visit
        return out


def inside_out_dir(root: Path, rel: Any) -> Path | None:
    """Resolved ``root / rel`` if it is an existing file inside ``root``, else None."""
    if not rel:
        return None
    path = (root / str(rel)).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path


def build_items(
    rows: Sequence[Mapping[str, Any]], out_dir: str | Path, salt: str, settings: ReviewSettings
) -> list[ReviewItem]:
    """Review items in a randomised order reproducible from ``settings.seed``.

    Photos need a rectified image and a calibration; only ``needs_review`` ones unless
    ``settings.review_all``. Paths come from the study database only, checked to lie in OUT.
    """
    root = Path(out_dir)
    items: list[ReviewItem] = []
    for row in rows:
        sha = str(row.get("photo_sha256") or "")
        needs = bool(int(row.get("needs_review") or 0))
        if not (needs or settings.review_all) or len(sha) < 16:
            continue
        rect = inside_out_dir(root, row.get("rectified_file"))
        ppm = row.get("rectified_px_per_mm")
        if rect is None or not ppm:
            log.info("photo %s has no rectified image: not reviewable in the browser", sha[:16])
            continue
        flags = tuple(f for f in str(row.get("flags") or "").split(";") if f)
        area = row.get("area_mm2")
        items.append(
            ReviewItem(
                key=sha[:16].lower(),
                photo_sha256=sha,
                subject_id=str(row.get("subject_id")),
                ulcer_id=str(row.get("ulcer_id")),
                visit=str(row.get("visit") or ""),
                subject_pseudonym=subject_pseudonym(salt, str(row.get("subject_id"))),
                ulcer_pseudonym=ulcer_pseudonym(salt, str(row.get("subject_id")), str(row.get("ulcer_id"))),
                area_mm2=None if area in (None, "") else float(area),
                px_per_mm=float(ppm),
                rectified_path=rect,
                mask_path=inside_out_dir(root, row.get("mask_file")),
                flags=flags,
                needs_review=needs,
            )
        )
    items.sort(key=lambda it: it.photo_sha256)
    random.Random(settings.seed).shuffle(items)
    return items


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------


def mask_from_png(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (H, W) from PNG bytes: opaque bright pixels (alpha and luma >= 128) are ulcer.

    ``shape`` is the (height, width) of the rectified frame; other sizes are rejected.
    """
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgba = np.asarray(im.convert("RGBA"))
    except (OSError, ValueError) as err:
        raise DecisionError(f"corrected mask is not a readable PNG ({err})") from None
    if rgba.shape[:2] != tuple(shape):
        raise DecisionError(
            f"corrected mask is {rgba.shape[1]}x{rgba.shape[0]} px, the rectified frame is "
            f"{shape[1]}x{shape[0]} px"
        )
    luma = rgba[..., :3].max(axis=2)
    return (rgba[..., 3] >= 128) & (luma >= 128)


def mask_from_polygon(vertices: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (H, W) of a polygon given in rectified-frame px ``[[u, v], ...]`` (centres at integers).

    A pixel is inside when its centre is (:func:`ulcerseg.geometry.fill_polygon`).
    """
    pts = np.asarray(vertices, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.isfinite(pts).all():
        raise DecisionError("polygon needs at least 3 finite [u, v] vertices in rectified px")
    return fill_polygon(shape, pts)


def remeasure_mask(mask: np.ndarray, px_per_mm: float) -> dict[str, float]:
    """Area (mm² = count / px_per_mm²), perimeter, length, width (mm) of a rectified-frame mask."""
    g = mask_geometry(np.asarray(mask).astype(bool), px_per_mm)
    return {
        "area_mm2": g.area_mm2,
        "perimeter_mm": g.perimeter_mm,
        "length_mm": g.length_mm,
        "width_mm": g.width_mm,
        "n_components": g.n_components,
    }


# --------------------------------------------------------------------------------------------
# decisions
# --------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def start_session(conn: sqlite3.Connection, assessor: str) -> str:
    """Register an assessor session; returns its id."""
    assessor = assessor.strip()
    if not assessor:
        raise DecisionError("assessor name is required")
    session_id = uuid.uuid4().hex
    with conn:
        conn.execute(
            "INSERT INTO review_sessions (session_id, assessor, started_at) VALUES (?, ?, ?)",
            (session_id, assessor, _now()),
        )
    return session_id


def record_decision(
    conn: sqlite3.Connection,
    out_dir: str | Path,
    item: ReviewItem,
    assessor: str,
    action: str,
    *,
    reason: str | None = None,
    corrected_mask: np.ndarray | None = None,
    session_id: str | None = None,
    role: str = "reader",
) -> dict[str, Any]:
    """Validate and append one decision in its own transaction; returns the stored row.

    ``role`` is ``reader`` (independent reading) or ``adjudicator`` (settles a disagreement
    between readers; recorded in ``details``).

    A correction saves OUT/review/masks/<key>_<decision_id>.png (a new file, never overwritten)
    and re-measures it in mm² with the item's rectified px_per_mm.
    """
    assessor = (assessor or "").strip()
    if not assessor:
        raise DecisionError("assessor name is required")
    try:
        act = Action(action)
    except ValueError:
        raise DecisionError(
            f"unknown action {action!r} (known: {', '.join(a.value for a in Action)})"
        ) from None
    if role not in ROLES:
        raise DecisionError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    reason = (reason or "").strip() or None
    if act is Action.NOT_ASSESSABLE and not reason:
        raise DecisionError("a reason is required to mark a photo not assessable")
    decision_id = uuid.uuid4().hex[:16]
    area_after: float | None = item.area_mm2
    mask_rel: str | None = None
    details: dict[str, Any] = {}
    if act is Action.CORRECT:
        if corrected_mask is None:
            raise DecisionError("a correction needs a mask or polygon")
        details = remeasure_mask(corrected_mask, item.px_per_mm)
        area_after = details["area_mm2"]
        rel = Path("review") / "masks" / f"{item.key}_{decision_id}.png"
        dest = Path(out_dir) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        Image.fromarray(np.asarray(corrected_mask, dtype=bool).astype(np.uint8) * 255).save(tmp, format="PNG")
        # the file is complete before the decision that names it is committed
        tmp.replace(dest)
        mask_rel = rel.as_posix()
    elif act is Action.NOT_ASSESSABLE:
        area_after = None
    if role == ADJUDICATOR:
        details = {**details, "role": ADJUDICATOR}
    row = {
        "decision_id": decision_id,
        "photo_sha256": item.photo_sha256,
        "assessor": assessor,
        "decided_at": _now(),
        "action": act.value,
        "reason": reason,
        "area_before_mm2": item.area_mm2,
        "area_after_mm2": area_after,
        "corrected_mask_file": mask_rel,
        "session_id": session_id,
        "details": json.dumps(details) if details else None,
    }
    with conn:
        conn.execute(
            f"INSERT INTO review_decisions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
    log.info("decision %s: %s %s by %s", decision_id, act.value, item.key, assessor)
    return row


def list_decisions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """All decisions in the order they were made."""
    ensure_schema(conn)
    cur = conn.execute("SELECT * FROM review_decisions ORDER BY seq")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


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


def disagreements(conn: sqlite3.Connection, settings: ReviewSettings) -> list[dict[str, Any]]:
    """:func:`find_disagreements` over the study's decisions."""
    return find_disagreements(list_decisions(conn), settings)


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


def salt_for(conn: sqlite3.Connection) -> str:
    """The study's pseudonym salt (created on first use)."""
    return get_or_create_salt(conn)

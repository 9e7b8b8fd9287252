"""Assessor decisions in the study: open the study, sessions, record and list decisions.

Table ``review_decisions`` (defined in :mod:`ulcerseg.store.schema`) is append-only: SQLite
triggers abort any UPDATE, DELETE or INSERT OR REPLACE, and every decision is committed in its
own transaction before the server answers, so a killed server loses no submitted decision.
The pure rules (which decision counts, disagreements) are in :mod:`ulcerseg.review.rules`,
the items in :mod:`ulcerseg.review.items`, the masks in :mod:`ulcerseg.review.masks`; their
names are re-exported here.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ulcerseg.annotations import MAX_MANUAL_AREA_MM2
from ulcerseg.errors import DecisionError, InputError, NeedsConfirmation
from ulcerseg.healing.config import HealingConfig
from ulcerseg.imageio import sha256_bytes, write_png
from ulcerseg.review.items import (
    KEY_RE,
    ManualItem,
    ReviewItem,
    build_items,
    frame_record,
    inside_out_dir,
    row_origin_mm,
)
from ulcerseg.review.masks import mask_from_png, mask_from_polygon, remeasure_mask
from ulcerseg.review.rules import (
    ADJUDICATOR,
    READER,
    ROLES,
    Action,
    FinalDecision,
    decision_details,
    decision_role,
    effective_decisions,
    final_decisions,
    find_disagreements,
    latest_reads,
)
from ulcerseg.store import Study, ensure_schema, require_study_db
from ulcerseg.store.review import (
    DECISION_COLUMNS,
    ChainCheck,
    DecisionRecord,
    add_session,
    get_or_create_salt,
    insert_decision,
    read_decisions,
    verify_chain,
)

__all__ = [
    "ADJUDICATOR",
    "AUDIT_TRAIL_COLUMNS",
    "DISAGREEMENT_COLUMNS",
    "KEY_RE",
    "READER",
    "Action",
    "AuditCheck",
    "DecisionError",
    "FinalDecision",
    "ManualItem",
    "NeedsConfirmation",
    "ReviewItem",
    "audit_trail_rows",
    "build_items",
    "decision_details",
    "decision_role",
    "disagreements",
    "effective_decisions",
    "ensure_schema",
    "final_decisions",
    "find_disagreements",
    "inside_out_dir",
    "latest_reads",
    "list_decisions",
    "manual_area",
    "mask_from_png",
    "mask_from_polygon",
    "open_study",
    "record_decision",
    "record_manual_measurement",
    "remeasure_mask",
    "salt_for",
    "start_session",
    "undo_last",
    "verify_study",
]

log = logging.getLogger(__name__)


@contextmanager
def open_study(
    out_dir: str | Path, *, for_reading: bool = False
) -> Iterator[tuple[sqlite3.Connection, list[dict[str, Any]]]]:
    """Open OUT/study.sqlite through the store; yield (connection, latest measurement rows).

    ``for_reading``: the caller only reads, so a study that cannot be written (read-only media)
    is opened read-only (:meth:`Study.open`).
    """
    out_dir = Path(out_dir)
    require_study_db(out_dir)
    with Study.open(out_dir, for_reading=for_reading) as study:
        yield study.conn, [dict(r) for r in study.latest_measurements()]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def start_session(conn: sqlite3.Connection, assessor: str) -> str:
    """Register an assessor session; returns its id."""
    assessor = assessor.strip()
    if not assessor:
        raise DecisionError("assessor name is required")
    session_id = uuid.uuid4().hex
    ensure_schema(conn)
    add_session(conn, session_id, assessor, _now())
    return session_id


def record_decision(
    conn: sqlite3.Connection,
    out_dir: str | Path,
    item: ReviewItem | ManualItem,
    assessor: str,
    action: str,
    *,
    reason: str | None = None,
    corrected_mask: np.ndarray | None = None,
    session_id: str | None = None,
    role: str = "reader",
    confirm: bool = True,
    extra_details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate and append one decision in its own transaction; returns the stored row.

    ``role`` is ``reader`` (independent reading) or ``adjudicator`` (settles a disagreement
    between readers; recorded in ``details``).

    A correction saves OUT/review/masks/<key>_<decision_id>.png (a new file, never overwritten)
    and re-measures it in mm² with the item's rectified px_per_mm. A correction whose mask is
    pixel for pixel the proposed one is not a correction: it is recorded as ``accept``. An
    accept keeps a copy of the automated outline it accepted under the same name (``details``:
    :data:`ACCEPTED_MASK_KEY`, its SHA-256, the frame): a later ``measure`` of the photo (a new
    model or config) replaces the automated mask file, while the accepted area stays the
    decision's, so the outline behind it must be kept with the decision.

    With ``confirm=False`` (the web API's first step) an endpoint-changing decision raises
    :class:`NeedsConfirmation` instead of being saved: ``confirm_healed``, ``not_assessable``
    and a correction that changes the area by more than 50%. Library callers default to
    ``confirm=True``. ``extra_details`` are merged into ``details`` (e.g. a manual scale).

    A :class:`ManualItem` (a photo without a usable marker, no rectified frame) takes no
    correction here (:class:`DecisionError`): it is measured with :func:`record_manual_measurement`.
    """
    assessor = (assessor or "").strip()
    if not assessor:
        raise DecisionError("assessor name is required")
    try:
        act = Action(action)
    except ValueError:
        act = Action.UNDO
    if act is Action.UNDO:  # undo has its own entry point (undo_last)
        known = ", ".join(a.value for a in Action if a is not Action.UNDO)
        raise DecisionError(f"unknown action {action!r} (known: {known})")
    if role not in ROLES:
        raise DecisionError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    reason = (reason or "").strip() or None
    if act is Action.NOT_ASSESSABLE and not reason:
        raise DecisionError("a reason is required to mark a photo not assessable")
    decision_id = uuid.uuid4().hex[:16]
    area_after: float | None = item.area_mm2
    mask_rel: str | None = None  # a correction's mask file
    kept_rel: str | None = None  # an accept's copy of the automated outline
    details: dict[str, Any] = {}
    if act is Action.CORRECT:
        if corrected_mask is None:
            raise DecisionError("a correction needs a mask or polygon")
        if not isinstance(item, ReviewItem):
            raise DecisionError("a photo without a marker is measured with a manual scale, not corrected")
        if _same_as_proposal(item, corrected_mask):
            act, corrected_mask = Action.ACCEPT, None
            details = {"note": "correction identical to the proposal: recorded as accept"}
        else:
            details = remeasure_mask(corrected_mask, item.px_per_mm)
            area_after = details["area_mm2"]
            mask_rel = _decision_mask_rel(item, decision_id)
    elif act is Action.NOT_ASSESSABLE:
        area_after = None
    if act is Action.ACCEPT and isinstance(item, ReviewItem) and item.mask_path is not None:
        kept_rel = _decision_mask_rel(item, decision_id)
    # before anything is written: an unconfirmed request leaves no file behind
    if not confirm:
        _check_confirmed(act, item.area_mm2, area_after)
    if extra_details:
        details = {**details, **extra_details}
    if role == ADJUDICATOR:
        details = {**details, "role": ADJUDICATOR}
    ensure_schema(conn)
    dest = None
    if mask_rel is not None:
        assert isinstance(item, ReviewItem)  # mask_rel is set by a correction, of a ReviewItem only
        dest = Path(out_dir) / mask_rel
        # complete (atomic) before the decision that names it is committed; its SHA-256 is in
        # the hash chain (details), so `review verify` notices a mask file replaced afterwards
        write_png(dest, np.asarray(corrected_mask, dtype=bool).astype(np.uint8) * 255)
        details = {**details, MASK_SHA256_KEY: sha256_bytes(dest.read_bytes()), FRAME_KEY: item.frame()}
    elif kept_rel is not None:
        assert isinstance(item, ReviewItem)  # kept_rel is set for a ReviewItem only
        kept = _keep_accepted_outline(item, Path(out_dir), kept_rel)
        if kept is not None:
            dest, kept_details = kept
            details = {**details, **kept_details}
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
    try:
        insert_decision(conn, row)
    except BaseException:
        # no decision names the file: the audit folder keeps only masks of recorded decisions
        if dest is not None:
            dest.unlink(missing_ok=True)
        raise
    log.info("decision %s: %s %s by %s", decision_id, act.value, item.key, assessor)
    return row


def _decision_mask_rel(item: ReviewItem, decision_id: str) -> str:
    """Where a decision's outline is kept, relative to the study folder (a new name per decision)."""
    return (Path("review") / "masks" / f"{item.key}_{decision_id}.png").as_posix()


def _keep_accepted_outline(item: ReviewItem, out_dir: Path, rel: str) -> tuple[Path, dict[str, Any]] | None:
    """Write the automated mask ``item`` shows to ``out_dir / rel`` (0/255 PNG, atomic, complete
    before the decision naming it is committed); returns the file and the ``details`` that record
    it (name, SHA-256 in the hash chain, frame). None, with a warning, when the mask or the
    rectified image cannot be read: the accept is recorded without the copy. Raises
    :class:`DecisionError` when the mask on file does not give the item's area (a re-measure
    replaced the file but stored no row): nobody may accept an outline the area did not come from."""
    try:
        mask, frame = item.proposed_mask(), item.frame()
    except (InputError, OSError) as err:
        log.warning("%s: the accepted outline could not be kept (%s)", item.key, err)
        return None
    if mask is None:
        return None
    shown = float(np.count_nonzero(mask)) / item.px_per_mm**2  # measure's area rule: count / px_per_mm²
    if item.area_mm2 is not None and not math.isclose(shown, item.area_mm2, rel_tol=1e-9, abs_tol=1e-9):
        # the mask file was written by a newer measure: one still running or stopped before it
        # stored the row, or one that finished after this review server loaded its items. The
        # outline shown is not the one the area came from
        raise DecisionError(
            f"{item.key}: the outline on file ({shown:.2f} mm²) is not the one of the area shown "
            f"({item.area_mm2:.2f} mm²): the photo was measured again; let `ulcerseg measure` "
            "finish (run it again if it was stopped), then restart the review"
        )
    dest = out_dir / rel
    write_png(dest, np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
    details = {ACCEPTED_MASK_KEY: rel, ACCEPTED_SHA256_KEY: sha256_bytes(dest.read_bytes()), FRAME_KEY: frame}
    return dest, details


MASK_SHA256_KEY = "corrected_mask_sha256"
"""The key of ``details`` holding the SHA-256 of a correction's mask file (PNG bytes)."""
ACCEPTED_MASK_KEY = "accepted_mask_file"
"""The key of ``details`` naming an accept's copy of the automated outline (since 0.3.1)."""
ACCEPTED_SHA256_KEY = "accepted_mask_sha256"
"""The key of ``details`` holding the SHA-256 of that copy (PNG bytes)."""


def outline_file(decision: Mapping[str, Any]) -> str | None:
    """The outline a decision stands for, relative to the study folder: a correction's mask, or
    the copy of the automated mask an accept kept. None otherwise, and for accepts recorded
    before 0.3.1 (the automated mask of that time was not kept: it is the row's ``mask_file``
    only while the photo has not been measured again, see :func:`accepted_outline_changed`)."""
    if decision.get("corrected_mask_file"):
        return str(decision["corrected_mask_file"])
    if decision.get("action") == Action.ACCEPT:
        kept = decision_details(decision).get(ACCEPTED_MASK_KEY)
        return str(kept) if kept else None
    return None


def accepted_outline_changed(decision: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    """True when an accept that kept no outline of its own (before 0.3.1) no longer matches the
    photo's current measurement (another area: it was measured again), so the row's automated
    mask is not the outline that was accepted."""
    if decision.get("action") != Action.ACCEPT or outline_file(decision) is not None:
        return False
    accepted, current = decision.get("area_after_mm2"), row.get("area_mm2")
    if accepted is None or current is None:
        return accepted is not current
    return not math.isclose(float(accepted), float(current), rel_tol=1e-9, abs_tol=1e-9)


def outline_file_problem(out_dir: str | Path, decision: Mapping[str, Any]) -> str | None:
    """Why a decision's outline file (a correction's mask, an accept's kept copy) cannot be
    trusted, else None: it is missing, outside the study folder, or its bytes are not the ones
    recorded (SHA-256 in ``details``, kept by corrections since 0.2.1 and accepts since 0.3.1;
    older corrections name the file only and are checked for presence)."""
    rel = outline_file(decision)
    if not rel:
        return None
    kind = "corrected" if decision.get("corrected_mask_file") else "accepted"
    where = f"decision {decision.get('decision_id')}: {kind} mask {rel}"
    path = inside_out_dir(Path(out_dir), rel)
    if path is None:
        return f"{where} is missing"
    key = MASK_SHA256_KEY if kind == "corrected" else ACCEPTED_SHA256_KEY
    recorded = decision_details(decision).get(key)
    if recorded is None:
        return None
    try:
        actual = sha256_bytes(path.read_bytes())
    except OSError as err:
        return f"{where} cannot be read ({err.strerror or err})"
    if actual != recorded:
        return f"{where} was changed after the decision (SHA-256 {actual[:12]}…, recorded {recorded[:12]}…)"
    return None


FRAME_KEY = "frame"
"""The key of ``details`` holding the rectified frame a correction was drawn in."""


def frame_problem(decision: Mapping[str, Any], row: Mapping[str, Any], rectified: Path) -> str | None:
    """Why a decision's outline (a correction's mask, an accept's kept copy) does not fit the
    photo's current rectified image, else None: the photo was measured again since (another
    model or config: another crop of the marker plane), so the mask's pixels lie elsewhere.
    Decisions that recorded no frame (corrections before 0.2.1, other accepts) are not checked."""
    recorded = decision_details(decision).get(FRAME_KEY)
    if not isinstance(recorded, dict):
        return None
    if recorded == frame_record(row_origin_mm(row), float(row.get("rectified_px_per_mm") or 0.0), rectified):
        return None
    kind = "corrected" if decision.get("corrected_mask_file") else "accepted"
    return (f"decision {decision.get('decision_id')}: its {kind} outline lies on another "
            "rectified frame (the photo was measured again since)")  # fmt: skip


BIG_CHANGE_PCT = 50.0
"""A correction that changes the proposed area by more than this (%) needs a confirmation."""


def _same_as_proposal(item: ReviewItem, mask: np.ndarray) -> bool:
    proposed = item.proposed_mask()
    mask = np.asarray(mask, dtype=bool)
    if proposed is None:
        return not mask.any()
    return proposed.shape == mask.shape and bool(np.array_equal(proposed, mask))


def _check_confirmed(act: Action, before: float | None, after: float | None) -> None:
    """Raise :class:`NeedsConfirmation` for a decision that changes the endpoint."""
    changes: dict[str, Any] = {"action": act.value, "area_before_mm2": before, "area_after_mm2": after}
    if act is Action.CONFIRM_HEALED:
        changes["status_after"] = "healed"
        raise NeedsConfirmation("confirming healed changes the endpoint: confirm to save", changes)
    if act is Action.NOT_ASSESSABLE:
        changes["status_after"] = "not_assessable"
        raise NeedsConfirmation("not assessable removes this visit's value: confirm to save", changes)
    if act is Action.CORRECT and before is not None and after is not None:
        pct = 100.0 * (after - before) / before if before > 0 else float("inf")
        if abs(pct) > BIG_CHANGE_PCT:
            changes["change_pct"] = None if pct == float("inf") else round(pct, 1)
            raise NeedsConfirmation(
                f"the correction changes the area by more than {BIG_CHANGE_PCT:.0f}%: confirm to save",
                changes,
            )


def undo_last(
    conn: sqlite3.Connection,
    assessor: str,
    role: str = READER,
    session_id: str | None = None,
    expected: str | None = None,
) -> dict[str, Any]:
    """Withdraw ``assessor``'s last standing decision (in ``role``) by appending an ``undo`` row.

    Nothing is edited: the undo row names the decision it withdraws (``details.undoes``), and
    the decision that counts becomes the assessor's previous one on that photo (or none).
    ``expected``: the decision_id the client means to undo; when another decision is the last
    one (e.g. saved from a second window) nothing is undone. Raises :class:`DecisionError`
    when there is nothing to undo or ``expected`` is not the last decision.
    """
    standing = [
        d
        for d in effective_decisions(read_decisions(conn))
        if d["assessor"] == assessor and decision_role(d) == role
    ]
    if not standing:
        raise DecisionError("nothing to undo")
    target = standing[-1]
    if expected is not None and target["decision_id"] != expected:
        raise DecisionError("that is not your last standing decision: reload, then undo")
    details: dict[str, Any] = {"undoes": target["decision_id"]}
    if role == ADJUDICATOR:
        details["role"] = ADJUDICATOR
    row = {
        "decision_id": uuid.uuid4().hex[:16],
        "photo_sha256": target["photo_sha256"],
        "assessor": assessor,
        "decided_at": _now(),
        "action": Action.UNDO.value,
        "reason": None,
        "area_before_mm2": target["area_after_mm2"],
        "area_after_mm2": None,
        "corrected_mask_file": None,
        "session_id": session_id,
        "details": json.dumps(details),
    }
    insert_decision(conn, row)
    log.info("decision %s: undo %s by %s", row["decision_id"], target["decision_id"], assessor)
    return {**row, "undone": target}


MIN_SCALE_PX = 5.0
"""Two scale points closer than this (px) are refused: the scale would be meaningless."""

MANUAL_PX_PER_MM = (2.0, 1000.0)
"""A hand-set scale outside this range (px per mm) is refused: at 2 px/mm a 12-MP photo spans
2 m, at 1000 it spans 4 mm; neither is a photo of a finger, so the points or the length are wrong
(a marker photo is already ``low_resolution`` below 8)."""


def manual_area(
    points: Sequence[Sequence[float]],
    length_mm: float,
    polygon: Sequence[Sequence[float]],
    frame: tuple[int, int],
) -> dict[str, Any]:
    """Area (mm²) of a polygon traced on a photo with a hand-set scale (pure).

    ``points``: two photo-px points ``length_mm`` apart on the skin/marker plane; ``polygon``:
    the outline in photo px; ``frame``: (width, height) of the photo. The polygon is filled by
    the pixel-centre rule (only its bounding box is rasterised) and the pixel count is scaled
    by (mm/px)². The photo is assumed roughly fronto-parallel: no perspective correction.
    """
    (x0, y0), (x1, y1) = points
    dist = math.hypot(x1 - x0, y1 - y0)
    if dist < MIN_SCALE_PX:
        raise DecisionError(f"the two scale points are {dist:.1f} px apart; need at least {MIN_SCALE_PX:g}")
    if not (math.isfinite(length_mm) and 0.0 < length_mm <= 1000.0):
        raise DecisionError("length_mm must be a number in (0, 1000]")
    px_per_mm = dist / length_mm
    low, high = MANUAL_PX_PER_MM
    if not low <= px_per_mm <= high:
        raise DecisionError(
            f"the scale is {px_per_mm:.3g} px/mm ({length_mm:g} mm over {dist:.1f} px); a photo of a finger "
            f"is {low:g}-{high:g} px/mm: check the two points and the length"
        )
    pts = np.asarray(polygon, dtype=np.float64)
    w, h = frame
    u0, v0 = max(0, int(np.floor(pts[:, 0].min()))), max(0, int(np.floor(pts[:, 1].min())))
    u1, v1 = min(w, int(np.ceil(pts[:, 0].max())) + 1), min(h, int(np.ceil(pts[:, 1].max())) + 1)
    local = mask_from_polygon((pts - [u0, v0]).tolist(), (max(1, v1 - v0), max(1, u1 - u0)))
    n_px = int(np.count_nonzero(local))
    mm_per_px = length_mm / dist
    area_mm2 = n_px * mm_per_px**2
    if area_mm2 > MAX_MANUAL_AREA_MM2:
        raise DecisionError(
            f"the outline is {area_mm2:.0f} mm², more than {MAX_MANUAL_AREA_MM2:g} mm² (the skin of a "
            "whole finger): outline the ulcer only, or check the scale"
        )
    return {
        "area_mm2": area_mm2,
        "n_px": n_px,
        "mm_per_px": mm_per_px,
        "scale_source": "manual",
        "scale_points_px": [list(map(float, p)) for p in points],
        "scale_length_mm": float(length_mm),
        "polygon_photo_px": [list(map(float, p)) for p in polygon],
    }


def record_manual_measurement(
    conn: sqlite3.Connection,
    item: ManualItem,
    assessor: str,
    points: Sequence[Sequence[float]],
    length_mm: float,
    polygon: Sequence[Sequence[float]],
    *,
    session_id: str | None = None,
    role: str = READER,
    measured: dict[str, Any] | None = None,
    confirm: bool = True,
) -> dict[str, Any]:
    """Append a manual-scale measurement of a photo without a usable marker (a ``correct``
    decision whose ``details`` carry ``scale_source: manual``, the scale and the outline).

    ``measured``: :func:`manual_area` of these arguments when computed already (the server
    rasterises before taking its lock). With ``confirm=False`` (the web API's first step) it
    raises :class:`NeedsConfirmation` instead: the measurement gives the visit a value that no
    marker calibrated, an endpoint change like the others that ask first.
    """
    assessor = (assessor or "").strip()
    if not assessor:
        raise DecisionError("assessor name is required")
    if measured is None:
        measured = manual_area(points, length_mm, polygon, (item.width_px, item.height_px))
    if not confirm:
        area, ppm = measured["area_mm2"], 1.0 / measured["mm_per_px"]
        raise NeedsConfirmation(
            f"the manual scale ({ppm:.2f} photo px per mm, from your {length_mm:g} mm mark) gives this "
            f"visit an area of {area:.2f} mm² without a marker: confirm to save",
            {"action": Action.CORRECT.value, "area_before_mm2": None, "area_after_mm2": area,
             "scale_source": "manual"},
        )  # fmt: skip
    details = dict(measured)
    if role == ADJUDICATOR:
        details["role"] = ADJUDICATOR
    row = {
        "decision_id": uuid.uuid4().hex[:16],
        "photo_sha256": item.photo_sha256,
        "assessor": assessor,
        "decided_at": _now(),
        "action": Action.CORRECT.value,
        "reason": "manual scale",
        "area_before_mm2": None,
        "area_after_mm2": details["area_mm2"],
        "corrected_mask_file": None,
        "session_id": session_id,
        "details": json.dumps(details),
    }
    insert_decision(conn, row)
    log.info(
        "decision %s: manual-scale %.3f mm² on %s by %s",
        row["decision_id"],
        details["area_mm2"],
        item.key,
        assessor,
    )
    return row


def list_decisions(conn: sqlite3.Connection) -> list[DecisionRecord]:
    """All decisions in the order they were made."""
    ensure_schema(conn)
    return read_decisions(conn)


def disagreements(
    conn: sqlite3.Connection, config: HealingConfig | str | Path | None = None
) -> list[dict[str, Any]]:
    """:func:`find_disagreements` over the study's decisions (``config``: the healing rules, a
    YAML path or None for ``configs/healing.yaml``, as ``--config``)."""
    from ulcerseg.healing.config import load_healing_config

    cfg = config if isinstance(config, HealingConfig) else load_healing_config(config)
    return find_disagreements(list_decisions(conn), cfg)


def salt_for(conn: sqlite3.Connection) -> str:
    """The study's pseudonym salt (created on first use)."""
    ensure_schema(conn)
    return get_or_create_salt(conn)


DISAGREEMENT_COLUMNS: tuple[str, ...] = (
    "photo_sha256",
    "assessor_a",
    "action_a",
    "area_a_mm2",
    "assessor_b",
    "action_b",
    "area_b_mm2",
    "reason",
    "adjudicated",
)
"""Columns of :func:`disagreements`' rows, in the order ``review disagreements`` writes them."""

AUDIT_TRAIL_COLUMNS: tuple[str, ...] = (
    "seq",
    *(c for c in DECISION_COLUMNS if c != "details"),
    "scale_source",
    "undoes",
    "row_hash",
)
"""Columns of :func:`audit_trail_rows`, in the order ``review decisions`` writes them."""


def audit_trail_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """The audit trail of OUT/study.sqlite: every decision in order, as ``review decisions``
    writes it (columns :data:`AUDIT_TRAIL_COLUMNS`; areas in mm², not rounded).

    Each row is a decision with ``details`` unpacked into ``scale_source`` (``manual`` for a
    hand-set scale, else empty) and ``undoes`` (the ``decision_id`` an undo row withdraws).
    """
    with open_study(out_dir, for_reading=True) as (conn, _rows):
        return [
            {
                **d,
                "scale_source": decision_details(d).get("scale_source", ""),
                "undoes": decision_details(d).get("undoes", ""),
            }
            for d in list_decisions(conn)
        ]


@dataclass(frozen=True)
class AuditCheck:
    """Result of :func:`verify_study`: the hash chain check (:class:`ChainCheck`: rows, first
    broken row, head hash, deleted rows and dropped triggers) and the corrected masks that
    cannot be trusted (``mask_problems``, one line each: :func:`outline_file_problem`)."""

    chain: ChainCheck
    mask_problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the chain is intact and every corrected mask is the one recorded."""
        return self.chain.ok and not self.mask_problems


def verify_study(out_dir: str | Path) -> AuditCheck:
    """Check a study's audit trail (``review verify``): the decisions' hash chain, deleted rows,
    the append-only triggers (:func:`~ulcerseg.store.review.verify_chain`) and every corrected
    mask file against the SHA-256 its decision recorded."""
    with open_study(out_dir, for_reading=True) as (conn, _rows):
        chain = verify_chain(conn)
        decisions = list_decisions(conn)
    masks = tuple(p for d in decisions if (p := outline_file_problem(out_dir, d)) is not None)
    return AuditCheck(chain, masks)

"""Review records in ``study.sqlite``: decisions (append-only), sessions, the pseudonym salt.

Decisions are never updated or deleted (triggers in :mod:`ulcerseg.store.schema` refuse it);
each is committed in its own transaction before the caller answers.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Mapping
from typing import Any, TypedDict

__all__ = [
    "DECISION_COLUMNS",
    "DecisionRecord",
    "add_session",
    "decided_photos",
    "get_or_create_salt",
    "insert_decision",
    "read_decisions",
    "session_assessor",
]

DECISION_COLUMNS: tuple[str, ...] = (
    "decision_id",
    "photo_sha256",
    "assessor",
    "decided_at",
    "action",
    "reason",
    "area_before_mm2",
    "area_after_mm2",
    "corrected_mask_file",
    "session_id",
    "details",
)


class DecisionRecord(TypedDict):
    """One row of ``review_decisions`` as read back (areas mm², times ISO 8601 UTC)."""

    seq: int
    decision_id: str
    photo_sha256: str
    assessor: str
    decided_at: str
    action: str
    reason: str | None
    area_before_mm2: float | None
    area_after_mm2: float | None
    corrected_mask_file: str | None  # relative to the study folder
    session_id: str | None
    details: str | None  # JSON: re-measurement of a correction, role of an adjudicator


def insert_decision(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
    """Append one decision (columns :data:`DECISION_COLUMNS`) in its own transaction."""
    cols = [c for c in DECISION_COLUMNS if c in row]
    with conn:
        conn.execute(
            f"INSERT INTO review_decisions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            tuple(row[c] for c in cols),
        )


def read_decisions(conn: sqlite3.Connection) -> list[DecisionRecord]:
    """All decisions in the order they were made."""
    cur = conn.execute(f"SELECT seq, {', '.join(DECISION_COLUMNS)} FROM review_decisions ORDER BY seq")
    names = [d[0] for d in cur.description]
    return [DecisionRecord(**dict(zip(names, r, strict=True))) for r in cur.fetchall()]


def decided_photos(conn: sqlite3.Connection, assessor: str) -> set[str]:
    """sha256 of every photo ``assessor`` has decided."""
    rows = conn.execute(
        "SELECT DISTINCT photo_sha256 FROM review_decisions WHERE assessor = ?", (assessor,)
    ).fetchall()
    return {str(r[0]) for r in rows}


def add_session(conn: sqlite3.Connection, session_id: str, assessor: str, started_at: str) -> None:
    """Record an assessor session."""
    with conn:
        conn.execute(
            "INSERT INTO review_sessions (session_id, assessor, started_at) VALUES (?, ?, ?)",
            (session_id, assessor, started_at),
        )


def session_assessor(conn: sqlite3.Connection, session_id: str) -> str | None:
    """The assessor of a session, or None for an unknown session."""
    row = conn.execute("SELECT assessor FROM review_sessions WHERE session_id = ?", (session_id,)).fetchone()
    return None if row is None else str(row[0])


def get_or_create_salt(conn: sqlite3.Connection) -> str:
    """The study's pseudonymisation salt (created once, stored in ``review_secrets``)."""
    with conn:
        conn.execute(
            "INSERT OR IGNORE INTO review_secrets (name, value) VALUES ('pseudonym_salt', ?)",
            (secrets.token_hex(32),),
        )
    row = conn.execute("SELECT value FROM review_secrets WHERE name = 'pseudonym_salt'").fetchone()
    return str(row[0])

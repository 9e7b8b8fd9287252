"""Review records in ``study.sqlite``: decisions (append-only, hash-chained), sessions, the
pseudonym salt and the readers (personal tokens, stored as SHA-256 only).

Decisions are never updated or deleted (triggers in :mod:`ulcerseg.store.schema` refuse it);
each is committed in its own transaction before the caller answers, with its ``row_hash``
chained to the previous row (:mod:`ulcerseg.store.chain`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, cast

from ulcerseg.errors import DecisionError
from ulcerseg.ids import invisible_character
from ulcerseg.store.chain import GENESIS, first_broken, row_hash
from ulcerseg.store.db import read_snapshot
from ulcerseg.store.schema import CHAIN_COLUMNS

__all__ = [
    "DECISION_COLUMNS",
    "ChainCheck",
    "DecisionRecord",
    "Reader",
    "add_reader",
    "add_session",
    "decided_photos",
    "decision_details",
    "get_or_create_salt",
    "insert_decision",
    "list_readers",
    "read_decisions",
    "reader_for_token",
    "revoke_reader",
    "run_input_roots",
    "session_assessor",
    "token_sha256",
    "verify_chain",
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
    details: str | None  # JSON: re-measurement of a correction, role of an adjudicator, undo
    row_hash: str | None  # SHA-256 chained to the previous row (ulcerseg.store.chain)


def decision_details(decision: Mapping[str, Any]) -> dict[str, Any]:
    """The decision's ``details`` JSON as a dict ({} when absent or unreadable)."""
    raw = decision.get("details")
    if not raw:
        return {}
    try:
        details = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError):
        return {}
    return details if isinstance(details, dict) else {}


def _check_assessor(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
    """Refuse a decision whose assessor is not an active reader registered in its role."""
    name = str(row.get("assessor") or "")
    found = conn.execute("SELECT role, revoked_at FROM review_readers WHERE name = ?", (name,)).fetchone()
    if found is None or found[1] is not None:
        raise DecisionError(
            f"assessor {name!r} is not an active registered reader of this study "
            "(`ulcerseg review readers add`)"
        )
    role = decision_details(row).get("role", "reader")
    if found[0] != role:
        raise DecisionError(f"assessor {name!r} is registered as {found[0]}, not {role}")


def insert_decision(conn: sqlite3.Connection, row: Mapping[str, Any]) -> int:
    """Append one decision (columns :data:`DECISION_COLUMNS`) in its own transaction.

    The row gets the next ``seq`` and its ``row_hash`` chained to the last row's, both computed
    under the write lock (``BEGIN IMMEDIATE``), so concurrent writers cannot fork the chain.
    Returns the row's ``seq``. The assessor must be an active registered reader of the role the
    decision is made in (:class:`~ulcerseg.errors.DecisionError` otherwise): a value in the
    final table is measured or vouched for by someone who holds a personal token.
    """
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        _check_assessor(conn, row)
        last = conn.execute("SELECT seq, row_hash FROM review_decisions ORDER BY seq DESC LIMIT 1").fetchone()
        issued = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'review_decisions'").fetchone()
        seq = max(int(last[0]) if last else 0, int(issued[0]) if issued else 0) + 1
        full = {c: row.get(c) for c in DECISION_COLUMNS}
        full["seq"] = seq
        digest = row_hash(str(last[1]) if last and last[1] else GENESIS, full)
        cols = ["seq", *DECISION_COLUMNS, "row_hash"]
        conn.execute(
            f"INSERT INTO review_decisions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            (*(full[c] for c in cols[:-1]), digest),
        )
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return seq


def read_decisions(conn: sqlite3.Connection) -> list[DecisionRecord]:
    """All decisions in the order they were made."""
    cur = conn.execute(
        f"SELECT seq, {', '.join(DECISION_COLUMNS)}, row_hash FROM review_decisions ORDER BY seq"
    )
    names = [d[0] for d in cur.description]
    # the SELECT names exactly DecisionRecord's keys (seq, DECISION_COLUMNS, row_hash)
    return [cast(DecisionRecord, dict(zip(names, r, strict=True))) for r in cur.fetchall()]


@dataclass(frozen=True)
class ChainCheck:
    """Result of :func:`verify_chain`: rows checked, the first broken row (its ``seq`` and
    ``decision_id``; None when intact), the head hash (the last row's ``row_hash``) and what
    else shows tampering (``problems``, one line each: deleted rows, dropped triggers)."""

    n_rows: int
    broken_seq: int | None
    broken_decision_id: str | None
    head: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.broken_seq is None and not self.problems


# the append-only guards of review_decisions (store/schema.py); dropping one is tampering
_GUARDS = ("review_decisions_no_update", "review_decisions_no_delete", "review_decisions_no_replace")


def _deleted_rows(conn: sqlite3.Connection, seqs: list[int]) -> list[str]:
    """Deleted decisions: gaps in ``seq`` (AUTOINCREMENT never reuses or skips a number of a
    committed row) and rows after the last one (SQLite's counter remembers the highest seq)."""
    problems = []
    expected = 1
    for seq in seqs:
        if seq > expected:
            span = f"seq {expected}" if seq == expected + 1 else f"seq {expected}-{seq - 1}"
            problems.append(f"decision {span} missing (deleted)")
        expected = seq + 1
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'review_decisions'").fetchone()
    counter = int(row[0]) if row else 0
    if counter >= expected:
        span = f"seq {expected}" if counter == expected else f"seq {expected}-{counter}"
        problems.append(f"decision {span} missing (deleted after the last row)")
    return problems


def verify_chain(conn: sqlite3.Connection) -> ChainCheck:
    """Recompute the hash chain over every decision in ``seq`` order; check that no row was
    deleted and that the append-only triggers are in place.

    Every read is of one snapshot (a read transaction): read one by one, a decision saved by the
    review server between reading the rows and reading SQLite's counter looked like a row
    deleted after the last one, a false tampering alarm while readers are at work.
    """
    with read_snapshot(conn):
        cur = conn.execute(f"SELECT {', '.join(CHAIN_COLUMNS)}, row_hash FROM review_decisions ORDER BY seq")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        problems = _deleted_rows(conn, [int(r["seq"]) for r in rows])
        triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    problems += [f"append-only trigger {name} missing (dropped)" for name in _GUARDS if name not in triggers]
    i = first_broken(rows)
    head = str(rows[-1]["row_hash"] or "") if rows else GENESIS
    if i is None:
        return ChainCheck(len(rows), None, None, head, tuple(problems))
    return ChainCheck(len(rows), int(rows[i]["seq"]), str(rows[i]["decision_id"]), head, tuple(problems))


# --- readers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reader:
    """A reader or adjudicator of the study (``role``: ``reader`` | ``adjudicator``)."""

    name: str
    role: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def token_sha256(token: str) -> str:
    """What the study stores of a personal token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def add_reader(conn: sqlite3.Connection, name: str, role: str = "reader") -> str:
    """Register a reader; returns the personal token (shown once: only its SHA-256 is stored).

    The token is 32 random bytes, URL-safe base64. A revoked name cannot be reused (the audit
    trail names readers).
    """
    name = name.strip() if isinstance(name, str) else ""  # None or a number: no name
    if not name or len(name) > 80 or invisible_character(name) is not None:
        raise DecisionError("a reader name is 1-80 printable characters")
    if role not in ("reader", "adjudicator"):
        raise DecisionError(f"unknown role {role!r} (known: reader, adjudicator)")
    token = secrets.token_urlsafe(32)
    if conn.in_transaction:
        conn.commit()
    # the check and the insert under the write lock: checked first and inserted after, two
    # registrations at once ("Alice" and "alice") both passed the check
    conn.execute("BEGIN IMMEDIATE")
    try:
        # one person, one name: "Alice" beside "alice" (or a look-alike spelling) would let one
        # person count as two independent readers of a double reading
        same = [r.name for r in list_readers(conn) if _name_key(r.name) == _name_key(name)]
        if same and same != [name]:
            raise DecisionError(f"reader {name!r}: {same[0]!r} exists already (names differing only in "
                                "case or spelling variants are one reader)")  # fmt: skip
        conn.execute(
            "INSERT INTO review_readers (name, role, token_sha256, created_at) VALUES (?, ?, ?, ?)",
            (name, role, token_sha256(token), _now()),
        )
    except sqlite3.IntegrityError:
        conn.rollback()
        raise DecisionError(f"reader {name!r} exists already") from None
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return token


def _name_key(name: str) -> str:
    """What makes two reader names the same person's: Unicode compatibility form, case-folded,
    inner whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def list_readers(conn: sqlite3.Connection) -> list[Reader]:
    """Every reader, revoked ones included, by name."""
    rows = conn.execute(
        "SELECT name, role, created_at, revoked_at FROM review_readers ORDER BY name"
    ).fetchall()
    return [Reader(str(r[0]), str(r[1]), str(r[2]), None if r[3] is None else str(r[3])) for r in rows]


def revoke_reader(conn: sqlite3.Connection, name: str) -> None:
    """Revoke a reader's token (their decisions stay; the token no longer logs in)."""
    with conn:
        cur = conn.execute(
            "UPDATE review_readers SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (_now(), name)
        )
    if cur.rowcount == 0:
        raise DecisionError(f"no active reader {name!r}")


def reader_for_token(conn: sqlite3.Connection, token: str) -> Reader | None:
    """The active reader holding ``token``, else None (compared by hash, in constant time)."""
    if not token or len(token) > 256:
        return None
    digest = token_sha256(token)
    rows = conn.execute(
        "SELECT name, role, created_at, revoked_at, token_sha256 FROM review_readers WHERE revoked_at IS NULL"
    ).fetchall()
    found = None
    for r in rows:
        if hmac.compare_digest(str(r[4]), digest):
            found = Reader(str(r[0]), str(r[1]), str(r[2]), None)
    return found


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
    row = conn.execute("SELECT value FROM review_secrets WHERE name = 'pseudonym_salt'").fetchone()
    if row is not None:  # read only: a study opened read-only has its salt once it was served
        return str(row[0])
    with conn:
        conn.execute(
            "INSERT OR IGNORE INTO review_secrets (name, value) VALUES ('pseudonym_salt', ?)",
            (secrets.token_hex(32),),
        )
    row = conn.execute("SELECT value FROM review_secrets WHERE name = 'pseudonym_salt'").fetchone()
    return str(row[0])


def run_input_roots(conn: sqlite3.Connection) -> dict[str, str]:
    """run_id -> the input folder its photo paths are relative to (for manual-scale review)."""
    return {str(r[0]): str(r[1]) for r in conn.execute("SELECT run_id, input_root FROM runs").fetchall()}

"""The derived ``healing`` table: rewritten as a whole by each ``heal``, read by the review."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from ulcerseg.store.schema import HEALING_TABLE_COLUMNS

__all__ = ["proposed_status", "replace_healing_rows"]

_COLUMNS = tuple(name for name, _ in HEALING_TABLE_COLUMNS)


def replace_healing_rows(conn: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace every row of ``healing`` in one transaction (other tables untouched).

    Each row maps column names (:data:`ulcerseg.store.schema.HEALING_TABLE_COLUMNS`) to values;
    missing columns are stored as NULL.
    """
    placeholders = ", ".join("?" for _ in _COLUMNS)
    with conn:
        conn.execute("DELETE FROM healing")
        conn.executemany(
            f"INSERT INTO healing ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
            [tuple(r.get(c) for c in _COLUMNS) for r in rows],
        )


def proposed_status(conn: sqlite3.Connection, photo_sha256: str) -> str | None:
    """Healing status of the visit a photo represents, or None (not healed yet / not a representative)."""
    row = conn.execute(
        "SELECT status FROM healing WHERE photo_sha256 = ? LIMIT 1", (photo_sha256,)
    ).fetchone()
    return None if row is None else str(row[0])

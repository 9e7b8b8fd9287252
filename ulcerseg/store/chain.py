"""The decisions' hash chain (pure): each row's hash covers the previous row's hash and its content.

``row_hash = SHA-256(previous row_hash || canonical JSON of the row's CHAIN_COLUMNS)``, the
first row chained to :data:`GENESIS`. Editing, inserting or deleting any row breaks the chain
from that row on; ``ulcerseg review verify`` names the first broken row (and, from the
store, deleted rows and dropped triggers: ``store.review.verify_chain``). The chain has no
secret: someone who rewrites every later hash too is caught only by comparing the head hash
(printed by ``review verify``) with a copy kept elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["CHAIN_COLUMNS", "GENESIS", "canonical_content", "chain_hashes", "first_broken", "row_hash"]

GENESIS = "0" * 64

CHAIN_COLUMNS: tuple[str, ...] = (
    "seq", "decision_id", "photo_sha256", "assessor", "decided_at", "action", "reason",
    "area_before_mm2", "area_after_mm2", "corrected_mask_file", "session_id", "details",
)  # fmt: skip
"""The columns of a decision covered by its ``row_hash`` (every column but the hash)."""


def canonical_content(row: Mapping[str, Any]) -> bytes:
    """The bytes hashed for one decision: a JSON list of its chained columns, in order.

    Floats are written by ``json`` (shortest round-trip repr), so a value read back from
    SQLite hashes to the same bytes as the value written.
    """
    values = [row.get(c) for c in CHAIN_COLUMNS]
    return json.dumps(values, ensure_ascii=True, separators=(",", ":"), allow_nan=True).encode("ascii")


def row_hash(previous: str, row: Mapping[str, Any]) -> str:
    """SHA-256 hex of the previous row's hash and this row's canonical content."""
    return hashlib.sha256(previous.encode("ascii") + b"\n" + canonical_content(row)).hexdigest()


def chain_hashes(rows: Iterable[Mapping[str, Any]], previous: str = GENESIS) -> list[str]:
    """The hash of each row in order (rows in ``seq`` order)."""
    out = []
    for row in rows:
        previous = row_hash(previous, row)
        out.append(previous)
    return out


def first_broken(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the first row whose stored ``row_hash`` is not the chain's value, else None."""
    previous = GENESIS
    for i, row in enumerate(rows):
        expected = row_hash(previous, row)
        if row.get("row_hash") != expected:
            return i
        previous = expected
    return None

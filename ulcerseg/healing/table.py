"""Healing results as flat rows (one per ulcer and visit) and ``healing.csv``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ulcerseg.healing.records import UlcerHealing, VisitHealing
from ulcerseg.tables import write_csv

__all__ = ["HEALING_COLUMNS", "PROVENANCE_COLUMNS", "flat_rows", "write_healing_csv"]


PROVENANCE_COLUMNS: tuple[str, ...] = ("package_version", "model_sha256", "config_sha256")
HEALING_COLUMNS: tuple[str, ...] = (
    "heal_run",
    *(f.name for f in fields(VisitHealing)),
    *PROVENANCE_COLUMNS,
    "healing_config_sha256",
)


def flat_rows(results: Sequence[UlcerHealing], heal_run: str) -> list[dict[str, Any]]:
    """One flat dict per visit row (flag lists ';'-joined, booleans 0/1) for CSV/SQL."""
    out: list[dict[str, Any]] = []
    for u in results:
        for v in u.visits:
            d = asdict(v)
            d["photo_flags"] = ";".join(v.photo_flags)
            d["healing_flags"] = ";".join(v.healing_flags)
            d["is_cardinal"] = int(v.is_cardinal)
            out.append({"heal_run": heal_run, **d})
    return out


def write_healing_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write flat healing rows to CSV (columns :data:`HEALING_COLUMNS`), atomically."""
    return write_csv(path, rows, HEALING_COLUMNS)

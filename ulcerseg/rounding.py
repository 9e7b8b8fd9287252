"""Rounding of figures for the CSV files the tool writes (the database keeps full precision).

One rule by column-name suffix, so every table reads the same: areas ``*_mm2`` to 0.01 mm²,
percentages ``*_pct`` to 0.1 %, rates ``*_per_week`` to 0.01 (mm² per week). Applied where the
rows are built for a CSV, never to the values stored in ``study.sqlite``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CSV_DECIMALS", "as_shown", "csv_decimals", "round_frame", "round_row", "round_rows"]

# (column suffix, decimals), first match wins
CSV_DECIMALS: tuple[tuple[str, int], ...] = (
    ("_per_week", 2),  # healing_rate_mm2_per_week: mm² per week
    ("_mm2", 2),  # areas and changes in mm²
    ("_pct", 1),  # percentages
)


def csv_decimals(column: str) -> int | None:
    """Decimals a CSV shows for ``column`` (None: written as it is)."""
    return next((n for suffix, n in CSV_DECIMALS if column.endswith(suffix)), None)


def _round(value: Any, decimals: int) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return value
    out = round(float(value), decimals)
    return 0.0 if out == 0 else out  # no "-0.0"


def as_shown(column: str, value: float) -> float:
    """``value`` as a CSV shows it in ``column`` (e.g. an ``*_mm2`` area to 0.01 mm²)."""
    n = csv_decimals(column)
    return value if n is None else _round(value, n)


def round_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` with its areas, percentages and rates rounded for a CSV."""
    out = dict(row)
    for key, value in row.items():
        n = csv_decimals(key)
        if n is not None:
            out[key] = _round(value, n)
    return out


def round_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`round_row` over ``rows``."""
    return [round_row(r) for r in rows]


def round_frame(frame: Any) -> Any:
    """A copy of a pandas DataFrame with its ``*_mm2`` / ``*_pct`` / ``*_per_week`` float
    columns rounded for a CSV (other columns untouched)."""
    out = frame.copy()
    for col in out.columns:
        n = csv_decimals(str(col))
        if n is not None and out[col].dtype.kind == "f":
            out[col] = out[col].round(n) + 0.0  # + 0.0: no "-0.0"
    return out

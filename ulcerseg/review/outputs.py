"""Helpers shared by the review exports: config, CSV writing, masks, destination checks."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ulcerseg.errors import InputError
from ulcerseg.healing.config import HealingConfig, load_healing_config
from ulcerseg.review.blinding import load_rgb

__all__ = [
    "check_dest",
    "escape_cell",
    "escape_row",
    "healing_config",
    "load_mask",
    "write_csv",
    "write_csv_to",
]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: Any) -> Any:
    """A CSV cell safe from spreadsheet formula injection.

    A text value beginning with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading ``'``
    (OWASP); numbers are left as they are (a negative change stays a number); None -> "".
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def escape_row(row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """``row`` restricted to ``columns`` with every cell escaped."""
    return {k: escape_cell(row.get(k)) for k in columns}


def write_csv_to(fh: Any, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` (escaped cells) as CSV with a header to an open text stream."""
    w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(escape_row(r, columns))


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: Path) -> Path:
    """Write ``rows`` to ``path`` atomically (temp file, then rename), every cell escaped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        write_csv_to(fh, rows, columns)
    tmp.replace(path)
    return path


def healing_config(config: HealingConfig | str | Path | None) -> HealingConfig:
    return config if isinstance(config, HealingConfig) else load_healing_config(config)


def load_mask(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    return load_rgb(path).max(axis=2) >= 128


def check_dest(dest: Path, out_dir: Path) -> None:
    if dest.exists() and any(dest.iterdir()):
        raise InputError(f"{dest}: output folder exists and is not empty")
    if dest.resolve().is_relative_to(out_dir.resolve()) and dest.resolve() == out_dir.resolve():
        raise InputError(f"{dest}: must not be the study folder itself")

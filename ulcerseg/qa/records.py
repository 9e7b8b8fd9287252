"""The record of one QA run (tables and files), shared by the comparison and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ulcerseg.qa.inputs import Issue

__all__ = ["QAReport"]


@dataclass
class QAReport:
    """Everything a QA run produced (tables as DataFrames, plus the files written)."""

    out_dir: Path
    pairs: pd.DataFrame  # one row per (photo, reader)
    agreement: pd.DataFrame  # one row per comparison
    subgroups: dict[str, pd.DataFrame]  # --by column -> per-group agreement
    kappa: pd.DataFrame  # one row per status comparison (may be empty)
    confusion: dict[str, pd.DataFrame]  # comparison -> confusion table
    issues: list[Issue]
    unmatched: pd.DataFrame
    readers: list[str]
    n_auto_photos: int
    px_per_mm: float = 20.0  # marker-plane resolution at which mask annotations were measured
    manual_sources: list[Path] = field(default_factory=list)  # the --manual CSVs and folders
    files: list[Path] = field(default_factory=list)
    summary_md: str = ""

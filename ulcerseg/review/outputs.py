"""Helpers shared by the review exports: config, CSV writing, masks, destination checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ulcerseg import tables
from ulcerseg.errors import InputError
from ulcerseg.healing.config import HealingConfig, load_healing_config
from ulcerseg.imageio import read_rgb

__all__ = ["check_dest", "healing_config", "load_mask", "write_csv"]


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: Path) -> Path:
    """Atomic, formula-escaped CSV (``tables.write_csv``), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return tables.write_csv(path, rows, columns)


def healing_config(config: HealingConfig | str | Path | None) -> HealingConfig:
    return config if isinstance(config, HealingConfig) else load_healing_config(config)


def load_mask(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    return read_rgb(path).max(axis=2) >= 128


def check_dest(dest: Path, out_dir: Path) -> None:
    tables.require_new_or_empty(dest)
    if dest.resolve().is_relative_to(out_dir.resolve()) and dest.resolve() == out_dir.resolve():
        raise InputError(f"{dest}: must not be the study folder itself")

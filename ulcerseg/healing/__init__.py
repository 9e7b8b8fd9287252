"""Longitudinal healing status per subject, ulcer and visit.

Input: per-photo rows (dicts) like ``Study.latest_measurements()``; output: one
:class:`VisitHealing` per (subject, ulcer, visit), ordered by study day, with area change from
baseline and from the previous measured visit, a proposed status, per-ulcer summaries (time to
healing, healing rate, cardinal ulcer) and longitudinal flag codes (:class:`HealingFlag`).
Areas are mm² in the marker plane; days are study days (``D<n>`` = n, ``W<n>`` = 7n).

Modules: ``config`` (rules YAML), ``records`` (status, flags, rows), ``rules`` (the pure
computation), ``table`` (flat rows, healing.csv), ``study`` (``heal_study`` on an output
folder; the table itself lives in :mod:`ulcerseg.store`).
"""

from ulcerseg.healing.config import (
    HealingConfig,
    ReviewSettings,
    healing_config_from_dict,
    healing_config_sha256,
    load_healing_config,
)
from ulcerseg.healing.records import HealingFlag, HealingStatus, UlcerHealing, VisitHealing
from ulcerseg.healing.rules import compute_healing
from ulcerseg.healing.study import heal_study
from ulcerseg.healing.table import HEALING_COLUMNS, PROVENANCE_COLUMNS, flat_rows, write_healing_csv
from ulcerseg.visits import visit_to_day

__all__ = [
    "HEALING_COLUMNS",
    "PROVENANCE_COLUMNS",
    "HealingConfig",
    "HealingFlag",
    "HealingStatus",
    "ReviewSettings",
    "UlcerHealing",
    "VisitHealing",
    "compute_healing",
    "flat_rows",
    "heal_study",
    "healing_config_from_dict",
    "healing_config_sha256",
    "load_healing_config",
    "visit_to_day",
    "write_healing_csv",
]

"""Healing records: status and flag codes, one row per ulcer and visit, one summary per ulcer."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["HealingFlag", "HealingStatus", "UlcerHealing", "VisitHealing"]


class HealingStatus(StrEnum):
    """Proposed status of one ulcer at one visit."""

    BASELINE = "baseline"  # the measurable reference visit itself
    HEALED = "healed"
    IMPROVING = "improving"
    STABLE = "stable"
    WORSENING = "worsening"
    RECURRED = "recurred"
    NOT_ASSESSABLE = "not_assessable"


class HealingFlag(StrEnum):
    """Stable longitudinal reason codes (added to the per-photo :class:`ulcerseg.records.Flag`)."""

    IMPLAUSIBLE_JUMP = "implausible_jump"
    HEALED_THEN_REAPPEARED = "healed_then_reappeared"
    MISSING_VISIT = "missing_visit"
    BASELINE_NOT_MEASURABLE = "baseline_not_measurable"
    # a visit before the configured baseline (baseline_visit W4: a screening visit D0): compared
    # with nothing, so not_assessable, with no change from baseline
    BEFORE_BASELINE = "before_baseline"
    NEAR_THRESHOLD = "near_threshold"
    DATE_INCONSISTENT = "date_inconsistent"
    # the healing config names a cardinal ulcer of which the study has no photo (on every row of
    # that subject, which then has no cardinal ulcer): a typo or a mislabelled photo folder
    CARDINAL_ULCER_MISSING = "cardinal_ulcer_missing"


@dataclass
class VisitHealing:
    """Healing figures of one ulcer at one visit (areas mm², changes mm² and %, days)."""

    subject_id: str
    ulcer_id: str
    visit: str
    study_day: int
    status: str
    photo_sha256: str | None = None  # representative photo (median area) of the visit
    n_photos: int = 0
    photo_date: str | None = None
    area_mm2: float | None = None
    area_low_mm2: float | None = None
    area_high_mm2: float | None = None
    # changes: final - reference; negative = shrinking (mm² and % of the reference area)
    change_from_baseline_mm2: float | None = None
    change_from_baseline_pct: float | None = None
    change_from_previous_mm2: float | None = None
    change_from_previous_pct: float | None = None
    photo_flags: list[str] = field(default_factory=list)
    healing_flags: list[str] = field(default_factory=list)
    # per-ulcer summary, repeated on every visit row for flat tables
    is_cardinal: bool = False
    cardinal_source: str = ""
    baseline_visit: str | None = None
    reference_visit: str | None = None  # visit the % changes refer to (baseline if measurable)
    time_to_healing_days: int | None = None
    time_to_confirmed_healing_days: int | None = None
    # least-squares slope of area over time; negative = shrinking, like the changes
    healing_rate_mm2_per_week: float | None = None


@dataclass
class UlcerHealing:
    """Per-ulcer summary over all visits."""

    subject_id: str
    ulcer_id: str
    visits: list[VisitHealing]
    is_cardinal: bool = False
    cardinal_source: str = ""
    baseline_visit: str | None = None
    reference_visit: str | None = None
    time_to_healing_days: int | None = None
    time_to_confirmed_healing_days: int | None = None
    healing_rate_mm2_per_week: float | None = None  # negative = shrinking
    flags: list[str] = field(default_factory=list)

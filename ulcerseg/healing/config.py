"""Healing and review rules configuration (``configs/healing.yaml``): units mm², %, days."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ulcerseg.config import build_dataclass, read_yaml_mapping
from ulcerseg.errors import ConfigError, InputError
from ulcerseg.ids import nfc
from ulcerseg.records import Flag
from ulcerseg.resources import config_path, find_config
from ulcerseg.visits import canonical_visit, visit_to_day

log = logging.getLogger(__name__)

# keys of older configs that are accepted with a deprecation message and ignored
DEPRECATED_KEYS = {
    "low_confidence_flags": "any quality flag already forbids 'healed'",
}

__all__ = [
    "HealingConfig",
    "ReviewSettings",
    "healing_config_from_dict",
    "healing_config_sha256",
    "load_healing_config",
]


@dataclass(frozen=True)
class ReviewSettings:
    """Settings of the blinded review (section ``review:`` of the healing config)."""

    seed: int = 20240101
    review_all: bool = False
    show_visit_label: bool = False
    disagreement_area_tolerance_pct: float = 10.0
    disagreement_area_tolerance_mm2: float = 0.5


@dataclass(frozen=True)
class HealingConfig:
    """Rules and thresholds of the healing status (units: mm², %, days)."""

    healed_max_area_mm2: float = 0.5
    improving_min_reduction_pct: float = 20.0
    worsening_min_increase_pct: float = 20.0
    baseline_visit: str = "D0"
    unassessable_flags: tuple[str, ...] = (
        "unreadable_file",
        "no_marker",
        "ambiguous_marker",
        "processing_error",
        "write_error",
        "missing_file",
        "file_changed",
        "grayscale",
    )
    # the protocol's visits; empty: the visits present in the study (any subject) are expected
    schedule: tuple[str, ...] = ()
    missing_visits_after_last: bool = False
    implausible_jump_factor: float = 4.0  # growth between consecutive measured visits
    implausible_shrink_factor: float = 10.0  # shrinkage (healing shrinks fast, so looser)
    near_threshold_area_mm2: float = 0.25
    near_threshold_pct: float = 5.0
    date_window_days: int = 7
    cardinal_ulcers: dict[str, str] = field(default_factory=dict)
    review: ReviewSettings = field(default_factory=ReviewSettings)


# A healed ulcer is epithelialised (0 mm²); the limit only absorbs measurement noise around 0:
# the segmentation drops components under 0.3 mm² (configs/default.yaml min_area_mm2) and readers
# may differ by 0.5 mm² (review.disagreement_area_tolerance_mm2). 2 mm² (4x the default 0.5, a
# disc of 1.6 mm across) leaves a protocol room for a looser limit while an area above it is a
# lesion the tool measures, an open ulcer (the sample trial's open ulcers measure 1.6-18 mm²). A
# value in other units (50 for 0.5, a diameter, pixels) called every ulcer healed without a word.
HEALED_MAX_AREA_LIMIT_MM2 = 2.0
# the change thresholds are percentages: under 1% they sort measurement noise (two photos of the
# same wound differ by a median 4.2%, README) into improving/worsening, and 0.2 is a fraction
# written for 20%
MIN_CHANGE_THRESHOLD_PCT = 1.0


def _check_units(cfg: HealingConfig, source: str) -> None:
    """Ranges that catch a threshold written in the wrong units (mm², %); after the checks of
    non-negative, finite values."""
    area = cfg.healed_max_area_mm2
    if area > HEALED_MAX_AREA_LIMIT_MM2:
        raise ConfigError(
            f"{source}: key 'healed_max_area_mm2' must be between 0 and {HEALED_MAX_AREA_LIMIT_MM2:g} mm² "
            f"(the largest area a healed ulcer may still measure), got {area!r}"
        )
    for key in ("improving_min_reduction_pct", "worsening_min_increase_pct"):
        pct = getattr(cfg, key)
        if pct < MIN_CHANGE_THRESHOLD_PCT:
            raise ConfigError(
                f"{source}: key {key!r} must be at least {MIN_CHANGE_THRESHOLD_PCT:g} (a change in % of "
                f"the baseline area, 20 for 20%, not a fraction), got {pct!r}"
            )
    tolerance = cfg.review.disagreement_area_tolerance_pct
    if tolerance >= 100:  # two areas never differ by more than 100% of the larger one
        raise ConfigError(
            f"{source}: key 'review.disagreement_area_tolerance_pct' must be below 100 (a difference "
            f"in % of the larger area), got {tolerance!r}"
        )


def _validate_healing(cfg: HealingConfig, source: str) -> None:
    """Checks beyond types: visit labels, non-negative thresholds, factors >= 1, ranges of the
    thresholds that a value in the wrong units would leave (:func:`_check_units`)."""
    for key in ("baseline_visit", "schedule"):
        labels = (cfg.baseline_visit,) if key == "baseline_visit" else cfg.schedule
        for label in labels:
            try:
                visit_to_day(label)
            except InputError as err:
                raise ConfigError(f"{source}: key {key!r}: {err}") from None
    known = {str(f) for f in Flag}
    unknown = [f for f in cfg.unassessable_flags if f not in known]
    if unknown:  # a misspelt code silently never matched: that flag no longer held the visit
        raise ConfigError(
            f"{source}: key 'unassessable_flags': unknown flag {unknown[0]!r} "
            f"(flags: {', '.join(sorted(known))})"
        )
    if cfg.improving_min_reduction_pct > 100:  # an area cannot shrink by more than 100%
        raise ConfigError(
            f"{source}: key 'improving_min_reduction_pct' must be <= 100 (a reduction in % of the "
            f"baseline area), got {cfg.improving_min_reduction_pct!r}"
        )
    if len({canonical_visit(v) for v in cfg.schedule}) != len(cfg.schedule):
        raise ConfigError(f"{source}: key 'schedule' lists a visit twice: {list(cfg.schedule)!r}")
    scheduled = {canonical_visit(v) for v in cfg.schedule}
    if scheduled and canonical_visit(cfg.baseline_visit) not in scheduled:
        # a protocol whose reference visit is not one of its visits: every ulcer's baseline
        # would be reported missing, or a visit outside the protocol would be the reference
        raise ConfigError(
            f"{source}: key 'baseline_visit' {cfg.baseline_visit!r} is not one of the visits in "
            f"'schedule' {list(cfg.schedule)!r}"
        )
    for section, obj in (("", cfg), ("review.", cfg.review)):
        for f in fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            minimum = 1.0 if f.name.startswith("implausible_") else 0.0
            # ints are finite (and math.isfinite(10**400) would raise OverflowError)
            if (isinstance(value, float) and not math.isfinite(value)) or value < minimum:
                raise ConfigError(f"{source}: key '{section}{f.name}' must be >= {minimum:g}, got {value!r}")
    _check_units(cfg, source)


def healing_config_from_dict(raw: Mapping[str, Any], source: str = "<dict>") -> HealingConfig:
    """Validated :class:`HealingConfig` from a mapping; raises :class:`ConfigError`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    raw = dict(raw)
    for key, why in DEPRECATED_KEYS.items():
        if key in raw:
            raw.pop(key)
            log.warning("%s: '%s' is deprecated and ignored: %s", source, key, why)
    cfg = build_dataclass(HealingConfig, raw, source)
    _validate_healing(cfg, source)
    # the labels discovery reports (visits.canonical_visit): a schedule written W04 must still
    # find the visit of folder W4 (or W04), not report it missing
    return replace(
        cfg,
        baseline_visit=canonical_visit(cfg.baseline_visit),
        schedule=tuple(canonical_visit(v) for v in cfg.schedule),
        cardinal_ulcers=_nfc_ids(cfg.cardinal_ulcers, source),
    )


def _nfc_ids(cardinal: Mapping[str, str], source: str) -> dict[str, str]:
    """``cardinal_ulcers`` with subject and ulcer IDs in discovery's form (NFC, stripped): a
    subject typed decomposed (``Se`` + U+0301) never matched the study's ``Sé01``, and its
    largest ulcer silently became the cardinal one."""
    out: dict[str, str] = {}
    for subject, ulcer in cardinal.items():
        key, value = nfc(subject), nfc(ulcer)
        if out.setdefault(key, value) != value:
            raise ConfigError(
                f"{source}: key 'cardinal_ulcers': subject {key!r} is given twice (Unicode forms "
                f"or spaces differ) with ulcers {out[key]!r} and {value!r}"
            )
    return out


def load_healing_config(path: str | Path | None = None) -> HealingConfig:
    """Load and validate a healing YAML config (``None``: the packaged defaults file if any; a
    path that does not exist names a shipped file, ``configs/healing.yaml`` from any directory)."""
    if path is None:
        path = config_path("healing.yaml")  # the checkout's configs/ or the wheel's copy
    path = find_config(path)
    # IDs as written: cardinal_ulcers {001: 01} is subject "001", not 1 (YAML integers)
    return healing_config_from_dict(read_yaml_mapping(Path(path), int_text=True), str(path))


def healing_config_sha256(cfg: HealingConfig) -> str:
    """Hash of the healing rules' canonical JSON, recorded with every healing row."""
    text = json.dumps(asdict(cfg), sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()

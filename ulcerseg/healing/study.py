"""``heal_study``: healing of a measured study folder -> table ``healing`` and ``healing.csv``."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from ulcerseg import __version__
from ulcerseg.healing.config import HealingConfig, healing_config_sha256, load_healing_config
from ulcerseg.healing.records import UlcerHealing
from ulcerseg.healing.rules import compute_healing
from ulcerseg.healing.table import PROVENANCE_COLUMNS, flat_rows, write_healing_csv
from ulcerseg.review.rules import final_rows
from ulcerseg.rounding import round_rows
from ulcerseg.store import Study, require_study_db
from ulcerseg.store.healing import replace_healing_rows
from ulcerseg.store.lock import heal_lock
from ulcerseg.store.review import read_decisions
from ulcerseg.tables import write_json

__all__ = ["heal_study"]

log = logging.getLogger(__name__)


def heal_study(out_dir: str | Path, config: HealingConfig | str | Path | None = None) -> list[UlcerHealing]:
    """Compute healing for a measurement output folder; write table ``healing``, healing.csv
    and healing.json (the run's time, package version and healing config).

    Healing is computed from the FINAL per-photo values (:func:`ulcerseg.review.rules.final_rows`:
    review decisions applied, flagged photos pending review without a value), the same values
    as ``review export-final`` and ``review report``, so the three never disagree.
    ``config`` is a :class:`HealingConfig`, a YAML path, or None (packaged defaults).
    """
    cfg = config if isinstance(config, HealingConfig) else load_healing_config(config)
    out_dir = Path(out_dir)
    require_study_db(out_dir)
    with heal_lock(out_dir):  # one heal at a time: its table, CSV and JSON are of one run
        return _heal_locked(out_dir, cfg)


def _heal_locked(out_dir: Path, cfg: HealingConfig) -> list[UlcerHealing]:
    heal_run = datetime.now(UTC).isoformat(timespec="seconds")
    with Study.open(out_dir) as study:
        photo_rows = study.latest_measurements()
        final = final_rows(photo_rows, read_decisions(study.conn), cfg)
        results = compute_healing(final.rows, cfg)
        flat = flat_rows(results, heal_run)
        # provenance: which package, model and configs produced the measured area of each row
        by_sha = {r["photo_sha256"]: r for r in photo_rows}
        rules = healing_config_sha256(cfg)
        for row in flat:
            source = by_sha.get(row.get("photo_sha256") or "", {})
            row.update({k: source.get(k) for k in PROVENANCE_COLUMNS}, healing_config_sha256=rules)
        replace_healing_rows(study.conn, flat)
    write_healing_csv(round_rows(flat), out_dir / "healing.csv")  # the table keeps full precision
    # the run's provenance beside its rows (same heal_run): the rules themselves, not only their
    # hash, and the package version whose rules computed the statuses
    write_json(
        out_dir / "healing.json",
        {"heal_run": heal_run, "package_version": __version__, "healing_config_sha256": rules,
         "healing_config": asdict(cfg)},
    )  # fmt: skip
    log.info(
        "healing: %d ulcers, %d visit rows (%d photos pending review) -> %s",
        len(results), len(flat), len(final.pending), out_dir,
    )  # fmt: skip
    return results

"""Every table, index, view and trigger of ``study.sqlite``, and the schema's version history.

This module is the only place that defines the study database. ``SCHEMA_VERSION`` is stored
in ``PRAGMA user_version``; ``MIGRATIONS[i]`` takes a study from version ``i`` to ``i + 1``
(version 0 is a study written before versioning, or a new empty file).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ulcerseg.store.chain import CHAIN_COLUMNS, chain_hashes

__all__ = [
    "CHAIN_COLUMNS",
    "HEALING_TABLE_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STATEMENTS",
]

# --- measurements (written by `ulcerseg measure`) ---------------------------------------------
MEASUREMENT_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
    package_version TEXT NOT NULL, model_sha256 TEXT NOT NULL, config_sha256 TEXT NOT NULL,
    config_json TEXT NOT NULL, input_root TEXT NOT NULL,
    n_measured INTEGER DEFAULT 0, n_failed INTEGER DEFAULT 0, n_skipped INTEGER DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS photos (
    photo_sha256 TEXT PRIMARY KEY, file TEXT NOT NULL, subject_id TEXT NOT NULL,
    ulcer_id TEXT NOT NULL, visit TEXT NOT NULL, study_day INTEGER, photo_date TEXT,
    image_width_px INTEGER, image_height_px INTEGER
)""",
    """CREATE TABLE IF NOT EXISTS measurements (
    measurement_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    photo_sha256 TEXT NOT NULL REFERENCES photos(photo_sha256),
    file TEXT NOT NULL,
    status TEXT NOT NULL, needs_review INTEGER NOT NULL, flags TEXT NOT NULL,
    area_mm2 REAL, perimeter_mm REAL, length_mm REAL, width_mm REAL, n_components INTEGER,
    mean_probability REAL, area_low_mm2 REAL, area_high_mm2 REAL, marker_distance_mm REAL,
    mm_per_px REAL, tilt_deg REAL, marker_residual_px REAL, marker_id INTEGER,
    n_markers_found INTEGER, homography TEXT,
    rectified_px_per_mm REAL, rectified_origin_x_mm REAL, rectified_origin_y_mm REAL,
    rectified_file TEXT, mask_file TEXT, overlay_file TEXT, error TEXT NOT NULL DEFAULT '',
    stage_seconds TEXT, package_version TEXT NOT NULL, model_sha256 TEXT NOT NULL,
    config_sha256 TEXT NOT NULL, measured_at TEXT NOT NULL
)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS measurement_identity
    ON measurements(photo_sha256, file, model_sha256, config_sha256)""",
    """CREATE TABLE IF NOT EXISTS flags (
    measurement_id INTEGER NOT NULL REFERENCES measurements(measurement_id),
    code TEXT NOT NULL
)""",
    """CREATE VIEW IF NOT EXISTS latest_measurements AS
    SELECT m.photo_sha256, m.file, p.subject_id, p.ulcer_id, p.visit, p.study_day, p.photo_date,
        m.status, m.needs_review, m.flags, m.area_mm2, m.perimeter_mm, m.length_mm, m.width_mm,
        m.n_components, m.mean_probability, m.area_low_mm2, m.area_high_mm2,
        m.marker_distance_mm, m.mm_per_px, m.tilt_deg, m.marker_residual_px,
        p.image_width_px, p.image_height_px, m.homography, m.rectified_px_per_mm,
        m.rectified_origin_x_mm, m.rectified_origin_y_mm, m.rectified_file, m.mask_file,
        m.overlay_file, m.error, m.run_id, m.package_version, m.model_sha256, m.config_sha256,
        m.measured_at, m.measurement_id
    FROM measurements m JOIN photos p ON p.photo_sha256 = m.photo_sha256
    WHERE m.measurement_id = (
        SELECT MAX(m2.measurement_id) FROM measurements m2
        WHERE m2.photo_sha256 = m.photo_sha256 AND m2.file = m.file)""",
)

# --- healing (derived, rewritten by `ulcerseg heal`) -----------------------------------------
# (column, SQL type); the same order as ulcerseg.healing.HEALING_COLUMNS (a test checks it)
HEALING_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("heal_run", "TEXT"), ("subject_id", "TEXT"), ("ulcer_id", "TEXT"), ("visit", "TEXT"),
    ("study_day", "INTEGER"), ("status", "TEXT"), ("photo_sha256", "TEXT"), ("n_photos", "INTEGER"),
    ("photo_date", "TEXT"), ("area_mm2", "REAL"), ("area_low_mm2", "REAL"), ("area_high_mm2", "REAL"),
    ("change_from_baseline_mm2", "REAL"), ("change_from_baseline_pct", "REAL"),
    ("change_from_previous_mm2", "REAL"), ("change_from_previous_pct", "REAL"),
    ("photo_flags", "TEXT"), ("healing_flags", "TEXT"), ("is_cardinal", "INTEGER"),
    ("cardinal_source", "TEXT"), ("baseline_visit", "TEXT"), ("reference_visit", "TEXT"),
    ("time_to_healing_days", "INTEGER"), ("time_to_confirmed_healing_days", "INTEGER"),
    ("healing_rate_mm2_per_week", "REAL"), ("package_version", "TEXT"), ("model_sha256", "TEXT"),
    ("config_sha256", "TEXT"), ("healing_config_sha256", "TEXT"),
)  # fmt: skip

HEALING_TABLE = "CREATE TABLE IF NOT EXISTS healing ({})".format(
    ", ".join(f"{name} {kind}" for name, kind in HEALING_TABLE_COLUMNS)
)

# --- review (append-only audit trail, sessions, pseudonym salt) ------------------------------
_APPEND_ONLY = "SELECT RAISE(ABORT, 'review_decisions is append-only')"
REVIEW_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS review_decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id TEXT NOT NULL UNIQUE,
    photo_sha256 TEXT NOT NULL,
    assessor TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT,
    area_before_mm2 REAL,
    area_after_mm2 REAL,
    corrected_mask_file TEXT,
    session_id TEXT,
    details TEXT
)""",
    "CREATE INDEX IF NOT EXISTS review_decisions_photo ON review_decisions (photo_sha256)",
    f"""CREATE TRIGGER IF NOT EXISTS review_decisions_no_update BEFORE UPDATE ON review_decisions
BEGIN {_APPEND_ONLY}; END""",
    # fires for DELETE, and for the implicit delete of INSERT OR REPLACE when the connection
    # has PRAGMA recursive_triggers=ON (every connection made by ulcerseg.store.db has)
    f"""CREATE TRIGGER IF NOT EXISTS review_decisions_no_delete BEFORE DELETE ON review_decisions
BEGIN {_APPEND_ONLY}; END""",
    # refuses INSERT OR REPLACE on any connection: a new row may not reuse a stored key
    f"""CREATE TRIGGER IF NOT EXISTS review_decisions_no_replace BEFORE INSERT ON review_decisions
WHEN EXISTS (SELECT 1 FROM review_decisions WHERE seq = NEW.seq OR decision_id = NEW.decision_id)
BEGIN {_APPEND_ONLY}; END""",
    """CREATE TABLE IF NOT EXISTS review_sessions (
    session_id TEXT PRIMARY KEY,
    assessor TEXT NOT NULL,
    started_at TEXT NOT NULL
)""",
    "CREATE TABLE IF NOT EXISTS review_secrets (name TEXT PRIMARY KEY, value TEXT)",
)


STATEMENTS: tuple[str, ...] = (*MEASUREMENT_TABLES, HEALING_TABLE, *REVIEW_TABLES)
"""The schema of version 1, every statement idempotent (``IF NOT EXISTS``); later versions are
the migrations below (never edit a released version's DDL in place)."""

# --- version 2: a photo is (path relative to the study root, bytes) ---------------------------
PHOTOS_TABLE_V2 = """CREATE TABLE photos_v2 (
    file TEXT NOT NULL, photo_sha256 TEXT NOT NULL, subject_id TEXT NOT NULL,
    ulcer_id TEXT NOT NULL, visit TEXT NOT NULL, study_day INTEGER, photo_date TEXT,
    image_width_px INTEGER, image_height_px INTEGER,
    superseded_at TEXT, superseded_reason TEXT, missing_since TEXT,
    PRIMARY KEY (file, photo_sha256)
)"""

# the newest measurement of every current photo: superseded photos (new bytes at their path, or
# moved to another path) are left out; n_copies counts present paths holding the same bytes
LATEST_MEASUREMENTS_V2 = """CREATE VIEW IF NOT EXISTS latest_measurements AS
    SELECT m.photo_sha256, m.file, p.subject_id, p.ulcer_id, p.visit, p.study_day, p.photo_date,
        m.status, m.needs_review, m.flags, m.area_mm2, m.perimeter_mm, m.length_mm, m.width_mm,
        m.n_components, m.mean_probability, m.area_low_mm2, m.area_high_mm2,
        m.marker_distance_mm, m.mm_per_px, m.tilt_deg, m.marker_residual_px,
        p.image_width_px, p.image_height_px, m.homography, m.rectified_px_per_mm,
        m.rectified_origin_x_mm, m.rectified_origin_y_mm, m.rectified_file, m.mask_file,
        m.overlay_file, m.error, m.run_id, m.package_version, m.model_sha256, m.config_sha256,
        m.measured_at, m.measurement_id, m.retryable, p.missing_since,
        (SELECT COUNT(*) FROM photos p2 WHERE p2.photo_sha256 = p.photo_sha256
            AND p2.superseded_at IS NULL AND p2.missing_since IS NULL) AS n_copies
    FROM measurements m JOIN photos p ON p.photo_sha256 = m.photo_sha256 AND p.file = m.file
    WHERE p.superseded_at IS NULL AND m.measurement_id = (
        SELECT MAX(m2.measurement_id) FROM measurements m2
        WHERE m2.photo_sha256 = m.photo_sha256 AND m2.file = m.file)"""


def _table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """Unversioned study -> 1: every table in one place, REPLACE-proof decisions.

    The ``healing`` table was recreated by each ``heal`` with the columns of that version; it
    is fully derived, so one with other columns is dropped (``ulcerseg heal`` refills it).
    """
    existing = _table_columns(conn, "healing")
    if existing and existing != [name for name, _ in HEALING_TABLE_COLUMNS]:
        conn.execute("DROP TABLE healing")
    for statement in STATEMENTS:
        conn.execute(statement)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """1 -> 2: photos keyed by (file, photo_sha256) instead of the bytes alone.

    Version 1 kept one photo row per SHA-256, so copies of one photo at two paths showed the
    labels of the last one. Every (file, bytes) pair that has a measurement becomes a photo row
    (labels from the old row of its bytes, corrected by the next ``measure``); where a path has
    held several byte versions, all but the newest measured are marked superseded. Failed
    measurements get ``retryable`` (environment failures are not cached), and the unique
    identity index becomes a plain lookup index (a retried failure adds a row).
    """
    conn.execute("DROP VIEW IF EXISTS latest_measurements")
    conn.execute(PHOTOS_TABLE_V2)
    conn.execute(
        "INSERT INTO photos_v2 (file, photo_sha256, subject_id, ulcer_id, visit, study_day, photo_date,"
        " image_width_px, image_height_px)"
        " SELECT m.file, m.photo_sha256, p.subject_id, p.ulcer_id, p.visit, p.study_day, p.photo_date,"
        " p.image_width_px, p.image_height_px"
        " FROM (SELECT DISTINCT file, photo_sha256 FROM measurements) m"
        " JOIN photos p ON p.photo_sha256 = m.photo_sha256"
    )
    conn.execute(
        "UPDATE photos_v2 SET superseded_at = 'schema migration 1->2', superseded_reason = 'replaced'"
        " WHERE photo_sha256 <> (SELECT m.photo_sha256 FROM measurements m WHERE m.file = photos_v2.file"
        " ORDER BY m.measurement_id DESC LIMIT 1)"
    )
    conn.execute("DROP TABLE photos")
    conn.execute("ALTER TABLE photos_v2 RENAME TO photos")
    conn.execute("CREATE INDEX IF NOT EXISTS photos_by_sha ON photos (photo_sha256)")
    conn.execute("DROP INDEX IF EXISTS measurement_identity")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS measurement_lookup"
        " ON measurements (photo_sha256, file, model_sha256, config_sha256)"
    )
    conn.execute("ALTER TABLE measurements ADD COLUMN retryable INTEGER NOT NULL DEFAULT 0")
    conn.execute(LATEST_MEASUREMENTS_V2)


# --- version 3: personal reader tokens and the decisions' hash chain --------------------------
READERS_TABLE = """CREATE TABLE IF NOT EXISTS review_readers (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('reader', 'adjudicator')),
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)"""  # one row per reader or adjudicator; only the SHA-256 of the personal token is stored

_NO_UPDATE_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS review_decisions_no_update BEFORE UPDATE ON review_decisions"
    f" BEGIN {_APPEND_ONLY}; END"
)


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """2 -> 3: personal reader tokens (``review_readers``) and the decisions' hash chain.

    Adds ``review_decisions.row_hash`` and back-fills it over the existing rows in ``seq``
    order (the append-only UPDATE trigger is dropped for the back-fill and recreated), unless
    some row is signed already.
    """
    if "row_hash" not in _table_columns(conn, "review_decisions"):
        conn.execute("ALTER TABLE review_decisions ADD COLUMN row_hash TEXT")
    conn.execute(READERS_TABLE)
    (signed,) = conn.execute("SELECT COUNT(*) FROM review_decisions WHERE row_hash IS NOT NULL").fetchone()
    if signed:
        # a chain exists already: the version number was lowered by hand. Signing the rows again
        # would bless whatever was edited meanwhile; `review verify` is to judge them
        conn.execute(_NO_UPDATE_TRIGGER)
        return
    conn.execute("DROP TRIGGER IF EXISTS review_decisions_no_update")
    cur = conn.execute(f"SELECT {', '.join(CHAIN_COLUMNS)} FROM review_decisions ORDER BY seq")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for row, digest in zip(rows, chain_hashes(rows), strict=True):
        conn.execute("UPDATE review_decisions SET row_hash = ? WHERE seq = ?", (digest, row["seq"]))
    conn.execute(_NO_UPDATE_TRIGGER)


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """3 -> 4: ``measurements.signals``, the photo's quality signals as JSON (the numbers its
    review flags were decided on: exposure, sharpness, band ratio, boundary margin, candidate
    ambiguity, on-body fraction, mirror disagreement); NULL for rows measured before."""
    if "signals" not in _table_columns(conn, "measurements"):
        conn.execute("ALTER TABLE measurements ADD COLUMN signals TEXT")


# --- version 5: the manifest's cardinal-ulcer designation -------------------------------------
LATEST_MEASUREMENTS_V5 = LATEST_MEASUREMENTS_V2.replace(
    "p.visit, p.study_day, p.photo_date,", "p.visit, p.study_day, p.photo_date, p.cardinal,", 1
)


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """4 -> 5: ``photos.cardinal``, the manifest's ``cardinal`` column (1: the photo's ulcer is
    its subject's cardinal ulcer; 0 or NULL: no designation), rewritten by every ``measure`` from
    its discovery and read by ``heal``; ``latest_measurements`` carries it."""
    if "cardinal" not in _table_columns(conn, "photos"):
        conn.execute("ALTER TABLE photos ADD COLUMN cardinal INTEGER")
    conn.execute("DROP VIEW IF EXISTS latest_measurements")
    conn.execute(LATEST_MEASUREMENTS_V5)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_0_to_1,
    _migrate_1_to_2,
    _migrate_2_to_3,
    _migrate_3_to_4,
    _migrate_4_to_5,
)
SCHEMA_VERSION = len(MIGRATIONS)

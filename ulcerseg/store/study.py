"""Measurement runs, photos and measurements in ``study.sqlite``, and ``measurements.csv``.

Each photo's result is committed in its own transaction, so a killed run loses at most the
photo in flight. A photo is its path relative to the study root plus its bytes: new bytes at
a path supersede the old row, a path that disappeared is marked missing, identical bytes at
two paths are two photos flagged ``duplicate_photo``.
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ulcerseg.records import Flag, PhotoRecord, PhotoResult
from ulcerseg.rounding import round_rows
from ulcerseg.store.db import DB_NAME, connect, connect_for_reading, read_snapshot
from ulcerseg.tables import write_csv

__all__ = ["CSV_COLUMNS", "CSV_NAME", "PhotoSource", "Reconciled", "RunInfo", "Study", "photo_source"]

CSV_NAME = "measurements.csv"

CSV_COLUMNS = [
    "photo_sha256", "file", "subject_id", "ulcer_id", "visit", "study_day", "photo_date",
    "status", "needs_review", "flags", "area_mm2", "perimeter_mm", "length_mm", "width_mm",
    "n_components", "mean_probability", "area_low_mm2", "area_high_mm2", "marker_distance_mm",
    "mm_per_px", "tilt_deg", "marker_residual_px", "image_width_px", "image_height_px",
    "homography", "rectified_px_per_mm", "rectified_origin_x_mm", "rectified_origin_y_mm",
    "rectified_file", "mask_file", "overlay_file", "error", "run_id", "package_version",
    "model_sha256", "config_sha256", "measured_at",
]  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunInfo:
    """Provenance of one measurement run, recorded with every row it writes."""

    run_id: str
    package_version: str
    model_sha256: str
    config_sha256: str


@dataclass(frozen=True)
class Reconciled:
    """What a run's discovery changed in the photo list (files relative to the study root)."""

    replaced: tuple[str, ...] = ()  # new bytes at a known path: the old row is superseded
    moved: tuple[tuple[str, str], ...] = ()  # (old path, new path) with the same bytes
    missing: tuple[str, ...] = ()  # newly disappeared paths (marked missing_file)
    returned: tuple[str, ...] = ()  # paths marked missing before, present again


class Study:
    """An output folder's study database."""

    def __init__(self, out_dir: Path, conn: sqlite3.Connection) -> None:
        self.out_dir = out_dir
        self.conn = conn

    @classmethod
    @contextmanager
    def open(cls, out_dir: Path, *, for_reading: bool = False) -> Iterator[Study]:
        """Open (creating if needed, migrating if older) ``out_dir/study.sqlite``.

        ``for_reading``: for a command that only reads an existing study, which is then opened
        read-only where it cannot be written (:func:`~ulcerseg.store.db.connect_for_reading`).
        """
        out_dir = Path(out_dir)
        if for_reading:
            conn = connect_for_reading(out_dir / DB_NAME)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            conn = connect(out_dir / DB_NAME)
        try:
            yield cls(out_dir, conn)
        finally:
            conn.close()

    def start_run(
        self,
        package_version: str,
        model_sha256: str,
        config_sha256: str,
        config: dict[str, Any],
        input_root: Path,
    ) -> RunInfo:
        run = RunInfo(uuid.uuid4().hex[:12], package_version, model_sha256, config_sha256)
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs (run_id, started_at, package_version, model_sha256, config_sha256,"
                " config_json, input_root) VALUES (?,?,?,?,?,?,?)",
                (run.run_id, _now(), package_version, model_sha256, config_sha256,
                 json.dumps(config, sort_keys=True), str(input_root)),
            )  # fmt: skip
        return run

    def finish_run(self, run: RunInfo, n_measured: int, n_failed: int, n_skipped: int) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET finished_at=?, n_measured=?, n_failed=?, n_skipped=? WHERE run_id=?",
                (_now(), n_measured, n_failed, n_skipped, run.run_id),
            )

    def already_measured(
        self,
        photo_sha256: str,
        file: str,
        model_sha256: str,
        config_sha256: str,
        package_version: str,
        retry_failed: bool = False,
        file_stem: str | None = None,
    ) -> bool:
        """True when this photo's (path and bytes) newest result is a final one with this model,
        config and package version (another version's code may measure another number).

        The newest row is what the study's tables show: a photo measured with config A, then B,
        is measured again when A comes back, so the tables never show B's numbers under a run
        of A. A failure caused by the environment (``retryable``) is never final; a failure
        caused by the bytes is final unless ``retry_failed``. ``file_stem``: the name its output
        files get now (:func:`ulcerseg.naming.photo_file_stem`, from subject, ulcer and visit);
        files of another name mean the photo was relabelled (a manifest edit), so it is measured
        again: its overlay must not name the old subject or visit.
        """
        row = self.conn.execute(
            "SELECT status, retryable, model_sha256, config_sha256, package_version, mask_file"
            " FROM measurements WHERE photo_sha256=? AND file=? ORDER BY measurement_id DESC LIMIT 1",
            (photo_sha256, file),
        ).fetchone()
        if row is None:
            return False
        same = (row["model_sha256"], row["config_sha256"], row["package_version"]) == (
            model_sha256, config_sha256, package_version
        )  # fmt: skip
        if same and file_stem is not None and row["mask_file"]:
            same = PurePosixPath(str(row["mask_file"])).stem == file_stem
        return same and (row["status"] == "measured" or not (row["retryable"] or retry_failed))

    def unrelated_to(self, photos: list[tuple[str, PhotoRecord]], root: Path) -> tuple[int, int, str] | None:
        """``(n, n_found, input_root)`` when ``photos`` (``(file, record)``, found under ``root``)
        look like another study's: of the study's ``n`` > 0 present photos, last measured from
        ``input_root``, :meth:`reconcile` would turn all but the ``n_found`` whose bytes are
        among ``photos`` into ``missing_file``. That is another study when ``root`` is another
        folder and at most half of its photos are found (one photo filed in both folders
        does not make them one study), or when no bytes and no path are shared. None otherwise:
        a study moved elsewhere keeps its bytes, photos rewritten in place (e.g. metadata
        stripped) keep the folder and their paths."""
        current = self.conn.execute(
            "SELECT file, photo_sha256 FROM photos WHERE superseded_at IS NULL AND missing_since IS NULL"
        ).fetchall()
        if not current:
            return None
        shas = {p.sha256 for _, p in photos}
        n_found = sum(r["photo_sha256"] in shas for r in current)
        last = self.conn.execute(
            "SELECT input_root FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1"
        ).fetchone()
        last_root = last["input_root"] if last is not None else "?"
        if last_root == str(root):  # the same folder: photos removed or rewritten in place
            files = {file for file, _ in photos}
            if n_found or any(r["file"] in files for r in current):
                return None
        elif 2 * n_found > len(current):  # the study moved: most of its bytes came along
            return None
        return len(current), n_found, last_root

    def reconcile(self, photos: list[tuple[str, PhotoRecord]]) -> Reconciled:
        """Record the photos a run found (``(file, record)``); supersede, move and mark missing.

        One transaction: labels of every found (path, bytes) are (re)written and it is current
        again; other bytes at a found path are superseded (``replaced``); a known path not found
        is superseded as ``moved`` when its bytes are found at a new path, else marked missing.
        """
        now = _now()
        found_files = {file for file, _ in photos}
        found_shas: dict[str, list[str]] = {}
        for file, p in photos:
            found_shas.setdefault(p.sha256, []).append(file)
        current = self.conn.execute(
            "SELECT file, photo_sha256, missing_since FROM photos WHERE superseded_at IS NULL"
        ).fetchall()
        found_pairs = {(file, p.sha256) for file, p in photos}
        known_files = {r["file"] for r in current}
        replaced, moved, missing, returned = [], [], [], []
        with self.conn:
            for r in current:
                file, sha = r["file"], r["photo_sha256"]
                if file in found_files:
                    if (file, sha) not in found_pairs:
                        replaced.append(file)
                        self.conn.execute(
                            "UPDATE photos SET superseded_at=?, superseded_reason='replaced'"
                            " WHERE file=? AND photo_sha256=?",
                            (now, file, sha),
                        )
                    elif r["missing_since"] is not None:
                        returned.append(file)
                    continue
                new_paths = [f for f in found_shas.get(sha, []) if f not in known_files]
                if new_paths:
                    moved.append((file, new_paths[0]))
                    self.conn.execute(
                        "UPDATE photos SET superseded_at=?, superseded_reason=?"
                        " WHERE file=? AND photo_sha256=?",
                        (now, f"moved to {new_paths[0]}", file, sha),
                    )
                elif r["missing_since"] is None:
                    missing.append(file)
                    self.conn.execute(
                        "UPDATE photos SET missing_since=? WHERE file=? AND photo_sha256=?", (now, file, sha)
                    )
            for file, p in photos:
                self._upsert_photo(file, p, None, None)
        return Reconciled(tuple(replaced), tuple(moved), tuple(missing), tuple(returned))

    def _upsert_photo(self, file: str, p: PhotoRecord, width: int | None, height: int | None) -> None:
        self.conn.execute(
            "INSERT INTO photos (file, photo_sha256, subject_id, ulcer_id, visit, study_day,"
            " photo_date, cardinal, image_width_px, image_height_px) VALUES (?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(file, photo_sha256) DO UPDATE SET"
            " subject_id=excluded.subject_id, ulcer_id=excluded.ulcer_id, visit=excluded.visit,"
            " study_day=excluded.study_day, photo_date=COALESCE(excluded.photo_date, photo_date),"
            " cardinal=excluded.cardinal,"  # this run's discovery designates, as it labels
            " image_width_px=COALESCE(excluded.image_width_px, image_width_px),"
            " image_height_px=COALESCE(excluded.image_height_px, image_height_px),"
            " superseded_at=NULL, superseded_reason=NULL, missing_since=NULL",
            (
                file,
                p.sha256,
                p.subject_id,
                p.ulcer_id,
                p.visit,
                p.study_day,
                p.photo_date,
                int(p.cardinal),
                width,
                height,
            ),
        )

    def add_result(self, run: RunInfo, result: PhotoResult, file: str) -> int:
        """Store one photo's result atomically; returns its measurement_id."""
        p, cal, m = result.photo, result.calibration, result.measurement
        rel = lambda path: None if path is None else str(Path(path).relative_to(self.out_dir))  # noqa: E731
        width, height = result.image_size or (None, None)
        values = {
            "run_id": run.run_id, "photo_sha256": p.sha256, "file": file, "status": result.status,
            "needs_review": int(result.needs_review), "flags": ";".join(result.flags),
            "area_mm2": m and m.area_mm2, "perimeter_mm": m and m.perimeter_mm,
            "length_mm": m and m.length_mm, "width_mm": m and m.width_mm,
            "n_components": m and m.n_components, "mean_probability": m and m.mean_probability,
            "area_low_mm2": m and m.area_low_mm2, "area_high_mm2": m and m.area_high_mm2,
            "marker_distance_mm": m and m.marker_distance_mm,
            "mm_per_px": cal and cal.mm_per_px, "tilt_deg": cal and cal.tilt_deg,
            "marker_residual_px": cal and cal.residual_px, "marker_id": cal and cal.marker_id,
            "n_markers_found": cal and cal.n_markers_found,
            "homography": cal and json.dumps(list(cal.homography)),
            "rectified_px_per_mm": result.rectified_px_per_mm,
            "rectified_origin_x_mm": result.rectified_origin_mm and result.rectified_origin_mm[0],
            "rectified_origin_y_mm": result.rectified_origin_mm and result.rectified_origin_mm[1],
            "rectified_file": rel(result.rectified_path), "mask_file": rel(result.mask_path),
            "overlay_file": rel(result.overlay_path), "error": " | ".join(result.messages),
            "stage_seconds": json.dumps({k: round(v, 4) for k, v in result.stage_seconds.items()}),
            "package_version": run.package_version, "model_sha256": run.model_sha256,
            "config_sha256": run.config_sha256, "measured_at": _now(),
            "retryable": int(result.retryable and result.status != "measured"),
            "signals": None if result.signals is None
                else json.dumps(_finite(result.signals.as_dict()), sort_keys=True),
        }  # fmt: skip
        with self.conn:
            self._upsert_photo(file, p, width, height)
            cols = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            cur = self.conn.execute(
                f"INSERT INTO measurements ({cols}) VALUES ({marks})", tuple(values.values())
            )
            mid = int(cur.lastrowid or 0)
            self.conn.executemany(
                "INSERT INTO flags (measurement_id, code) VALUES (?, ?)",
                [(mid, f) for f in result.flags],
            )
        return mid

    def quality_signals(self, measurement_id: int) -> dict[str, float | None]:
        """The quality signals a measurement's flags were decided on (empty when none were
        recorded: a failed photo, or a row measured before schema version 4)."""
        row = self.conn.execute(
            "SELECT signals FROM measurements WHERE measurement_id = ?", (measurement_id,)
        ).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def latest_measurements(self) -> list[dict[str, Any]]:
        """Newest measurement per current photo, ordered by subject, ulcer, study day.

        Superseded photos are left out. A photo whose path disappeared has status ``missing``
        and flag ``missing_file``; bytes present at several paths get ``duplicate_photo``
        (both put the row in review). A photo a run found but stopped before measuring has
        status ``unmeasured`` and flag ``not_measured``: it is never left out of the tables.
        """
        # one snapshot: read one by one, a photo whose first row `measure` commits between the
        # two queries was in neither (not yet measured, then no longer unmeasured), and went
        # missing from heal, the review and the exports made while a run was storing rows
        with read_snapshot(self.conn):
            cursor = self.conn.execute(
                "SELECT * FROM latest_measurements ORDER BY subject_id, ulcer_id, study_day, file"
            )
            columns = [c[0] for c in cursor.description]
            rows = [dict(r) for r in cursor.fetchall()]
            unmeasured = self.conn.execute(
                "SELECT * FROM photos p WHERE p.superseded_at IS NULL AND NOT EXISTS (SELECT 1 FROM"
                " measurements m WHERE m.photo_sha256 = p.photo_sha256 AND m.file = p.file)"
            ).fetchall()
        for r in unmeasured:
            photo = dict(r)
            row = {c: photo.get(c) for c in columns}
            row.update(status="unmeasured", needs_review=1, flags=Flag.NOT_MEASURED.value, n_copies=1)
            row["error"] = "found, not measured yet (the run stopped): run `ulcerseg measure` again"
            rows.append(row)
        if unmeasured:
            rows.sort(key=lambda r: (r["subject_id"], r["ulcer_id"], r["study_day"] or 0, r["file"]))
        out = []
        for row in rows:
            extra = []
            if row.get("missing_since"):
                row["status"] = "missing"
                extra.append(Flag.MISSING_FILE.value)
            if (row.get("n_copies") or 0) > 1 and not row.get("missing_since"):
                extra.append(Flag.DUPLICATE_PHOTO.value)
            if extra:
                flags = [f for f in str(row.get("flags") or "").split(";") if f]
                row["flags"] = ";".join(sorted({*flags, *extra}))
                row["needs_review"] = 1
            out.append(row)
        return out

    def unresolved(self) -> list[dict[str, Any]]:
        """Current photos of the whole study that are not measured (failed or missing)."""
        return [r for r in self.latest_measurements() if r["status"] != "measured"]

    def superseded(self) -> list[dict[str, Any]]:
        """Photo rows kept as superseded (replaced by new bytes at their path, or moved)."""
        rows = self.conn.execute(
            "SELECT file, photo_sha256, superseded_at, superseded_reason FROM photos"
            " WHERE superseded_at IS NOT NULL ORDER BY file"
        ).fetchall()
        return [dict(r) for r in rows]

    def export_csv(self, path: Path | None = None) -> Path:
        """Write ``measurements.csv`` (one row per photo, units in column names)."""
        path = path or self.out_dir / CSV_NAME
        # rounded (the database keeps full precision), atomic and formula-escaped
        return write_csv(path, round_rows(self.latest_measurements()), CSV_COLUMNS)


@dataclass(frozen=True)
class PhotoSource:
    """Where a photo came from and how it was calibrated (latest measurement).

    ``homography``: photo px -> marker-plane mm (row-major 3x3) or None without a calibration;
    ``origin_mm`` and ``px_per_mm``: the stored rectified frame (None without one).
    """

    input_root: Path
    file: str
    homography: tuple[float, ...] | None
    origin_mm: tuple[float, float] | None
    px_per_mm: float | None


def photo_source(conn: sqlite3.Connection, photo_sha256: str) -> PhotoSource | None:
    """The :class:`PhotoSource` of a photo's latest measurement, or None if the photo is unknown.

    The caller must check that ``input_root / file`` stays inside the root and that its bytes
    still hash to ``photo_sha256`` before it uses the file.
    """
    row = conn.execute(
        "SELECT r.input_root, m.file, m.homography, m.rectified_origin_x_mm, m.rectified_origin_y_mm,"
        " m.rectified_px_per_mm FROM latest_measurements m JOIN runs r ON r.run_id = m.run_id"
        " WHERE m.photo_sha256 = ? ORDER BY m.measurement_id DESC LIMIT 1",
        (photo_sha256,),
    ).fetchone()
    if row is None:
        return None
    root, file, hom, ox, oy, ppm = tuple(row)
    homography = tuple(float(v) for v in json.loads(hom)) if hom else None
    origin = None if ox is None or oy is None else (float(ox), float(oy))
    return PhotoSource(Path(str(root)), str(file), homography, origin, None if ppm is None else float(ppm))


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    """``values`` with NaN and infinities as None (JSON has no NaN)."""
    return {k: (float(v) if math.isfinite(v) else None) for k, v in values.items()}

"""Measurement runs, photos and measurements in ``study.sqlite``, and ``measurements.csv``.

Each photo's result is committed in its own transaction, so a killed run loses at most the
photo in flight, and a unique index on (photo, model, config) makes reruns idempotent.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ulcerseg.records import PhotoResult
from ulcerseg.rounding import round_rows
from ulcerseg.store.db import DB_NAME, connect

__all__ = ["CSV_COLUMNS", "CSV_NAME", "PhotoSource", "RunInfo", "Study", "photo_source"]

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


class Study:
    """An output folder's study database."""

    def __init__(self, out_dir: Path, conn: sqlite3.Connection) -> None:
        self.out_dir = out_dir
        self.conn = conn

    @classmethod
    @contextmanager
    def open(cls, out_dir: Path) -> Iterator[Study]:
        """Open (creating if needed, migrating if older) ``out_dir/study.sqlite``."""
        out_dir = Path(out_dir)
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

    def already_measured(self, photo_sha256: str, file: str, model_sha256: str, config_sha256: str) -> bool:
        """True when this exact photo was measured with this model and config."""
        row = self.conn.execute(
            "SELECT 1 FROM measurements WHERE photo_sha256=? AND file=? AND model_sha256=?"
            " AND config_sha256=?",
            (photo_sha256, file, model_sha256, config_sha256),
        ).fetchone()
        return row is not None

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
        }  # fmt: skip
        with self.conn:
            self.conn.execute(
                "INSERT INTO photos (photo_sha256, file, subject_id, ulcer_id, visit, study_day,"
                " photo_date, image_width_px, image_height_px) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(photo_sha256) DO UPDATE SET file=excluded.file,"
                " subject_id=excluded.subject_id, ulcer_id=excluded.ulcer_id, visit=excluded.visit,"
                " study_day=excluded.study_day, photo_date=excluded.photo_date,"
                " image_width_px=COALESCE(excluded.image_width_px, image_width_px),"
                " image_height_px=COALESCE(excluded.image_height_px, image_height_px)",
                (p.sha256, file, p.subject_id, p.ulcer_id, p.visit, p.study_day, p.photo_date,
                 width, height),
            )  # fmt: skip
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

    def latest_measurements(self) -> list[dict[str, Any]]:
        """Newest measurement per photo, ordered by subject, ulcer, study day."""
        rows = self.conn.execute(
            "SELECT * FROM latest_measurements ORDER BY subject_id, ulcer_id, study_day, file"
        ).fetchall()
        return [dict(r) for r in rows]

    def export_csv(self, path: Path | None = None) -> Path:
        """Write ``measurements.csv`` (one row per photo, units in column names)."""
        path = path or self.out_dir / CSV_NAME
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in round_rows(self.latest_measurements()):  # the database keeps full precision
                writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
        tmp.replace(path)
        return path


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

"""QA inputs: automated results (measure output folder or CSV) and manual references.

A manual reference is either a CSV of areas per photo (columns ``photo_sha256`` or ``file``,
``area_mm2``, optional ``reader`` and ``status``) or a folder of annotation files (PNG masks,
ImageJ ROI / RoiSet zip, LabelMe JSON) named after the photo file stem or
``<subject>_<visit>_<ulcer>``. Annotation files are converted to mm² with the photo's own
homography from the automated run, and resampled into the automated run's rectified frame
(marker plane) for Dice/IoU. Problems are collected as :class:`Issue` rows, never raised, so
the rest of a comparison still runs.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from ulcerseg.annotations import (
    ANNOTATION_SUFFIXES,
    MAX_MANUAL_AREA_MM2,
    Annotation,
    rasterize_polygons,
    read_annotation,
    rectifying_matrix,
    warp_mask_to_rectified,
)
from ulcerseg.errors import InputError, UlcersegError
from ulcerseg.geometry import RectifiedGrid, apply_homography, as_homography
from ulcerseg.imageio import read_mask

log = logging.getLogger(__name__)

Progress = Callable[[Iterable[Path], int], Iterable[Path]]
ID_COLUMNS = ("photo_sha256", "sha256", "file", "photo", "image", "key")
SHA_COLUMNS = ("photo_sha256", "sha256")
FILE_COLUMNS = ("file", "photo", "image")
AREA_COLUMNS = ("area_mm2", "area")
# a plain ASCII decimal number: float() also takes "1_2" and full-width digits as 12, and
# "nan"/"inf" (re.ASCII: \d is 0-9 only)
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
# what qa reads of every automated row (measurements.csv has them all)
AUTO_COLUMNS = ("photo_sha256", "status", "area_mm2")
# IDs are text: subject 001 and ulcer 01 read as numbers became 1 (pairs.csv, --by groups, and no
# match for an annotation named 001_D0_01)
AUTO_TEXT_COLUMNS = ("photo_sha256", "file", "subject_id", "ulcer_id", "visit", "flags")
# 1 m²: far beyond any photo of a finger; a larger area (manual or in an automated CSV) is a
# typing or unit error, and it would swamp every statistic (1e300 overflows the variance)
MAX_AREA_MM2 = 1e6


def parse_area(raw: str) -> tuple[float, str]:
    """``(area mm², "")`` for a plain decimal in [0, MAX_AREA_MM2], else ``(NaN, why)``: the one
    rule for the areas of a manual CSV and of an automated (measurements) CSV."""
    if not _DECIMAL.fullmatch(raw):
        return math.nan, f"area {raw!r} is not a number"
    area = float(raw)
    if area < 0:
        return math.nan, f"area {raw} mm² is not >= 0"
    if area > MAX_AREA_MM2:  # also 1e999, which float() reads as inf
        return math.nan, f"area {raw} mm² is more than {MAX_AREA_MM2:.0f} mm² (1 m²)"
    return area, ""


@dataclass(frozen=True)
class Issue:
    """One problem with one input item (one line in issues.csv)."""

    source: str  # file the problem is in
    item: str  # row / photo / annotation it concerns
    message: str

    def line(self) -> str:
        return f"{self.source} [{self.item}]: {self.message}"


@dataclass
class AutoResults:
    """The automated run: one row per photo file, indexed by a unique photo key.

    The key is the ``photo_sha256`` where those bytes are at one file, else
    ``<sha256>:<file>``: the same bytes at two files (two visits) are two rows, and a
    reference must say which file it measured.
    """

    table: pd.DataFrame
    root: Path  # paths in mask_file / rectified_file are relative to this
    source: Path
    issues: list[Issue] = field(default_factory=list)  # rows of the table left out, and why

    def row(self, key: str) -> pd.Series:
        return self.table.loc[key]

    def sha(self, key: str) -> str:
        """The photo's SHA-256 (its bytes' identity; several keys may share it)."""
        return str(self.table.at[key, "photo_sha256"])

    def image_shape(self, key: str) -> tuple[int, int] | None:
        """Photo (height, width) px, or None when the run could not decode it."""
        row = self.row(key)
        try:
            h, w = int(row["image_height_px"]), int(row["image_width_px"])
        except (KeyError, TypeError, ValueError):
            return None
        return (h, w) if h > 0 and w > 0 else None

    def homography(self, key: str) -> np.ndarray | None:
        """Photo px -> marker-plane mm (3x3), or None without a calibration."""
        value = self.row(key).get("homography")
        if not isinstance(value, str) or not value.strip():
            return None
        try:
            return as_homography(value)
        except (ValueError, json.JSONDecodeError):
            return None

    def rectified_frame(self, key: str) -> tuple[tuple[float, float], float] | None:
        """``(origin_mm, px_per_mm)`` of the rectified frame, or None."""
        row = self.row(key)
        try:
            origin = (float(row["rectified_origin_x_mm"]), float(row["rectified_origin_y_mm"]))
            ppm = float(row["rectified_px_per_mm"])
        except (KeyError, TypeError, ValueError):
            return None
        if not (all(math.isfinite(v) for v in origin) and math.isfinite(ppm) and ppm > 0):
            return None
        return origin, ppm

    def auto_mask(self, key: str) -> np.ndarray | None:
        """The automated ulcer mask (rectified frame, bool), or None if absent."""
        rel = self.row(key).get("mask_file")
        if not isinstance(rel, str) or not rel:
            return None
        path = self.root / rel
        if not path.is_file():
            return None
        return read_mask(path)


def read_auto(path: str | Path) -> AutoResults:
    """Read a ``measure`` output folder (its measurements.csv) or a measurements CSV."""
    path = Path(path)
    csv = path / "measurements.csv" if path.is_dir() else path
    if not csv.is_file():
        raise InputError(f"{path}: no measurements.csv (expected a measure output folder or CSV)")
    try:
        # the area as text too: it is checked as a manual CSV's is (see _auto_areas)
        dtype = dict.fromkeys((*AUTO_TEXT_COLUMNS, "area_mm2"), str)
        table = pd.read_csv(csv, dtype=dtype, keep_default_na=True)
    except Exception as err:
        raise InputError(f"{csv}: cannot read CSV ({err})") from None
    missing = [c for c in AUTO_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{csv}: no {', '.join(missing)} column(s) (not a measurements.csv)")
    if table.empty:
        raise InputError(f"{csv}: no photo in the automated results (a header without rows)")
    table["area_mm2"], area_issues = _auto_areas(table, csv)
    table, issues = _index_by_photo(table, csv)
    issues = area_issues + issues
    _join_healing(table, csv.parent / "healing.csv")
    return AutoResults(table=table, root=csv.parent, source=csv, issues=issues)


def _auto_areas(table: pd.DataFrame, csv: Path) -> tuple[list[float], list[Issue]]:
    """The automated areas (mm²), one per row, and an issue for each measured row whose area
    is missing or fails :func:`parse_area`: its area is NaN, so its photo is left out of the
    statistics (an inf stopped the plots; 1e308 swamped the bias)."""
    areas: list[float] = []
    issues: list[Issue] = []
    file = table["file"] if "file" in table.columns else table["photo_sha256"]
    for i, (status, raw, name) in enumerate(zip(table["status"], table["area_mm2"], file, strict=True)):
        raw = raw.strip() if isinstance(raw, str) else ""
        area, why = parse_area(raw) if raw else (math.nan, "no area")
        areas.append(area)
        # other rows' areas are never used (build_pairs): nothing to report
        if why and str(status) == "measured":
            item = f"row {i + 2} {name if isinstance(name, str) else ''}".rstrip()
            issues.append(Issue(str(csv), item, f"measured, but {why}; left out of the statistics"))
    return areas, issues


def _index_by_photo(table: pd.DataFrame, csv: Path) -> tuple[pd.DataFrame, list[Issue]]:
    """``table`` indexed by a unique photo key (see :class:`AutoResults`), every photo file kept.

    Only a repeat of the same bytes at the same file (a table appended to twice) is dropped,
    keeping the last row, with an issue saying so.
    """
    sha = table["photo_sha256"].fillna("").astype(str).str.strip()
    file = table["file"].fillna("").astype(str) if "file" in table.columns else pd.Series("", table.index)
    copies = sha.str.lower().map(sha.str.lower().value_counts())
    keys = [
        s if s and n == 1 else f"{s}:{f or f'row {i + 2}'}"
        for i, (s, f, n) in enumerate(zip(sha, file, copies, strict=True))
    ]
    table = table.assign(photo_sha256=sha).set_axis(pd.Index(keys, name="photo_key"))
    repeated = table.index.duplicated(keep="last")
    issues = [
        Issue(str(csv), f"row {i + 2} {f or s}", "same photo_sha256 and file as a later row; last row kept")
        for i, (s, f) in enumerate(zip(sha, file, strict=True))
        if repeated[i]
    ]
    return table[~repeated], issues


def _join_healing(table: pd.DataFrame, path: Path) -> None:
    """Add ``healing_status`` from the run's healing.csv (by photo, else by subject/ulcer/visit)."""
    if "healing_status" in table.columns or not path.is_file():
        return
    try:
        heal = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        log.warning("%s: cannot read healing table (%s)", path, err)
        return
    if "status" not in heal.columns:
        return
    keys = ["subject_id", "ulcer_id", "visit"]
    by_keys = None
    if all(k in heal.columns for k in keys) and all(k in table.columns for k in keys):
        status = heal.drop_duplicates(keys, keep="last").set_index(keys)["status"]
        by_keys = status.reindex(pd.MultiIndex.from_frame(table[keys].astype(str))).to_numpy()
    if "photo_sha256" in heal.columns:
        heal = heal[heal["photo_sha256"] != ""]
        status = heal.drop_duplicates("photo_sha256", keep="last").set_index("photo_sha256")
        values = status["status"].reindex(table["photo_sha256"]).to_numpy()
        # bytes at several files (two visits) have one status per visit: by photo, every copy
        # would take the last visit's
        shared = table["photo_sha256"].duplicated(keep=False).to_numpy()
        values = np.where(shared, by_keys if by_keys is not None else np.nan, values)
    elif by_keys is not None:
        values = by_keys
    else:
        return
    table["healing_status"] = pd.Series(values, index=table.index).replace("", np.nan).to_numpy()


class PhotoMatcher:
    """Finds the automated photo (its key, see :class:`AutoResults`) for a manual item by
    sha256, path, file name or stem."""

    def __init__(self, auto: AutoResults) -> None:
        self.by_sha: dict[str, set[str]] = defaultdict(set)
        self.names: dict[str, set[str]] = defaultdict(set)
        self.files: dict[str, set[str]] = defaultdict(set)  # whole study-relative paths
        self.file_of: dict[str, str] = {}
        self.sha_of: dict[str, str] = {}
        for key, row in auto.table.iterrows():
            key, sha = str(key), str(row["photo_sha256"]).lower()
            self.sha_of[key] = sha
            if sha:
                self.by_sha[sha].add(key)
            file = row.get("file")
            if isinstance(file, str) and file:
                self.file_of[key] = file
                whole = _norm_path(file)
                # with and without the extension: a mask folder mirrors the study's tree
                for path in (whole, str(PurePosixPath(whole).with_suffix(""))):
                    parts = PurePosixPath(path).parts
                    self.files[path].add(key)
                    # every trailing sub-path ("S01/W2/U1.jpg", "W2/U1.jpg", "U1.jpg"): a
                    # reference naming less than the whole path still matches when unambiguous
                    for k in range(len(parts)):
                        self.names["/".join(parts[k:])].add(key)
            ids = [row.get(c) for c in ("subject_id", "visit", "ulcer_id")]
            if all(isinstance(p, str | int) and str(p) != "" for p in ids):
                self.names["_".join(str(p) for p in ids).lower()].add(key)
            if sha:
                self.names[sha[:16]].add(key)

    def match(self, ident: str, file: str | None = None) -> tuple[str | None, str]:
        """``(key, "")`` on a unique match, else ``(None, reason)``.

        ``file``: the reference's file beside a sha256 ``ident``. It tells the copies of the
        same bytes at several files (two visits) apart; without it they are ambiguous. Where
        it names another photo than the sha256 (or none of the results), the reference is
        not used: a sha256 copied from the row above would compare one subject's manual area
        with another's photo, and which of the two is right cannot be told.
        """
        ident = str(ident).strip()
        file = file.strip() if isinstance(file, str) else ""
        keys = self.by_sha.get(ident.lower())
        if keys:
            if not file:
                return (next(iter(keys)), "") if len(keys) == 1 else (None, self._ambiguous(ident, keys))
            named = self._by_path(file)
            if not named & keys:
                return None, self._disagree(keys, file, named)
            if len(keys) == 1:  # the file may match several photos, this one among them
                return next(iter(keys)), ""
            key = self.match(file)[0]
            return (key, "") if key in keys else (None, self._ambiguous(ident, keys))
        found = self._by_path(ident)
        if len(found) == 1:
            return next(iter(found)), ""
        if found:
            return None, self._ambiguous(ident, found)
        return None, f"no photo {ident!r} in the automated results"

    def _by_path(self, ident: str) -> set[str]:
        """The photos a path, file name or stem names (empty: none; several: ambiguous)."""
        parts = PurePosixPath(_norm_path(ident)).parts
        for k in range(len(parts)):  # longest trailing sub-path first
            # the whole reference names the end of a photo's path ("W2/U1.jpg"), or the
            # reference has folders of its own in front (another root: "/data/S01/W2/U1.jpg")
            # and what follows them is a photo's whole path. Never drop reference folders that
            # would fall inside a photo's path: "S02/W2/U1.jpg" is not S01's photo
            found = self.names.get("/".join(parts[k:])) if k == 0 else self.files.get("/".join(parts[k:]))
            if found:
                return found
        if len(parts) == 1:  # a bare name: its stem ("U1", "S01_W2_U1")
            return self.names.get(PurePosixPath(parts[0]).stem, set())
        return set()

    def _disagree(self, keys: set[str], file: str, named: set[str]) -> str:
        """Reason of a reference whose photo_sha256 and file name different photos."""
        by_sha = ", ".join(sorted(self.file_of.get(k, k) for k in keys))
        files = sorted(self.file_of.get(k, k) for k in named)
        if not files:
            other = "no photo of the automated results"
        elif [_norm_path(f) for f in files] == [_norm_path(file)]:
            other = "another photo"
        else:
            other = ", ".join(files)
        return f"photo_sha256 names {by_sha} but file names {file!r} ({other}); row not used"

    def _ambiguous(self, ident: str, keys: set[str]) -> str:
        files = sorted(self.file_of.get(k, k) for k in keys)
        if len({self.sha_of.get(k) for k in keys}) == 1:  # copies of one photo's bytes
            return (
                f"ambiguous_photo: {ident!r} is the same photo bytes at {len(keys)} files "
                f"({', '.join(files)}); give the file"
            )
        return f"{ident!r} matches {len(keys)} photos; use photo_sha256"


def _norm_path(p: str) -> str:
    norm = (PureWindowsPath(p).as_posix() if "\\" in p else p).lower()
    while norm.startswith("./"):
        norm = norm[2:]
    return norm


@dataclass
class ManualEntry:
    """One manual measurement of one photo by one reader."""

    photo_sha256: str
    area_mm2: float  # NaN when no area (e.g. only a status, or it could not be converted)
    status: str | None = None
    source: str = ""  # annotation file or "CSV:row"
    kind: str = "csv"  # "csv" | "mask" | "roi" | "labelme"
    # Mask in the automated run's rectified frame, bit-packed (a trial holds thousands).
    rect_bits: np.ndarray | None = None
    rect_shape: tuple[int, int] | None = None

    @property
    def rect_mask(self) -> np.ndarray | None:
        """Bool mask in the automated run's rectified frame (for Dice/IoU), or None."""
        if self.rect_bits is None or self.rect_shape is None:
            return None
        n = self.rect_shape[0] * self.rect_shape[1]
        return np.unpackbits(self.rect_bits, count=n).astype(bool).reshape(self.rect_shape)

    @rect_mask.setter
    def rect_mask(self, mask: np.ndarray | None) -> None:
        if mask is None:
            self.rect_bits, self.rect_shape = None, None
            return
        m = np.asarray(mask, dtype=bool)
        self.rect_bits = np.packbits(m.ravel())
        self.rect_shape = (int(m.shape[0]), int(m.shape[1]))


@dataclass
class ManualReader:
    """All manual measurements of one reader (one --manual input or one CSV reader value)."""

    name: str
    source: Path
    entries: dict[str, ManualEntry] = field(default_factory=dict)  # by photo key (AutoResults)


def read_manual(
    path: str | Path,
    auto: AutoResults,
    name: str | None = None,
    px_per_mm: float = 20.0,
    progress: Progress | None = None,
) -> tuple[list[ManualReader], list[Issue], list[dict[str, str]]]:
    """Read one manual reference (CSV or annotation folder).

    Returns the readers found (several if a CSV has a ``reader`` column or one
    ``<reader>_area_mm2`` column per reader), the issues, and the manual items that match no
    automated photo (rows of unmatched.csv). ``progress(items, total)`` may wrap the
    per-file loop (the CLI passes a tqdm bar).
    """
    path = Path(path)
    if path.is_dir():
        return _read_manual_folder(path, auto, name or path.name, px_per_mm, progress)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return _read_manual_csv(path, auto, name or path.stem)
    if path.is_file() and path.suffix.lower() in ANNOTATION_SUFFIXES:
        raise InputError(f"{path}: give the folder that holds the annotation files, not one file")
    raise InputError(f"{path}: manual reference must be a CSV file or a folder of annotations")


def _read_manual_csv(
    path: Path, auto: AutoResults, default_name: str
) -> tuple[list[ManualReader], list[Issue], list[dict[str, str]]]:
    df, long_rows = _read_csv_rows(path, "\t" if path.suffix.lower() == ".tsv" else ",")
    header = list(df.columns)
    if df.empty and not long_rows:  # else the summary would claim every photo had a manual measurement
        raise InputError(f"{path}: no manual measurement (a header without rows)")
    id_col = next((c for c in ID_COLUMNS if c in df.columns), None)
    # a file beside a sha256 tells apart copies of the same bytes at several files
    file_col = next((c for c in FILE_COLUMNS if c in df.columns), None) if id_col in SHA_COLUMNS else None
    if id_col is not None and not any(c in df.columns for c in (*AREA_COLUMNS, "status")):
        df = _wide_to_long(df, [c for c in (id_col, file_col) if c])
    area_col = next((c for c in AREA_COLUMNS if c in df.columns), None)
    if id_col is None:
        raise InputError(f"{path}: needs a photo_sha256 or file column, has {list(df.columns)}")
    if area_col is None and "status" not in df.columns:
        raise InputError(f"{path}: needs an area_mm2 (or status) column, has {list(df.columns)}")
    matcher = PhotoMatcher(auto)
    readers: dict[str, ManualReader] = {}
    issues: list[Issue] = []
    unmatched: list[dict[str, str]] = []
    if area_col == "area":
        # ImageJ's Results "Area" is in whatever unit was set there (px², cm², mm²): say so
        issues.append(Issue(str(path), "column area", "no unit in the column name: read as mm² "
                            "(name it area_mm2 once checked)"))  # fmt: skip
    for line, fields in long_rows:
        extra = fields[len(header) :]
        if header[-1].endswith(AREA_COLUMNS) and len(extra) == 1:  # "25,1": a decimal comma
            why = f"one field more than the header: area {fields[len(header) - 1] + ',' + extra[0]!r}?"
        else:
            why = f"{len(extra)} field(s) more than the header ({', '.join(header)})"
        ident = fields[header.index(id_col)].strip()
        issues.append(Issue(str(path), f"row {line} {ident}", f"{why}; row skipped"))
    for i, row in df.iterrows():
        line = int(str(i)) + 2  # 1-based, after the header
        ident = row[id_col].strip()
        item = f"row {line} {ident}"
        reader_name = row.get("reader", "").strip() or default_name
        reader = readers.setdefault(reader_name, ManualReader(reader_name, path))
        if not ident:
            issues.append(Issue(str(path), item, f"empty {id_col}"))
            continue
        key, why = matcher.match(ident, row[file_col] if file_col else None)
        if key is None:
            issues.append(Issue(str(path), item, why))
            unmatched.append(_unmatched(reader_name, str(path), ident, "", why))
            continue
        status = row.get("status", "").strip() or None
        area = float("nan")
        raw = row[area_col].strip() if area_col else ""
        if raw:
            area, why = parse_area(raw)
            if why:
                issues.append(Issue(str(path), item, f"{why}; row skipped"))
                continue
        elif status is None:
            issues.append(Issue(str(path), item, "no area and no status; row skipped"))
            continue
        if key in reader.entries:
            issues.append(Issue(str(path), item, f"second entry for this photo by {reader_name}; kept first"))
            continue
        reader.entries[key] = ManualEntry(auto.sha(key), area, status, f"{path.name}:{line}", "csv")
    return list(readers.values()), issues, unmatched


def _read_csv_rows(path: Path, sep: str) -> tuple[pd.DataFrame, list[tuple[int, list[str]]]]:
    """A manual CSV as text cells (columns stripped and lower-cased, index = line - 2), and the
    ``(line, fields)`` of rows with more fields than the header.

    Read with the csv module, not pandas: pandas takes the first column as the index when the
    rows have one field more than the header (a decimal comma: ``file,25,1``) and drops any
    further fields; such rows are the caller's issue rows. A short row is padded with "".
    """
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=sep)
            for fields in reader:
                if not fields:  # a blank line
                    continue
                if header is None:
                    header = fields
                else:
                    rows.append((reader.line_num, fields))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read CSV ({err})") from None
    if header is None:
        raise InputError(f"{path}: cannot read CSV (empty file)")
    columns = [c.strip().lower() for c in header]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:  # which of the two is the reading?
        raise InputError(f"{path}: column {', '.join(map(repr, repeated))} appears more than once")
    width = len(columns)
    good = [(line, fields) for line, fields in rows if len(fields) <= width]
    df = pd.DataFrame(
        [fields + [""] * (width - len(fields)) for _, fields in good],
        columns=columns,
        index=[line - 2 for line, _ in good],
        dtype=str,
    )
    return df, [(line, fields) for line, fields in rows if len(fields) > width]


def _wide_to_long(df: pd.DataFrame, id_cols: list[str]) -> pd.DataFrame:
    """One column per reader (``<reader>_area_mm2`` [+ ``<reader>_status``]) -> long rows."""
    readers = [c.removesuffix("_area_mm2") for c in df.columns if c.endswith("_area_mm2")]
    readers += [
        c.removesuffix("_status")
        for c in df.columns
        if c.endswith("_status") and c.removesuffix("_status") not in readers
    ]
    if not readers:
        return df
    parts = []
    for r in readers:
        part = df[id_cols].assign(reader=r)
        part["area_mm2"] = df.get(f"{r}_area_mm2", "")
        part["status"] = df.get(f"{r}_status", "")
        # Keep the original row numbers so issues point at the right line.
        parts.append(part.set_index(df.index))
    return pd.concat(parts)


def _unmatched(reader: str, source: str, item: str, sha: str, reason: str) -> dict[str, str]:
    return {"reader": reader, "source": source, "item": item, "photo_sha256": sha, "reason": reason}


def _read_manual_folder(
    folder: Path,
    auto: AutoResults,
    name: str,
    px_per_mm: float,
    progress: Progress | None = None,
) -> tuple[list[ManualReader], list[Issue], list[dict[str, str]]]:
    matcher = PhotoMatcher(auto)
    reader = ManualReader(name, folder)
    issues: list[Issue] = []
    unmatched: list[dict[str, str]] = []
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in ANNOTATION_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no annotation files ({', '.join(ANNOTATION_SUFFIXES)})")
    for path in progress(files, len(files)) if progress else files:
        rel = path.relative_to(folder).as_posix()
        # the annotation's own path without its extension: a tree like the study's
        # (S01/W2/U1.png) or a flat folder of names (U1.png, S01_W2_U1.png)
        key, why = matcher.match(str(PurePosixPath(rel).with_suffix("")))
        if path.suffix.lower() == ".json" and not _looks_like_labelme(path):
            if key is None:  # another tool's file (notes.json): not ours
                log.info("%s: not a LabelMe file; ignored", path)
            else:  # named as a photo's tracing: never dropped in silence
                issues.append(Issue(str(folder), rel, "not a LabelMe file (no 'shapes'): not read"))
            continue
        if key is None:
            issues.append(Issue(str(folder), rel, why))
            unmatched.append(_unmatched(name, str(folder), rel, "", why))
            continue
        if key in reader.entries:
            issues.append(Issue(str(folder), rel, f"photo already annotated by {reader.entries[key].source}"))
            continue
        entry = _annotation_entry(path, rel, key, auto, px_per_mm, issues, str(folder))
        if entry is not None:
            reader.entries[key] = entry
    return [reader], issues, unmatched


def _looks_like_labelme(path: Path) -> bool:
    """A JSON object with ``shapes`` (other JSON files in the folder are not ours). Shapes that
    are not a list still count: the reader reports the malformed file as an issue row."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # let the reader report the broken file
    return isinstance(doc, dict) and "shapes" in doc


def _annotation_entry(
    path: Path,
    rel: str,
    key: str,
    auto: AutoResults,
    px_per_mm: float,
    issues: list[Issue],
    source: str,
) -> ManualEntry | None:
    shape = auto.image_shape(key)
    if shape is None:
        issues.append(Issue(source, rel, "automated run has no image size for this photo"))
        return None
    try:
        ann = read_annotation(path, shape)
    except UlcersegError as err:
        # The message names the file; the issue row names it already.
        issues.append(Issue(source, rel, str(err).removeprefix(f"{path}: ")))
        return None
    h = auto.homography(key)
    if h is None:
        issues.append(Issue(source, rel, "photo has no calibration in the automated run; no mm² area"))
        return ManualEntry(auto.sha(key), float("nan"), None, rel, ann.kind)
    try:
        area = ann.area_mm2(h, px_per_mm)
    except ValueError as err:
        issues.append(Issue(source, rel, f"cannot map to the marker plane: {err}"))
        return ManualEntry(auto.sha(key), float("nan"), None, rel, ann.kind)
    if not area <= MAX_MANUAL_AREA_MM2:  # NaN too
        # not one ulcer: an inverted mask (the finger and background traced) or another photo's
        # outline; its area and Dice would swamp the agreement
        why = f"area {area:.0f} mm² is more than {MAX_MANUAL_AREA_MM2:g} mm² (the skin of a whole finger: "
        issues.append(Issue(source, rel, why + "an inverted mask?); not used"))
        return None
    entry = ManualEntry(auto.sha(key), area, None, rel, ann.kind)
    entry.rect_mask = _to_rectified(ann, key, auto, h, area, issues, source, rel)
    return entry


def _to_rectified(
    ann: Annotation,
    key: str,
    auto: AutoResults,
    h: np.ndarray,
    area_mm2: float,
    issues: list[Issue],
    source: str,
    rel: str,
) -> np.ndarray | None:
    """The annotation in the automated run's rectified frame (bool), for Dice/IoU."""
    frame = auto.rectified_frame(key)
    auto_mask = auto.auto_mask(key)
    if frame is None or auto_mask is None:
        return None
    origin, ppm = frame
    shape = auto_mask.shape
    grid = RectifiedGrid(origin, ppm, shape[1], shape[0])
    if ann.polygons is not None:
        # Map vertices, not pixels: exact outline in the rectified frame.
        m = rectifying_matrix(h, grid)
        out = np.zeros(shape, dtype=bool)
        for group in ann.groups:
            polys = [apply_homography(m, ann.polygons[i], check_horizon=True) for i in group]
            out |= rasterize_polygons(polys, shape) > 0
    else:
        out = warp_mask_to_rectified(ann.mask, h, grid) > 0
    inside = np.count_nonzero(out) / ppm**2
    if area_mm2 > 0 and inside < 0.98 * area_mm2:
        issues.append(
            Issue(
                source,
                rel,
                f"only {100 * inside / area_mm2:.0f}% of the outline lies in the automated "
                "run's rectified crop; Dice/IoU use that part",
            )
        )
    return out

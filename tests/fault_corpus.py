"""The fault corpus of issue 13: small bad inputs generated on the fly, each with its outcome.

Used by ``tests/test_faults.py`` (one assertion per case) and ``scripts/bench_faults.py``
(prints the table). Every case returns the outcome it observed as a short string that equals
the expected one when the behaviour is right: ``<status> <reason code>`` for a photo row,
``skip <reason code>`` for a listed file, ``error: <key words>`` for a one-line error.
Any exception other than a one-line :class:`~ulcerseg.errors.UlcersegError` is a traceback.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import traceback
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from unittest import mock

import numpy as np
from conftest import RednessBackend, make_photo
from PIL import Image

from ulcerseg.config import PipelineConfig, config_from_dict
from ulcerseg.discover import discover
from ulcerseg.errors import OutputLockedError, UlcersegError
from ulcerseg.pipeline import MeasureSummary, measure_study
from ulcerseg.store.schema import SCHEMA_VERSION

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@dataclass(frozen=True)
class Outcome:
    case: str
    expected: str
    got: str
    traceback: bool

    @property
    def ok(self) -> bool:
        return self.got == self.expected and not self.traceback


# --- photo bytes -------------------------------------------------------------------------------
def _encode(rgb: np.ndarray, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **kw)
    return buf.getvalue()


@cache
def good_jpeg(i: int = 0) -> bytes:
    """A measurable photo; ``i`` moves the ulcer so that each ``i`` gives other bytes."""
    return _encode(make_photo(ulcer_offset_mm=(18.0, 6.0 + i)).rgb, quality=92)


def damaged_jpeg(i: int) -> bytes:
    """:func:`good_jpeg` with three bytes in the middle of its entropy-coded data replaced."""
    data = bytearray(good_jpeg(i))
    scan = data.index(b"\xff\xda")
    middle = (scan + len(data)) // 2
    data[middle : middle + 3] = b"\x83\xee\x7d"
    return bytes(data)


def stray_bytes_jpeg(i: int) -> bytes:
    """:func:`good_jpeg` with three stray bytes before its scan's marker (libjpeg: "extraneous
    bytes before marker 0xda", no pixel lost)."""
    data = good_jpeg(i)
    scan = data.index(b"\xff\xda")
    return data[:scan] + b"\x00\x11\x22" + data[scan:]


@cache
def _no_ulcer_rgb() -> np.ndarray:
    return make_photo(ulcer_offset_mm=(300.0, 300.0)).rgb


def gray16_png() -> bytes:
    gray = _no_ulcer_rgb().mean(axis=2).astype(np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "PNG")  # mode I;16
    return buf.getvalue()


def heic_photo() -> bytes:
    """A measurable HEIC photo (``scripts/make_heic_fixtures.py``): what iPhones save."""
    return (TESTS / "data" / "photo.heic").read_bytes()


def desaturated_jpeg() -> bytes:
    gray = make_photo().rgb.mean(axis=2).astype(np.uint8)
    return _encode(np.repeat(gray[..., None], 3, axis=2), quality=92)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` px (8-bit RGB), with a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def tiff_pages(*pages: tuple[np.ndarray, int]) -> bytes:
    """A TIFF of ``(rgb, NewSubfileType)`` pages (1: a reduced-resolution preview)."""
    import tifffile

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tiff:
        for rgb, subfile_type in pages:
            tiff.write(rgb, photometric="rgb", subfiletype=subfile_type)
    return buf.getvalue()


def two_photo_tiff() -> bytes:
    first, second = make_photo().rgb, make_photo(ulcer_offset_mm=(18.0, 12.0)).rgb
    return tiff_pages((first, 0), (second, 0))


def tiff_with_preview() -> bytes:
    rgb = make_photo().rgb
    return tiff_pages((rgb, 0), (np.ascontiguousarray(rgb[::4, ::4]), 1))


def png_short_of_rows() -> bytes:
    """A photo's PNG whose complete zlib stream holds 300 of the 480 rows its header claims
    (Pillow pads the rest without a word; libpng: "Not enough image data")."""
    rgb = make_photo().rgb
    raw = b"".join(b"\0" + row.tobytes() for row in rgb[:300])
    ihdr = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- reading results ---------------------------------------------------------------------------
def rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "measurements.csv").open(encoding="utf-8") as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


def row_outcome(row: dict[str, str] | None, code: str) -> str:
    """``<status> <code>`` when the row carries ``code``, else its status and all flags."""
    if row is None:
        return "no row"
    if not code:
        return row["status"]
    flags = row["flags"].split(";") if row["flags"] else []
    return f"{row['status']} {code if code in flags else ','.join(flags) or '-'}"


def skip_outcome(summary: MeasureSummary, root: Path, rel: str) -> str:
    for path, reason in (*summary.problems, *summary.ignored):
        try:
            if Path(path).resolve().relative_to(root.resolve()).as_posix() == rel:
                return f"skip {reason.split(':', 1)[0]}"
        except ValueError:
            continue
    return "not listed"


def one_line_error(fn: Callable[[], object], *words: str) -> str:
    """``error: <words>`` when ``fn`` raises a one-line UlcersegError containing all ``words``."""
    try:
        fn()
    except UlcersegError as err:
        text = str(err)
        if "\n" not in text and all(w in text for w in words):
            return "error: " + " ".join(words)
        return f"error: {text}"
    return "no error"


def _measure(root: Path, out: Path, cfg: PipelineConfig | None = None, **kw: object) -> MeasureSummary:
    return measure_study(root, out, cfg or PipelineConfig(), backend=RednessBackend(), **kw)  # type: ignore[arg-type]


# --- one folder with one bad file per case (one measure run) -----------------------------------
# name -> (relative path, bytes factory, expected outcome)
FILE_CASES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "empty_file": ("A01/D0/U1.jpg", lambda: b"", "failed unreadable_file"),
    "text_named_jpg": ("A02/D0/U1.jpg", lambda: b"not a photo at all\n", "failed unreadable_file"),
    "truncated_jpeg": (
        "A03/D0/U1.jpg",
        lambda: good_jpeg(3)[: len(good_jpeg(3)) // 3],
        "failed unreadable_file",
    ),
    "random_bytes_png": ("A04/D0/U1.png", lambda: bytes(range(256)) * 8, "failed unreadable_file"),
    # three bytes damaged mid-scan: libjpeg only warned, and the photo was measured from an image
    # of the damage (a sample photo -37%, no flag); since 0.3.3 unreadable
    "jpeg_damaged_mid_scan": ("A45/D0/U1.jpg", lambda: damaged_jpeg(45), "failed unreadable_file"),
    # bytes between two segments (some cameras write them): a harmless libjpeg warning
    "jpeg_stray_bytes_before_scan": ("A46/D0/U1.jpg", lambda: stray_bytes_jpeg(46), "measured"),
    "png_signature_only": ("A05/D0/U1.png", lambda: b"\x89PNG\r\n\x1a\n", "failed unreadable_file"),
    "decompression_bomb_30000px": (
        "A06/D0/U1.png",
        lambda: png_header(30000, 30000),
        "failed unreadable_file",
    ),
    "bomb_warning_100mpx": ("A07/D0/U1.png", lambda: png_header(10000, 10000), "failed unreadable_file"),
    "zero_size_png_header": ("A08/D0/U1.png", lambda: png_header(0, 0), "failed unreadable_file"),
    "corrupt_tiff": ("A09/D0/U1.tif", lambda: b"II*\x00" + b"\xff" * 60, "failed unreadable_file"),
    "gif_named_jpg": (
        "A10/D0/U1.jpg",
        lambda: _encode(np.zeros((8, 8, 3), np.uint8), "GIF"),
        "failed unreadable_file",
    ),
    "bmp_named_png": (
        "A11/D0/U1.png",
        lambda: _encode(np.zeros((8, 8, 3), np.uint8), "BMP"),
        "failed unreadable_file",
    ),
    "no_marker": ("A12/D0/U1.jpg", lambda: _encode(make_photo(with_marker=False).rgb), "failed no_marker"),
    "one_pixel_png": (
        "A13/D0/U1.png",
        lambda: _encode(np.zeros((1, 1, 3), np.uint8), "PNG"),
        "failed no_marker",
    ),
    "all_black": ("A14/D0/U1.jpg", lambda: _encode(np.zeros((480, 640, 3), np.uint8)), "failed no_marker"),
    "grayscale_8bit_png": (
        "A15/D0/U1.png",
        lambda: _encode(make_photo().rgb.mean(axis=2).astype(np.uint8), "PNG"),
        "measured grayscale",
    ),
    "grayscale_16bit_png": ("A16/D0/U1.png", gray16_png, "measured grayscale"),
    "desaturated_rgb_jpeg": ("A17/D0/U1.jpg", desaturated_jpeg, "measured grayscale"),
    "rgba_png": (
        "A18/D0/U1.png",
        lambda: _encode(np.dstack([make_photo().rgb, np.full((480, 640), 255, np.uint8)]), "PNG"),
        "measured",
    ),
    "uppercase_extension": ("A19/d0/U1.JPG", lambda: good_jpeg(19), "measured"),
    "heic_photo": ("A20/D0/U1.heic", heic_photo, "measured"),
    "truncated_heic": (
        "A21/D0/U1.heic",
        lambda: heic_photo()[: len(heic_photo()) // 2],
        "failed unreadable_file",
    ),
    "avif_photo": ("A22/D0/U1.avif", lambda: _encode(make_photo().rgb, "AVIF", quality=90), "measured"),
    "heic_named_jpg": ("A23/D0/U1.jpg", heic_photo, "measured"),  # the bytes decide, not the name
    # a multi-page TIFF: the first page is measured, the file goes to review (before: the other
    # pages were left out without a word); a camera's reduced-resolution preview page is no photo
    "tiff_two_photos": ("A47/D0/U1.tif", two_photo_tiff, "measured several_images"),
    "tiff_photo_with_preview_page": ("A48/D0/U1.tif", tiff_with_preview, "measured"),
    "png_short_of_rows": ("A49/D0/U1.png", png_short_of_rows, "failed unreadable_file"),
    "video_named_heic": (
        "A24/D0/U1.heic",
        lambda: struct.pack(">I", 24) + b"ftypmp42" + b"\x00" * 4 + b"mp42isom" + b"\x00" * 64,
        "failed unreadable_file",
    ),
}

# name -> (relative path, expected outcome); bytes: a good photo unless it is no photo at all
SKIP_CASES: dict[str, tuple[str, str]] = {
    "bmp_file": ("B01/D0/U1.bmp", "skip unsupported_format"),
    "raw_file": ("B02/D0/U1.dng", "skip unsupported_format"),
    "photo_at_depth_2": ("B03/U1.jpg", "skip unexpected_layout"),
    "photo_at_depth_4": ("B04/D0/extra/U1.jpg", "skip unexpected_layout"),
    "photo_in_root": ("U1.jpg", "skip unexpected_layout"),
    "visit_baseline_no_alias": ("B05/baseline/U1.jpg", "skip unknown_visit"),
    "visit_V2": ("B06/V2/U1.jpg", "skip unknown_visit"),
    "hidden_file": ("B07/D0/.DS_Store", "skip hidden"),
    "hidden_folder": ("B08/.thumbs", "skip hidden"),
    "notes_txt": ("B09/D0/notes.txt", "skip not_a_photo"),
}


def _batch(tmp: Path) -> list[Outcome]:
    root, out = tmp / "batch", tmp / "batch_out"
    for rel, make, _ in FILE_CASES.values():
        _put(root / rel, make())
    for i, (rel, _) in enumerate(SKIP_CASES.values()):
        if rel.endswith(".thumbs"):
            continue  # a folder, filled below
        _put(root / rel, good_jpeg(100 + i) if not rel.endswith(("Store", "txt")) else b"x")
    _put(root / "B08" / ".thumbs" / "D0" / "U1.jpg", good_jpeg(99))
    summary = _measure(root, out)
    got = rows(out)
    outcomes = []
    for name, (rel, _, expected) in FILE_CASES.items():
        code = expected.split()[1] if " " in expected else ""
        outcomes.append(Outcome(name, expected, row_outcome(got.get(rel), code), False))
    for name, (rel, expected) in SKIP_CASES.items():
        outcomes.append(Outcome(name, expected, skip_outcome(summary, root, rel), False))
    run = (out / "run.json").read_text(encoding="utf-8")
    listed = all(f'"{rel}"' in run for rel, _ in SKIP_CASES.values())
    counted = summary.skipped_counts.get("unsupported_format") == 2 and not summary.ok
    got_listing = "listed, counted, exit 1" if listed and counted else f"{listed} {summary.skipped_counts}"
    outcomes.append(
        Outcome("skips_listed_in_run_json_and_counted", "listed, counted, exit 1", got_listing, False)
    )
    return outcomes


# --- single cases: name -> (expected, function(tmp) -> got) ------------------------------------
def _manifest(tmp: Path, text: str | bytes, photo: bool = True) -> Path:
    if photo:
        _put(tmp / "m" / "p" / "a.jpg", good_jpeg(7))
    path = tmp / "m" / "manifest.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


HEADER = "subject,ulcer,visit,path,date\n"


def _discover_error(tmp: Path, text: str | bytes, *words: str, **kw: object) -> str:
    manifest = _manifest(tmp, text)
    return one_line_error(lambda: discover(manifest, PipelineConfig().discovery, **kw), *words)  # type: ignore[arg-type]


def case_manifest_not_utf8(tmp: Path) -> str:
    return _discover_error(tmp, (HEADER + "S\xe91,U1,D0,p/a.jpg,\n").encode("latin-1"), "not a UTF-8")


def case_manifest_missing_columns(tmp: Path) -> str:
    return _discover_error(tmp, "subject,path\nS1,p/a.jpg\n", "lacks column")


def case_manifest_extra_field(tmp: Path) -> str:
    return _discover_error(tmp, HEADER + "S1,U1,D0,p/a.jpg,2025-01-01,surplus\n", "more fields")


def case_manifest_conflict(tmp: Path) -> str:
    return _discover_error(tmp, HEADER + "S1,U1,D0,p/a.jpg,\nS2,U1,D0,p/a.jpg,\n", "conflict")


def case_manifest_path_outside_root(tmp: Path) -> str:
    return _discover_error(tmp, HEADER + "S1,U1,D0,../../etc/passwd,\n", "outside")


def case_manifest_absolute_path(tmp: Path) -> str:
    return _discover_error(tmp, HEADER + "S1,U1,D0,/etc/passwd,\n", "outside")


def case_manifest_bad_date(tmp: Path) -> str:
    return _discover_error(tmp, HEADER + "S1,U1,D0,p/a.jpg,2025-13-45\n", "ISO date")


def case_manifest_nul_bytes(tmp: Path) -> str:
    return _discover_error(tmp, HEADER + "S1,U1,D0,p/a.jpg\x00,\n", "NUL")


def case_manifest_duplicate_row(tmp: Path) -> str:
    manifest = _manifest(tmp, HEADER + "S1,U1,D0,p/a.jpg,\nS1,U1,D0,p/a.jpg,\n")
    found = discover(manifest, PipelineConfig().discovery)
    codes = [i.code for i in found.ignored]
    return f"{len(found.photos)} photo, skip {','.join(codes)}"


def case_manifest_outside_allowed(tmp: Path) -> str:
    manifest = _manifest(tmp, HEADER + "S1,U1,D0,/etc/passwd,\n")
    summary = _measure(manifest, tmp / "out", allow_outside_root=True)
    return row_outcome(rows(tmp / "out").get("/etc/passwd"), "unreadable_file") + f" ({summary.n_photos})"


def case_manifest_missing_file(tmp: Path) -> str:
    manifest = _manifest(tmp, HEADER + "S1,U1,D0,p/nothere.jpg,\n")
    _measure(manifest, tmp / "out")
    return row_outcome(rows(tmp / "out").get("p/nothere.jpg"), "unreadable_file")


def case_manifest_nfc_nfd_one_subject(tmp: Path) -> str:
    nfd = unicodedata.normalize("NFD", "Sé1")
    _put(tmp / "m" / "p" / "b.jpg", good_jpeg(8))
    manifest = _manifest(tmp, HEADER + "Sé1,U1,D0,p/a.jpg,\n" + f"{nfd},U1,W4,p/b.jpg,\n")
    found = discover(manifest, PipelineConfig().discovery)
    return f"{len({p.subject_id for p in found.photos})} subject"


def case_folder_nfd_subject_is_nfc(tmp: Path) -> str:
    _put(tmp / "in" / unicodedata.normalize("NFD", "Sé1") / "D0" / "U1.jpg", good_jpeg(9))
    found = discover(tmp / "in", PipelineConfig().discovery)
    return "NFC" if [p.subject_id for p in found.photos] == [unicodedata.normalize("NFC", "Sé1")] else "NFD"


def case_visit_alias(tmp: Path) -> str:
    _put(tmp / "in" / "S1" / "baseline" / "U1.jpg", good_jpeg(10))
    cfg = config_from_dict({"discovery": {"visit_aliases": {"baseline": "D0"}}})
    found = discover(tmp / "in", cfg.discovery)
    return ",".join(f"{p.visit}/{p.study_day}" for p in found.photos) or "no photo"


def case_bad_file_name(tmp: Path) -> str:
    _put(tmp / "in" / "S1" / "D0" / "photo.jpg", good_jpeg(11))
    cfg = config_from_dict({"discovery": {"ulcer_pattern": r"^(?P<ulcer_id>U\d+)$"}})
    found = discover(tmp / "in", cfg.discovery)
    return f"skip {found.problems[0].code}" if found.problems else "not listed"


def case_output_inside_input(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(12))
    _measure(root, root / "results")
    second = _measure(root, root / "results")
    listed = [r for _, r in second.ignored if r.startswith("output_folder")]
    return f"{second.n_photos} photo, {len(second.problems)} problems, {len(listed)} output_folder"


def case_duplicate_bytes_two_visits(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(13))
    _put(root / "S1" / "W4" / "U1.jpg", good_jpeg(13))
    _measure(root, tmp / "out")
    got = rows(tmp / "out")
    visits = sorted(r["visit"] for r in got.values())
    dup = all("duplicate_photo" in r["flags"] for r in got.values())
    return (
        f"{','.join(visits)} both duplicate_photo"
        if dup
        else f"{visits} {[r['flags'] for r in got.values()]}"
    )


def case_copy_across_subjects(tmp: Path) -> str:
    root = tmp / "in"
    for s in ("S1", "S2", "S3"):
        _put(root / s / "D0" / "U1.jpg", good_jpeg(14))
    _measure(root, tmp / "out")
    return ",".join(sorted(r["subject_id"] for r in rows(tmp / "out").values()))


def case_replaced_photo(tmp: Path) -> str:
    root = tmp / "in"
    path = _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(15))
    _measure(root, tmp / "out")
    path.write_bytes(good_jpeg(16))
    _measure(root, tmp / "out")
    got = list(rows(tmp / "out").values())
    con = sqlite3.connect(tmp / "out" / "study.sqlite")
    superseded = con.execute(
        "SELECT superseded_reason FROM photos WHERE superseded_at IS NOT NULL"
    ).fetchall()
    con.close()
    return f"{len(got)} row, {len(superseded)} superseded ({superseded[0][0] if superseded else '-'})"


def case_moved_photo(tmp: Path) -> str:
    root = tmp / "in"
    path = _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(17))
    _measure(root, tmp / "out")
    (root / "S2" / "D0").mkdir(parents=True)
    path.rename(root / "S2" / "D0" / "U1.jpg")
    summary = _measure(root, tmp / "out")
    got = rows(tmp / "out")
    return f"{','.join(got)} (moved {len(summary.reconciled.moved)}, ghosts {len(got) - 1})"


def case_missing_photo(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(18))
    gone = _put(root / "S1" / "W4" / "U1.jpg", good_jpeg(20))
    _measure(root, tmp / "out")
    gone.unlink()
    summary = _measure(root, tmp / "out")
    return row_outcome(rows(tmp / "out").get("S1/W4/U1.jpg"), "missing_file") + (
        ", exit 1" if not summary.ok else ", exit 0"
    )


def case_byte_identical_rerun(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(21))
    _put(root / "S1" / "W4" / "U1.jpg", good_jpeg(22))
    _measure(root, tmp / "out")
    before = (tmp / "out" / "measurements.csv").read_bytes()
    backend = RednessBackend()
    again = measure_study(root, tmp / "out", PipelineConfig(), backend=backend)
    same = (tmp / "out" / "measurements.csv").read_bytes() == before
    return (
        f"{again.n_skipped} skipped, {backend.calls} network calls, csv {'identical' if same else 'changed'}"
    )


def case_write_error_is_retried(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(23))
    out = tmp / "out"
    out.mkdir()
    (out / "masks").write_text("a file where the masks folder goes")
    _measure(root, out)
    first = row_outcome(rows(out).get("S1/D0/U1.jpg"), "write_error")
    (out / "masks").unlink()
    second = _measure(root, out)
    return f"{first}, then {row_outcome(rows(out).get('S1/D0/U1.jpg'), '')} ({second.n_skipped} skipped)"


def case_unreachable_file_retried(tmp: Path) -> str:
    """A file that cannot be read now (dangling link, permission) is the environment's fault."""
    root = tmp / "in"
    (root / "S1" / "D0").mkdir(parents=True)
    target = tmp / "elsewhere.jpg"
    (root / "S1" / "D0" / "U1.jpg").symlink_to(target)
    _measure(root, tmp / "out")
    first = row_outcome(rows(tmp / "out").get("S1/D0/U1.jpg"), "unreadable_file")
    again = _measure(root, tmp / "out")
    return f"{first}, rerun retries {again.n_failed}"


def case_bytes_failure_cached(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", _encode(make_photo(with_marker=False).rgb))
    _measure(root, tmp / "out")
    again = _measure(root, tmp / "out")
    forced = _measure(root, tmp / "out", retry_failed=True)
    return f"rerun skips {again.n_skipped}, --retry-failed measures {forced.n_failed}"


def case_rerun_exit_nonzero(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", b"")
    _measure(root, tmp / "out")
    again = _measure(root, tmp / "out")
    return (
        f"{again.n_failed} failed this run, {len(again.unresolved)} unresolved, exit {0 if again.ok else 1}"
    )


def case_disk_full(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(24))
    _measure(root, tmp / "out")
    before = (tmp / "out" / "measurements.csv").read_bytes()
    _put(root / "S1" / "W4" / "U1.jpg", good_jpeg(25))
    full = OSError(28, "No space left on device")
    with (
        mock.patch("ulcerseg.pipeline.write_png", side_effect=full),
        mock.patch("ulcerseg.store.study.Study.export_csv", side_effect=full),
    ):
        got = one_line_error(lambda: _measure(root, tmp / "out"), "No space left")
    intact = (tmp / "out" / "measurements.csv").read_bytes() == before
    leftovers = list((tmp / "out").rglob("*.tmp"))
    return f"{got}, csv {'intact' if intact else 'changed'}, {len(leftovers)} tmp"


def case_output_is_a_file(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(26))
    (tmp / "out").write_text("x")
    return one_line_error(lambda: _measure(root, tmp / "out"), "cannot write")


def case_corrupt_study_db(tmp: Path) -> str:
    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(27))
    _put(tmp / "out" / "study.sqlite", b"this is not a database" * 100)
    return one_line_error(lambda: _measure(root, tmp / "out"), "study")


def case_lock_held(tmp: Path) -> str:
    from ulcerseg.store.lock import output_lock

    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(28))
    (tmp / "out").mkdir()
    with output_lock(tmp / "out"):  # another open file description: flock conflicts
        return one_line_error(lambda: _measure(root, tmp / "out"), "another ulcerseg measure", "pid")


def case_healing_16bit_gray_never_healed(tmp: Path) -> str:
    from ulcerseg.healing import heal_study

    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(29))
    _put(root / "S1" / "W4" / "U1.png", gray16_png())
    _measure(root, tmp / "out")
    result = heal_study(tmp / "out")
    return {v.visit: v.status for v in result[0].visits}.get("W4", "no row")


def case_healing_unreadable_followup_not_healed(tmp: Path) -> str:
    from ulcerseg.healing import heal_study

    root = tmp / "in"
    _put(root / "S1" / "D0" / "U1.jpg", good_jpeg(30))
    _put(root / "S1" / "W4" / "U1.jpg", b"\xff\xd8 truncated")
    _measure(root, tmp / "out")
    return {v.visit: v.status for v in heal_study(tmp / "out")[0].visits}.get("W4", "no row")


def case_schema_v1_study_migrates(tmp: Path) -> str:
    from ulcerseg.store import SCHEMA_VERSION, Study
    from ulcerseg.store.schema import STATEMENTS

    out = tmp / "out"
    out.mkdir()
    con = sqlite3.connect(out / "study.sqlite")
    for statement in STATEMENTS:
        con.execute(statement)
    con.execute("INSERT INTO runs (run_id, started_at, package_version, model_sha256, config_sha256,"
                " config_json, input_root) VALUES ('r','t','v','m','c','{}','/')")  # fmt: skip
    for sha, file, visit in (("a" * 64, "S1/D0/U1.jpg", "D0"), ("a" * 64, "S1/W4/U1.jpg", "W4")):
        con.execute("INSERT OR REPLACE INTO photos (photo_sha256, file, subject_id, ulcer_id, visit)"
                    " VALUES (?,?,?,?,?)", (sha, file, "S1", "U1", visit))  # fmt: skip
        con.execute("INSERT INTO measurements (run_id, photo_sha256, file, status, needs_review, flags,"
                    " package_version, model_sha256, config_sha256, measured_at)"
                    " VALUES ('r',?,?,'measured',0,'','v','m','c','t')", (sha, file))  # fmt: skip
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    with Study.open(out) as study:
        version = study.conn.execute("PRAGMA user_version").fetchone()[0]
        n = len(study.latest_measurements())
    return f"v{version}: {n} rows" if version == SCHEMA_VERSION else f"v{version}"


# --- subprocess cases ----------------------------------------------------------------------------
_SLOW_RUN = """
import sys, time
sys.path[:0] = [{repo!r}, {tests!r}]
from pathlib import Path
from conftest import RednessBackend
from ulcerseg.config import PipelineConfig
from ulcerseg.pipeline import measure_study

class Slow(RednessBackend):
    def predict_proba(self, tiles):
        time.sleep({delay})
        return super().predict_proba(tiles)

s = measure_study(Path(sys.argv[1]), Path(sys.argv[2]), PipelineConfig(), backend=Slow())
print("done", s.n_measured)
"""


def _slow_process(root: Path, out: Path, delay: float = 0.15) -> subprocess.Popen:
    code = _SLOW_RUN.format(repo=str(REPO), tests=str(TESTS), delay=delay)
    return subprocess.Popen([sys.executable, "-c", code, str(root), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _n_rows(out: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{out / 'study.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _wait(cond: Callable[[], bool], timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def case_kill9_and_resume(tmp: Path) -> str:
    root, out = tmp / "in", tmp / "out"
    for i in range(5):
        _put(root / f"S{i}" / "D0" / "U1.jpg", good_jpeg(40 + i))
    proc = _slow_process(root, out)
    started = _wait(lambda: _n_rows(out) >= 2 or proc.poll() is not None)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not started:
        return "first run never wrote a row"
    killed_at = _n_rows(out)
    resumed = _measure(root, out)
    con = sqlite3.connect(out / "study.sqlite")
    n, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT file) FROM measurements").fetchone()
    con.close()
    files_ok = all((out / r["mask_file"]).is_file() for r in rows(out).values())
    tmp_left = list(out.rglob("*.tmp"))
    done = resumed.n_skipped + resumed.n_measured == 5 and resumed.n_skipped == killed_at
    mid_run = 2 <= killed_at < 5
    return (f"resumed {'the rest' if done else f'{resumed.n_skipped}+{resumed.n_measured}'}, {n} rows for "
            f"{distinct} photos, files {'ok' if files_ok else 'missing'}, {len(tmp_left)} tmp"
            + ("" if mid_run else f" (killed after {killed_at} rows)"))  # fmt: skip


def case_two_concurrent_runs(tmp: Path) -> str:
    root, out = tmp / "in", tmp / "out"
    for i in range(3):
        _put(root / f"S{i}" / "D0" / "U1.jpg", good_jpeg(50 + i))
    proc = _slow_process(root, out)
    try:
        lock = out / ".lock"
        _wait(lambda: (lock.is_file() and b"pid" in lock.read_bytes()) or proc.poll() is not None)
        try:
            _measure(root, out)
            second = "second run was not refused"
        except OutputLockedError as err:
            second = (
                "refused naming pid" if f"pid {proc.pid}" in str(err) and "\n" not in str(err) else str(err)
            )
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = (
        "first done" if proc.returncode == 0 and "Traceback" not in stderr else f"first rc {proc.returncode}"
    )
    return f"{first}, {second}"


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", "from ulcerseg.cli import run; run()", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, check=False)  # fmt: skip


def case_cli_out_omitted(tmp: Path) -> str:
    proc = _cli("measure", str(tmp))
    if "Traceback" in proc.stderr:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    ok = proc.returncode == 2 and "Missing option '-o'" in proc.stderr
    return "usage error, exit 2" if ok else f"exit {proc.returncode}: {proc.stderr.strip()[-80:]}"


def case_cli_only_unsupported(tmp: Path) -> str:
    trial = tmp / "trial"
    (trial / "S1" / "D0").mkdir(parents=True)
    for name in ("U1.bmp", "U2.dng"):
        (trial / "S1" / "D0" / name).write_bytes(b"not decoded")
    proc = _cli("measure", str(trial), "-o", str(tmp / "out"))
    if "Traceback" in proc.stderr:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    lines = proc.stderr.strip().splitlines()
    listed = sum(line.startswith("skipped: ") and "unsupported_format" in line for line in lines)
    layout = bool(lines) and lines[-1].startswith("error: ") and "expected the layout" in lines[-1]
    return f"listed {listed}, exit {proc.returncode}" + (", layout" if layout else ", no layout")


# name -> (expected, function)
SINGLE_CASES: dict[str, tuple[str, Callable[[Path], str]]] = {
    "manifest_not_utf8": ("error: not a UTF-8", case_manifest_not_utf8),
    "manifest_missing_columns": ("error: lacks column", case_manifest_missing_columns),
    "manifest_extra_field": ("error: more fields", case_manifest_extra_field),
    "manifest_path_two_subjects": ("error: conflict", case_manifest_conflict),
    "manifest_path_outside_root": ("error: outside", case_manifest_path_outside_root),
    "manifest_absolute_path": ("error: outside", case_manifest_absolute_path),
    "manifest_date_2025_13_45": ("error: ISO date", case_manifest_bad_date),
    "manifest_nul_bytes": ("error: NUL", case_manifest_nul_bytes),
    "manifest_duplicate_row": ("1 photo, skip duplicate_row", case_manifest_duplicate_row),
    "manifest_outside_allowed": ("failed unreadable_file (1)", case_manifest_outside_allowed),
    "manifest_missing_file": ("failed unreadable_file", case_manifest_missing_file),
    "manifest_nfc_nfd_subject": ("1 subject", case_manifest_nfc_nfd_one_subject),
    "folder_nfd_subject": ("NFC", case_folder_nfd_subject_is_nfc),
    "visit_alias_baseline_D0": ("D0/0", case_visit_alias),
    "file_name_not_matching_pattern": ("skip bad_file_name", case_bad_file_name),
    "output_inside_input": ("1 photo, 0 problems, 1 output_folder", case_output_inside_input),
    "duplicate_bytes_D0_W4": ("D0,W4 both duplicate_photo", case_duplicate_bytes_two_visits),
    "copies_across_subjects": ("S1,S2,S3", case_copy_across_subjects),
    "replaced_photo": ("1 row, 1 superseded (replaced)", case_replaced_photo),
    "moved_photo": ("S2/D0/U1.jpg (moved 1, ghosts 0)", case_moved_photo),
    "missing_photo": ("missing missing_file, exit 1", case_missing_photo),
    "byte_identical_rerun": ("2 skipped, 0 network calls, csv identical", case_byte_identical_rerun),
    "write_error_retried": ("failed write_error, then measured (0 skipped)", case_write_error_is_retried),
    "unreachable_file_retried": ("failed unreadable_file, rerun retries 1", case_unreachable_file_retried),
    "bytes_failure_cached": ("rerun skips 1, --retry-failed measures 1", case_bytes_failure_cached),
    "rerun_exit_while_failures_remain": ("0 failed this run, 1 unresolved, exit 1", case_rerun_exit_nonzero),
    "disk_full": ("error: No space left, csv intact, 0 tmp", case_disk_full),
    "output_is_a_file": ("error: cannot write", case_output_is_a_file),
    "corrupt_study_db": ("error: study", case_corrupt_study_db),
    "output_lock_held": ("error: another ulcerseg measure pid", case_lock_held),
    "healing_16bit_gray_followup": ("not_assessable", case_healing_16bit_gray_never_healed),
    "healing_unreadable_followup": ("not_assessable", case_healing_unreadable_followup_not_healed),
    "schema_v1_study": (f"v{SCHEMA_VERSION}: 2 rows", case_schema_v1_study_migrates),
    "kill9_and_resume": ("resumed the rest, 5 rows for 5 photos, files ok, 0 tmp", case_kill9_and_resume),
    "two_concurrent_runs": ("first done, refused naming pid", case_two_concurrent_runs),
    "cli_out_omitted": ("usage error, exit 2", case_cli_out_omitted),
    "cli_only_unsupported_files": ("listed 2, exit 2, layout", case_cli_only_unsupported),
}  # fmt: skip

BATCH_NAMES = [*FILE_CASES, *SKIP_CASES, "skips_listed_in_run_json_and_counted"]
ALL_NAMES = [*BATCH_NAMES, *SINGLE_CASES]


def _guarded(name: str, expected: str, fn: Callable[[], str]) -> Outcome:
    try:
        return Outcome(name, expected, fn(), False)
    except UlcersegError as err:  # one line, but not the expected outcome
        return Outcome(name, expected, f"error: {err}", False)
    except Exception as err:
        last = traceback.format_exception_only(err)[-1].strip()
        return Outcome(name, expected, last, True)


def run_batch(tmp: Path) -> list[Outcome]:
    try:
        return _batch(tmp)
    except Exception as err:
        last = traceback.format_exception_only(err)[-1].strip()
        return [Outcome(n, "-", last, True) for n in BATCH_NAMES]


def run_single(name: str, tmp: Path) -> Outcome:
    expected, fn = SINGLE_CASES[name]
    folder = tmp / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return _guarded(name, expected, lambda: fn(folder))


def run_all(tmp: Path) -> list[Outcome]:
    return [*run_batch(tmp / "batch"), *(run_single(n, tmp) for n in SINGLE_CASES)]

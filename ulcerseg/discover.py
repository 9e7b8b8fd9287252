"""Discovery: a photo folder or manifest CSV -> one :class:`PhotoRecord` per photo.

Default layout ``<root>/<subject>/<visit>/<photo>``; the ulcer ID comes from the photo's file
stem through ``discovery.ulcer_pattern``. A manifest CSV (columns ``subject, ulcer, visit,
path[, date]``; paths relative to the manifest) can be given instead.
"""

from __future__ import annotations

import csv
import fnmatch
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ulcerseg.config import DiscoveryConfig
from ulcerseg.errors import InputError
from ulcerseg.imageio import read_bytes, sha256_bytes
from ulcerseg.records import PhotoRecord
from ulcerseg.visits import is_visit_label, visit_to_day

log = logging.getLogger(__name__)


@dataclass
class Discovery:
    """Photos found under a root, plus files that could not be assigned (path, reason)."""

    root: Path
    photos: list[PhotoRecord] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)

    def relative(self, path: Path) -> str:
        """Path of a photo relative to the root, with forward slashes (its stable name)."""
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).as_posix()


def _hash_file(path: Path) -> str:
    try:
        return sha256_bytes(read_bytes(path))
    except InputError:
        return sha256_bytes(str(path).encode())  # unreadable: still a stable identity


def discover_folder(root: Path, config: DiscoveryConfig) -> Discovery:
    """Find photos under ``root`` laid out as ``<subject>/<visit>/<photo>``."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: folder does not exist")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise InputError(f"{root}: folder is not readable (permission denied)")
    pattern = re.compile(config.ulcer_pattern)
    extensions = {e.lower() for e in config.extensions}
    found = Discovery(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        if path.suffix.lower() not in extensions:
            continue
        parts = path.relative_to(root).parts
        if any(fnmatch.fnmatch(part, pat) for part in parts for pat in config.ignore):
            continue
        if len(parts) != 3:
            if len(parts) > 1:  # photos directly in the root are usually not trial photos
                found.problems.append((path, "not in a <subject>/<visit>/ folder; ignored"))
            continue
        subject, visit, name = parts
        if not is_visit_label(visit):
            found.problems.append((path, f"visit folder {visit!r} is not a visit label (D0, W4...)"))
            continue
        match = pattern.match(Path(name).stem)
        if match is None:
            found.problems.append((path, f"file name does not match ulcer_pattern {pattern.pattern!r}"))
            continue
        found.photos.append(
            PhotoRecord(
                path=path,
                subject_id=subject,
                ulcer_id=match["ulcer_id"],
                visit=visit.upper(),
                study_day=visit_to_day(visit),
                sha256=_hash_file(path),
            )
        )
    return found


def discover_manifest(manifest: Path) -> Discovery:
    """Read a manifest CSV with columns ``subject, ulcer, visit, path[, date]``."""
    manifest = Path(manifest)
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise InputError(f"{manifest}: cannot read manifest ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise InputError(f"{manifest}: not a UTF-8 text file (byte {err.start}); save it as UTF-8") from None
    reader = csv.DictReader(text.splitlines())
    aliases = {"subject_id": "subject", "ulcer_id": "ulcer", "file": "path", "photo_date": "date"}
    header = {aliases.get(h.strip().lower(), h.strip().lower()) for h in reader.fieldnames or []}
    missing = {"subject", "ulcer", "visit", "path"} - header
    if missing:
        raise InputError(f"{manifest}: manifest lacks column(s) {', '.join(sorted(missing))}")
    found = Discovery(manifest.parent.resolve())
    for line_no, raw in enumerate(reader, start=2):
        row = {aliases.get(k.strip().lower(), k.strip().lower()): (v or "").strip() for k, v in raw.items()}
        path = (manifest.parent / row["path"]).resolve()
        if not is_visit_label(row["visit"]):
            found.problems.append((path, f"{manifest}:{line_no}: bad visit label {row['visit']!r}"))
            continue
        if not row["subject"] or not row["ulcer"]:
            found.problems.append((path, f"{manifest}:{line_no}: empty subject or ulcer"))
            continue
        found.photos.append(
            PhotoRecord(
                path=path,
                subject_id=row["subject"],
                ulcer_id=row["ulcer"],
                visit=row["visit"].upper(),
                study_day=visit_to_day(row["visit"]),
                sha256=_hash_file(path),
                photo_date=row.get("date") or None,
            )
        )
    return found


def no_photos_error(source: Path, found: Discovery, config: DiscoveryConfig) -> InputError:
    """The error of a source without any photo: the layout expected and why files were ignored."""
    exts = "/".join(sorted({e.lower().lstrip(".") for e in config.extensions}))
    if Path(source).is_file():
        msg = f"{source}: the manifest lists no photos (columns subject, ulcer, visit, path[, date])"
    else:
        msg = (
            f"{source}: no photos found; expected the layout <subject>/<visit>/<ulcer>.<{exts}> "
            "(e.g. S001/W4/U1.jpg; visit folders D<n> or W<n>) or a manifest CSV"
        )
    if found.problems:
        path, reason = found.problems[0]
        msg += f"; {len(found.problems)} file(s) ignored, e.g. {found.relative(path)}: {reason}"
    return InputError(msg)


def discover(source: Path, config: DiscoveryConfig) -> Discovery:
    """Discover photos from a folder, or from a manifest when ``source`` is a ``.csv`` file."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return discover_manifest(source)
    return discover_folder(source, config)

"""Discovery: a photo folder or manifest CSV -> one :class:`PhotoRecord` per photo.

Default layout ``<root>/<subject>/<visit>/<photo>``; the ulcer ID comes from the photo's file
stem through ``discovery.ulcer_pattern``. A manifest CSV (columns ``subject, ulcer, visit,
path[, date]``; paths relative to the manifest) can be given instead.

Every file under the root becomes a photo or a :class:`Skipped` entry with a
:class:`~ulcerseg.records.SkipReason` code: nothing is dropped silently. Folders that are
symbolic links are listed (failing), not followed. Subject and ulcer IDs are normalised to
Unicode NFC (``Sé1`` typed either way is one subject); visit labels to ``D<n>``/``W<n>`` with
no leading zeros (``visits.canonical_visit``).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import logging
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import NamedTuple

from ulcerseg.config import DiscoveryConfig
from ulcerseg.errors import ConfigError, InputError, NoPhotosError
from ulcerseg.ids import invisible_character, lookalike_character, nfc
from ulcerseg.imageio import read_bytes, sha256_bytes
from ulcerseg.records import FAILING_SKIP_REASONS, PhotoRecord, SkipReason
from ulcerseg.store.db import DB_NAME
from ulcerseg.visits import canonical_visit, is_visit_label, visit_to_day

log = logging.getLogger(__name__)

# photo formats ulcerseg decodes (the default ``discovery.extensions``): a photo with one of
# them that the config leaves out is an unsupported_format row, never "not a photo"
DECODED_EXTENSIONS = frozenset(DiscoveryConfig().extensions)
# image formats a camera or phone may produce that ulcerseg does not decode
OTHER_IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".gif", ".webp", ".jxl", ".jp2", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf",
     ".raf", ".rw2", ".raw", ".psd", ".svg", ".ico", ".pcx", ".tga"}
)  # fmt: skip


_LINKED_FOLDER = "symbolic link: not followed; copy the folder into the study"
_SPECIAL_FILE = "not a regular file (named pipe, socket or device); not read"
# spaces and dots after a file's extension ("U1.jpg ", "U1.jpg.")
_TRAILING_JUNK = re.compile(r"[\s.]+\Z")


class Skipped(NamedTuple):
    """A file (or manifest row) that did not become a photo: ``reason`` reads ``code: detail``."""

    path: Path
    reason: str

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0]

    @property
    def failing(self) -> bool:
        """True for files that look like trial photos but could not be placed (exit status 1)."""
        return self.code in FAILING_SKIP_REASONS


def _skip(path: Path, code: SkipReason, detail: str) -> Skipped:
    return Skipped(Path(path), f"{code.value}: {detail}")


@dataclass
class Discovery:
    """Photos found under a root; ``problems``: files that look like photos but could not be
    placed (failing); ``ignored``: hidden files, non-photos and the output folder (listed only)."""

    root: Path
    photos: list[PhotoRecord] = field(default_factory=list)
    problems: list[Skipped] = field(default_factory=list)
    ignored: list[Skipped] = field(default_factory=list)

    def relative(self, path: Path) -> str:
        """Path of a photo relative to the root, with forward slashes (its stable name)."""
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def add_skip(self, item: Skipped) -> None:
        (self.problems if item.failing else self.ignored).append(item)

    def counts(self) -> dict[str, int]:
        """Number of skipped files per reason code."""
        out: dict[str, int] = {}
        for item in (*self.problems, *self.ignored):
            out[item.code] = out.get(item.code, 0) + 1
        return dict(sorted(out.items()))


def _hash_file(path: Path) -> str:
    try:
        return sha256_bytes(read_bytes(path))
    except InputError:
        return sha256_bytes(str(path).encode())  # unreadable: still a stable identity


class _Visits:
    """Visit label -> (canonical label, study day), through ``discovery.visit_aliases``.

    Labels of the D<n>/W<n> form are canonicalised (``W04`` -> ``W4``) before the alias lookup,
    on both sides, so every spelling of a visit gets the same alias and the same label.
    """

    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases: dict[str, str] = {}
        for name, target in aliases.items():
            if not is_visit_label(str(target)):
                raise ConfigError(
                    f"key 'discovery.visit_aliases.{name}': {target!r} is not a visit label (D<n> or W<n>)"
                )
            key = self._key(nfc(str(name)))
            canonical = canonical_visit(str(target))
            if self.aliases.get(key, canonical) != canonical:
                raise ConfigError(
                    f"key 'discovery.visit_aliases.{name}': another key is the same label (case and "
                    f"leading zeros ignored) but maps to {self.aliases[key]!r}, this one to {canonical!r}"
                )
            self.aliases[key] = canonical

    @staticmethod
    def _key(label: str) -> str:
        return canonical_visit(label).casefold() if is_visit_label(label) else label.casefold()

    def resolve(self, label: str) -> tuple[str, int] | None:
        label = nfc(label)
        canonical = self.aliases.get(self._key(label))
        if canonical is None and is_visit_label(label):
            canonical = canonical_visit(label)
        return None if canonical is None else (canonical, visit_to_day(canonical))


# what `measure` writes into its output folder (images only): anything else there is not ours
_OUTPUT_IMAGE_FOLDERS = frozenset({"masks", "overlays", "rectified", "report", "superseded", "review"})


def _photos_in_output(folder: Path, extensions: set[str]) -> list[Path]:
    """Files with a photo extension in the output folder, outside the folders measure writes."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in extensions
        and p.relative_to(folder).parts[0] not in _OUTPUT_IMAGE_FOLDERS
        and p.is_file()
    )


def _is_utf8(name: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (Python keeps them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _special_file(path: Path) -> bool:
    """True for a FIFO, socket or device: reading one may wait forever (a named pipe called
    ``U1.jpg`` hung ``measure``); False for files, folders and paths that cannot be examined."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # a dangling link, no permission: read (and failed) as a photo
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _hidden(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in patterns)


def discover_folder(root: Path, config: DiscoveryConfig, exclude: Path | None = None) -> Discovery:
    """Find photos under ``root`` laid out as ``<subject>/<visit>/<photo>``.

    ``exclude`` (the output folder, when inside ``root``) is not read, nor is any folder holding
    a ``study.sqlite`` (an earlier output folder): its overlays and masks are not photos.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such photo folder or manifest (.csv)")
    if not root.is_dir():
        raise InputError(f"{root}: not a photo folder, nor a manifest (a .csv file)")
    if not os.access(root, os.R_OK | os.X_OK):
        raise InputError(f"{root}: folder is not readable (permission denied)")
    pattern = re.compile(config.ulcer_pattern)
    extensions = {e.lower() for e in config.extensions}
    visits = _Visits(config.visit_aliases)
    excluded = Path(exclude).resolve() if exclude is not None else None
    found = Discovery(root)
    paths: list[Path] = []

    def walk_error(err: OSError) -> None:
        found.add_skip(_skip(Path(err.filename or root), SkipReason.UNEXPECTED_LAYOUT,
                             f"folder cannot be listed ({err.strerror or err})"))  # fmt: skip

    for folder, dirs, files in os.walk(root, onerror=walk_error):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            sub = here / d
            current_output = excluded is not None and sub.resolve() == excluded
            earlier_output = not current_output and (sub / DB_NAME).is_file()  # an earlier -o in here
            if current_output or earlier_output:
                what = "the output folder" if not earlier_output else f"an output folder (holds {DB_NAME})"
                found.add_skip(_skip(sub, SkipReason.OUTPUT_FOLDER, f"{what}; not read"))
                for photo in _photos_in_output(sub, extensions):
                    # `-o` pointed at a visit (or subject) folder: its photos are the study's,
                    # never silently left out
                    detail = (
                        "inside the output folder, so not read: choose -o outside the study"
                        if not earlier_output
                        else f"inside an output folder (it holds {DB_NAME}), so not read: move that "
                        "folder out of the study"
                    )
                    found.add_skip(_skip(photo, SkipReason.UNEXPECTED_LAYOUT, detail))
            elif _hidden(d, config.ignore):
                found.add_skip(_skip(sub, SkipReason.HIDDEN, "folder matches discovery.ignore"))
            elif sub.is_symlink():
                # not followed (a link may lead outside the study or into another subject's
                # folder), but listed: os.walk alone would drop it and its photos without a word
                found.add_skip(_skip(sub, SkipReason.UNEXPECTED_LAYOUT, _LINKED_FOLDER))
            else:
                keep.append(d)
        dirs[:] = keep
        for name in files:
            paths.append(here / name)
    for path in sorted(paths):
        parts = path.relative_to(root).parts
        suffix = path.suffix.lower()
        if _hidden(parts[-1], config.ignore):
            found.add_skip(_skip(path, SkipReason.HIDDEN, "file matches discovery.ignore"))
            continue
        trimmed = _TRAILING_JUNK.sub("", parts[-1])
        image_suffixes = extensions | DECODED_EXTENSIONS | OTHER_IMAGE_EXTENSIONS
        if trimmed != parts[-1] and Path(trimmed).suffix.lower() in image_suffixes:
            # "U1.jpg " or "U1.jpg." (a typo, or a name Windows cannot open): a trial photo, so
            # failing, not "not a photo"; never measured under the name it was not given
            detail = f"name ends in {parts[-1][len(trimmed) :]!r} after the extension; rename it {trimmed!r}"
            found.add_skip(_skip(path, SkipReason.BAD_FILE_NAME, detail))
            continue
        if suffix not in extensions and path.is_symlink() and not path.exists():
            # a dangling link may have been a subject or visit folder (os.walk lists it as a file)
            found.add_skip(_skip(path, SkipReason.UNEXPECTED_LAYOUT, "symbolic link to a missing target"))
            continue
        if suffix not in extensions:
            if suffix in DECODED_EXTENSIONS:  # left out of discovery.extensions by the config
                detail = f"{suffix} photos are not read: {suffix} is not in discovery.extensions"
                found.add_skip(_skip(path, SkipReason.UNSUPPORTED_FORMAT, detail))
            elif suffix in OTHER_IMAGE_EXTENSIONS:
                detail = f"{suffix} photos are not read (convert to JPEG, PNG, TIFF or HEIC)"
                found.add_skip(_skip(path, SkipReason.UNSUPPORTED_FORMAT, detail))
            else:
                found.add_skip(_skip(path, SkipReason.NOT_A_PHOTO, f"extension {suffix or '(none)'}"))
            continue
        if _special_file(path):
            found.add_skip(_skip(path, SkipReason.UNEXPECTED_LAYOUT, _SPECIAL_FILE))
            continue
        if not _is_utf8("/".join(parts)):
            # bytes of another system's encoding in the name: the IDs taken from it could not be
            # stored (it stopped the whole run); listed, not guessed at
            detail = "name is not valid UTF-8 (another system's encoding?); rename it"
            found.add_skip(_skip(path, SkipReason.BAD_FILE_NAME, detail))
            continue
        invisible = invisible_character("/".join(parts))
        if invisible is not None:  # IDs taken from it would look like others they are not
            detail = f"name holds an invisible or control character ({invisible}); rename it"
            found.add_skip(_skip(path, SkipReason.BAD_FILE_NAME, detail))
            continue
        if len(parts) != 3:
            detail = f"not in a <subject>/<visit>/ folder ({len(parts) - 1} folder levels)"
            found.add_skip(_skip(path, SkipReason.UNEXPECTED_LAYOUT, detail))
            continue
        subject, visit = nfc(parts[0]), nfc(parts[1])
        # the stem of the name as it is (in NFC): nfc() also strips, which made " .jpg" the
        # dotfile ".jpg", so the extension was taken for the ulcer ID
        name = unicodedata.normalize("NFC", parts[2])
        if not subject:
            # a folder named " ": its photos would be stored under the subject ID "" (and merged
            # with every other blank-named folder); the manifest refuses an empty ID too
            detail = f"subject folder name {parts[0]!r} is blank (no subject ID); rename it"
            found.add_skip(_skip(path, SkipReason.UNEXPECTED_LAYOUT, detail))
            continue
        resolved = visits.resolve(visit)
        if resolved is None:
            found.add_skip(_skip(path, SkipReason.UNKNOWN_VISIT,
                                 f"visit folder {visit!r} is not a visit label (D0, W4...) "
                                 "nor in discovery.visit_aliases"))  # fmt: skip
            continue
        match = pattern.match(Path(name).stem)
        if match is None or not match["ulcer_id"]:
            found.add_skip(_skip(path, SkipReason.BAD_FILE_NAME,
                                 f"file name does not match ulcer_pattern {pattern.pattern!r}"))  # fmt: skip
            continue
        ulcer = nfc(match["ulcer_id"])
        if not ulcer:  # " .jpg": its photos would be stored under the ulcer ID "" (as a blank subject)
            detail = f"ulcer ID {match['ulcer_id']!r} from the file name is blank; rename it"
            found.add_skip(_skip(path, SkipReason.BAD_FILE_NAME, detail))
            continue
        lookalike = lookalike_character(subject + ulcer)
        if lookalike is not None:  # "Ѕ001" (Cyrillic Ѕ) would be another subject that looks like S001
            detail = f"subject or ulcer ID holds a character that looks like another ({lookalike}); rename it"
            found.add_skip(_skip(path, SkipReason.BAD_FILE_NAME, detail))
            continue
        found.photos.append(
            PhotoRecord(
                path=path,
                subject_id=subject,
                ulcer_id=ulcer,
                visit=resolved[0],
                study_day=resolved[1],
                sha256=_hash_file(path),
            )
        )
    return found


_MANIFEST_ALIASES = {
    "subject_id": "subject", "ulcer_id": "ulcer", "file": "path", "photo_date": "date",
    "is_cardinal": "cardinal",
}  # fmt: skip
# the optional ``cardinal`` column: a mark on any row of an ulcer designates it; blank reads "no"
_CARDINAL_YES = frozenset({"1", "true", "yes", "y", "x", "cardinal"})
_CARDINAL_NO = frozenset({"", "0", "false", "no", "n"})


def _cardinal_mark(value: str, where: str) -> bool:
    """The manifest's ``cardinal`` cell as yes/no; anything else is an error: the designation
    decides which ulcer the trial's primary endpoint is about, so it is never guessed."""
    text = value.strip().lower()
    if text in _CARDINAL_YES:
        return True
    if text in _CARDINAL_NO:
        return False
    raise InputError(
        f"{where}: cardinal {value!r} is neither yes (1, true, yes, y, x) nor no (blank, 0, false, no, n)"
    )


def _read_manifest_text(manifest: Path) -> str:
    try:
        data = manifest.read_bytes()
    except OSError as err:
        raise InputError(f"{manifest}: cannot read manifest ({err.strerror or err})") from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{manifest}: not a UTF-8 text file (byte {err.start}); save the manifest as UTF-8 CSV"
        ) from err


def _iso_date(value: str, where: str) -> str | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as err:
        raise InputError(f"{where}: date {value!r} is not an ISO date (YYYY-MM-DD)") from err


def discover_manifest(
    manifest: Path,
    config: DiscoveryConfig | None = None,
    allow_outside_root: bool = False,
    exclude: Path | None = None,
) -> Discovery:
    """Read a manifest CSV with columns ``subject, ulcer, visit, path[, date][, cardinal]``.

    Header names are read in any case with surrounding spaces ignored, and the tables' own names
    stand for them (``subject_id``, ``ulcer_id``, ``file``, ``photo_date``, ``is_cardinal``). A ``cardinal``
    column designates each subject's cardinal ulcer: a yes on any row of an ulcer marks every
    photo of it (:attr:`PhotoRecord.cardinal`); a cell that is neither yes nor no, or yes on
    two ulcers of one subject, is an error.

    One-line errors (:class:`InputError`) for a manifest that cannot be trusted as a whole: not
    UTF-8, malformed CSV, missing columns, a row with more fields than the header, a path listed
    twice with different IDs or dates, a path outside the manifest's folder (unless
    ``allow_outside_root``; a symbolic link is judged by where it leads), a date that is not
    ISO. Rows that cannot be used one by one (empty ID, unknown visit, a folder, a file in ``exclude``,
    the output folder, which holds this tool's own images) are skipped with a reason; an exact
    repeat of a row is skipped too.
    """
    manifest = Path(manifest)
    config = config or DiscoveryConfig()
    visits = _Visits(config.visit_aliases)
    text = _read_manifest_text(manifest)
    if "\x00" in text:
        raise InputError(f"{manifest}: manifest contains NUL bytes (not a CSV text file)")
    # newline="": rows end at \n, \r or \r\n only, as in the CSV format; str.splitlines() also
    # broke rows at U+2028, U+0085 and \x0b-\x1e, even inside quoted cells
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as err:
        raise InputError(f"{manifest}: malformed CSV header ({err})") from err
    names = [_MANIFEST_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in fieldnames]
    missing = {"subject", "ulcer", "visit", "path"} - set(names)
    if missing:
        raise InputError(f"{manifest}: manifest lacks column(s) {', '.join(sorted(missing))}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{manifest}: column(s) {', '.join(repeated)} appear twice in the header")
    root = manifest.parent.resolve()
    exclude = exclude.resolve() if exclude is not None else None
    found = Discovery(root)
    seen: dict[Path, tuple[int, tuple[str, str, str], str | None]] = {}
    designated: dict[str, tuple[str, int]] = {}  # subject -> (cardinal ulcer, first line marking it)
    raw_rows: list[tuple[int, dict[str, str]]] = []
    try:
        for raw in reader:
            raw_rows.append((reader.line_num, raw))  # physical line (the row's last, when quoted)
    except csv.Error as err:
        raise InputError(f"{manifest}:{reader.line_num}: malformed CSV ({err})") from err
    for line_no, raw in raw_rows:
        where = f"{manifest}:{line_no}"
        if None in raw:
            raise InputError(f"{where}: row has more fields than the header ({len(fieldnames)} columns)")
        row = {_MANIFEST_ALIASES.get(k.strip().lower(), k.strip().lower()): (v or "").strip()
               for k, v in raw.items()}  # fmt: skip
        if not any(row.values()):
            continue  # blank line
        if "cardinal" in row and _cardinal_mark(row["cardinal"], where):
            # read on every row, also one skipped below: the designation is the trial's, not the photo's
            marked = (nfc(row["subject"]), nfc(row["ulcer"]))
            if not all(marked):
                raise InputError(f"{where}: cardinal is marked on a row without subject or ulcer")
            earlier = designated.setdefault(marked[0], (marked[1], line_no))
            if earlier[0] != marked[1]:
                raise InputError(
                    f"{where}: subject {marked[0]} has two cardinal ulcers, {earlier[0]} (line "
                    f"{earlier[1]}) and {marked[1]} (one per subject)"
                )
        if not row["path"]:
            found.add_skip(_skip(manifest, SkipReason.MANIFEST_ROW, f"{where}: empty path"))
            continue
        given = Path(row["path"])
        path = Path(os.path.normpath(given if given.is_absolute() else manifest.parent.resolve() / given))
        if not allow_outside_root:
            # where a symbolic link leads counts (as discover_folder does not follow linked
            # folders): ``lnk.jpg -> /elsewhere/x.jpg`` is a photo from outside the root
            for where_to in (path, path.resolve()):
                if not where_to.is_relative_to(root):
                    how = "" if where_to == path else f" (a symbolic link to {where_to})"
                    raise InputError(
                        f"{where}: path {row['path']!r} is outside the manifest's folder {root}{how} "
                        "(refused; use --allow-outside-root)"
                    )
        if exclude is not None and path.resolve().is_relative_to(exclude):
            detail = f"{where}: {row['path']!r} is in the output folder (this tool's own images, not a photo)"
            found.add_skip(_skip(path, SkipReason.MANIFEST_ROW, detail))
            continue
        subject, ulcer = nfc(row["subject"]), nfc(row["ulcer"])
        photo_date = _iso_date(row.get("date", ""), where)
        resolved = visits.resolve(row["visit"])
        if resolved is None:
            found.add_skip(
                _skip(path, SkipReason.UNKNOWN_VISIT, f"{where}: bad visit label {row['visit']!r}")
            )
            continue
        if not subject or not ulcer:
            found.add_skip(_skip(path, SkipReason.MANIFEST_ROW, f"{where}: empty subject or ulcer"))
            continue
        invisible = invisible_character(subject + ulcer)
        if invisible is not None:  # "S0\u200b01" would be another subject that looks like S001
            detail = f"{where}: subject or ulcer holds an invisible or control character ({invisible})"
            found.add_skip(_skip(path, SkipReason.MANIFEST_ROW, detail))
            continue
        lookalike = lookalike_character(subject + ulcer)
        if lookalike is not None:  # "Ѕ001" (Cyrillic Ѕ) would be another subject that looks like S001
            detail = f"{where}: subject or ulcer holds a character that looks like another ({lookalike})"
            found.add_skip(_skip(path, SkipReason.MANIFEST_ROW, detail))
            continue
        if _special_file(path):
            found.add_skip(_skip(path, SkipReason.MANIFEST_ROW, f"{where}: {_SPECIAL_FILE}"))
            continue
        if path.is_dir():
            # "sub" or "." (the manifest's own folder) was a photo: measured, it failed as a file
            # that cannot be read, retried by every run as if the disk were at fault
            detail = f"{where}: {row['path']!r} is a folder, not a photo; name the photo's file"
            found.add_skip(_skip(path, SkipReason.MANIFEST_ROW, detail))
            continue
        ids = (subject, ulcer, resolved[0])
        if path in seen:
            first_line, first_ids, first_date = seen[path]
            if first_ids != ids:
                raise InputError(
                    f"{where}: {row['path']!r} is also listed at line {first_line} as "
                    f"{'/'.join(first_ids)}, here as {'/'.join(ids)} (conflict: one photo, one visit)"
                )
            if first_date != photo_date:  # a repeat, not a conflict, only when nothing differs
                raise InputError(
                    f"{where}: {row['path']!r} is also listed at line {first_line} with date "
                    f"{first_date or '(none)'}, here with {photo_date or '(none)'} "
                    "(conflict: one photo, one date)"
                )
            found.add_skip(_skip(path, SkipReason.DUPLICATE_ROW, f"{where}: repeats line {first_line}"))
            continue
        seen[path] = (line_no, ids, photo_date)
        found.photos.append(
            PhotoRecord(
                path=path,
                subject_id=subject,
                ulcer_id=ulcer,
                visit=resolved[0],
                study_day=resolved[1],
                sha256=_hash_file(path),
                photo_date=photo_date,
            )
        )
    if designated:
        found.photos = [
            replace(p, cardinal=designated.get(p.subject_id, ("", 0))[0] == p.ulcer_id) for p in found.photos
        ]
        for subject, (ulcer, line_no) in sorted(designated.items()):
            if not any(p.subject_id == subject and p.ulcer_id == ulcer for p in found.photos):
                log.warning(
                    "%s:%d: cardinal ulcer %s of subject %s has no photo here: its rows were skipped",
                    manifest, line_no, ulcer, subject,
                )  # fmt: skip
    return found


def no_photos_error(source: Path, found: Discovery, config: DiscoveryConfig) -> NoPhotosError:
    """The error of a source without any photo: the layout expected and why files were ignored
    (all of them in ``NoPhotosError.skipped``)."""
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
    return NoPhotosError(msg, [(Path(p), r) for p, r in found.problems])


def discover(
    source: Path, config: DiscoveryConfig, exclude: Path | None = None, allow_outside_root: bool = False
) -> Discovery:
    """Discover photos from a folder, or from a manifest when ``source`` is a ``.csv`` file.

    ``exclude``: a folder under ``source`` that is not read (the output folder).
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return discover_manifest(source, config, allow_outside_root, exclude)
    return discover_folder(source, config, exclude)

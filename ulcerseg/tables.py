"""The one CSV writer (and JSON records, and the atomic-file helpers every output writer uses):
atomic files, and text cells escaped against spreadsheet formula injection.

Every CSV the package writes goes through :func:`write_csv` (rows of dicts) or
:func:`write_frame_csv` (pandas tables). A file is written to a temporary file in the same
folder and moved over the target with :func:`os.replace`, so a reader (or a crash) never sees a
half-written table. A TEXT cell that a spreadsheet would run as a formula (it begins with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return; OWASP "CSV injection") gets a leading single
quote; numbers are never touched (-1.5 stays the number -1.5, and so does the text "-1.5").
"""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ulcerseg.errors import InputError, OutputError

if TYPE_CHECKING:
    import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _is_number_text(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def escape_cell(value: Any) -> Any:
    """``value`` ready for a CSV cell: None -> "", formula-like text -> "'" + text, others unchanged."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _is_number_text(value):
        return "'" + value
    return value


_SQLITE_HEADER = b"SQLite format 3\x00"


def refuse_database(path: Path) -> None:
    """:class:`~ulcerseg.errors.OutputError` where ``path`` is a SQLite database (``study.sqlite``:
    the measurements and the audit trail), which no output may replace; for a command to check
    an output file before it writes anything else."""
    if path.is_file():
        with path.open("rb") as existing:
            if existing.read(16) == _SQLITE_HEADER:  # e.g. `-o OUT/study.sqlite` by mistake
                raise OutputError(f"{path}: is a study database; choose another output file")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A new temporary file next to ``path`` (empty, following the umask) for a writer that
    takes a file name (matplotlib, Pillow), moved over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was; an OS error
    that names no file (a full disk while writing: "No space left on device") or the temporary
    file (``os.replace`` onto a folder) is raised again naming ``path``. A database
    (``study.sqlite``: the measurements and the audit trail) is never replaced:
    :class:`~ulcerseg.errors.OutputError`.
    """
    path = Path(path)
    refuse_database(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its 0600 mode would make every table unreadable to the study's
    # other users (a statistician on the shared drive); this one follows the umask as a plain
    # open() does
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"  # see temporary_pid
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        # no file named, or the temporary one (os.replace onto a folder names its source): the
        # error names ``path``, the file the user knows
        if isinstance(err, OSError) and err.errno is not None and err.filename in (None, str(tmp), tmp):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise


def temporary_pid(path: Path) -> int | None:
    """The PID of the process writing the temporary file ``path`` of :func:`atomic_path`
    (``.NAME.PID.TOKEN.tmp``), None for any other name."""
    parts = path.name.split(".")
    if len(parts) < 5 or parts[-1] != "tmp" or not parts[-3].isdigit():
        return None
    return int(parts[-3])


@contextmanager
def atomic_open(path: str | Path, encoding: str = "utf-8") -> Iterator[IO[str]]:
    """Text file handle on a temporary file next to ``path``, moved over ``path`` on success
    (as :func:`atomic_path`: nothing left behind on failure, OS errors name ``path``)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding=encoding) as fh:
        yield fh


def require_new_or_empty(folder: Path, error: Callable[[str], Exception] = InputError) -> None:
    """Refuse an output folder that holds anything (or is a file): what a command writes there
    would mix with what is there (a second synthetic set under the first's dataset.yaml, an
    import beside a study's own masks). ``error``: the exception type to raise (one line)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise error(f"{folder}: output folder is not empty (choose a new or empty folder)")


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented UTF-8 JSON, atomically (:func:`atomic_open`); values JSON does
    not know (paths, dates) as their text."""
    with atomic_open(path) as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, default=str)


def write_csv_rows(fh: IO[str], rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Header plus one line per row (keys not in ``columns`` ignored, missing ones empty) to ``fh``."""
    writer = csv.writer(fh)
    writer.writerow([escape_cell(c) for c in columns])
    for row in rows:
        writer.writerow([escape_cell(row.get(c)) for c in columns])


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` with ``columns`` to ``path`` atomically (UTF-8, None as empty); returns ``path``."""
    with atomic_open(path) as fh:
        write_csv_rows(fh, rows, columns)
    return Path(path)


def write_frame_csv(
    path: str | Path, frame: pd.DataFrame, index: bool = False, float_format: str | None = None
) -> Path:
    """Write a pandas table to ``path`` atomically, text cells escaped as in :func:`escape_cell`."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    def is_text(dtype: Any) -> bool:
        return is_string_dtype(dtype) or is_object_dtype(dtype)

    df = frame.copy()
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        if is_text(col.dtype):  # text, object and mixed columns; numbers and dates stay
            df.isetitem(i, col.astype(object).map(lambda v: v if v is None else escape_cell(v)))
    df.columns = [escape_cell(c) if isinstance(c, str) else c for c in df.columns]
    if index and is_text(df.index.dtype):
        df.index = df.index.astype(object).map(lambda v: v if v is None else escape_cell(v))
    with atomic_open(path) as fh:
        df.to_csv(fh, index=index, float_format=float_format)
    return Path(path)

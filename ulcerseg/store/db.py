"""Connections to ``study.sqlite``: pragmas, schema version check and migrations on open."""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ulcerseg.errors import InputError, StudyVersionError
from ulcerseg.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "DB_NAME",
    "StudyVersionError",
    "connect",
    "connect_for_reading",
    "ensure_schema",
    "read_snapshot",
    "schema_version",
]

log = logging.getLogger(__name__)

DB_NAME = "study.sqlite"


def schema_version(conn: sqlite3.Connection) -> int:
    """The study's ``PRAGMA user_version`` (0: unversioned or new)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_not_newer(conn: sqlite3.Connection, where: str) -> int:
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise StudyVersionError(
            f"{where}: schema version {version} is newer than this ulcerseg supports "
            f"({SCHEMA_VERSION}); use a newer ulcerseg"
        )
    return version


def ensure_schema(conn: sqlite3.Connection, where: str = DB_NAME) -> None:
    """Bring the study to :data:`SCHEMA_VERSION` (one transaction); refuse a newer study.

    Also turns on ``recursive_triggers`` for ``conn`` so that the append-only triggers see the
    implicit delete of ``INSERT OR REPLACE``. Cheap when the study is current.
    """
    conn.execute("PRAGMA recursive_triggers=ON")
    if _check_not_newer(conn, where) == SCHEMA_VERSION:
        return
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")  # DDL below runs inside this transaction
    try:
        version = _check_not_newer(conn, where)  # another process may have migrated meanwhile
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
            log.info("%s: schema migrated from version %d to %d", where, step, step + 1)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def require_study_db(out_dir: str | Path) -> Path:
    """``out_dir/study.sqlite`` of a study that commands other than ``measure`` may read.

    InputError when it is missing, or empty: a 0-byte file is a damaged copy, and opening it
    would create an empty study in it (``review verify`` then said "0 decisions, chain intact").
    """
    path = Path(out_dir) / DB_NAME
    if not path.is_file():
        raise InputError(f"{out_dir}: no {DB_NAME} (run `ulcerseg measure` first)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes): not a study, or a damaged copy of one")
    return path


def connect(path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open (creating if needed) a study database file with the store's pragmas, migrated.

    WAL journal (readers never block the writer), ``synchronous=FULL`` (a committed row
    survives power loss), rows as :class:`sqlite3.Row`. ``read_only``: opened for reading only
    (:func:`connect_for_reading`), never created or migrated.
    """
    path = Path(path)
    if read_only:
        return _connect_read_only(path)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, timeout=30)
        conn.row_factory = sqlite3.Row
        _refuse_another_database(conn, path)  # before a pragma or a migration writes to it
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        ensure_schema(conn, str(path))
    except BaseException as err:
        if conn is not None:
            conn.close()
        if isinstance(err, sqlite3.OperationalError) and _is_access_error(err):
            raise _cannot_open(path, err) from None
        if isinstance(err, sqlite3.DatabaseError) and _is_not_a_study(err):
            raise _not_a_study(path, err) from None
        raise
    return conn


def connect_for_reading(path: str | Path) -> sqlite3.Connection:
    """Open an existing study for a command that only reads it: read-write where it can (so an
    older study is migrated as by every command), else read-only (:func:`connect` with
    ``read_only``): a study archived on read-only media, or a folder without write permission,
    is read where it lies."""
    path = Path(path)
    try:
        return connect(path)
    except OSError as err:
        if not path.is_file():
            raise
        log.info("%s: %s; reading it read-only", path, err.strerror)
        return connect(path, read_only=True)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing study (``mode=ro``; every write raises
    ``SQLITE_READONLY``).

    Where SQLite cannot open the write-ahead log's shared memory (a read-only folder that holds
    no ``-shm`` file) it opens the file as ``immutable``, which ignores the log: only when no
    log with content lies beside it, since rows committed to the log and not yet merged into the
    file would be missing without a word.
    """
    uri = path.resolve().as_uri()
    conn: sqlite3.Connection | None = None
    try:
        try:
            conn = _open_uri(f"{uri}?mode=ro")
        except sqlite3.OperationalError as err:
            if not _is_access_error(err):
                raise
            wal = path.with_name(path.name + "-wal")
            if wal.is_file() and wal.stat().st_size > 0:
                raise OSError(
                    errno.EACCES,
                    f"cannot open the study database even read-only ({err}): its write-ahead log "
                    f"{wal.name} holds rows not merged into it yet. Copy the study to a writable folder",
                    str(path),
                ) from None
            conn = _open_uri(f"{uri}?immutable=1")
        _refuse_another_database(conn, path)
        version = _check_not_newer(conn, str(path))
        if version != SCHEMA_VERSION:
            raise StudyVersionError(
                f"{path}: schema version {version} is older than this ulcerseg's ({SCHEMA_VERSION}) and "
                "the study cannot be written here to migrate it: copy the study to a writable folder"
            )
    except BaseException as err:
        if conn is not None:
            conn.close()
        if isinstance(err, sqlite3.DatabaseError) and _is_not_a_study(err):
            raise _not_a_study(path, err) from None
        raise
    return conn


def _open_uri(uri: str) -> sqlite3.Connection:
    """A connection to ``uri`` that has read the schema (so that an unusable file fails here)."""
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA recursive_triggers=ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def _refuse_another_database(conn: sqlite3.Connection, path: Path) -> None:
    """InputError when ``path`` is an SQLite database of another application: it has tables,
    and no ``runs`` table, which every study has had since its first schema. Before, such a
    file was switched to WAL and migrated into a study: the study's tables written into another
    program's database."""
    tables = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    if tables and "runs" not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise InputError(f"{path}: not a study database (an SQLite database of other tables: {shown})")


def _is_access_error(err: sqlite3.Error) -> bool:
    """SQLite could not open or write the file: the environment's fault, not the study's."""
    return (getattr(err, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY)


def _is_not_a_study(err: sqlite3.DatabaseError) -> bool:
    """The file is no SQLite database (random bytes, another format) or a damaged one."""
    return (getattr(err, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


def _not_a_study(path: Path, err: sqlite3.DatabaseError) -> InputError:
    """An InputError naming the file (exit 2: the input's fault): before, the CLI read "study
    database unusable (file is not a database); is it a study folder's study.sqlite?", naming
    no file, although the empty file's error names it (:func:`require_study_db`)."""
    damaged = (getattr(err, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_CORRUPT
    what = "a damaged study database" if damaged else "not a study database"
    return InputError(f"{path}: {what} ({err})")


def _cannot_open(path: Path, err: sqlite3.OperationalError) -> OSError:
    """An OSError naming the study database (exit 1: the environment's fault) that SQLite could
    not open or write."""
    # every command opens the study read-write (WAL): a study on read-only media, or in a folder
    # that is gone, cannot be opened; before, this read "study database unusable ... is it a
    # study folder's study.sqlite?", naming no file
    return OSError(
        errno.EACCES,
        f"cannot open the study database read-write ({err}): a read-only or missing folder? "
        "Copy the study to a writable folder",
        str(path),
    )


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Every read inside sees one state of the study (a read transaction: under WAL, the first
    SELECT fixes the snapshot), whatever other processes commit meanwhile.

    For a result composed of several SELECTs: read one by one, a commit of ``measure`` or of
    the review server between two of them gives a state that never existed (a photo in
    neither of two queries, a counter ahead of the rows). Inside a transaction of the caller
    it adds nothing (that transaction already is one snapshot). Read only: rolled back.
    """
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")  # deferred: takes no lock, the first read takes the snapshot
    try:
        yield
    finally:
        conn.rollback()

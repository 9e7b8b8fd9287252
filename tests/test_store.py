"""The study store: one schema, versioned, migrated on open; decisions stay append-only."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ulcerseg.healing import HEALING_COLUMNS
from ulcerseg.store import SCHEMA_VERSION, Study, StudyVersionError, connect
from ulcerseg.store.schema import HEALING_TABLE_COLUMNS, STATEMENTS

PACKAGE = Path(__file__).resolve().parents[1] / "ulcerseg"


def _v0_study(out: Path, healing_columns: str | None = None) -> None:
    """A study as written before schema versioning (user_version 0, no REPLACE trigger)."""
    out.mkdir(parents=True)
    conn = sqlite3.connect(out / "study.sqlite")
    for statement in STATEMENTS:
        if "review_decisions_no_replace" in statement:
            continue
        if healing_columns and statement.startswith("CREATE TABLE IF NOT EXISTS healing"):
            statement = f"CREATE TABLE healing ({healing_columns})"
        conn.execute(statement)
    conn.execute(
        "INSERT INTO review_decisions (decision_id, photo_sha256, assessor, decided_at, action)"
        " VALUES ('d1', 'a' || hex(randomblob(31)), 'Dr A', '2024-01-01', 'accept')"
    )
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


def _triggers(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}


def test_unversioned_study_is_migrated_on_open(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _v0_study(out)
    with Study.open(out) as study:
        conn = study.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        assert "review_decisions_no_replace" in _triggers(conn)
        assert [r["decision_id"] for r in conn.execute("SELECT decision_id FROM review_decisions")] == ["d1"]
    # a second open finds it current and changes nothing
    conn = connect(out / "study.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM review_decisions").fetchone()[0] == 1
    conn.close()


def test_migration_replaces_a_healing_table_of_an_older_layout(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _v0_study(out, healing_columns="heal_run TEXT, subject_id TEXT, old_column REAL")
    with Study.open(out) as study:
        cols = [r[1] for r in study.conn.execute("PRAGMA table_info(healing)")]
    assert cols == [name for name, _ in HEALING_TABLE_COLUMNS]


def test_newer_study_is_refused_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    conn = sqlite3.connect(out / "study.sqlite")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    newer = "schema version 999 is newer than this ulcerseg supports"
    with pytest.raises(StudyVersionError, match=newer), Study.open(out):
        pass
    proc = subprocess.run(
        [sys.executable, "-c", "from ulcerseg.cli import run; run()", "heal", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "schema version 999" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("store_connection", [True, False], ids=["store", "plain-sqlite3"])
def test_decisions_refuse_insert_or_replace(tmp_path: Path, store_connection: bool) -> None:
    out = tmp_path / "out"
    with Study.open(out) as study:
        study.conn.execute(
            "INSERT INTO review_decisions (decision_id, photo_sha256, assessor, decided_at, action)"
            " VALUES ('d1', 'sha', 'Dr A', '2024-01-01', 'accept')"
        )
        study.conn.commit()
    conn = connect(out / "study.sqlite") if store_connection else sqlite3.connect(out / "study.sqlite")
    if store_connection:
        assert conn.execute("PRAGMA recursive_triggers").fetchone()[0] == 1
    for sql in (
        "INSERT OR REPLACE INTO review_decisions (seq, decision_id, photo_sha256, assessor, decided_at,"
        " action) VALUES (1, 'd2', 'sha', 'Mallory', '2024-01-02', 'not_assessable')",
        "INSERT OR REPLACE INTO review_decisions (decision_id, photo_sha256, assessor, decided_at, action)"
        " VALUES ('d1', 'sha', 'Mallory', '2024-01-02', 'not_assessable')",
        "REPLACE INTO review_decisions (decision_id, photo_sha256, assessor, decided_at, action)"
        " VALUES ('d1', 'sha', 'Mallory', '2024-01-02', 'not_assessable')",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"), conn:
            conn.execute(sql)
    rows = conn.execute("SELECT seq, decision_id, assessor FROM review_decisions").fetchall()
    assert [tuple(r) for r in rows] == [(1, "d1", "Dr A")]
    conn.close()


def test_delete_trigger_fires_on_replace_with_recursive_triggers(tmp_path: Path) -> None:
    """The BEFORE DELETE trigger alone refuses REPLACE once recursive_triggers is on."""
    out = tmp_path / "out"
    with Study.open(out) as study:
        study.conn.execute(
            "INSERT INTO review_decisions (decision_id, photo_sha256, assessor, decided_at, action)"
            " VALUES ('d1', 'sha', 'Dr A', '2024-01-01', 'accept')"
        )
        study.conn.execute("DROP TRIGGER review_decisions_no_replace")
        study.conn.commit()
        with pytest.raises(sqlite3.DatabaseError, match="append-only"), study.conn:
            study.conn.execute(
                "INSERT OR REPLACE INTO review_decisions (decision_id, photo_sha256, assessor,"
                " decided_at, action) VALUES ('d1', 'sha', 'Mallory', '2024-01-02', 'accept')"
            )


def test_healing_table_matches_the_healing_records() -> None:
    assert tuple(name for name, _ in HEALING_TABLE_COLUMNS) == HEALING_COLUMNS


def test_only_the_store_defines_tables() -> None:
    ddl = re.compile(r"\b(CREATE|DROP|ALTER)\s+(TABLE|VIEW|TRIGGER|INDEX|UNIQUE INDEX)\b", re.IGNORECASE)
    owners = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if ddl.search(path.read_text(encoding="utf-8"))
    }
    assert owners == {"store/schema.py"}


def test_v1_study_migrates_to_photos_keyed_by_path_and_bytes(tmp_path: Path) -> None:
    """Version 1 keyed photos by bytes; a path re-measured with new bytes keeps only the newest."""
    out = tmp_path / "out"
    out.mkdir()
    conn = sqlite3.connect(out / "study.sqlite")
    for statement in STATEMENTS:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO runs (run_id, started_at, package_version, model_sha256, config_sha256, config_json,"
        " input_root) VALUES ('r', 't', 'v', 'm', 'c', '{}', '/')"
    )
    for sha, area in (("a" * 64, 5.0), ("b" * 64, 4.0)):  # the same path, old then new bytes
        conn.execute(
            "INSERT INTO photos (photo_sha256, file, subject_id, ulcer_id, visit) VALUES (?, 'S1/D0/U1.jpg',"
            " 'S1', 'U1', 'D0')",
            (sha,),
        )
        conn.execute(
            "INSERT INTO measurements (run_id, photo_sha256, file, status, needs_review, flags, area_mm2,"
            " package_version, model_sha256, config_sha256, measured_at)"
            " VALUES ('r', ?, 'S1/D0/U1.jpg', 'measured', 0, '', ?, 'v', 'm', 'c', 't')",
            (sha, area),
        )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Study.open(out) as study:
        latest = study.latest_measurements()
        assert [(r["photo_sha256"][0], r["area_mm2"]) for r in latest] == [("b", 4.0)]
        assert [(r["photo_sha256"][0], r["superseded_reason"]) for r in study.superseded()] == [
            ("a", "replaced")
        ]
        assert not study.unresolved()


def test_quality_signals_are_stored_with_the_measurement(tmp_path: Path) -> None:
    from conftest import RednessBackend, make_photo, write_jpeg

    from ulcerseg.config import PipelineConfig
    from ulcerseg.pipeline import measure_study

    write_jpeg(tmp_path / "in" / "S1" / "D0" / "U1.jpg", make_photo(px_per_mm=14, size=(900, 700)).rgb)
    collected = []
    measure_study(tmp_path / "in", tmp_path / "out", PipelineConfig(), backend=RednessBackend(),
                  on_result=collected.append)  # fmt: skip
    with Study.open(tmp_path / "out") as study:
        (mid,) = study.conn.execute("SELECT measurement_id FROM measurements").fetchone()
        stored = study.quality_signals(mid)
        assert study.quality_signals(mid + 1) == {}
    expected = collected[0].signals.as_dict()
    assert set(stored) == set(expected) >= {"tta_disagreement", "boundary_margin", "sharpness"}
    assert all(stored[k] == pytest.approx(v) for k, v in expected.items())


def _decision(conn: sqlite3.Connection, decision_id: str, assessor: str = "Dr A") -> int:
    from ulcerseg.store.review import insert_decision

    row = {"decision_id": decision_id, "photo_sha256": "a" * 64, "assessor": assessor,
           "decided_at": "2026-01-01T00:00:00", "action": "accept"}  # fmt: skip
    return insert_decision(conn, row)


def test_verify_chain_reads_one_snapshot_while_decisions_are_saved(tmp_path: Path, monkeypatch) -> None:
    """`review verify` while the review server saves a decision: before, the rows and SQLite's
    counter were read one by one, so a decision saved in between was reported as a row
    deleted after the last one (a false tampering alarm, exit 1)."""
    import ulcerseg.store.review as review

    conn = connect(tmp_path / "study.sqlite")
    review.add_reader(conn, "Dr A")
    _decision(conn, "d1")
    server = connect(tmp_path / "study.sqlite")  # the review server's connection
    deleted_rows = review._deleted_rows

    def saved_meanwhile(c: sqlite3.Connection, seqs: list[int]) -> list[str]:
        _decision(server, f"d{len(seqs) + 1}")  # commits between the two reads
        return deleted_rows(c, seqs)

    monkeypatch.setattr(review, "_deleted_rows", saved_meanwhile)
    check = review.verify_chain(conn)
    assert check.ok, check.problems
    assert check.n_rows == 1
    monkeypatch.undo()
    check = review.verify_chain(conn)
    assert check.ok and check.n_rows == 2
    # the caller's own transaction is left as it was
    conn.execute("BEGIN")
    assert review.verify_chain(conn).ok and conn.in_transaction
    conn.rollback()


class _CommitsBetweenReads:
    """A connection that runs ``between`` (another process's commit) before its second SELECT."""

    def __init__(self, conn: sqlite3.Connection, between) -> None:  # type: ignore[no-untyped-def]
        self._conn, self._between, self._selects = conn, between, 0

    def execute(self, sql: str, *args):  # type: ignore[no-untyped-def]
        if sql.lstrip().upper().startswith("SELECT"):
            self._selects += 1
            if self._selects == 2:
                self._between()
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._conn, name)


def test_latest_measurements_keeps_a_photo_whose_row_is_stored_meanwhile(tmp_path: Path) -> None:
    """`heal`, the review server or an export while `measure` stores rows: the measured rows and
    the found-but-unmeasured photos were two reads, so a photo whose first row was committed
    between them was in neither and went missing from the table (5 in 9000 reads beside a run
    of the sample photos)."""
    from ulcerseg.records import PhotoRecord, PhotoResult

    photos = [PhotoRecord(tmp_path / f"U{i}.jpg", "S1", f"U{i}", "D0", 0, f"{i}" * 64) for i in (1, 2)]
    files = [(p.path.name, p) for p in photos]
    with Study.open(tmp_path) as study:
        study.reconcile(files)
        run = study.start_run("0", "m", "c", {}, tmp_path)
    measuring = Study(tmp_path, connect(tmp_path / "study.sqlite"))  # the `measure` run
    reading = connect(tmp_path / "study.sqlite")

    def store_first_row() -> None:
        measuring.add_result(run, PhotoResult(photo=photos[0], status="failed"), files[0][0])

    rows = Study(tmp_path, _CommitsBetweenReads(reading, store_first_row)).latest_measurements()  # type: ignore[arg-type]
    assert sorted(r["file"] for r in rows) == ["U1.jpg", "U2.jpg"]
    assert all(r["status"] == "unmeasured" for r in rows)  # the state before the commit
    rows = Study(tmp_path, reading).latest_measurements()
    assert sorted((r["file"], r["status"]) for r in rows) == [("U1.jpg", "failed"), ("U2.jpg", "unmeasured")]


def test_an_unmeasured_photo_replaced_by_new_bytes_is_listed_once_under_its_new_bytes(tmp_path: Path) -> None:
    """A run found S1/D0/U1.jpg and stopped before measuring it; the file was then replaced.
    The old bytes are superseded: the tables list the path once, as the new bytes (unmeasured),
    never the old bytes as a second photo of the visit."""
    from ulcerseg.records import PhotoRecord

    path = tmp_path / "in" / "S1" / "D0" / "U1.jpg"
    old, new = "a" * 64, "b" * 64
    with Study.open(tmp_path / "out") as study:
        study.reconcile([("S1/D0/U1.jpg", PhotoRecord(path, "S1", "U1", "D0", 0, old))])
        replaced = study.reconcile([("S1/D0/U1.jpg", PhotoRecord(path, "S1", "U1", "D0", 0, new))])
        assert replaced.replaced == ("S1/D0/U1.jpg",)
        rows = study.latest_measurements()
    assert [(r["file"], r["photo_sha256"], r["status"]) for r in rows] == [
        ("S1/D0/U1.jpg", new, "unmeasured")
    ]


def test_a_study_database_that_cannot_be_opened_is_an_os_error_naming_it(tmp_path: Path) -> None:
    """Before: SQLite's "unable to open database file" reached the user as "study database
    unusable ... is it a study folder's study.sqlite?" (exit 2), naming no file, for a valid
    study on read-only media. Now an OSError with the path: one line, exit 1 (environment)."""
    path = tmp_path / "gone" / "study.sqlite"
    with pytest.raises(OSError, match="cannot open the study database read-write") as info:
        connect(path)
    assert info.value.filename == str(path)


def test_a_zero_byte_study_database_is_refused_by_the_commands_that_read_a_study(tmp_path: Path) -> None:
    """Before: opening a 0-byte study.sqlite (a damaged copy) created an empty study in it, and
    ``review verify`` printed "OK: 0 decisions, chain intact"."""
    from click.testing import CliRunner

    from ulcerseg.cli import main
    from ulcerseg.errors import InputError

    (tmp_path / "study.sqlite").write_bytes(b"")
    for args in (["review", "verify", str(tmp_path)], ["heal", str(tmp_path)]):
        res = CliRunner().invoke(main, args)  # run() turns an InputError into one line, exit 2
        assert isinstance(res.exception, InputError), (args, res.output)
        assert "study.sqlite: empty file (0 bytes)" in str(res.exception)
    assert (tmp_path / "study.sqlite").stat().st_size == 0  # left as it was


def test_a_study_database_that_is_not_one_is_an_input_error_naming_it(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Before: a study.sqlite of random bytes read "error: study database unusable (file is not a
    database); is it a study folder's study.sqlite?" in heal and review verify, naming no file
    (the empty file's error names it). Now one line naming the file, exit 2 as before."""
    import random

    from ulcerseg.cli import run
    from ulcerseg.errors import InputError

    path = tmp_path / "study.sqlite"
    path.write_bytes(random.Random(0).randbytes(8192))
    for read_only in (False, True):
        with pytest.raises(InputError) as info:
            connect(path, read_only=read_only)
        assert str(info.value) == f"{path}: not a study database (file is not a database)"
    for args in (["heal", str(tmp_path)], ["review", "verify", str(tmp_path)]):
        monkeypatch.setattr(sys, "argv", ["ulcerseg", *args])
        with pytest.raises(SystemExit) as exc:
            run()
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err == f"error: {path}: not a study database (file is not a database)\n", args
    # an SQLite file whose pages are damaged says so, naming it
    _v0_study(tmp_path / "damaged")
    damaged = tmp_path / "damaged" / "study.sqlite"
    data = bytearray(damaged.read_bytes())
    data[100:] = bytes(len(data) - 100)  # the header kept, the schema page zeroed
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"damaged.study\.sqlite: a damaged study database \("):
        connect(damaged)


def _as_on_read_only_media(monkeypatch, *, uri_too: bool = False) -> None:
    """SQLite's answer where a study cannot be written (read-only media, no write permission):
    a read-write open fails with SQLITE_CANTOPEN (the WAL's shared memory cannot be created);
    with ``uri_too`` a ``mode=ro`` open fails too (no ``-shm`` file in a read-only folder), and
    only ``immutable=1`` opens. Simulated: the tests run as root, whom permissions do not stop."""
    import ulcerseg.store.db as db

    real = sqlite3.connect

    def connect(database, *args, uri=False, **kwargs):  # type: ignore[no-untyped-def]
        if not uri or (uri_too and "mode=ro" in str(database)):
            err = sqlite3.OperationalError("unable to open database file")
            err.sqlite_errorcode = sqlite3.SQLITE_CANTOPEN
            raise err
        return real(database, *args, uri=uri, **kwargs)

    monkeypatch.setattr(db.sqlite3, "connect", connect)


def _study_with_a_decision(out: Path) -> str:
    import ulcerseg.store.review as review

    out.mkdir()
    conn = connect(out / "study.sqlite")
    review.add_reader(conn, "Dr A")
    review.add_reader(conn, "Dr B")
    _decision(conn, "d1")
    conn.close()
    return hashlib.sha256((out / "study.sqlite").read_bytes()).hexdigest()


def test_a_study_on_read_only_media_is_read_by_the_commands_that_only_read(
    tmp_path: Path, monkeypatch
) -> None:
    """Before: every command opened the study read-write, so an archived study on read-only
    media could not even be verified ("copy the study to a writable folder")."""
    from click.testing import CliRunner

    from ulcerseg.cli import main

    out = tmp_path / "archive"
    before = _study_with_a_decision(out)
    _as_on_read_only_media(monkeypatch)
    res = CliRunner().invoke(main, ["review", "verify", str(out)])
    assert res.exit_code == 0 and "OK: 1 decisions, chain intact" in res.output, res.output
    res = CliRunner().invoke(main, ["review", "decisions", str(out)])
    assert res.exit_code == 0 and res.output.splitlines()[1].startswith("1,d1,"), res.output
    # a command that writes still says what it cannot do, naming the file
    res = CliRunner().invoke(main, ["review", "readers", "add", str(out), "Dr C"])
    assert isinstance(res.exception, OSError)
    assert "cannot open the study database read-write" in str(res.exception)
    assert res.exception.filename == str(out / "study.sqlite")
    assert hashlib.sha256((out / "study.sqlite").read_bytes()).hexdigest() == before


def test_a_command_that_must_write_a_read_only_study_says_so_in_one_line(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """The blinded package needs the study's pseudonym salt, created on the first export: on a
    study opened read-only that write fails, and the user reads why (before: "study database
    unusable ... is it a study folder's study.sqlite?", exit 2, as for a damaged file)."""
    from ulcerseg.cli import run

    out = tmp_path / "archive"
    _study_with_a_decision(out)
    _as_on_read_only_media(monkeypatch)
    args = ["ulcerseg", "review", "export-blinded", str(out), "-o", str(tmp_path / "pkg")]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exc:
        run()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "study database read-only here" in err and "copy the study" in err, err


def test_a_read_only_study_connection_refuses_writes(tmp_path: Path) -> None:
    from ulcerseg.store.review import get_or_create_salt

    out = tmp_path / "archive"
    _study_with_a_decision(out)
    conn = connect(out / "study.sqlite", read_only=True)
    try:
        assert conn.execute("SELECT count(*) FROM review_decisions").fetchone()[0] == 1
        with pytest.raises(sqlite3.OperationalError) as info:
            get_or_create_salt(conn)  # no salt yet: it would have to write one
        assert info.value.sqlite_errorcode & 0xFF == sqlite3.SQLITE_READONLY
    finally:
        conn.close()
    with connect(out / "study.sqlite") as rw:  # once created, the salt is read without a write
        salt = get_or_create_salt(rw)
    rw.close()
    ro = connect(out / "study.sqlite", read_only=True)
    assert get_or_create_salt(ro) == salt
    ro.close()


def test_a_read_only_folder_without_shared_memory_is_read_immutable_unless_its_log_holds_rows(
    tmp_path: Path, monkeypatch
) -> None:
    """``immutable=1`` ignores the write-ahead log: it is used only where no log with content
    lies beside the study, else rows committed to the log would be missing without a word."""
    from ulcerseg.store import connect_for_reading

    out = tmp_path / "archive"
    _study_with_a_decision(out)
    _as_on_read_only_media(monkeypatch, uri_too=True)
    conn = connect_for_reading(out / "study.sqlite")
    assert conn.execute("SELECT count(*) FROM review_decisions").fetchone()[0] == 1
    conn.close()
    monkeypatch.undo()
    writer = connect(out / "study.sqlite")  # a copy taken while a writer had rows in its log
    writer.execute("PRAGMA wal_autocheckpoint=0")
    _decision(writer, "d2", "Dr B")
    assert (out / "study.sqlite-wal").stat().st_size > 0
    _as_on_read_only_media(monkeypatch, uri_too=True)
    try:
        with pytest.raises(OSError, match=r"study.sqlite-wal holds rows not merged") as info:
            connect_for_reading(out / "study.sqlite")
        assert info.value.filename == str(out / "study.sqlite")
    finally:
        writer.close()


def test_an_older_study_that_cannot_be_written_is_refused_naming_the_way_out(
    tmp_path: Path, monkeypatch
) -> None:
    from ulcerseg.store import connect_for_reading

    out = tmp_path / "old"
    _v0_study(out)
    _as_on_read_only_media(monkeypatch)
    refused = r"older than this ulcerseg's .* copy the study to a writable folder"
    with pytest.raises(StudyVersionError, match=refused):
        connect_for_reading(out / "study.sqlite")


def test_another_applications_database_is_not_opened_as_a_study(tmp_path: Path, monkeypatch) -> None:
    """Before: an SQLite file of another program named study.sqlite was switched to WAL and had
    the study's tables written into it ("migrated"); `review verify` then said OK."""
    from click.testing import CliRunner

    from ulcerseg.cli import main
    from ulcerseg.errors import InputError
    from ulcerseg.store import connect_for_reading

    path = tmp_path / "study.sqlite"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE contacts (name TEXT)")
    other.commit()
    other.close()
    before = path.read_bytes()
    refused = r"study\.sqlite: not a study database \(an SQLite database of other tables: contacts\)"
    with pytest.raises(InputError, match=refused):
        connect(path)
    res = CliRunner().invoke(main, ["review", "verify", str(tmp_path)])
    assert isinstance(res.exception, InputError) and "not a study database" in str(res.exception)
    _as_on_read_only_media(monkeypatch)
    with pytest.raises(InputError, match=refused):
        connect_for_reading(path)
    assert path.read_bytes() == before and not (tmp_path / "study.sqlite-wal").exists()


def test_an_empty_write_ahead_log_beside_a_read_only_study_still_opens_it_immutable(
    tmp_path: Path, monkeypatch
) -> None:
    """Guards the WAL check's ``st_size > 0``: a log of 0 bytes holds no rows (a writer that
    closed cleanly may leave one), so the study is read immutable, not refused."""
    from ulcerseg.store import connect_for_reading

    out = tmp_path / "archive"
    _study_with_a_decision(out)
    (out / "study.sqlite-wal").write_bytes(b"")
    _as_on_read_only_media(monkeypatch, uri_too=True)
    conn = connect_for_reading(out / "study.sqlite")
    try:
        assert conn.execute("SELECT count(*) FROM review_decisions").fetchone()[0] == 1
    finally:
        conn.close()


def test_a_read_only_open_falls_back_to_immutable_only_on_an_access_error(
    tmp_path: Path, monkeypatch
) -> None:
    """Guards the ``_is_access_error`` test before ``immutable=1``: a ``mode=ro`` open that fails
    for another reason (a disk I/O error) is that error, never a silent immutable read that
    ignores the write-ahead log."""
    import ulcerseg.store.db as db

    out = tmp_path / "archive"
    _study_with_a_decision(out)
    real = sqlite3.connect
    tried: list[str] = []

    def connect_io_error(database, *args, uri=False, **kwargs):  # type: ignore[no-untyped-def]
        tried.append(str(database))
        if uri and "mode=ro" in str(database):
            err = sqlite3.OperationalError("disk I/O error")
            err.sqlite_errorcode = sqlite3.SQLITE_IOERR
            raise err
        return real(database, *args, uri=uri, **kwargs)

    monkeypatch.setattr(db.sqlite3, "connect", connect_io_error)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        connect(out / "study.sqlite", read_only=True)
    assert not any("immutable" in uri for uri in tried), tried

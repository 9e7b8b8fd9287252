"""Review server under attack: identity from the token only, CSRF, field validation, size caps,
stalled bodies, the audit trail's hash chain and CSV formula injection (issue 10)."""

from __future__ import annotations

import csv
import io
import json
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from test_review import VISITS, Client, cfg, make_study, serving

from ulcerseg.cli import main
from ulcerseg.review.decisions import list_decisions
from ulcerseg.review.server import ReviewApp, cookie_name


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Client, ReviewApp, dict]]:
    study = make_study(tmp_path)
    app = ReviewApp.load(study["out"], cfg())
    app.request_timeout_s = 1.0
    with serving(app) as base:
        yield Client(base, app.add_reader("Dr A"), app), app, study


def _raw(base: str, data: bytes, timeout: float = 10.0) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _alive(client: Client) -> None:
    status, body = client.json("/api/items")
    assert status == 200 and body["items"]


def test_no_or_revoked_token_is_401_json(served):
    client, _app, study = served
    for c in (Client(client.base, None), Client(client.base, "x" * 43)):
        status, raw, headers = c.request("/api/items")
        assert status == 401 and headers["Content-Type"] == "application/json"
        assert "token" in json.loads(raw)["error"]
    res = CliRunner().invoke(main, ["review", "readers", "revoke", str(study["out"]), "Dr A"])
    assert res.exit_code == 0, res.output
    assert client.request("/api/items")[0] == 401
    res = CliRunner().invoke(main, ["review", "readers", "list", str(study["out"])])
    assert "Dr A\treader" in res.output and "revoked" in res.output
    # only the hash is stored
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    stored = [r[0] for r in conn.execute("SELECT token_sha256 FROM review_readers")]
    assert client.token not in stored and len(stored[0]) == 64


def test_assessor_in_body_is_ignored(served):
    client, app, study = served
    mallory = client.reader("Mallory")
    status, body = mallory.json("/api/session", {"assessor": "Dr A"})
    assert status == 200 and body["assessor"] == "Mallory"
    key = app.items[0].key
    status, body = mallory.json("/api/decision", {"key": key, "action": "accept", "assessor": "Dr A"})
    assert status == 200 and body["assessor"] == "Mallory"
    # a session of another reader cannot be borrowed either
    _, s = client.json("/api/session", {})
    status, _ = mallory.json("/api/decision", {"key": key, "action": "accept", "session_id": s["session_id"]})
    assert status == 403
    rows = list_decisions(sqlite3.connect(study["out"] / "study.sqlite"))
    assert [r["assessor"] for r in rows] == ["Mallory"]


def test_cross_origin_and_wrong_content_type_are_refused(served):
    client, app, study = served
    key = app.items[0].key
    body = json.dumps({"key": key, "action": "accept"}).encode()
    port = int(client.base.rsplit(":", 1)[1])
    for origin, ctype, expected in (
        (f"http://127.0.0.1:{port + 1}", "application/json", 403),  # a page on another port
        ("http://evil.example", "application/json", 403),
        (None, "application/json", 403),  # neither Origin nor Referer
        (client.base, "text/plain", 415),  # a "simple" cross-site form post type
    ):
        head = f"POST /api/decision HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        head += f"Authorization: Bearer {client.token}\r\nContent-Type: {ctype}\r\n"
        head += f"Origin: {origin}\r\n" if origin else ""
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        reply = _raw(client.base, head.encode() + body)
        assert reply.startswith(f"HTTP/1.0 {expected}".encode()), (origin, reply[:80])
        assert b'"error"' in reply
    # a Referer of the server itself is accepted in place of Origin
    head = (
        f"POST /api/decision HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {client.token}\r\n"
    )
    head += f"Content-Type: application/json\r\nReferer: {client.base}/\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    assert _raw(client.base, head.encode() + body).startswith(b"HTTP/1.0 200")
    assert len(list_decisions(sqlite3.connect(study["out"] / "study.sqlite"))) == 1


def test_wrong_types_are_400_json_and_the_server_stays_up(served):
    client, app, study = served
    key = app.items[0].key
    bad_bodies = [
        {"key": key, "action": "not_assessable", "reason": 123},
        {"key": key, "action": "accept", "reason": "x" * 10_000},
        {"key": 12, "action": "accept"},
        {"key": key, "action": ["accept"]},
        {"key": key, "action": "accept", "confirm": "yes"},
        {"key": key, "action": "correct", "polygon": [["a", "b"], ["c", "d"], ["e", "f"]]},
        {"key": key, "action": "correct", "polygon": [[1, 1], [2, 2]]},
        {"key": key, "action": "correct", "polygon": [[1, 1], [2, 2], [1e9, 3]]},  # outside the frame
        {"key": key, "action": "correct", "polygon": [[1, 1], [2, 2], [True, 3]]},
        {"key": key, "action": "correct", "polygon": "1,1 2,2 3,3"},
        {"key": key, "action": "correct", "polygon": [[0, 0]] * 20_000},
        {"key": key, "action": "correct", "mask_png": 5},
        {"key": key, "action": "correct", "mask_png": "not base64!"},
        {"key": key, "action": "correct", "mask_png": "aGVsbG8="},  # base64, not a PNG
        {"key": key, "action": "accept", "session_id": {"x": 1}},
    ]
    for body in bad_bodies:
        status, raw, headers = client.request("/api/decision", body)
        assert status == 400, body
        assert headers["Content-Type"] == "application/json" and json.loads(raw)["error"]
        _alive(client)
    # NaN is not JSON but Python's parser takes it: still refused
    port = int(client.base.rsplit(":", 1)[1])
    for payload, head_extra, expected in (
        (
            b'{"key": "%s", "action": "correct", "polygon": [[NaN, 1], [2, 2], [3, 3]]}' % key.encode(),
            "",
            400,
        ),
        (b"[1, 2]", "", 400),
        (b"{not json", "", 400),
        (b"{}", "Content-Length: abc\r\n", 400),
    ):
        head = f"POST /api/decision HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        head += f"Authorization: Bearer {client.token}\r\n"
        head += f"Content-Type: application/json\r\nOrigin: {client.base}\r\n"
        head += head_extra or f"Content-Length: {len(payload)}\r\n"
        reply = _raw(client.base, (head + "Connection: close\r\n\r\n").encode() + payload)
        assert reply.startswith(f"HTTP/1.0 {expected}".encode()), reply[:100]
        assert b"Traceback" not in reply and b'"error"' in reply
        _alive(client)
    assert list_decisions(sqlite3.connect(study["out"] / "study.sqlite")) == []


def test_a_lone_surrogate_in_a_text_field_is_400_not_500(served):
    # before: the JSON escape "\ud800" became a str SQLite cannot store, and the decision,
    # undo or session lookup failed with a 500 "internal error" (UnicodeEncodeError)
    client, app, study = served
    key = app.items[0].key
    for path, body in (
        ("/api/decision", {"key": key, "action": "not_assessable", "reason": "x\ud800", "confirm": True}),
        ("/api/decision", {"key": key, "action": "accept", "session_id": "\udfff"}),
        ("/api/undo", {"decision_id": "\ud800"}),
    ):
        status, raw, _ = client.request(path, body)
        assert status == 400, (path, body, raw)
        assert "not valid text" in json.loads(raw)["error"]
    assert list_decisions(sqlite3.connect(study["out"] / "study.sqlite")) == []


def test_control_and_text_direction_characters_in_a_text_field_are_400(served):
    # before: NUL, line breaks and a right-to-left override were stored in the audit trail as
    # typed: its CSV looked binary to grep, and a reason could display otherwise than it reads
    client, app, study = served
    key = app.items[0].key
    for reason in ("x\x00y", "line\nbreak", "\u202eevil", "tab\there", "x\x85y"):
        body = {"key": key, "action": "not_assessable", "reason": reason, "confirm": True}
        status, raw, _ = client.request("/api/decision", body)
        assert status == 400 and "control or text-direction" in json.loads(raw)["error"], reason
    assert list_decisions(sqlite3.connect(study["out"] / "study.sqlite")) == []
    body = {"key": key, "action": "not_assessable", "reason": "nécrose, ulcère — 2 mm", "confirm": True}
    assert client.request("/api/decision", body)[0] == 200  # text, accents and dashes are text


def test_a_client_gone_before_its_error_reply_leaves_no_traceback(served, monkeypatch, capsys):
    # before: the error reply to a client that had hung up raised BrokenPipeError out of the
    # handler, and socketserver printed its traceback on the server's stderr
    import ulcerseg.review.server as server

    client, _app, _ = served

    def gone(self, *args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(server._Handler, "_error", gone)
    with pytest.raises((ConnectionError, OSError)):
        client.request("/api/item/" + "0" * 16)  # a 404 whose reply cannot be sent
    monkeypatch.undo()
    _alive(client)
    assert "Traceback" not in capsys.readouterr().err


def test_malformed_requests_get_json(served):
    client, _app, _ = served
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    ):
        reply = _raw(client.base, raw)
        assert b'"error"' in reply and b"<html" not in reply.lower() and b"Traceback" not in reply
        if reply.startswith(b"HTTP/"):  # (a one-word request line is answered HTTP/0.9 style: body only)
            assert reply.split()[1] in (b"400", b"414", b"505") and b"application/json" in reply
    _alive(client)


def _huge_png(side: int) -> bytes:
    """A valid 8-bit grayscale PNG of side x side px, compressed row by row (small in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_oversized_mask_is_413_and_memory_stays_small(tmp_path: Path):
    """A 12000 x 12000 px mask (a ~150 KB request) is refused from its header, never decoded."""
    import base64

    study = make_study(tmp_path)
    cfg_path = tmp_path / "h.yaml"
    cfg_path.write_text(yaml.safe_dump({"schedule": list(VISITS)}))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from ulcerseg.cli import run; run()", "review", "serve", str(study["out"]),
         "--port", "0", "--config", str(cfg_path), "--reader", "Dr A", "--all"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        base, token = line.split(" at ", 1)[1].strip().split("/?token=")
        client = Client(base, token)
        _, items = client.json("/api/items")
        key = items["items"][0]["key"]
        png = _huge_png(12_000)
        assert len(png) < 1_000_000
        before = _peak_rss_mb(proc.pid)
        body = {
            "key": key,
            "action": "correct",
            "mask_png": "data:image/png;base64," + base64.b64encode(png).decode(),
        }
        status, raw, _ = client.request("/api/decision", body)
        assert status == 413 and "larger than" in json.loads(raw)["error"]
        _alive(client)
        peak = _peak_rss_mb(proc.pid)
        assert peak < 300, (before, peak)
        assert peak - before < 50, (before, peak)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_body_over_the_cap_is_413(served):
    client, _app, _ = served
    port = int(client.base.rsplit(":", 1)[1])
    head = (
        f"POST /api/decision HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {client.token}\r\n"
    )
    head += f"Content-Type: application/json\r\nOrigin: {client.base}\r\nContent-Length: {10**9}\r\n\r\n"
    reply = _raw(client.base, head.encode())
    assert reply.startswith(b"HTTP/1.0 413")
    _alive(client)


def test_stalled_body_times_out(served):
    client, _app, _ = served  # app.request_timeout_s = 1
    port = int(client.base.rsplit(":", 1)[1])
    head = (
        f"POST /api/decision HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {client.token}\r\n"
    )
    head += f"Content-Type: application/json\r\nOrigin: {client.base}\r\nContent-Length: 100\r\n\r\n{{"
    t0 = time.monotonic()
    reply = _raw(client.base, head.encode(), timeout=8)
    assert time.monotonic() - t0 < 6
    assert reply.startswith(b"HTTP/1.0 408") and b'"error"' in reply
    # a connection that never sends its request line is closed too
    host, p = client.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(p)), timeout=8) as s:
        t0 = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - t0 < 6
    _alive(client)


def test_csv_cells_are_escaped(served, tmp_path: Path):
    client, app, study = served
    evil = client.reader('=HYPERLINK("http://x")')
    by_visit = {(it.subject_id, it.visit): it for it in app.items}
    it = by_visit[("SUBJ-1001", "W4")]
    status, _ = evil.json(
        "/api/decision", {"key": it.key, "action": "not_assessable", "reason": "=1+1", "confirm": True}
    )
    assert status == 200
    res = CliRunner().invoke(
        main, ["review", "export-final", str(study["out"]), "--allow-pending", "-o", str(tmp_path / "f.csv")]
    )
    assert res.exit_code == 0, res.output
    rows = {r["photo_sha256"]: r for r in csv.DictReader((tmp_path / "f.csv").open())}
    assert rows[it.photo_sha256]["review_reason"] == "'=1+1"
    assert rows[it.photo_sha256]["reviewer"] == '\'=HYPERLINK("http://x")'
    negative = [
        r["change_from_baseline_mm2"] for r in rows.values() if r["change_from_baseline_mm2"].startswith("-")
    ]
    assert negative and all(float(v) < 0 for v in negative)  # numbers are not escaped
    res = CliRunner().invoke(main, ["review", "decisions", str(study["out"])])
    [row] = list(csv.DictReader(io.StringIO(res.stdout)))
    assert row["assessor"].startswith("'=") and row["reason"] == "'=1+1"


def _decide(client: Client, key: str, action: str = "accept", **extra) -> None:
    status, body = client.json("/api/decision", {"key": key, "action": action, "confirm": True, **extra})
    assert status == 200, body


def test_verify_detects_an_edited_and_an_inserted_row(served):
    client, app, study = served
    for it in app.items[:3]:
        _decide(client, it.key)
    out = str(study["out"])
    res = CliRunner().invoke(main, ["review", "verify", out])
    assert res.exit_code == 0 and "OK: 3 decisions" in res.output
    db = study["out"] / "study.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER review_decisions_no_update")
    with conn:
        conn.execute("UPDATE review_decisions SET area_after_mm2 = 99.0 WHERE seq = 2")
    res = CliRunner().invoke(main, ["review", "verify", out])
    assert res.exit_code == 1 and "seq 2" in res.output
    with conn:  # put the value back: the chain is intact again, the dropped guard still shows
        conn.execute("UPDATE review_decisions SET area_after_mm2 = ? WHERE seq = 2", (app.items[1].area_mm2,))
    res = CliRunner().invoke(main, ["review", "verify", out])
    assert res.exit_code == 1 and "append-only trigger review_decisions_no_update missing" in res.output
    assert "seq 2" not in res.output
    with conn:
        conn.execute(
            "CREATE TRIGGER review_decisions_no_update BEFORE UPDATE ON review_decisions"
            " BEGIN SELECT RAISE(ABORT, 'review_decisions is append-only'); END"
        )
    assert CliRunner().invoke(main, ["review", "verify", out]).exit_code == 0
    # an inserted row, even one carrying the last row's hash
    last_hash = conn.execute("SELECT row_hash FROM review_decisions ORDER BY seq DESC LIMIT 1").fetchone()[0]
    with conn:
        conn.execute(
            "INSERT INTO review_decisions (decision_id, photo_sha256, assessor, decided_at, action, row_hash)"
            " VALUES ('forged', ?, 'Dr A', '2024-01-01', 'accept', ?)",
            (app.items[0].photo_sha256, last_hash),
        )
    res = CliRunner().invoke(main, ["review", "verify", out])
    assert res.exit_code == 1 and "seq 4" in res.output and "forged" in res.output


def test_verify_names_deleted_decisions_in_the_middle_and_at_the_end(served):
    client, app, study = served
    out = str(study["out"])
    for item in app.items[:4]:
        _decide(client, item.key)
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    conn.execute("DROP TRIGGER review_decisions_no_delete")
    with conn:
        conn.execute("DELETE FROM review_decisions WHERE seq = 4")  # the last decision
    conn.execute(
        "CREATE TRIGGER review_decisions_no_delete BEFORE DELETE ON review_decisions"
        " BEGIN SELECT RAISE(ABORT, 'review_decisions is append-only'); END"
    )
    conn.commit()
    res = CliRunner().invoke(main, ["review", "verify", out])  # was: OK, the chain up to seq 3 intact
    assert res.exit_code == 1 and "decision seq 4 missing (deleted after the last row)" in res.output
    conn.execute("DROP TRIGGER review_decisions_no_delete")
    with conn:
        conn.execute("DELETE FROM review_decisions WHERE seq = 2")
    res = CliRunner().invoke(main, ["review", "verify", out])
    assert res.exit_code == 1 and "decision seq 2 missing (deleted)" in res.output
    assert "append-only trigger review_decisions_no_delete missing (dropped)" in res.output


def test_lowering_the_schema_version_does_not_sign_edited_decisions_again(served):
    client, app, study = served
    out = str(study["out"])
    for item in app.items[:2]:
        _decide(client, item.key)
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    conn.execute("DROP TRIGGER review_decisions_no_update")
    with conn:
        forged = "UPDATE review_decisions SET action = 'confirm_healed', area_after_mm2 = 0 WHERE seq = 2"
        conn.execute(forged)
    conn.execute("PRAGMA user_version = 2")  # the 2 -> 3 migration used to re-sign every row
    conn.commit()
    conn.close()
    res = CliRunner().invoke(main, ["review", "verify", out])
    assert res.exit_code == 1 and "decision seq 2 (decision_id" in res.output


def test_migration_back_fills_the_chain(tmp_path: Path):
    """A version-2 study's decisions (no readers, no chain) get their hashes on open, in seq order."""
    from ulcerseg.store import connect
    from ulcerseg.store.schema import SCHEMA_VERSION

    study = make_study(tmp_path)
    db = study["out"] / "study.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE review_readers")
    conn.execute("DROP TRIGGER review_decisions_no_update")
    for i, sha in enumerate(p["sha"] for p in study["photos"].values()):
        conn.execute(
            "INSERT INTO review_decisions (decision_id, photo_sha256, assessor, decided_at, action)"
            " VALUES (?, ?, 'Dr A', '2024-01-01', 'accept')",
            (f"d{i}", sha),
        )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    conn = connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
    assert conn.execute("SELECT COUNT(*) FROM review_decisions WHERE row_hash IS NULL").fetchone()[0] == 0
    from ulcerseg.store.review import verify_chain

    assert verify_chain(conn).ok and verify_chain(conn).n_rows == 6
    with pytest.raises(sqlite3.DatabaseError, match="append-only"), conn:
        conn.execute("UPDATE review_decisions SET action = 'x'")


def test_readers_add_prints_a_token_once_that_logs_in(served):
    client, _app, study = served
    res = CliRunner().invoke(main, ["review", "readers", "add", str(study["out"]), "Dr Q"])
    assert res.exit_code == 0, res.output
    token = res.stdout.split("token ", 1)[1].split()[0]
    q = Client(client.base, token)
    assert q.json("/api/me")[1] == {"name": "Dr Q", "assessor": "Dr Q", "role": "reader"}
    res = CliRunner().invoke(main, ["review", "readers", "add", str(study["out"]), "Dr Q"])
    assert res.exit_code != 0 and "exists already" in str(res.exception)
    res = CliRunner().invoke(main, ["review", "readers", "add", str(study["out"]), "Judge", "--adjudicator"])
    judge = Client(client.base, res.stdout.split("token ", 1)[1].split()[0])
    assert judge.json("/api/items")[0] == 403  # an adjudicator's token does not open a readers' server
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    assert token not in str(conn.execute("SELECT * FROM review_readers").fetchall())


def test_server_errors_name_no_file_and_tokens_stay_out_of_the_log(served, caplog):
    """A 500 tells the browser nothing of the input folder (its paths carry subject IDs and
    visits): the details go to the server log, where a login link's token is blanked."""
    client, app, _study = served
    item = app.items[0]
    item.rectified_path.unlink()
    with caplog.at_level("DEBUG", logger="ulcerseg.review"):
        for path in (f"/image/{item.key}/rectified.png", f"/view/{item.key}/review.png"):
            status, raw, _ = client.request(path)
            assert status == 500, path
            text = raw.decode()
            assert "error" in json.loads(text) and "/" not in json.loads(text)["error"]
            assert str(item.rectified_path.parent) not in text and item.rectified_path.name not in text
        Client(client.base, None).request(f"/?token={client.token}")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert item.rectified_path.name in logged  # the reason is kept for whoever runs the server
    assert client.token not in logged and "token=…" in logged
    _alive(client)


def test_one_person_cannot_be_registered_twice_under_a_case_or_width_variant(tmp_path: Path) -> None:
    # before: "alice" and "Alice" were two readers, so one person could supply both readings
    # of a double reading
    from ulcerseg.errors import DecisionError
    from ulcerseg.store.db import connect
    from ulcerseg.store.review import add_reader, list_readers

    study = make_study(tmp_path / "s")
    conn = connect(study["out"] / "study.sqlite")
    add_reader(conn, "Dr Alice Smith")
    for variant in ("dr alice smith", "DR  ALICE SMITH", "Ｄｒ Ａｌｉｃｅ Ｓｍｉｔｈ"):
        with pytest.raises(DecisionError, match="'Dr Alice Smith' exists already"):
            add_reader(conn, variant)
    with pytest.raises(DecisionError, match="reader 'Dr Alice Smith' exists already"):
        add_reader(conn, "Dr Alice Smith")
    add_reader(conn, "Dr Alice Smithson")  # another name is another reader
    assert [r.name for r in list_readers(conn)] == ["Dr Alice Smith", "Dr Alice Smithson"]


def test_a_reader_name_that_is_not_text_is_a_one_line_error(tmp_path: Path) -> None:
    # before: add_reader(conn, None) raised AttributeError ('NoneType' object has no attribute
    # 'strip'), as did a number
    from ulcerseg.errors import DecisionError
    from ulcerseg.store.db import connect
    from ulcerseg.store.review import add_reader

    conn = connect(make_study(tmp_path / "s")["out"] / "study.sqlite")
    for name in (None, 5):
        with pytest.raises(DecisionError, match="a reader name is 1-80 printable characters"):
            add_reader(conn, name)  # type: ignore[arg-type]


def test_two_registrations_of_one_person_at_once_make_one_reader(tmp_path: Path, monkeypatch) -> None:
    # before: the same-person check ran before the insert's transaction, so "alice" registered
    # by another process between the check and the insert of "Alice" made two readers
    from ulcerseg.store import review as store_review
    from ulcerseg.store.db import connect

    study = make_study(tmp_path / "s")
    db = study["out"] / "study.sqlite"
    conn, other = connect(db), sqlite3.connect(db, timeout=0.05)
    real_list = store_review.list_readers
    other_outcome: list[str] = []

    def list_then_race(c: sqlite3.Connection) -> list:
        readers = real_list(c)
        if not other_outcome:  # another process registers the lower-case spelling now
            try:
                with other:
                    other.execute(
                        "INSERT INTO review_readers (name, role, token_sha256, created_at)"
                        " VALUES (?, ?, ?, ?)",
                        ("dr bob", "reader", "0" * 64, "2026-11-27T00:00:00+00:00"),
                    )
                other_outcome.append("inserted")
            except sqlite3.OperationalError:  # held off by the registration's write lock
                other_outcome.append("waited")
        return readers

    monkeypatch.setattr(store_review, "list_readers", list_then_race)
    store_review.add_reader(conn, "Dr Bob")
    names = [r[0] for r in conn.execute("SELECT name FROM review_readers")]
    assert len([n for n in names if n.casefold() == "dr bob"]) == 1, (names, other_outcome)
    assert other_outcome == ["waited"]
    other.close()
    conn.close()


def test_a_reader_name_with_an_invisible_character_is_refused(tmp_path: Path) -> None:
    # before: only characters below U+0020 were refused, so "Dr Alice\u200b Smith" (a zero-width
    # space) was registered beside "Dr Alice Smith": one person, two independent readers that
    # every screen and table shows alike; DEL and a line separator passed too
    from ulcerseg.errors import DecisionError
    from ulcerseg.store.db import connect
    from ulcerseg.store.review import add_reader, list_readers

    study = make_study(tmp_path / "s")
    conn = connect(study["out"] / "study.sqlite")
    add_reader(conn, "Dr Alice Smith")
    for name in (
        "Dr Alice\u200b Smith",
        "Dr Alice Smith\u00ad",
        "Dr\x7fAlice",
        "Dr Bob\u2028Jones",
        "Dr\x85Bob",
    ):
        with pytest.raises(DecisionError, match="printable"):
            add_reader(conn, name)
    add_reader(conn, "Dr Zoë Ørsted-Ñúñez")  # letters of any script are fine
    assert [r.name for r in list_readers(conn)] == ["Dr Alice Smith", "Dr Zoë Ørsted-Ñúñez"]


def test_truncated_or_broken_mask_png_gets_a_fixed_message(served):
    # before: "... not a readable PNG (... <_io.BytesIO object at 0x7f...>)", an internal
    # detail; and a broken chunk header was a 500
    import base64

    from PIL import Image

    client, app, _ = served
    it = app.items[0]
    w, h = it.frame_size()
    buf = io.BytesIO()
    Image.fromarray((np.arange(w * h).reshape(h, w) % 251).astype(np.uint8)).save(buf, format="PNG")
    good = buf.getvalue()
    wrong_chunk_length = good[:33] + struct.pack(">I", 5) + good[37:]  # the IDAT chunk's
    for png in (good[:40], good[: len(good) // 2], wrong_chunk_length):
        body = {"key": it.key, "action": "correct", "mask_png": base64.b64encode(png).decode()}
        status, res = client.json("/api/decision", body)
        assert status == 400 and res == {"error": "corrected mask is not a readable PNG"}, res
    _alive(client)


def _dribble(base: str, head: bytes, rest: bytes, every: float) -> tuple[bytes, float]:
    """Send ``head``, then ``rest`` one byte every ``every`` s until the server answers or
    closes; returns (reply, seconds from the first byte to the reply)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=every) as s:
        t0 = time.monotonic()
        s.sendall(head)
        for i in range(len(rest) + 1):
            try:
                first = s.recv(65536)
                break
            except TimeoutError:
                if i < len(rest):
                    s.sendall(rest[i : i + 1])
        else:
            first = b""
        elapsed = time.monotonic() - t0
        s.settimeout(5)
        chunks = [first]
        while chunks[-1]:
            chunks.append(s.recv(65536))
    return b"".join(chunks), elapsed


def test_a_dribbled_request_is_cut_at_the_request_timeout(served):
    # before: the timeout bounded each socket read, so a byte every 0.4 s (timeout 1 s) kept
    # the request (and its thread) going for as long as the sender liked
    client, app, _ = served  # app.request_timeout_s = 1
    port = int(client.base.rsplit(":", 1)[1])
    body = json.dumps({"key": app.items[0].key, "action": "accept"}).encode()
    head = (
        f"POST /api/decision HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {client.token}\r\n"
        f"Content-Type: application/json\r\nOrigin: {client.base}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    reply, elapsed = _dribble(client.base, head.encode(), body, every=0.4)
    assert reply.startswith(b"HTTP/1.0 408") and b'"error"' in reply, reply[:80]
    assert elapsed < 3, elapsed
    # headers dribbled: the connection is closed at the deadline, nothing is answered
    reply, elapsed = _dribble(client.base, b"GET /api/items HTTP/1.1\r\n", b"X-Slow: " + b"a" * 40, 0.4)
    assert reply == b"" and elapsed < 3, (reply[:80], elapsed)
    assert list_decisions(sqlite3.connect(app.out_dir / "study.sqlite")) == []
    _alive(client)


def test_connections_beyond_the_cap_get_503(tmp_path: Path):
    # before: a thread per connection without limit
    study = make_study(tmp_path)
    app = ReviewApp.load(study["out"], cfg())
    app.max_connections, app.request_timeout_s = 2, 10.0
    with serving(app) as base:
        client = Client(base, app.add_reader("Dr A"), app)
        host, port = base.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
        try:  # connections are accepted in order: the two idle ones hold both slots
            with socket.create_connection((host, int(port)), timeout=5) as extra:
                reply = b"".join(iter(lambda: extra.recv(65536), b""))
            assert reply.startswith(b"HTTP/1.0 503") and b"application/json" in reply, reply[:80]
            assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 5  # the closed connections give their slots back
        while client.request("/api/items")[0] == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        _alive(client)


def _get(base: str, path: str, headers: dict[str, str]):
    import http.client

    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Host": f"{host}:{port}", **headers})
        res = conn.getresponse()
        return res.status, res.read(), res.getheader("Set-Cookie")
    finally:
        conn.close()


def test_a_login_link_does_not_silently_replace_another_readers_session(served):
    # before: any ?token= link (e.g. on another site) replaced the reader's session cookie, so
    # a second reader's decisions could be recorded in this browser under another name
    import html

    client, app, _ = served
    other = client.reader("Dr B")
    cookie_a = f"{cookie_name(int(client.base.rsplit(':', 1)[1]))}={client.token}"
    for fetch_site in ("cross-site", "same-site", "same-origin", None):
        headers = {"Cookie": cookie_a, **({"Sec-Fetch-Site": fetch_site} if fetch_site else {})}
        status, page, set_cookie = _get(client.base, f"/?token={other.token}", headers)
        assert status == 409 and set_cookie is None, fetch_site
        why = b"came from another site" if fetch_site in ("cross-site", "same-site") else b"Another reader is"
        assert why in page and b'action="/login"' in page
    # typed, pasted or bookmarked: the browser says so, and the reader may switch
    status, _, set_cookie = _get(
        client.base, f"/?token={other.token}", {"Cookie": cookie_a, "Sec-Fetch-Site": "none"}
    )
    assert status == 303 and other.token in set_cookie
    # followed from another site, a browser sends no SameSite=Strict cookie, so the server
    # cannot see a session it would replace: never a direct login (before: logged in, and a
    # link on another site replaced the reader's session unseen)
    for fetch_site in ("cross-site", "same-site"):
        status, page, set_cookie = _get(client.base, f"/?token={other.token}", {"Sec-Fetch-Site": fetch_site})
        assert status == 409 and set_cookie is None, fetch_site
        assert b"came from another site" in page and b"<strong>Dr B</strong>" in page
        assert b'action="/login"' in page
    # a browser with no session, or the same reader's link again from this server's pages: as before
    same_origin = {"Sec-Fetch-Site": "same-origin"}
    for headers in ({}, same_origin, {"Cookie": cookie_a, **same_origin}):
        token = client.token if "Cookie" in headers else other.token
        status, _, set_cookie = _get(client.base, f"/?token={token}", headers)
        assert status == 303 and token in set_cookie, headers
    # the page's button: a same-origin form POST /login with the link's token
    page = _get(client.base, f"/?token={other.token}", {"Cookie": cookie_a})[1].decode()
    assert f'value="{html.escape(other.token)}"' in page
    form = f"token={other.token}".encode()

    def post(origin: str, ctype: str = "application/x-www-form-urlencoded", body: bytes = form):
        return _login_post(client.base, body, origin=origin, ctype=ctype, cookie=cookie_a)

    assert post("http://evil.example") == (403, None)
    assert post(client.base, "application/json") == (415, None)
    assert post(client.base, body=b"token=" + b"x" * 43) == (401, None)
    status, set_cookie = post(client.base)
    assert status == 303 and other.token in set_cookie and "HttpOnly" in set_cookie
    assert not app.decisions()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_a_request_without_a_host_header_is_refused(served):
    """HTTP/1.0 lets a client leave Host out: such a request does not address the server as
    localhost, so the DNS-rebinding check refuses it rather than passing it by."""
    client, _app, _ = served
    head = f"GET /api/items HTTP/1.0\r\nAuthorization: Bearer {client.token}\r\n\r\n"
    reply = _raw(client.base, head.encode())
    assert reply.startswith(b"HTTP/1.0 403") and b'"error"' in reply
    _alive(client)


def test_a_state_change_without_a_content_type_is_415(served):
    client, app, study = served
    body = json.dumps({"key": app.items[0].key, "action": "accept"}).encode()
    port = int(client.base.rsplit(":", 1)[1])
    head = f"POST /api/decision HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += f"Authorization: Bearer {client.token}\r\nOrigin: {client.base}\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    reply = _raw(client.base, head.encode() + body)
    assert reply.startswith(b"HTTP/1.0 415") and b'"error"' in reply
    assert list_decisions(sqlite3.connect(study["out"] / "study.sqlite")) == []


def _login_post(
    base: str,
    body: bytes,
    *,
    origin: str | None = None,
    ctype: str = "application/x-www-form-urlencoded",
    cookie: str | None = None,
) -> tuple[int, str | None]:
    """POST the login form without following its redirect: (status, Set-Cookie)."""
    req = urllib.request.Request(base + "/login", data=body, method="POST")
    req.add_header("Content-Type", ctype)
    req.add_header("Origin", origin if origin is not None else base)
    if cookie is not None:
        req.add_header("Cookie", cookie)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=10) as res:
            return res.status, res.headers.get("Set-Cookie")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Set-Cookie")


def test_the_login_form_is_capped_and_checks_the_role(served):
    """POST /login carries one token (at most 1024 bytes of form: 413 beyond, not the 4 MiB of
    a JSON body), and an adjudicator's token logs in to no readers' server (403, no cookie)."""
    client, _app, _ = served
    assert _login_post(client.base, b"token=" + b"x" * 2000) == (413, None)
    judge = client.reader("Judge", adjudicator=True)
    assert _login_post(client.base, f"token={judge.token}".encode()) == (403, None)
    status, set_cookie = _login_post(client.base, f"token={client.token}".encode())
    assert status == 303 and client.token in set_cookie


def test_an_adjudicators_credential_does_nothing_on_the_readers_server(served):
    """The readers' server serves readers only: an adjudicator's own token (a valid credential,
    same origin) lists nothing and decides nothing there (403), so a reading never carries the
    adjudicator's name in the readers' role."""
    client, app, study = served
    judge = client.reader("Judge", adjudicator=True)
    key = app.items[0].key
    assert judge.request("/api/items")[0] == 403
    assert judge.request(f"/api/item/{key}")[0] == 403
    db = study["out"] / "study.sqlite"
    before = len(list_decisions(sqlite3.connect(db)))
    assert judge.request("/api/decision", {"key": key, "action": "accept"})[0] == 403
    assert len(list_decisions(sqlite3.connect(db))) == before
    assert client.request("/api/items")[0] == 200  # the reader's own credential still works


def test_an_unexpected_error_reaches_the_client_as_json_without_its_text(served, monkeypatch, caplog):
    """Any exception in a handler: 500 with a fixed message, never the exception's text or a
    traceback (they may name files of subjects); the log keeps them, and the server stays up."""
    client, app, _ = served

    def broken(reader: str):
        raise RuntimeError("boom in /data/S01/W2/U1.jpg")

    monkeypatch.setattr(app, "order", broken)
    with caplog.at_level("ERROR", logger="ulcerseg.review"):
        status, raw, headers = client.request("/api/items")
    assert status == 500 and headers["Content-Type"] == "application/json"
    assert json.loads(raw) == {"error": "internal error (see the server log)"}
    assert "boom in /data/S01/W2/U1.jpg" in caplog.text
    assert client.json("/api/me")[0] == 200


def test_a_token_in_the_url_logs_in_on_the_login_page_only(served):
    """``?token=`` is read on the login page alone: anywhere else it would be written to logs and
    the browser's history, so /api/items?token=... is a request without a token (401)."""
    client, _app, _ = served
    for path in ("/api/items", "/api/me"):
        status, _, set_cookie = _get(client.base, f"{path}?token={client.token}", {})
        assert (status, set_cookie) == (401, None), path
    assert _get(client.base, f"/?token={client.token}", {})[0] == 303  # the login page: cookie, redirect


def test_a_reader_sees_neither_another_readers_reading_nor_outline(served):
    """Double reading is independent: on the readers' server, Dr A gets no ``readings`` with an
    item, no other reader's corrected outline (/image/KEY/reading/ID.png is the adjudicator's
    only) and only their own decisions in /api/my-decisions."""
    client, app, _ = served
    key = app.items[0].key
    other = client.reader("Dr B")
    poly = [[0, 0], [30, 0], [30, 30], [0, 30]]
    status, body = other.json(
        "/api/decision", {"key": key, "action": "correct", "confirm": True, "polygon": poly}
    )
    assert status == 200
    status, item = client.json(f"/api/item/{key}")
    assert status == 200 and "readings" not in item
    assert client.request(f"/image/{key}/reading/{body['decision_id']}.png")[0] == 404
    assert client.json("/api/my-decisions")[1]["decisions"] == []
    theirs = other.json("/api/my-decisions")[1]["decisions"]
    assert [d["decision_id"] for d in theirs] == [body["decision_id"]]


def test_an_origin_that_merely_starts_like_this_server_is_refused(served):
    """The Origin is compared whole: a page at http://127.0.0.1:PORT0 (another port) or at
    http://localhost:PORT.evil.example (another host) is not this server."""
    client, app, study = served
    body = json.dumps({"key": app.items[0].key, "action": "accept"}).encode()
    port = int(client.base.rsplit(":", 1)[1])
    for origin in (f"http://127.0.0.1:{port}0", f"http://localhost:{port}.evil.example"):
        head = f"POST /api/decision HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        head += f"Authorization: Bearer {client.token}\r\nContent-Type: application/json\r\n"
        head += f"Origin: {origin}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        reply = _raw(client.base, head.encode() + body)
        assert reply.startswith(b"HTTP/1.0 403"), (origin, reply[:80])
    assert list_decisions(sqlite3.connect(study["out"] / "study.sqlite")) == []


def test_correction_polygons_are_checked_against_the_frames_height_and_the_vertex_cap(served):
    """The rectified frame here is 96 x 72 px: a vertex at y = 80 lies below it (400), though 80
    is less than the width. Several polygons share one cap of 10 000 vertices in all: two of
    6 000 each are 413, though each alone is under it."""
    from test_review import H, W

    from ulcerseg.review.server import MAX_VERTICES

    client, app, study = served
    item = app.items[0]
    assert (W, H) == item.frame_size() == (96, 72)
    base = {"key": item.key, "action": "correct", "confirm": True}
    status, raw, _ = client.request("/api/decision", {**base, "polygon": [[10, 10], [40, 10], [40, 80]]})
    assert status == 400 and "outside" in json.loads(raw)["error"]
    n = 6_000
    assert 2 * n > MAX_VERTICES >= n
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = np.c_[30 + 10 * np.cos(t), 30 + 10 * np.sin(t)].round(2)
    polygons = [ring.tolist(), (ring + np.array([40.0, 0.0])).tolist()]
    status, raw, _ = client.request(
        "/api/decision", {**base, "polygons": polygons, "px_per_mm": item.px_per_mm}
    )
    assert status == 413 and "vertices" in json.loads(raw)["error"]
    assert list_decisions(sqlite3.connect(study["out"] / "study.sqlite")) == []


def test_two_servers_on_one_host_keep_their_own_sessions(served):
    """Browsers scope cookies by host, not port: with one cookie name, logging in to the
    adjudication server beside the readers' replaced the reader's session there, and each
    server was sent the other's token."""
    client, _app, study = served
    judge_app = ReviewApp.load(study["out"], cfg(), adjudicate=True)
    with serving(judge_app) as judge_base:
        judge_token = judge_app.add_reader("Dr J", adjudicator=True)
        logins = {}
        for base, token in ((client.base, client.token), (judge_base, judge_token)):
            status, _, set_cookie = _get(base, f"/?token={token}", {"Sec-Fetch-Site": "none"})
            assert status == 303 and set_cookie is not None
            logins[base] = set_cookie.split(";")[0]
        # two names: the browser keeps both cookies and sends both to each server
        assert len({c.split("=")[0] for c in logins.values()}) == 2
        both = "; ".join(logins.values())
        for base in (client.base, judge_base):
            status, _, _ = _get(base, "/api/me", {"Cookie": both})
            assert status == 200
        me = {b: json.loads(_get(b, "/api/me", {"Cookie": both})[1])["name"] for b in logins}
        assert me == {client.base: "Dr A", judge_base: "Dr J"}
        # one server's cookie alone does not open the other
        assert _get(judge_base, "/api/me", {"Cookie": logins[client.base]})[0] == 401


def test_a_content_length_of_thousands_of_digits_is_413_not_500(served):
    # before: int() refuses a string of more than 4,300 digits (ValueError), and the request
    # was answered 500 "internal error" with a traceback in the log; the login form too
    client, _app, study = served
    port = int(client.base.rsplit(":", 1)[1])
    for path, auth, ctype in (
        ("/api/decision", f"Authorization: Bearer {client.token}\r\n", "application/json"),
        ("/login", "", "application/x-www-form-urlencoded"),
    ):
        # 2 with 5,000 leading zeros is a length of 2: the body is read (b"{}": no key, no form)
        for length, expected in (("9" * 5000, 413), ("0" * 5000 + "2", 400)):
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Origin: {client.base}\r\n"
            head += f"Content-Type: {ctype}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
            reply = _raw(client.base, head.encode() + b"{}")
            assert reply.startswith(f"HTTP/1.0 {expected}".encode()), (path, length[:8], reply[:80])
            assert b'"error"' in reply
    assert list_decisions(sqlite3.connect(study["out"] / "study.sqlite")) == []
    _alive(client)


def test_a_bracket_in_the_request_target_or_the_referer_is_a_4xx_not_500(served):
    # before: urlsplit raises ValueError ("Invalid IPv6 URL") on "http://[", and the request
    # was answered 500 "internal error" with a traceback in the log: an absolute-form target
    # before any token is read, a Referer (without Origin) of a logged-in reader's request
    client, _app, study = served
    port = int(client.base.rsplit(":", 1)[1])
    for target, extra, expected in (
        ("http://[/api/me", "", 400),
        ("http://[::1/api/items", "", 400),
        ("/api/session", "Referer: http://[\r\n", 403),
        ("/api/session", f"Referer: http://[127.0.0.1:{port}/\r\n", 403),
    ):
        head = f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {client.token}\r\n"
        head += f"{extra}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        reply = _raw(client.base, head.encode() + b"{}")
        assert reply.startswith(f"HTTP/1.0 {expected}".encode()), (target, extra, reply[:80])
        assert b'"error"' in reply and b"Traceback" not in reply
    assert list_decisions(sqlite3.connect(study["out"] / "study.sqlite")) == []
    _alive(client)

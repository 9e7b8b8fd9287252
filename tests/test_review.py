"""Review server API (token, path safety, blinding, append-only decisions) and exports."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import contains_date, png_metadata_chunks
from PIL import Image, PngImagePlugin

from ulcerseg.errors import InputError, OutputError
from ulcerseg.healing import HealingConfig, ReviewSettings, compute_healing, heal_study
from ulcerseg.records import Calibration, Measurement, PhotoRecord, PhotoResult
from ulcerseg.review.decisions import accepted_outline_changed, disagreements, list_decisions, verify_study
from ulcerseg.review.export import export_blinded, export_final, export_training, write_report
from ulcerseg.review.items import ReviewItem
from ulcerseg.review.report import figure_mask_path
from ulcerseg.review.server import ReviewApp, make_server
from ulcerseg.review.views import ReviewViews
from ulcerseg.store import Study
from ulcerseg.visits import visit_to_day

PPM = 10.0  # rectified px per mm
W, H = 96, 72
SUBJECTS = ("SUBJ-1001", "SUBJ-1002")
VISITS = ("D0", "W2", "W4")
RADII = {"D0": 14, "W2": 10, "W4": 6}


def _disc(radius: int, cx: int = W // 2, cy: int = H // 2) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2


def make_study(root: Path) -> dict:
    """A measured study folder per the outputs contract, written through the store API.

    Rectified PNGs deliberately carry EXIF and a text date chunk that must never reach an
    assessor. Every photo of SUBJ-1001 and the W4 photo of SUBJ-1002 need review.
    """
    out = root / "out"
    (out / "rectified").mkdir(parents=True)
    (out / "masks").mkdir()
    info: dict = {"out": out, "photos": {}}
    rng = np.random.default_rng(0)
    with Study.open(out) as study:
        run = study.start_run("0.1.0", "m" * 64, "c" * 64, {}, root / "in")
        for si, subject in enumerate(SUBJECTS):
            for vi, visit in enumerate(VISITS):
                sha = hashlib.sha256(f"{subject}/{visit}".encode()).hexdigest()
                key = sha[:16]
                mask = _disc(RADII[visit] + si)
                img = (rng.integers(150, 200, (H, W, 3))).astype(np.uint8)
                img[mask] = (150, 40, 40)
                exif = Image.Exif()
                exif[0x0132] = "2024:03:05 10:00:00"  # DateTime
                exif[0x010F] = "SecretCam"  # Make
                meta = PngImagePlugin.PngInfo()
                meta.add_text("Date", "2024-03-05")
                meta.add_text("Subject", subject)
                rect = out / "rectified" / f"{key}.png"
                Image.fromarray(img).save(rect, exif=exif, pnginfo=meta)
                mpath = out / "masks" / f"{key}.png"
                Image.fromarray(mask.astype(np.uint8) * 255).save(mpath)
                area = float(mask.sum()) / PPM**2
                flags = ["low_confidence"] if subject == SUBJECTS[0] or visit == "W4" else []
                date = f"2024-03-{5 + 14 * vi:02d}" if vi < 2 else "2024-04-02"
                record = PhotoRecord(
                    path=root / "in" / subject / visit / "p.jpg",
                    subject_id=subject,
                    ulcer_id="U1",
                    visit=visit,
                    study_day=visit_to_day(visit),
                    sha256=sha,
                    photo_date=date,
                )
                result = PhotoResult(
                    photo=record,
                    status="measured",
                    calibration=Calibration(
                        marker_id=0,
                        corners_px=((0, 0), (1, 0), (1, 1), (0, 1)),
                        homography=(1, 0, 0, 0, 1, 0, 0, 0, 1),
                        mm_per_px=0.1,
                        tilt_deg=5.0,
                        residual_px=0.2,
                        side_mm=10.0,
                    ),
                    measurement=Measurement(
                        area_mm2=area,
                        perimeter_mm=1.0,
                        length_mm=1.0,
                        width_mm=1.0,
                        n_components=1,
                        mean_probability=0.9,
                        area_low_mm2=area * 0.9,
                        area_high_mm2=area * 1.1,
                        marker_distance_mm=20.0,
                    ),
                    flags=flags,
                    image_size=(400, 300),
                    mask_path=mpath,
                    rectified_path=rect,
                    rectified_origin_mm=(-2.0, -2.0),
                    rectified_px_per_mm=PPM,
                )
                study.add_result(run, result, f"{subject}/{visit}/p.jpg")
                info["photos"][key] = {
                    "sha": sha,
                    "subject": subject,
                    "visit": visit,
                    "area": area,
                    "needs_review": bool(flags),
                    "date": date,
                }
    return info


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def cfg(**review) -> HealingConfig:
    return HealingConfig(schedule=VISITS, review=ReviewSettings(**review))


class Client:
    """A reader's HTTP client: their personal token as a Bearer header, this server as Origin."""

    def __init__(self, base: str, token: str | None, app: ReviewApp | None = None) -> None:
        self.base, self.token, self.app = base, token, app
        self.session: str | None = None

    def reader(self, name: str, adjudicator: bool = False) -> Client:
        """A client for a new reader ``name`` registered in the study."""
        assert self.app is not None
        return Client(self.base, self.app.add_reader(name, adjudicator), self.app)

    def request(self, path: str, body: dict | None = None, token: bool = True, method=None):
        if body is not None and self.session and "session_id" not in body:
            body = {**body, "session_id": self.session}
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
            req.add_header("Origin", self.base)
        if token and self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, res.read(), dict(res.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def json(self, path: str, body: dict | None = None):
        status, raw, _ = self.request(path, body)
        return status, json.loads(raw)


@contextmanager
def serving(app: ReviewApp) -> Iterator[str]:
    """Serve ``app`` on a free localhost port in a thread; yields the base URL."""
    srv = make_server(app, 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def study(tmp_path: Path) -> dict:
    return make_study(tmp_path)


@pytest.fixture
def server(study: dict) -> Iterator[tuple[Client, ReviewApp, dict]]:
    app = ReviewApp.load(study["out"], cfg())
    with serving(app) as base:
        yield Client(base, app.add_reader("Dr Z"), app), app, study


def _session(client: Client, name: str) -> Client:
    """A new reader ``name`` with a started session (sent with each of their requests)."""
    reader = client.reader(name)
    status, body = reader.json("/api/session", {"assessor": "someone else"})
    assert status == 200 and body["assessor"] == name  # the token, not the body, names the reader
    reader.session = body["session_id"]
    return reader


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_items_need_review_in_reproducible_order(study: dict):
    app1 = ReviewApp.load(study["out"], cfg())
    app2 = ReviewApp.load(study["out"], cfg())
    expected = {k for k, p in study["photos"].items() if p["needs_review"]}
    assert {it.key for it in app1.items} == expected
    assert [it.key for it in app1.items] == [it.key for it in app2.items]
    app3 = ReviewApp.load(study["out"], cfg(review_all=True))
    assert {it.key for it in app3.items} == set(study["photos"])
    orders = {tuple(it.key for it in ReviewApp.load(study["out"], cfg(seed=s)).items) for s in range(6)}
    assert len(orders) > 1  # the seed really shuffles


def test_review_serve_on_a_port_in_use_names_the_address(study: dict, monkeypatch, capsys):
    """README: an environment failure such as a port in use is one line naming what failed;
    it was a bare 'error: Address already in use', without the port."""
    import socket

    from ulcerseg.cli.main import run

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        args = ["ulcerseg", "review", "serve", str(study["out"]), "--port", str(port)]
        monkeypatch.setattr(sys, "argv", args)
        with pytest.raises(SystemExit) as exc:
            run()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: 127.0.0.1:{port}: ") and "\n" not in err, err


def test_every_route_requires_token(server):
    client, app, study = server
    key = app.items[0].key
    anon = Client(client.base, None)
    wrong = Client(client.base, "not-the-token")
    routes = [
        ("/", None),
        ("/index.html", None),
        ("/static/app.js", None),
        ("/static/app.css", None),
        ("/api/items", None),
        (f"/api/item/{key}", None),
        (f"/image/{key}/rectified.png", None),
        (f"/image/{key}/mask.png", None),
        ("/api/session", {"assessor": "x"}),
        ("/api/decision", {"key": key, "action": "accept", "assessor": "x"}),
        ("/nope", None),
    ]
    for path, body in routes:
        for c in (anon, wrong):
            status, raw, _ = c.request(path, body)
            assert status == 401, path
            assert b"PNG" not in raw and b"<html" not in raw
        status, _, _ = client.request(path, body)
        assert status in (200, 404), path  # with the token the route answers
    # only the one authorised decision was stored, as the token's reader (the body's "x" is ignored)
    rows = list_decisions(sqlite3.connect(study["out"] / "study.sqlite"))
    assert [(d["assessor"], d["action"]) for d in rows] == [("Dr Z", "accept")]


def test_foreign_host_header_is_refused(server):
    client, _app, _ = server
    req = urllib.request.Request(client.base + "/api/items")
    req.add_header("Authorization", f"Bearer {client.token}")
    req.add_header("Host", "evil.example:80")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 403


def test_first_page_sets_cookie_then_cookie_authenticates(server):
    """The login link's token becomes a cookie and leaves the address bar (303 to the page
    without the query); the cookie then authenticates. Elsewhere a token in the URL does not."""
    import http.client

    client, _app, _ = server
    host, port = urllib.parse.urlsplit(client.base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", f"/?token={client.token}", headers={"Host": f"{host}:{port}"})
    res = conn.getresponse()
    res.read()
    conn.close()
    assert res.status == 303 and res.getheader("Location") == "/"
    cookie = res.getheader("Set-Cookie")
    assert client.token in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    req = urllib.request.Request(client.base + "/")
    req.add_header("Cookie", cookie.split(";")[0])
    with urllib.request.urlopen(req, timeout=10) as res:
        assert res.status == 200 and b"<html" in res.read()
    req = urllib.request.Request(client.base + "/api/items")
    req.add_header("Cookie", cookie.split(";")[0])
    with urllib.request.urlopen(req, timeout=10) as res:
        assert res.status == 200
    status, _, _ = Client(client.base, None).request(f"/api/items?token={client.token}")
    assert status == 401  # a token in an API URL would be logged: refused


def test_path_traversal_is_refused(server, study):
    client, app, _ = server
    key = app.items[0].key
    secret_outside = study["out"].parent / "secret.txt"
    secret_outside.write_text("TOP-SECRET")
    attempts = [
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/static/..%2fdecisions.py",
        "/static/index.html/../../healing.py",
        "/image/../study.sqlite",
        f"/image/{key}/../../study.sqlite",
        f"/image/{key}/..%2f..%2fstudy.sqlite",
        "/image/%2e%2e%2f%2e%2e%2fsecret.txt/rectified.png",
        "/image/../../secret.txt/rectified.png",
        "/api/item/../../secret.txt",
        "/api/item/" + "0" * 16,
        "/image/" + "0" * 16 + "/rectified.png",
        f"/image/{key}/rectified.png/../../../secret.txt",
        f"/image/{key.upper()}/rectified.png",
        "//etc/passwd",
        "/../../../../etc/passwd",
    ]
    for path in attempts:
        status, raw, _ = client.request(path)
        assert status == 404, path
        assert b"TOP-SECRET" not in raw and b"SQLite format" not in raw and b"root:" not in raw
    # a tampered database row pointing outside the study is never served either
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    with conn:
        conn.execute("UPDATE measurements SET rectified_file = '../secret.txt'")
    assert ReviewApp.load(study["out"], cfg()).items == []


def test_blinded_pages_and_images(server, study):
    client, app, _ = server
    texts = []
    for path in ("/", "/static/app.js", "/static/app.css", "/api/items"):
        status, raw, _ = client.request(path)
        assert status == 200
        texts.append(raw.decode())
    for it in app.items:
        status, raw, _ = client.request(f"/api/item/{it.key}")
        assert status == 200
        texts.append(raw.decode())
        item = json.loads(raw)
        assert item["subject"].startswith("P-") and "visit" not in item
        for kind in ("rectified.png", "mask.png"):
            status, png, headers = client.request(f"/image/{it.key}/{kind}")
            assert status == 200 and headers["Content-Type"] == "image/png"
            assert png_metadata_chunks(png) == []
            assert b"SecretCam" not in png and b"2024" not in png
            with Image.open(io.BytesIO(png)) as im:
                assert not im.getexif() and im.size == (W, H)
    blob = "\n".join(texts)
    for subject in SUBJECTS:
        assert subject not in blob
    assert not contains_date(blob)
    # the pseudonym is stable and distinct per subject
    subs = {it.subject_id: it.subject_pseudonym for it in app.items}
    assert len(set(subs.values())) == len(subs)
    again = ReviewApp.load(study["out"], cfg())
    assert {it.subject_id: it.subject_pseudonym for it in again.items} == subs


def test_visit_label_and_proposed_status(study):
    app = ReviewApp.load(study["out"], cfg(show_visit_label=True))
    item = app.items[0].public(app.config.review, None)
    assert item["visit"] in VISITS and item["proposed_status"] is None
    assert app.proposed_status(app.items[0].photo_sha256) is None  # no healing table yet
    heal_study(study["out"], cfg())  # after the app started: it reads the status live
    shown = {
        it.public(app.config.review, app.proposed_status(it.photo_sha256))["proposed_status"]
        for it in app.items
    }
    # only healed / not healed is shown: the trend could bias the assessor
    assert shown == {"not healed"}


def test_decisions_append_only_and_masks_never_overwritten(server, study):
    client, app, _ = server
    session = _session(client, "Dr A")
    it = app.items[0]
    assert client.json("/api/session", {"assessor": "  "})[1]["assessor"] == "Dr Z"
    # not assessable needs a reason
    status, body = session.json("/api/decision", {"key": it.key, "action": "not_assessable", "confirm": True})
    assert status == 400 and "reason" in body["error"]
    assert session.json("/api/decision", {"key": it.key, "action": "delete"})[0] == 400
    assert client.json("/api/decision", {"key": it.key, "action": "accept", "session_id": "forged"})[0] == 400
    status, body = session.json("/api/decision", {"key": it.key, "action": "accept"})
    assert status == 200 and body["area_after_mm2"] == pytest.approx(it.area_mm2)
    # polygon correction in rectified px: a 20 x 10 px rectangle = 2 mm²
    poly = [[10, 10], [30, 10], [30, 20], [10, 20]]
    status, body = session.json(
        "/api/decision", {"key": it.key, "action": "correct", "confirm": True, "polygon": poly}
    )
    assert status == 200
    first_area = body["area_after_mm2"]
    assert first_area == pytest.approx(20 * 10 / PPM**2)  # pixel-centre rule: exactly the rectangle
    # PNG mask correction (RGBA, opaque white = ulcer) of a different shape
    m = np.zeros((H, W, 4), np.uint8)
    m[5:15, 5:25] = 255
    buf = io.BytesIO()
    Image.fromarray(m).save(buf, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    status, body = session.json(
        "/api/decision", {"key": it.key, "action": "correct", "confirm": True, "mask_png": data_url}
    )
    assert status == 200 and body["area_after_mm2"] == pytest.approx(200 / PPM**2)
    # wrong-size mask is refused
    small = io.BytesIO()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(small, format="PNG")
    bad = base64.b64encode(small.getvalue()).decode()
    status, body = session.json(
        "/api/decision", {"key": it.key, "action": "correct", "confirm": True, "mask_png": bad}
    )
    assert status == 400 and "rectified frame" in body["error"]
    status, _ = session.json(
        "/api/decision", {"key": it.key, "action": "not_assessable", "confirm": True, "reason": "blurred"}
    )
    assert status == 200

    conn = sqlite3.connect(study["out"] / "study.sqlite")
    rows = list_decisions(conn)
    assert [r["action"] for r in rows] == ["accept", "correct", "correct", "not_assessable"]
    assert {r["assessor"] for r in rows} == {"Dr A"}
    assert all(r["photo_sha256"] == it.photo_sha256 for r in rows)
    assert rows[3]["area_after_mm2"] is None and rows[3]["reason"] == "blurred"
    files = [r["corrected_mask_file"] for r in rows if r["corrected_mask_file"]]
    assert len(set(files)) == 2
    for f, r in zip(files, rows[1:3], strict=True):
        saved = np.asarray(Image.open(study["out"] / f)) > 0
        assert saved.sum() / PPM**2 == pytest.approx(r["area_after_mm2"])
        assert f.startswith(f"review/masks/{it.key}_")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"), conn:
        conn.execute("UPDATE review_decisions SET action = 'accept'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"), conn:
        conn.execute("DELETE FROM review_decisions")
    assert len(list_decisions(conn)) == 4


def test_double_reading_disagreements(server, study):
    client, app, _ = server
    a, b = _session(client, "Dr A"), _session(client, "Dr B")
    it1, it2, it3 = app.items[:3]
    a.json("/api/decision", {"key": it1.key, "action": "accept"})
    b.json("/api/decision", {"key": it1.key, "action": "accept"})
    a.json("/api/decision", {"key": it2.key, "action": "accept"})
    b.json("/api/decision", {"key": it2.key, "action": "not_assessable", "confirm": True, "reason": "x"})
    a.json("/api/decision", {"key": it3.key, "action": "accept"})
    poly = [[0, 0], [60, 0], [60, 60], [0, 60]]  # 36 mm², far from the proposal
    b.json("/api/decision", {"key": it3.key, "action": "correct", "confirm": True, "polygon": poly})
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    found = {d["photo_sha256"]: d["reason"] for d in disagreements(conn, HealingConfig())}
    assert found == {it2.photo_sha256: "action+area", it3.photo_sha256: "area"}
    # B later agrees on item 2: only the latest decisions count
    b.json("/api/decision", {"key": it2.key, "action": "accept"})
    found = {d["photo_sha256"] for d in disagreements(conn, HealingConfig())}
    assert found == {it3.photo_sha256}
    # as every healing config argument: a YAML path or None (was an AttributeError)
    (study["out"].parent / "h.yaml").write_text("healed_max_area_mm2: 0.5\n")
    for config in (None, study["out"].parent / "h.yaml", str(study["out"].parent / "h.yaml")):
        assert {d["photo_sha256"] for d in disagreements(conn, config)} == found
    # the CLI lists the same
    from click.testing import CliRunner

    from ulcerseg.cli import main

    res = CliRunner().invoke(main, ["review", "disagreements", str(study["out"])])
    assert res.exit_code == 0, res.output
    assert it3.photo_sha256 in res.output and it2.photo_sha256 not in res.output
    res = CliRunner().invoke(main, ["review", "decisions", str(study["out"])])
    assert res.exit_code == 0, res.output
    audit = list(csv.DictReader(io.StringIO(res.output)))
    assert [(r["assessor"], r["action"]) for r in audit][-2:] == [("Dr B", "correct"), ("Dr B", "accept")]
    assert len(audit) == 7


def test_serve_from_python_takes_a_yaml_path_checks_the_port_and_prints_nothing(study, monkeypatch, capsys):
    """serve() took only a HealingConfig (a YAML path: AttributeError), passed a port outside
    0-65535 to bind (OverflowError) and wrote its login lines to stdout with click.echo from
    the library; now they go to ``announce`` (the CLI's click.echo), else a log warning."""
    from ulcerseg.errors import ConfigError
    from ulcerseg.review import server as server_mod

    for port in (-1, 70000):
        with pytest.raises(ConfigError, match=f"review server port {port}: must be 0-65535"):
            server_mod.serve(study["out"], port=port)

    def stop(self, *args, **kwargs):
        raise KeyboardInterrupt  # what ends serve() at the command line

    monkeypatch.setattr(server_mod._ReviewServer, "serve_forever", stop)
    cfg_path = study["out"].parent / "h.yaml"
    cfg_path.write_text(yaml.safe_dump({"schedule": list(VISITS)}))
    lines: list[str] = []
    server_mod.serve(study["out"], str(cfg_path), reader="Dr P", announce=lines.append)
    assert "token=" in lines[0] and "'Dr P'" in lines[1]
    server_mod.serve(study["out"], cfg_path)  # no announce: logged
    captured = capsys.readouterr()
    assert captured.out == ""


def test_killed_server_loses_no_decision(study):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cfg_path = study["out"].parent / "h.yaml"
    cfg_path.write_text(yaml.safe_dump({"schedule": list(VISITS)}))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from ulcerseg.cli import run; run()", "review", "serve",
         str(study["out"]), "--port", "0", "--config", str(cfg_path), "--reader", "Dr K"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert "token=" in line, proc.stderr.read() if proc.poll() is not None else line
        url = line.split(" at ", 1)[1].strip()
        base, token = url.split("/?token=")
        client = Client(base, token)
        status, body = client.json("/api/session", {})
        assert status == 200 and body["assessor"] == "Dr K"
        client.session = body["session_id"]
        _, items = client.json("/api/items")
        keys = [i["key"] for i in items["items"]]
        for k in keys[:2]:
            status, _ = client.json("/api/decision", {"key": k, "action": "accept"})
            assert status == 200
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    rows = list_decisions(conn)
    assert [r["photo_sha256"][:16] for r in rows] == keys[:2]
    assert {r["assessor"] for r in rows} == {"Dr K"}


def test_two_heals_at_once_leave_table_csv_and_json_of_one_run(study, monkeypatch):
    """`measure`'s own heal beside a `heal` by hand (here with other rules): before, the second
    heal could write the table between the first's table and its CSV, so table `healing` held
    one run's rows and healing.csv and healing.json the other's. Thread A is held inside its
    CSV write; B heals meanwhile (or waits for the lock); then A finishes."""
    from dataclasses import replace

    import ulcerseg.healing.study as healing_study
    from ulcerseg.healing.config import healing_config_sha256

    out = study["out"]
    cfg_a, cfg_b = cfg(), replace(cfg(), improving_min_reduction_pct=30.0)
    a_writing, b_progressed, release = threading.Event(), threading.Event(), threading.Event()
    write_csv = healing_study.write_healing_csv
    original_lock = getattr(healing_study, "heal_lock", None)

    def held_write(rows, path):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "heal-A":
            a_writing.set()
            assert release.wait(30)
        return write_csv(rows, path)

    @contextmanager
    def signalling_lock(out_dir):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "heal-B":
            b_progressed.set()  # B is about to wait for A's lock
        assert original_lock is not None
        with original_lock(out_dir):
            yield

    monkeypatch.setattr(healing_study, "write_healing_csv", held_write)
    monkeypatch.setattr(healing_study, "heal_lock", signalling_lock, raising=False)
    errors: list[BaseException] = []

    def heal(config: HealingConfig) -> None:
        try:
            heal_study(out, config)
        except BaseException as err:  # reported by the main thread
            errors.append(err)
        finally:
            b_progressed.set()

    a = threading.Thread(target=heal, args=(cfg_a,), name="heal-A")
    a.start()
    assert a_writing.wait(30)
    b = threading.Thread(target=heal, args=(cfg_b,), name="heal-B")
    b.start()
    assert b_progressed.wait(30)  # B has healed (before) or waits for the lock
    release.set()
    a.join(30)
    b.join(30)
    assert not errors and not a.is_alive() and not b.is_alive()
    conn = sqlite3.connect(out / "study.sqlite")
    table = {r[0] for r in conn.execute("SELECT healing_config_sha256 FROM healing")}
    with (out / "healing.csv").open(newline="") as fh:
        in_csv = {r["healing_config_sha256"] for r in csv.DictReader(fh)}
    in_json = json.loads((out / "healing.json").read_text())["healing_config_sha256"]
    assert table == in_csv == {in_json}
    assert in_json in (healing_config_sha256(cfg_a), healing_config_sha256(cfg_b))


def test_heal_study_writes_own_table_and_csv(study):
    out = study["out"]
    conn = sqlite3.connect(out / "study.sqlite")
    n_meas = conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
    results = heal_study(out, cfg())
    assert len(results) == 2 and all(len(u.visits) == 3 for u in results)
    rows = conn.execute("SELECT subject_id, visit, status, heal_run FROM healing").fetchall()
    assert len(rows) == 6
    assert {r[2] for r in rows} <= {
        "baseline",
        "healed",
        "improving",
        "stable",
        "worsening",
        "recurred",
        "not_assessable",
    }
    first_run = rows[0][3]
    with (out / "healing.csv").open() as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 6
    # the CSV rounds (areas 0.01 mm², % 0.1, rates 0.01), the table keeps full precision
    for row in csv_rows:
        for col, decimals in (
            ("area_mm2", 2),
            ("change_from_baseline_pct", 1),
            ("healing_rate_mm2_per_week", 2),
        ):
            if row[col]:
                assert len(row[col].partition(".")[2]) <= decimals, (col, row[col])
    full = conn.execute("SELECT healing_rate_mm2_per_week FROM healing WHERE area_mm2 > 0").fetchall()
    assert any(round(a, 2) != a for (a,) in full)
    heal_study(out, cfg())  # rerun replaces, never appends
    assert conn.execute("SELECT COUNT(*) FROM healing").fetchone()[0] == 6
    assert conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == n_meas
    assert first_run  # a heal_run timestamp is recorded
    from click.testing import CliRunner

    from ulcerseg.cli import main

    res = CliRunner().invoke(main, ["heal", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 ulcers, 6 visits" in res.output


def test_exports_reflect_decisions(server, study, tmp_path: Path):
    client, app, _ = server
    s = _session(client, "Dr A")
    by_visit = {(it.subject_id, it.visit): it for it in app.items}
    acc = by_visit[("SUBJ-1001", "D0")]
    cor = by_visit[("SUBJ-1001", "W2")]
    na = by_visit[("SUBJ-1001", "W4")]
    s.json("/api/decision", {"key": acc.key, "action": "accept"})
    poly = [[10, 10], [30, 10], [30, 20], [10, 20]]
    _, body = s.json("/api/decision", {"key": cor.key, "action": "correct", "confirm": True, "polygon": poly})
    s.json("/api/decision", {"key": na.key, "action": "not_assessable", "confirm": True, "reason": "blurred"})

    path = export_final(study["out"], cfg())
    rows = {(r["subject_id"], r["visit"]): r for r in csv.DictReader(path.open())}
    assert len(rows) == 6
    r = rows[("SUBJ-1001", "D0")]
    assert r["final_source"] == "review" and r["review_action"] == "accept" and r["reviewer"] == "Dr A"
    assert float(r["final_area_mm2"]) == pytest.approx(acc.area_mm2)
    r = rows[("SUBJ-1001", "W2")]
    assert float(r["automated_area_mm2"]) == pytest.approx(cor.area_mm2)
    assert float(r["reviewed_area_mm2"]) == pytest.approx(body["area_after_mm2"])
    assert float(r["final_area_mm2"]) == pytest.approx(body["area_after_mm2"])
    r = rows[("SUBJ-1001", "W4")]
    assert r["status"] == "not_assessable" and r["final_area_mm2"] == "" and r["review_reason"] == "blurred"
    r = rows[("SUBJ-1002", "D0")]
    assert r["final_source"] == "automated" and r["reviewer"] == ""

    report = write_report(study["out"], cfg())
    # a mistyped -o never replaces the study database (it was overwritten with the HTML before)
    database = study["out"] / "study.sqlite"
    before = database.read_bytes()
    with pytest.raises(OutputError, match=r"study\.sqlite: is a study database"):
        write_report(study["out"], cfg(), database)
    assert database.read_bytes() == before
    text = report.read_text()
    assert "SUBJ-1002" in text and text.count("<figure>") == 6
    # what made the numbers (before: the report named no version, model or config)
    from ulcerseg import __version__
    from ulcerseg.healing import healing_config_sha256
    from ulcerseg.store import Study

    with Study.open(study["out"], for_reading=True) as opened:
        measured = [r for r in opened.latest_measurements() if r.get("model_sha256")]
    assert len({r["model_sha256"] for r in measured}) == 1
    assert (
        f"ulcerseg {__version__}. Measurements: ulcerseg {measured[0]['package_version']}; model SHA-256 "
        f"{measured[0]['model_sha256']}; config SHA-256 {measured[0]['config_sha256']}. Healing rules "
        f"SHA-256 {healing_config_sha256(cfg())}."
    ) in text

    pkg, key = export_blinded(study["out"], tmp_path / "pkg", cfg())
    assert not key.resolve().is_relative_to(pkg.resolve())
    blob = []
    for f in sorted(pkg.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            if f.suffix == ".png":
                assert png_metadata_chunks(data) == [], f
                assert b"SecretCam" not in data
            else:
                blob.append(data.decode())
            assert not any(s.encode() in data for s in SUBJECTS), f
            assert f.name[:16] not in study["photos"]  # no photo keys as names either
    assert not contains_date("\n".join(blob))
    items = list(csv.DictReader((pkg / "items.csv").open()))
    assert len(items) == 6 and all((pkg / i["image"]).is_file() for i in items)
    keymap = {k["item"]: k for k in csv.DictReader(key.open())}
    assert {k["subject_id"] for k in keymap.values()} == set(SUBJECTS)
    assert {i["item"] for i in items} == set(keymap)

    ds = export_training(study["out"], tmp_path / "train")
    from ulcerseg.training.dataset import load_dataset

    loaded = load_dataset(ds)  # the training code reads it as it is
    assert len(loaded) == 2 and loaded.px_per_mm == PPM and loaded.has_groups
    assert {s.group for s in loaded.samples} == {acc.subject_pseudonym}
    meta = yaml.safe_load((ds / "dataset.yaml").read_text())
    assert meta["n_images"] == 2 and meta["px_per_mm"] == PPM
    # provenance (before: none): this version, the review rules, and per image what measured it
    from ulcerseg import __version__
    from ulcerseg.healing import healing_config_sha256
    from ulcerseg.review.outputs import healing_config

    assert meta["package_version"] == __version__  # exported with the default review rules:
    assert meta["healing_config_sha256"] == healing_config_sha256(healing_config(None))
    from ulcerseg.store import Study

    with Study.open(study["out"], for_reading=True) as opened:
        rows = {r["photo_sha256"][:16]: r for r in opened.latest_measurements()}
    for e in meta["images"]:
        row = rows[Path(e["image"]).stem]
        assert (e["model_sha256"], e["config_sha256"], e["measured_by"]) == (
            row["model_sha256"],
            row["config_sha256"],
            row["package_version"],
        ) and e["model_sha256"]
    sources = {e["source"] for e in meta["images"]}
    assert sources == {"accept", "correct"}
    corrected = next(e for e in meta["images"] if e["source"] == "correct")
    m = np.asarray(Image.open(ds / corrected["mask"])) > 0
    assert m.sum() / PPM**2 == pytest.approx(body["area_after_mm2"])


def _accept_one_and_correct_another(server) -> tuple[ReviewItem, ReviewItem]:
    """Reader "Dr A" accepts the first item and corrects the second with a 20 x 10 px box."""
    client, app, _ = server
    s = _session(client, "Dr A")
    acc, cor = app.items[0], app.items[1]
    s.json("/api/decision", {"key": acc.key, "action": "accept"})
    poly = [[10, 10], [30, 10], [30, 20], [10, 20]]
    s.json("/api/decision", {"key": cor.key, "action": "correct", "confirm": True, "polygon": poly})
    return acc, cor


def test_a_corrected_mask_file_changed_after_its_decision_is_caught(server, study, tmp_path: Path):
    """The hash chain covered a correction's mask path and area, not the file: a mask replaced
    afterwards passed `review verify` and went into the training export."""
    from click.testing import CliRunner

    from ulcerseg.cli import main

    _accept_one_and_correct_another(server)
    out = str(study["out"])
    with sqlite3.connect(study["out"] / "study.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        (decision,) = [d for d in list_decisions(conn) if d["corrected_mask_file"]]
    recorded = json.loads(decision["details"])["corrected_mask_sha256"]
    mask = study["out"] / decision["corrected_mask_file"]
    assert hashlib.sha256(mask.read_bytes()).hexdigest() == recorded
    res = CliRunner().invoke(main, ["review", "verify", out])
    assert res.exit_code == 0 and "OK: 2 decisions" in res.output
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(mask)  # another outline, same name
    res = CliRunner().invoke(main, ["review", "verify", out])
    assert res.exit_code == 1
    assert f"corrected mask {decision['corrected_mask_file']} was changed after the decision" in res.output
    meta = yaml.safe_load((export_training(study["out"], tmp_path / "train") / "dataset.yaml").read_text())
    assert [e["source"] for e in meta["images"]] == ["accept"]  # never trained on it
    mask.unlink()
    res = CliRunner().invoke(main, ["review", "verify", out])
    assert res.exit_code == 1 and "is missing" in res.output


def test_a_correction_drawn_on_another_rectified_frame_is_not_exported(server, study, tmp_path: Path):
    """A photo measured again after its review (another model or config: another crop of the
    marker plane) kept the old corrected mask, and export-training paired it with the new
    rectified image, on which its pixels lie elsewhere."""
    _, cor = _accept_one_and_correct_another(server)
    meta = yaml.safe_load((export_training(study["out"], tmp_path / "a") / "dataset.yaml").read_text())
    assert sorted(e["source"] for e in meta["images"]) == ["accept", "correct"]
    with sqlite3.connect(study["out"] / "study.sqlite") as conn:  # as a new measurement would place it
        conn.execute(
            "UPDATE measurements SET rectified_origin_x_mm = rectified_origin_x_mm + 2"
            " WHERE photo_sha256 = ?",
            (cor.photo_sha256,),
        )
    meta = yaml.safe_load((export_training(study["out"], tmp_path / "b") / "dataset.yaml").read_text())
    assert [e["source"] for e in meta["images"]] == ["accept"]


def test_the_adjudication_view_draws_a_reading_only_where_its_outline_lies(server, study):
    """An adjudicator was shown a correction on whatever frame the photo had now: after a
    re-measure (another crop of the marker plane) its pixels were drawn in the wrong place, a
    mask file replaced after the decision was drawn as the reader's, and an accept from before
    0.3.1 was drawn as the new proposal."""
    from dataclasses import replace

    acc, cor = _accept_one_and_correct_another(server)
    views = ReviewViews(study["out"])
    with sqlite3.connect(study["out"] / "study.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        correction = dict(next(d for d in list_decisions(conn) if d["action"] == "correct"))
    (shown,) = views.view_json(cor, readings=[correction])["readings"]
    assert shown["outline_note"] is None
    xs = [x for poly in shown["contours"] for x, _ in poly]
    f = views.view_json(cor)["factor"]
    assert min(xs) == pytest.approx(10 * f, abs=f) and max(xs) == pytest.approx(30 * f, abs=f)
    # the photo measured again: another origin of its crop
    assert cor.origin_mm is not None
    moved = replace(cor, origin_mm=(cor.origin_mm[0] + 2, cor.origin_mm[1]))
    (shown,) = ReviewViews(study["out"]).view_json(moved, readings=[correction])["readings"]
    assert shown["contours"] == [] and "another rectified frame" in shown["outline_note"]
    # the mask file replaced after the decision
    mask_file = study["out"] / correction["corrected_mask_file"]
    Image.fromarray(np.full(np.asarray(Image.open(mask_file)).shape, 255, np.uint8)).save(mask_file)
    (shown,) = ReviewViews(study["out"]).view_json(cor, readings=[correction])["readings"]
    assert shown["contours"] == [] and "missing or changed" in shown["outline_note"]
    # an accept that kept no outline: the proposal while the area is the accepted one, then nothing
    accepted = dict(_accept_decision(study), details=None)  # as 0.3.0 recorded it
    view = ReviewViews(study["out"]).view_json(acc, readings=[accepted])
    assert view["readings"][0]["contours"] == view["contours"] != []
    later = replace(acc, area_mm2=(acc.area_mm2 or 0) + 1)
    (shown,) = ReviewViews(study["out"]).view_json(later, readings=[accepted])["readings"]
    assert shown["contours"] == [] and "measured again" in shown["outline_note"]
    # a healed rejection stands for the proposal; a photo not assessable has no outline
    rejected = {**accepted, "action": "reject_healed"}
    not_assessable = {**accepted, "action": "not_assessable"}
    shown = ReviewViews(study["out"]).view_json(later, readings=[rejected, not_assessable])["readings"]
    assert shown[0]["contours"] == view["contours"] and shown[0]["outline_note"] is None
    assert shown[1]["contours"] == [] and shown[1]["outline_note"] is None


def _measured_again(study: dict, item: ReviewItem, area_mm2: float) -> None:
    """As a new ``measure`` (another model, same crop) leaves a photo: another outline in the
    same mask file, another area in its row."""
    assert item.mask_path is not None
    mask = np.zeros_like(np.asarray(Image.open(item.mask_path)))
    mask[2:6, 2:9] = 255
    Image.fromarray(mask).save(item.mask_path)
    with sqlite3.connect(study["out"] / "study.sqlite") as conn:
        sql = "UPDATE measurements SET area_mm2 = ? WHERE photo_sha256 = ?"
        conn.execute(sql, (area_mm2, item.photo_sha256))


def _item_with_mask(item: ReviewItem, mask: Path) -> ReviewItem:
    from dataclasses import replace

    return replace(item, mask_path=mask)


def _accept_decision(study: dict) -> dict:
    with sqlite3.connect(study["out"] / "study.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        (decision,) = [d for d in list_decisions(conn) if d["action"] == "accept"]
    return dict(decision)


def test_an_accept_keeps_the_outline_it_accepted_when_the_photo_is_measured_again(
    server, study, tmp_path: Path
):
    """A re-measure replaced the automated mask file in place: the final table kept the accepted
    area, but the outline behind it was gone, and export-training paired the new outline with
    the accept."""
    acc, _ = _accept_one_and_correct_another(server)
    accepted = np.asarray(Image.open(acc.mask_path)) > 0
    decision = _accept_decision(study)
    details = json.loads(decision["details"])
    kept = study["out"] / details["accepted_mask_file"]
    assert decision["corrected_mask_file"] is None  # an accept is no correction (public column)
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == details["accepted_mask_sha256"]
    assert np.array_equal(np.asarray(Image.open(kept)) > 0, accepted)
    _measured_again(study, acc, area_mm2=0.28)
    with sqlite3.connect(study["out"] / "study.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        sql = "SELECT * FROM measurements WHERE photo_sha256 = ?"
        row = dict(conn.execute(sql, (acc.photo_sha256,)).fetchone())
    # the report draws the accepted outline, not the new automated one
    assert figure_mask_path(study["out"], decision, row, acc.rectified_path) == kept
    assert figure_mask_path(study["out"], None, row, acc.rectified_path) == acc.mask_path
    # an adjudicator sees the outline this reader accepted, not the new proposal
    view = ReviewViews(study["out"]).view_json(acc, readings=[decision])
    (reading,) = view["readings"]
    assert reading["contours"] != view["contours"]
    assert reading["contours"] == ReviewViews(study["out"]).view_json(_item_with_mask(acc, kept))["contours"]
    ds = export_training(study["out"], tmp_path / "train")
    meta = yaml.safe_load((ds / "dataset.yaml").read_text())
    (entry,) = [e for e in meta["images"] if e["source"] == "accept"]
    assert np.array_equal(np.asarray(Image.open(ds / entry["mask"])) > 0, accepted)
    assert verify_study(study["out"]).ok
    # the kept copy is checked like a corrected mask: replaced afterwards, it is caught and not trained on
    Image.fromarray(np.full(accepted.shape, 255, np.uint8)).save(kept)
    check = verify_study(study["out"])
    assert not check.ok and len(check.mask_problems) == 1
    assert check.mask_problems[0].startswith(
        f"decision {decision['decision_id']}: accepted mask {details['accepted_mask_file']} was changed"
    )
    meta = yaml.safe_load((export_training(study["out"], tmp_path / "b") / "dataset.yaml").read_text())
    assert [e["source"] for e in meta["images"]] == ["correct"]


def test_an_accept_whose_outline_was_not_kept_is_not_exported_once_measured_again(
    server, study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """An accept without its own copy of the outline (recorded by 0.3.0 or older, or its mask
    unreadable then): the row's automated mask is the accepted outline only until the photo
    is measured again."""
    from ulcerseg.review import decisions

    monkeypatch.setattr(decisions, "_keep_accepted_outline", lambda *args: None)
    acc, _ = _accept_one_and_correct_another(server)
    assert "accepted_mask_file" not in json.loads(_accept_decision(study)["details"] or "{}")
    meta = yaml.safe_load((export_training(study["out"], tmp_path / "a") / "dataset.yaml").read_text())
    assert sorted(e["source"] for e in meta["images"]) == ["accept", "correct"]
    _measured_again(study, acc, area_mm2=0.28)
    meta = yaml.safe_load((export_training(study["out"], tmp_path / "b") / "dataset.yaml").read_text())
    assert [e["source"] for e in meta["images"]] == ["correct"]


def test_an_outline_the_measured_area_did_not_come_from_cannot_be_accepted(server, study):
    """A re-measure still running (or stopped) has replaced the mask file but not the row: the
    reader saw the new outline beside the old area, and an accept kept that outline with it."""
    client, app, _ = server
    s = _session(client, "Dr A")
    item = app.items[0]
    _measured_again(study, item, area_mm2=item.area_mm2)  # the file is new, the row is not
    status, body = s.json("/api/decision", {"key": item.key, "action": "accept"})
    assert status == 400 and "is not the one of the area shown" in body["error"]
    assert "let `ulcerseg measure` finish" in body["error"] and "restart the review" in body["error"]
    assert _decisions_of(study) == [] and not (study["out"] / "review" / "masks").exists()
    _measured_again(study, item, area_mm2=28 / PPM**2)  # its row is stored (4 x 7 px): review again
    again = ReviewApp.load(study["out"], cfg())
    with serving(again) as base:
        reader = Client(base, again.add_reader("Dr B"), again)
        assert reader.json("/api/decision", {"key": item.key, "action": "accept"})[0] == 200
    assert [d["action"] for d in _decisions_of(study)] == ["accept"]


def _decisions_of(study: dict) -> list[dict]:
    with sqlite3.connect(study["out"] / "study.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(d) for d in list_decisions(conn)]


def test_accepted_outline_changed() -> None:
    """The rule behind it: the accepted area against the photo's current area."""
    old = {"action": "accept", "area_after_mm2": 12.5, "details": None, "corrected_mask_file": None}
    assert not accepted_outline_changed(old, {"area_mm2": 12.5})
    assert accepted_outline_changed(old, {"area_mm2": 12.75})
    assert accepted_outline_changed(old, {"area_mm2": None})
    kept = {**old, "details": json.dumps({"accepted_mask_file": "review/masks/k_d.png"})}
    assert not accepted_outline_changed(kept, {"area_mm2": 12.75})  # its own copy is exported
    correction = {**old, "action": "correct", "corrected_mask_file": "review/masks/k_c.png"}
    assert not accepted_outline_changed(correction, {"area_mm2": 12.75})


def test_training_export_without_reviewed_photos_is_an_error_that_writes_nothing(
    study: dict, tmp_path: Path
) -> None:
    # before: exit 0 and a dataset of 0 images, which training only refused later
    with pytest.raises(InputError, match="no accepted or corrected photo with its mask to export yet"):
        export_training(study["out"], tmp_path / "train")
    assert not (tmp_path / "train").exists()


def test_groups_csv_saved_by_a_spreadsheet_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    from ulcerseg.training.dataset import load_dataset

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / f"{stem}.png")
    (root / "groups.csv").write_text("stem,group\r\na,S1\r\nb,S2\r\n", encoding="utf-8-sig")
    spec = "{csv: groups.csv, stem_column: stem, group_column: group}"
    (root / "dataset.yaml").write_text(f"name: d\ngroups: {spec}\n")
    loaded = load_dataset(root)  # was: "missing column 'stem'" (the BOM joined the column name)
    assert {s.stem: s.group for s in loaded.samples} == {"a": "S1", "b": "S2"}


# --------------------------------------------------------------------------------------------
# double reading and adjudication
# --------------------------------------------------------------------------------------------


def _d(sha: str, who: str, action: str, area: float | None, role: str = "reader") -> dict:
    details = json.dumps({"role": "adjudicator"}) if role == "adjudicator" else None
    return {
        "photo_sha256": sha,
        "assessor": who,
        "action": action,
        "area_after_mm2": area,
        "details": details,
    }


def test_final_decision_rule_for_double_reading():
    from ulcerseg.review.decisions import final_decisions

    s = ReviewSettings()
    decisions = [
        _d("single", "A", "accept", 10.0),
        _d("agree", "A", "accept", 10.0),
        _d("agree", "B", "accept", 10.0),
        _d("dispute", "A", "accept", 10.0),
        _d("dispute", "B", "correct", 30.0),
        _d("settled", "A", "accept", 10.0),
        _d("settled", "B", "not_assessable", None),
        _d("settled", "C", "correct", 12.0, role="adjudicator"),
        _d("settled", "B", "accept", 40.0),  # a later reading does not reopen an adjudication
        _d("changed_mind", "A", "accept", 10.0),
        _d("changed_mind", "B", "correct", 30.0),
        _d("changed_mind", "B", "accept", 10.0),  # only each reader's latest reading counts
    ]
    final = final_decisions(decisions, HealingConfig(review=s))
    assert {k: (f.source, f.n_readers) for k, f in final.items()} == {
        "single": ("review", 1),
        "agree": ("review", 2),
        "dispute": ("unresolved_disagreement", 2),
        "settled": ("adjudication", 2),
        "changed_mind": ("review", 2),
    }
    assert final["dispute"].decision is None
    assert final["settled"].decision is not None and final["settled"].decision["assessor"] == "C"
    assert final["changed_mind"].decision is not None
    assert final["changed_mind"].decision["area_after_mm2"] == 10.0


def test_readings_on_either_side_of_the_healed_limit_are_a_disagreement():
    from ulcerseg.review.rules import final_decisions, find_disagreements

    decisions = [  # 0.3 and 0.7 mm²: within the 0.5 mm² and 10% tolerances, yet healed vs open
        _d("straddle", "A", "correct", 0.3),
        _d("straddle", "B", "correct", 0.7),
        _d("same_side", "A", "correct", 0.6),
        _d("same_side", "B", "correct", 0.9),
    ]
    config = HealingConfig()  # healed_max_area_mm2 0.5
    assert [(d["photo_sha256"], d["reason"]) for d in find_disagreements(decisions, config)] == [
        ("straddle", "area")
    ]
    final = final_decisions(decisions, config)
    assert final["straddle"].source == "unresolved_disagreement" and final["straddle"].decision is None
    assert final["same_side"].source == "review"


def test_a_missing_photo_gives_no_value_whatever_was_decided():
    from ulcerseg.review.rules import MISSING_PHOTO, final_rows

    def row(sha: str, file: str, status: str, visit: str, flagged: int = 1) -> dict:
        flags = "missing_file" if status == "missing" else ""
        return {"photo_sha256": sha, "file": file, "status": status, "flags": flags, "area_mm2": 4.0,
                "subject_id": "S1", "ulcer_id": "U1", "visit": visit, "needs_review": flagged}  # fmt: skip

    rows = [row("gone", "S1/W8/U1.jpg", "missing", "W8"), row("moved", "S1/W4/U1.jpg", "missing", "W4"),
            row("moved", "S1/W4/U1b.jpg", "measured", "W4"),
            row("base", "S1/D0/U1.jpg", "measured", "D0", 0)]  # fmt: skip
    decisions = [_d("gone", "A", "confirm_healed", 0.0), _d("moved", "A", "accept", 4.0)]
    fr = final_rows(rows, decisions, HealingConfig())
    assert fr.source == {"gone": MISSING_PHOTO, "moved": "review", "base": "automated"}
    gone, moved_missing, moved_here, _ = fr.rows
    assert gone["area_mm2"] is None and "healed_override" not in gone and "reviewed" not in gone
    assert moved_missing["area_mm2"] is None  # the old path gives nothing ...
    assert moved_here["area_mm2"] == 4.0 and moved_here["reviewed"]  # ... the bytes' new path does
    (ulcer,) = compute_healing(fr.rows, HealingConfig(schedule=()))
    assert {v.visit: v.status for v in ulcer.visits}["W8"] == "not_assessable"  # never healed


def test_adjudication_settles_a_disagreement_end_to_end(server, study, tmp_path: Path):
    from click.testing import CliRunner

    from ulcerseg.cli import main
    from ulcerseg.review.decisions import decision_role

    client, app, _ = server
    a, b = _session(client, "Dr A"), _session(client, "Dr B")
    agreed, disputed = app.items[:2]
    for s in (a, b):
        s.json("/api/decision", {"key": agreed.key, "action": "accept"})
    a.json("/api/decision", {"key": disputed.key, "action": "accept"})
    poly = [[0, 0], [60, 0], [60, 60], [0, 60]]  # 36 mm², far from the proposal
    b.json("/api/decision", {"key": disputed.key, "action": "correct", "confirm": True, "polygon": poly})

    # before adjudication the disputed visit has no final value
    rows = {r["photo_sha256"]: r for r in csv.DictReader(export_final(study["out"], cfg()).open())}
    assert rows[agreed.photo_sha256]["final_source"] == "review"
    assert rows[agreed.photo_sha256]["n_assessors"] == "2"
    assert rows[disputed.photo_sha256]["final_source"] == "unresolved_disagreement"
    assert rows[disputed.photo_sha256]["final_area_mm2"] == ""

    # the adjudication app offers only the disputed photo, with both readings, still blinded
    adj = ReviewApp.load(study["out"], cfg(), adjudicate=True)
    assert [it.key for it in adj.items] == [disputed.key]
    with serving(adj) as base:
        judge = Client(base, adj.add_reader("Dr C", adjudicator=True), adj)
        # a reader's token does not open the adjudication server
        assert Client(base, client.token).json("/api/items")[0] == 403
        status, listing = judge.json("/api/items")
        assert status == 200 and listing["adjudicate"] is True
        status, raw, _ = judge.request(f"/api/item/{disputed.key}")
        item = json.loads(raw)
        assert {(r["assessor"], r["action"]) for r in item["readings"]} == {
            ("Dr A", "accept"),
            ("Dr B", "correct"),
        }
        assert not any(subject.encode() in raw for subject in SUBJECTS)
        # each reader's corrected outline can be shown on the same frame
        [corr] = [r for r in item["readings"] if r["corrected"]]
        status, png, _ = judge.request(f"/image/{disputed.key}/reading/{corr['decision_id']}.png")
        with Image.open(io.BytesIO(png)) as im:
            assert status == 200 and im.size == (W, H) and (np.asarray(im) > 0).sum() == 60 * 60
        [acc] = [r for r in item["readings"] if not r["corrected"]]
        assert judge.request(f"/image/{disputed.key}/reading/{acc['decision_id']}.png")[0] == 404
        status, _ = judge.json("/api/decision", {"key": agreed.key, "action": "accept", "assessor": "Dr C"})
        assert status == 400  # not a disputed photo: not an adjudication item
        status, body = judge.json("/api/decision", {"key": disputed.key, "action": "accept"})
        assert status == 200

    conn = sqlite3.connect(study["out"] / "study.sqlite")
    last = list_decisions(conn)[-1]
    assert last["assessor"] == "Dr C" and decision_role(last) == "adjudicator"
    [dispute] = disagreements(conn, HealingConfig())
    assert dispute["photo_sha256"] == disputed.photo_sha256 and dispute["adjudicated"] is True
    res = CliRunner().invoke(main, ["review", "disagreements", str(study["out"])])
    assert res.exit_code == 0
    [listed] = list(csv.DictReader(io.StringIO(res.stdout)))
    assert listed["adjudicated"] == "True"

    rows = {r["photo_sha256"]: r for r in csv.DictReader(export_final(study["out"], cfg()).open())}
    r = rows[disputed.photo_sha256]
    assert r["final_source"] == "adjudication" and r["reviewer"] == "Dr C"
    assert float(r["final_area_mm2"]) == pytest.approx(disputed.area_mm2)
    ds = export_training(study["out"], tmp_path / "train", config=cfg())
    meta = yaml.safe_load((ds / "dataset.yaml").read_text())
    assert {e["decision_id"] for e in meta["images"]} >= {body["decision_id"]}
    assert meta["n_images"] == 2  # the agreed photo and the adjudicated one


def test_report_template_escapes_every_value() -> None:
    from ulcerseg.review.report import REPORT_COLUMNS, render_report

    evil = "<script>alert(1)</script>"
    html = render_report(
        [
            {
                "subject_id": evil,
                "ulcer_id": "U1' onload='x",
                "is_cardinal": True,
                "plot_uri": "data:image/png;base64,AAAA",
                "rows": [[evil] * len(REPORT_COLUMNS)],
                "figures": [{"uri": "data:image/png;base64,AAAA", "visit": "D0", "status": evil}],
            }
        ]
    )
    assert "<script>" not in html and html.count("&lt;script&gt;") == 2 + len(REPORT_COLUMNS)
    assert "U1&#39; onload=&#39;x" in html
    assert html.count("<figure>") == 1 and "(cardinal)" in html


def test_report_plot_starts_at_zero_and_marks_healed() -> None:
    import matplotlib.pyplot as plt

    from ulcerseg.review.report import area_figure

    visits = [
        {"study_day": 0, "automated_area_mm2": 18.9, "final_area_mm2": 18.9, "status": "baseline"},
        {"study_day": 28, "automated_area_mm2": 17.4, "final_area_mm2": 16.0, "status": "stable"},
        {"study_day": 56, "automated_area_mm2": 0.8, "final_area_mm2": 0.3, "status": "healed"},
    ]
    fig = area_figure(visits, "S001 / U1", healed_limit_mm2=0.5)
    try:
        (ax,) = fig.axes
        assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] >= 18.9
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["automated", "final (after review)", "healed", "healed limit"]
        healed = ax.collections[0].get_offsets()
        assert healed.tolist() == [[56.0, 0.3]]  # the healed visit, at its final area
        assert all(float(t).is_integer() for t in ax.get_xticks())
    finally:
        plt.close(fig)


def test_blinded_package_leaves_out_missing_photos_and_bytes_at_several_paths(
    study, tmp_path: Path, monkeypatch
):
    import contextlib

    import ulcerseg.review.blinded as blinded

    conn = sqlite3.connect(study["out"] / "study.sqlite")
    with conn:
        conn.execute("UPDATE photos SET missing_since = '2024-05-01' WHERE file = 'SUBJ-1001/D0/p.jpg'")
    real_open = blinded.open_study

    @contextlib.contextmanager
    def with_a_copy(out_dir, **kw):  # the W2 photo's bytes also filed under W4 of the other subject
        with real_open(out_dir, **kw) as (c, rows):
            (w2,) = [r for r in rows if r["file"] == "SUBJ-1001/W2/p.jpg"]
            yield c, [*rows, dict(w2, file="SUBJ-1002/W4/copy.jpg", subject_id="SUBJ-1002")]

    monkeypatch.setattr(blinded, "open_study", with_a_copy)
    pkg, key = export_blinded(study["out"], tmp_path / "pkg", cfg())
    keys = list(csv.DictReader(key.open()))
    items = list(csv.DictReader((pkg / "items.csv").open()))
    left = {(k["subject_id"], k["visit"]) for k in keys}
    assert ("SUBJ-1001", "D0") not in left and ("SUBJ-1001", "W2") not in left  # was: 7 rows, one id twice
    assert len(items) == len(keys) == 4 and len({k["item"] for k in keys}) == 4


def test_a_photo_no_longer_at_its_path_is_not_served_for_review(study):
    conn = sqlite3.connect(study["out"] / "study.sqlite")
    before = {i.photo_sha256 for i in ReviewApp.load(study["out"], cfg()).items}
    (gone,) = [
        sha for (sha,) in conn.execute("SELECT photo_sha256 FROM photos WHERE file = 'SUBJ-1001/W2/p.jpg'")
    ]
    with conn:
        conn.execute("UPDATE photos SET missing_since = '2024-05-01' WHERE file = 'SUBJ-1001/W2/p.jpg'")
    after = {i.photo_sha256 for i in ReviewApp.load(study["out"], cfg()).items}
    assert gone in before and after == before - {gone}  # its decision could never count


def test_the_blinded_package_has_a_visit_column_only_when_configured(study, tmp_path: Path):
    """show_visit_label false (the default): items.csv has no visit column at all; true: each
    item carries its own visit label. The key file is never accepted inside the package."""
    pkg, _ = export_blinded(study["out"], tmp_path / "pkg", cfg())
    with (pkg / "items.csv").open(newline="") as fh:
        assert next(csv.reader(fh)) == ["item", "subject", "ulcer", "area_mm2", "px_per_mm", "image", "mask"]
    shown, key = export_blinded(study["out"], tmp_path / "shown", cfg(show_visit_label=True))
    keymap = {k["item"]: k["visit"] for k in csv.DictReader(key.open())}
    items = list(csv.DictReader((shown / "items.csv").open()))
    assert len(items) == 6 and all(i["visit"] == keymap[i["item"]] for i in items)
    assert {i["visit"] for i in items} == set(VISITS)
    with pytest.raises(InputError, match="must not be inside the blinded package"):
        export_blinded(study["out"], tmp_path / "p3", cfg(), key_file=tmp_path / "p3" / "key.csv")
    assert not (tmp_path / "p3").exists()
    # a key file that would replace the study database is refused before the package is written
    # (before: after it, leaving a package without a key that a second try called "not empty")
    with pytest.raises(OutputError, match="is a study database"):
        export_blinded(study["out"], tmp_path / "p4", cfg(), key_file=study["out"] / "study.sqlite")
    assert not (tmp_path / "p4").exists()

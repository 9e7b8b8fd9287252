"""Property tests of the review server's HTTP surface (hypothesis): every request is hostile.

One server per module (a tiny study, two readers, a revoked reader, an adjudicator, a photo
without a marker) is driven over a real socket on 127.0.0.1 with generated requests: JSON
bodies of every type in every field, lying framing, foreign and missing headers, odd paths and
protocol garbage. For every request:

- the answer is a well-formed HTTP response (status line, headers, a body as long as its
  Content-Length), never a 5xx, and names no file of the study, no subject, no exception class
  and no traceback; the server answers the next request;
- the audit trail (decisions: row count and head hash of the chain, sessions, kept masks) is
  unchanged unless the request carried a valid reader credential, came from this server's
  origin with ``Content-Type: application/json``, and was answered 200;
- what a 200 records is recorded under the credential's reader, whatever the body says.

Deterministic under the "ci" profile (tests/conftest.py); ``HYPOTHESIS_PROFILE=explore`` searches
with the profile's 2000 examples per test.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_review import H, W, cfg, make_study, serving
from test_review_manual_scale import _add_markerless_photo

from ulcerseg.review.server import MAX_BODY, ReviewApp, cookie_name
from ulcerseg.store.review import revoke_reader, verify_chain

_EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"


def budget(n: int) -> settings:
    """``n`` examples under the ci profile; the profile's own count when exploring."""
    return settings(
        max_examples=settings.default.max_examples if _EXPLORE else n,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# --------------------------------------------------------------------------- the server


class Site:
    """The running server and what the tests know of it (a plain class: hypothesis prints it
    with a failing example, and a dataclass would be printed field by field)."""

    def __init__(self, base: str, root: Path, out: Path, app: ReviewApp, names: dict[str, str]) -> None:
        self.base, self.root, self.out, self.app, self.names = base, root, out, app, names
        self.port = int(base.rsplit(":", 1)[1])
        self.tokens: dict[str, str] = {}  # who -> token ("A", "B": readers; "R": revoked; "J": adjudicator)
        self.keys = [it.key for it in app.items]  # review items
        self.manual_key = app.manual_items[0].key  # a photo without a marker
        self.sessions: dict[str, str] = {}  # who -> a session of theirs

    def __repr__(self) -> str:
        return f"Site({self.base})"

    @property
    def origin(self) -> str:
        return self.base

    def reader_of(self, token: str) -> str | None:
        """The name of the active reader (role reader) holding ``token``."""
        for who in ("A", "B"):
            if self.tokens[who] == token:
                return self.names[who]
        return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("prop_http")
    study = make_study(root)
    out = study["out"]
    _add_markerless_photo(root, out)
    app = ReviewApp.load(out, cfg())
    app.request_timeout_s = 2.0
    assert app.manual_items and app.items
    names = {"A": "Dr A", "B": "Dr B", "R": "Dr Revoked", "J": "Judge"}
    tokens = {who: app.add_reader(name, adjudicator=who == "J") for who, name in names.items()}
    conn = app.connect()
    try:
        revoke_reader(conn, names["R"])
    finally:
        conn.close()
    with serving(app) as base:
        s = Site(base, root, out, app, names)
        s.tokens = tokens
        for who in ("A", "B"):
            reply = exchange(
                s, request(s, "POST", "/api/session", {"Authorization": f"Bearer {tokens[who]}"}, b"{}")
            )
            assert reply.status == 200, reply
            s.sessions[who] = json.loads(reply.body)["session_id"]
        yield s
    conn = sqlite3.connect(out / "study.sqlite")
    try:
        assert verify_chain(conn).ok  # whatever was recorded, the chain is intact
    finally:
        conn.close()


# --------------------------------------------------------------------------- raw requests


@dataclass
class Reply:
    raw: bytes
    status: int | None = None  # None: no HTTP status line
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class _Canned:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, *_args: Any, **_kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self.data)


def request(
    site: Site,
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes | None = None,
    *,
    origin: bool = True,
    json_type: bool = True,
    length: bool = True,
) -> bytes:
    """A request's bytes: Host, then (unless switched off) Origin, Content-Type and Content-Length."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{site.port}"]
    if origin:
        head.append(f"Origin: {site.origin}")
    if body is not None and json_type:
        head.append("Content-Type: application/json")
    if body is not None and length:
        head.append(f"Content-Length: {len(body)}")
    head += [f"{k}: {v}" for k, v in items]
    return "\r\n".join(head).encode("utf-8") + b"\r\n\r\n" + (body or b"")


def exchange(site: Site, raw: bytes, method: str = "POST") -> Reply:
    """Send ``raw`` on a fresh connection, half-close it (the server sees the end of the request)
    and read the answer to the end; parse it as the reply to ``method``."""
    chunks = []
    with socket.create_connection(("127.0.0.1", site.port), timeout=15) as s:
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # a broken pipe, a reset, or not connected any more
            pass  # the server answered (and closed) before reading everything: read its answer
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    reply = Reply(data)
    if not data.startswith(b"HTTP/"):
        return reply
    res = HTTPResponse(_Canned(data), method=method)  # type: ignore[arg-type]
    try:
        res.begin()
        reply.status, reply.headers = res.status, list(res.getheaders())
        reply.body = res.read()
    except (HTTPException, ValueError) as err:
        raise AssertionError(f"malformed HTTP response {data[:300]!r}: {err!r}") from None
    return reply


_EXCEPTION_NAME = re.compile(
    rb"\b[A-Z][A-Za-z0-9_]*(?:Error|Exception|Interrupt|Warning)\b|\bsqlite3\b|\bnumpy\b"
)


_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")
"""Methods the server dispatches; another one is answered 501 Not Implemented, as HTTP says."""


def check_clean(site: Site, raw_request: bytes, reply: Reply, method: str = "POST") -> None:
    """Well-formed, not a 5xx, no traceback, study path, subject ID or exception class in it."""
    assert reply.status is not None, f"no HTTP response to {raw_request[:300]!r}: {reply.raw[:300]!r}"
    if reply.status == 501 and raw_request.split(b" ", 1)[0].decode("latin-1") not in _METHODS:
        assert json.loads(reply.body)["error"]
    else:
        assert 100 <= reply.status < 500, (reply.status, reply.body[:300], raw_request[:300])
    length = reply.header("Content-Length")
    assert length is not None and length.isdigit(), reply.headers
    if method != "HEAD":
        assert len(reply.body) == int(length)
    assert reply.header("Content-Type"), reply.headers
    check_no_leak(site, raw_request, reply.raw)
    if reply.status >= 400 and method != "HEAD" and reply.header("Content-Type") == "application/json":
        assert isinstance(json.loads(reply.body)["error"], str)
    elif reply.status >= 400 and method != "HEAD":  # the login page that needs a click is HTML
        assert reply.status == 409 and reply.header("Content-Type") == "text/html; charset=utf-8", reply


def check_no_leak(site: Site, raw_request: bytes, data: bytes) -> None:
    """Nothing the server knows and the client did not send: traceback, paths, subjects, classes."""
    for secret in (
        b"Traceback",
        b'File "',
        str(site.root).encode(),
        str(site.out).encode(),
        b"SUBJ-",
        b"/tmp/",
    ):
        assert secret not in data or secret in raw_request, (secret, data[:400])
    for m in _EXCEPTION_NAME.finditer(data):
        assert m.group(0) in raw_request, (m.group(0), data[:400])


@dataclass(frozen=True)
class State:
    n_decisions: int
    head: str
    sessions: tuple[tuple[str, str], ...]
    masks: tuple[str, ...]


def state(site: Site) -> State:
    conn = sqlite3.connect(f"file:{site.out / 'study.sqlite'}?mode=ro", uri=True)
    try:
        chain = verify_chain(conn)
        sessions = tuple(conn.execute("SELECT session_id, assessor FROM review_sessions ORDER BY session_id"))
    finally:
        conn.close()
    masks_dir = site.out / "review" / "masks"
    masks = tuple(sorted(p.name for p in masks_dir.iterdir())) if masks_dir.exists() else ()
    return State(chain.n_rows, chain.head, sessions, masks)


def new_assessors(site: Site, before: State, after: State) -> set[str]:
    """Who the decisions and sessions added between ``before`` and ``after`` are recorded under;
    a decision's session is its assessor's own."""
    conn = sqlite3.connect(f"file:{site.out / 'study.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT d.assessor, d.session_id, s.assessor FROM review_decisions d"
            " LEFT JOIN review_sessions s ON s.session_id = d.session_id WHERE d.seq > ?",
            (before.n_decisions,),
        ).fetchall()
    finally:
        conn.close()
    for assessor, session_id, session_owner in rows:
        assert session_id is None or session_owner == assessor, (assessor, session_id, session_owner)
    return {r[0] for r in rows} | {a for s, a in set(after.sessions) - set(before.sessions)}


def alive(site: Site) -> None:
    reply = exchange(
        site, request(site, "GET", "/api/me", {"Authorization": f"Bearer {site.tokens['A']}"}), "GET"
    )
    assert reply.status == 200 and json.loads(reply.body)["name"] == "Dr A", reply


# --------------------------------------------------------------------------- strategies

# text that is not plain: controls, bidi overrides, lone surrogates, non-BMP, zero-width, NUL
_ODD = ["\x00", "\n", "\r\n", "\x1b[31m", "\u202e", "\u2066", "\u200b", "\ufeff", "\ud800", "\udfff",
        "\U0001f600", "é", "ｆｕｌｌ", "\x85", "\x7f", "%00", "../", "'; DROP TABLE review_decisions; --",
        "=1+1"]  # fmt: skip
odd_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.lists(st.sampled_from(_ODD), max_size=4).map("".join),
    st.integers(0, 70_000).map(lambda n: "x" * n),
)
huge_numbers = st.one_of(
    st.integers(),
    st.integers(-(10**400), 10**400),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 5e-324, 2**63, -(2**63) - 1]),
    st.floats(),
)
scalars = st.one_of(st.none(), st.booleans(), huge_numbers, odd_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)),
    max_leaves=12,
)


def _png(width: int, height: int, mode: str, fill: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    im = Image.new(mode, (width, height), fill if mode != "RGBA" else (fill, fill, fill, 255))
    if mode in ("L", "1", "RGBA"):
        im.paste(255 if mode != "RGBA" else (255, 255, 255, 255), (10, 10, 40, 30))
    im.save(buf, "PNG")
    return buf.getvalue()


def _raw_png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@st.composite
def mask_pngs(draw: st.DrawFn) -> Any:
    """A mask_png field: a PNG of the frame's size or another, of any mode, possibly broken."""
    import base64

    size = draw(st.sampled_from([(W, H), (W, H), (W + 1, H), (1, 1), (W, H - 1)]))
    kind = draw(st.sampled_from(["good", "truncated", "flipped", "raw_idat", "mode"]))
    if kind == "raw_idat":
        data = _raw_png(*size, draw(st.binary(max_size=64)))
    else:
        mode = draw(st.sampled_from(["L", "1", "RGBA", "P", "I;16", "I", "F"])) if kind == "mode" else "L"
        try:
            data = _png(*size, mode, draw(st.integers(0, 255)))
        except (OSError, ValueError, KeyError):
            data = _png(*size, "L", 0)
        if kind == "truncated":
            data = data[: draw(st.integers(24, max(24, len(data) - 1)))]
        elif kind == "flipped" and len(data) > 33:
            i = draw(st.integers(33, len(data) - 1))
            data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    text = base64.b64encode(data).decode()
    return draw(st.sampled_from([text, "data:image/png;base64," + text, text[:-1], text + "!"]))


def polygons_in(width: float, height: float, n_max: int = 8) -> st.SearchStrategy[list[list[float]]]:
    huge = st.sampled_from([10**400, -(10**400)])  # a JSON integer no float holds
    coord_x = st.one_of(st.integers(-2, int(width) + 2), st.floats(-1.5, width + 1.5, allow_nan=False), huge)
    coord_y = st.one_of(
        st.integers(-2, int(height) + 2), st.floats(-1.5, height + 1.5, allow_nan=False), huge
    )
    return st.lists(st.tuples(coord_x, coord_y).map(list), min_size=0, max_size=n_max)


_MISSING = object()


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field a plausible request may leave out (``_MISSING``)."""
    return st.one_of(st.just(_MISSING), strategy)


@st.composite
def body_for(draw: st.DrawFn, site: Site, route: str) -> Any:
    """A JSON body for ``route``: every field plausible, or (at a rate drawn per body) any JSON
    value or missing; plus keys naming another reader, their token or their session, and keys
    of odd text. Sometimes not an object at all."""
    keys = st.one_of(
        st.sampled_from(site.keys),
        st.sampled_from([site.manual_key, site.keys[0].upper(), site.keys[0] + "\n", "0" * 16]),
    )
    actions = st.one_of(
        st.sampled_from(["accept", "correct", "reject_healed", "not_assessable", "confirm_healed"]),
        st.sampled_from(["skip", "undo", "ACCEPT", "accept "]),
    )
    # a correction inside the frame: a rectangle, sometimes any few points
    corners = st.tuples(st.integers(0, W - 2), st.integers(0, H - 2), st.integers(1, W), st.integers(1, H))
    rectangles = corners.map(
        lambda r: [[r[0], r[1]], [min(W, r[0] + r[2]), r[1]], [min(W, r[0] + r[2]), min(H, r[1] + r[3])],
                   [r[0], min(H, r[1] + r[3])]]
    )  # fmt: skip
    if route == "/api/decision":
        fields = {
            "key": keys,
            "action": actions,
            "reason": optional(st.sampled_from(["no ruler visible", "no ruler visible", "  ", "x" * 501])),
            "confirm": optional(st.booleans()),
            "polygon": optional(st.one_of(rectangles, polygons_in(W, H))),
            "polygons": optional(st.lists(st.one_of(rectangles, polygons_in(W * 2, H * 2)), max_size=3)),
            "px_per_mm": optional(st.sampled_from([10.0, 20.0, 10.000001, 0.0, -10.0, 1e-300, 10**400])),
            "mask_png": optional(mask_pngs()),
        }
    elif route == "/api/manual-scale":
        fields = {
            "key": st.sampled_from([site.manual_key, site.manual_key, *site.keys[:1]]),
            "scale_points": st.one_of(st.just([[100, 420], [300, 420]]), polygons_in(640, 480, 3)),
            "points": optional(polygons_in(640, 480, 3)),
            "length_mm": st.one_of(
                st.sampled_from([10.0, 10**400, -(10**400)]), st.floats(-1, 2000, allow_nan=False)
            ),
            "polygon": polygons_in(640, 480),
            "confirm": optional(st.booleans()),
            "frame": optional(st.sampled_from(["photo", "photo", "review"])),
            "action": optional(st.sampled_from(["correct", "correct", "accept"])),
        }
    elif route == "/api/undo":
        fields = {"decision_id": optional(st.sampled_from(["0" * 16, ""]))}
    else:
        fields = {}
    fields["session_id"] = st.one_of(
        st.sampled_from([_MISSING, site.sessions["A"]]), st.sampled_from([site.sessions["B"], "0" * 32, ""])
    )
    wild = draw(st.sampled_from([0, 0, 0, 1, 3]), label="wild fields in 10")
    body = {}
    for name, plausible in fields.items():
        if draw(st.integers(0, 9)) < wild:
            body[name] = draw(st.one_of(json_values, st.just(_MISSING)))
        else:
            body[name] = draw(plausible)
    claims = st.lists(st.sampled_from(["assessor", "reader", "name", "role", "token", "user"]), max_size=3)
    for k in draw(claims):
        body[k] = draw(
            st.one_of(st.sampled_from([*site.names.values(), "adjudicator", site.tokens["B"]]), json_values)
        )
    if wild:
        body.update(draw(st.dictionaries(odd_text, json_values, max_size=2)))
    body = {k: v for k, v in body.items() if v is not _MISSING}
    return draw(st.one_of(st.just(body), st.just(body), st.just(body), json_values))


ENDPOINT_ACTIONS = ("not_assessable", "confirm_healed")
"""Decisions that change the endpoint: saved only with ``"confirm": true`` (README, Decisions)."""

POST_ROUTES = ("/api/decision", "/api/manual-scale", "/api/undo", "/api/session")


def encode_json(value: Any) -> bytes:
    """JSON text as a browser or an attacker may send it (NaN/Infinity literals included)."""
    return json.dumps(value, allow_nan=True).encode("utf-8")


def check_state_rule(site: Site, before: State, after: State, reply: Reply, allowed: set[str]) -> None:
    """State changes only with a 200, and is recorded under a reader in ``allowed``."""
    if after == before:
        return
    assert reply.status == 200, ("state changed by a refused request", reply.status, reply.body[:300])
    who = new_assessors(site, before, after)
    assert who and who <= allowed, (who, allowed)
    assert after.n_decisions - before.n_decisions <= 1 and len(after.sessions) - len(before.sessions) <= 1


def send_as_reader_a(site: Site, raw: bytes, route: str) -> tuple[Reply, State, State]:
    """Send ``raw`` (Dr A's credential); check the answer is clean and that state changed only
    with a 200, recorded as Dr A's. Returns the reply and the state before and after."""
    before = state(site)
    reply = exchange(site, raw)
    event(f"{route} {reply.status}")
    check_clean(site, raw, reply)
    after = state(site)
    check_state_rule(site, before, after, reply, {"Dr A"})
    return reply, before, after


# --------------------------------------------------------------------------- properties


@budget(200)
@given(data=st.data())
def test_any_json_body_from_a_logged_in_reader_is_answered_cleanly_and_recorded_as_theirs(site, data):
    """Every POST route, every field of every type (or missing, or naming another reader): a clean
    answer, no state change unless 200, and what is recorded is Dr A's, the credential's reader."""
    route = data.draw(st.sampled_from(["/api/decision", "/api/decision", *POST_ROUTES]), label="route")
    body = data.draw(body_for(site, route), label="body")
    cred = data.draw(
        st.sampled_from([
            ("Authorization", f"Bearer {site.tokens['A']}"),
            ("X-Review-Token", site.tokens["A"]),
            ("Cookie", f"{cookie_name(site.port)}={site.tokens['A']}"),
        ]),
        label="credential",
    )  # fmt: skip
    raw = request(site, "POST", route, [cred], encode_json(body))
    reply, before, after = send_as_reader_a(site, raw, route)
    if reply.status == 200 and route != "/api/session":
        assert json.loads(reply.body).get("assessor", "Dr A") == "Dr A"
        assert after.n_decisions == before.n_decisions + 1
    endpoint_change = route == "/api/manual-scale" or (
        route == "/api/decision" and isinstance(body, dict) and body.get("action") in ENDPOINT_ACTIONS
    )
    if reply.status == 200 and endpoint_change:  # an endpoint change takes a second, explicit step
        assert body.get("confirm") is True, body
    alive(site)


def _credentials(site: Site, valid_only: bool = False) -> st.SearchStrategy[list[tuple[str, str]]]:
    """0-3 credential headers: readers A and B, a revoked reader, the adjudicator, forged and
    odd tokens, as Bearer, X-Review-Token or the cookie (of this port, another port, quoted)."""
    tokens = st.one_of(
        st.sampled_from([site.tokens[w] for w in "ABRJ"]),
        st.sampled_from(
            ["", "null", site.tokens["A"][:-1], site.tokens["A"] + "x", site.tokens["A"].upper()]
        ),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=50),
    )
    one = st.one_of(
        tokens.map(lambda t: ("Authorization", f"Bearer {t}")),
        tokens.map(lambda t: ("Authorization", f"Basic {t}")),
        tokens.map(lambda t: ("X-Review-Token", t)),
        tokens.map(lambda t: ("Cookie", f"{cookie_name(site.port)}={t}")),
        tokens.map(lambda t: ("Cookie", f'{cookie_name(site.port)}="{t}"; other=1')),
        tokens.map(lambda t: ("Cookie", f"{cookie_name(site.port + 1)}={t}")),
        tokens.map(lambda t: ("Cookie", f"ulcerseg_review_token={t}")),
        st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60).map(lambda t: ("Cookie", t)),
    )
    valid = st.sampled_from([site.tokens["A"], site.tokens["B"]]).flatmap(
        lambda t: st.sampled_from(
            [
                ("Authorization", f"Bearer {t}"),
                ("X-Review-Token", t),
                ("Cookie", f"{cookie_name(site.port)}={t}"),
            ]
        )
    )
    if valid_only:
        return st.lists(valid, min_size=1, max_size=1)
    # one concrete credential of each kind that must not act for a reader of this server
    not_a_reader = st.sampled_from([
        ("Authorization", f"Bearer {site.tokens['R']}"),  # revoked
        ("Authorization", f"Bearer {site.tokens['J']}"),  # an adjudicator on the readers' server
        ("X-Review-Token", site.tokens["R"]),
        ("Cookie", f"{cookie_name(site.port)}={site.tokens['J']}"),
        ("Cookie", f"{cookie_name(site.port + 1)}={site.tokens['A']}"),  # another server's session
        ("Authorization", f"Bearer {site.tokens['A']}x"),  # forged
        ("Authorization", f"Basic {site.tokens['A']}"),
    ])  # fmt: skip
    return st.one_of(
        st.lists(not_a_reader, min_size=1, max_size=1),
        st.lists(one, max_size=3),
        st.lists(st.one_of(valid, one), max_size=3),
    )


def _header_value(site: Site, own: list[str]) -> st.SearchStrategy[str]:
    foreign = [
        "http://evil.example",
        "null",
        "",
        f"http://127.0.0.1:{site.port + 1}",
        f"https://127.0.0.1:{site.port}",
        f"http://127.0.0.1:{site.port}.evil.example",
        f"http://evil.example@127.0.0.1:{site.port}",
        f"http://127.0.0.1:{site.port}@evil.example",
        f"http://[::1]:{site.port}",
        "http://[",
        f"http://[127.0.0.1:{site.port}",
        f"//127.0.0.1:{site.port}",
        f"HTTP://127.0.0.1:{site.port}",
    ]
    return st.one_of(
        st.sampled_from(own + foreign),
        st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40),
    )


@st.composite
def header_sets(draw: st.DrawFn, site: Site) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Headers of a state-changing request: Host, Origin/Referer, Content-Type, credentials,
    each as a logged-in reader's page sends it, or missing, foreign or duplicated. Returns them
    and what they amount to."""
    own_hosts = [f"{h}:{site.port}" for h in ("127.0.0.1", "localhost", "[::1]")]
    own_origins = [f"http://{h}" for h in own_hosts]

    # one thing broken at a time (or none, or everything drawn freely): each check is met alone
    broken = draw(
        st.sampled_from(["none", "host", "origin", "referer", "ctype", "creds", "all"]), label="broken"
    )

    def good_or(what: str, good: list[str], other: st.SearchStrategy[list[str]]) -> list[str]:
        return draw(other) if broken in (what, "all") else good

    hosts = good_or(
        "host",
        own_hosts[:1],
        st.lists(_header_value(site, own_hosts).map(lambda v: v.removeprefix("http://")), max_size=2),
    )
    origins = good_or("origin", [site.origin], st.lists(_header_value(site, own_origins), max_size=2))
    if broken == "referer":  # no Origin: the Referer decides
        origins = []
    odd_referers = [
        "http://[",
        f"http://[127.0.0.1:{site.port}/",
        "http://]",
        f"http://127.0.0.1:{site.port}",
    ]
    referers = good_or(
        "referer",
        [],
        st.one_of(
            st.lists(
                st.sampled_from([*odd_referers, *(o + "/" for o in own_origins)]), min_size=1, max_size=2
            ),
            st.lists(_header_value(site, [o + "/" for o in own_origins]), max_size=2),
        ),
    )
    ctypes = good_or(
        "ctype",
        ["application/json"],
        st.lists(
            st.sampled_from([
                "application/json", "application/json; charset=utf-8", "Application/JSON", "text/plain",
                "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json;",
                "application/jsonx", "",
            ]),
            max_size=2,
        ),
    )  # fmt: skip
    creds = draw(_credentials(site, valid_only=broken not in ("creds", "all")))
    headers = (
        [("Host", h) for h in hosts] + [("Origin", o) for o in origins] + [("Referer", r) for r in referers]
    )
    headers += [("Content-Type", c) for c in ctypes] + creds
    fetch = draw(st.sampled_from([None, "none", "same-origin", "cross-site"]))
    if fetch:
        headers.append(("Sec-Fetch-Site", fetch))
    headers = draw(st.permutations(headers))
    # what the request amounts to, whatever the server makes of duplicated headers: the first
    # Host, Origin, Referer and Content-Type are the ones a server reads
    first: dict[str, str] = {}
    for k, v in headers:
        first.setdefault(k, v)
    ref = first.get("Referer", "")
    scheme, _, rest = ref.partition("://")  # the scheme is case-insensitive, the host is compared as sent
    same_origin = first.get("Origin") in own_origins or (
        not first.get("Origin") and scheme.lower() == "http" and rest.split("/", 1)[0] in own_hosts
    )
    valid = set()
    for k, v in creds:
        for t in (site.tokens["A"], site.tokens["B"]):
            if t in v and site.reader_of(t) and (k != "Cookie" or cookie_name(site.port) + "=" in v):
                valid.add(site.reader_of(t))
    facts = {
        "host_ok": first.get("Host") in own_hosts,
        "same_origin": same_origin,
        "json": first.get("Content-Type", "").split(";")[0].strip().lower() == "application/json",
        "readers": valid,
    }
    return headers, facts


@budget(250)
@given(data=st.data())
def test_only_a_credentialed_same_origin_json_request_changes_the_audit_trail(site, data):
    """Plausible bodies that a logged-in reader's page would send, under every mix of Host,
    Origin, Referer, Content-Type and credentials (another reader's cookie, a revoked or forged
    token, an adjudicator's, another port's cookie, duplicated headers)."""
    headers, facts = data.draw(header_sets(site), label="headers")
    route = data.draw(st.sampled_from(["/api/decision", *POST_ROUTES]), label="route")
    key = data.draw(st.sampled_from(site.keys), label="key")
    claimed = data.draw(st.sampled_from(["Dr B", "Dr A", "Dr Revoked", "Judge"]), label="claimed")
    session = data.draw(st.sampled_from([None, site.sessions["A"], site.sessions["B"]]), label="session_id")
    body = {
        "/api/decision": {"key": key, "action": "accept", "assessor": claimed},
        "/api/manual-scale": {
            "key": site.manual_key,
            "scale_points": [[100, 420], [300, 420]],
            "length_mm": 10.0,
            "polygon": [[250, 150], [390, 150], [390, 250], [250, 250]],
            "confirm": True,
            "assessor": claimed,
        },
        "/api/undo": {"assessor": claimed},
        "/api/session": {"assessor": claimed},
    }[route]
    if session is not None:
        body["session_id"] = session
    payload = json.dumps(body).encode()
    head = [f"POST {route} HTTP/1.1", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(payload)}"]
    raw = "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + payload
    before = state(site)
    reply = exchange(site, raw)
    event(f"{reply.status} {'changed' if state(site) != before else 'unchanged'}")
    check_clean(site, raw, reply)
    # the checks come before the body is read: without a reader's credential 401 (or 403 for a
    # foreign Host, another role); from another origin 403; another Content-Type 403 or 415
    if not facts["readers"]:
        assert reply.status in (401, 403), (facts, reply.status)
    if not (facts["host_ok"] and facts["same_origin"] and facts["json"]):
        assert reply.status in (401, 403, 415), (facts, reply.status)
    after = state(site)
    if after != before:
        assert facts["host_ok"] and facts["same_origin"] and facts["json"], (facts, reply.status)
    check_state_rule(site, before, after, reply, facts["readers"])
    alive(site)


_SEGMENTS = [
    "api", "decision", "session", "undo", "items", "item", "me", "my-decisions", "manual-scale", "image",
    "view", "static", "app.js", "index.html", "login", "rectified.png", "mask.png", "review.png", "photo.png",
    "reading", "..", ".", "", "%2e%2e", "%2F", "%00", "..%2f", "etc", "passwd", "study.sqlite", "[", "]",
    "@", ":", "?token=x", "#", ";", "\\", "%", "%ff", "~", "*",
]  # fmt: skip


@st.composite
def paths(draw: st.DrawFn, site: Site) -> str:
    segment = st.one_of(
        st.sampled_from(_SEGMENTS + site.keys[:2] + [site.manual_key, site.keys[0] + ".json"]),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12),
        st.text(st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF), max_size=4),
    )
    prefix = draw(
        st.sampled_from(["/", "//", "/./", "http://127.0.0.1/", f"http://127.0.0.1:{site.port}/", "http://[", "http://[::1/",
                         "http://]/", "*", "", "/%2e/"])
    )  # fmt: skip
    path = prefix + "/".join(draw(st.lists(segment, max_size=6)))
    if draw(st.booleans()):
        path += "?" + draw(st.sampled_from(["token=" + site.tokens["A"], "a=1&a=2", "%zz", "x" * 5000, "="]))
    if draw(st.integers(0, 9)) == 0:
        path += "/" + "a" * draw(st.integers(1000, 70_000))
    return path


@budget(120)
@given(data=st.data())
def test_any_path_and_method_is_answered_cleanly(site, data):
    """Random path segments, percent-encoding, '..', network-path and absolute forms, long paths,
    unknown keys and query strings, for every method, from a logged-in reader's page."""
    method = data.draw(
        st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]), label="m"
    )
    path = data.draw(paths(site), label="path")
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    raw = request(site, method, path, {"Authorization": f"Bearer {site.tokens['A']}"}, body)
    before = state(site)
    reply = exchange(site, raw, method)
    event(f"{method} {reply.status}")
    line = f"{method} {path} HTTP/1.1".encode().decode("iso-8859-1")  # as http.server reads it
    if len(line.split()) != 3 or len(line) > 65_536:  # whitespace splits the request line; too long
        assert reply.status in (None, 400, 414), (reply.status, reply.raw[:200])
        check_no_leak(site, raw, reply.raw)
    else:
        check_clean(site, raw, reply, method)
    after = state(site)
    check_state_rule(site, before, after, reply, {"Dr A"})
    alive(site)


@st.composite
def framings(draw: st.DrawFn, site: Site) -> tuple[bytes, bytes]:
    """A POST's Content-Type, Content-Length and body bytes, most of them lying."""
    value = draw(
        st.one_of(
            st.just({"key": site.keys[0], "action": "accept"}),
            st.just({}),
            json_values,
        )
    )
    text = json.dumps(value, allow_nan=True, ensure_ascii=draw(st.booleans()))
    encoding = draw(
        st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "latin-1"])
    )
    try:
        body = text.encode(encoding)
    except UnicodeEncodeError:
        body = text.encode("utf-8", "surrogatepass")
    body = draw(
        st.one_of(
            st.just(body),
            st.binary(max_size=200),
            st.sampled_from([b"", b"NaN", b"Infinity", b'{"a": NaN}', b"[" * 100_000,
                             b"{" * 5000 + b"}" * 5000,
                             b'{"key": 1e999999}', b"1" * 5000, b'"\\ud800"', b"\x00" * 10, b"{}" * 3]),
        )
    )  # fmt: skip
    real = len(body)
    lengths = st.one_of(
        st.just(str(real)),
        st.integers(0, real + 20).map(str),
        st.sampled_from(["-1", "+5", " 5 ", "0x10", "1e3", "٣", "²", "", "abc", str(MAX_BODY + 1), "9" * 30]),
        st.integers(4000, 20_000).map(lambda n: "9" * n),
        st.integers(1, 400).map(lambda n: "0" * n + str(real)),
    )
    head = [f"Content-Length: {v}" for v in draw(st.lists(lengths, max_size=2))]
    if draw(st.integers(0, 4)) == 0:
        head.append("Transfer-Encoding: chunked")
    ctype = draw(
        st.sampled_from([
            "application/json", "application/json; charset=utf-16", "application/json; charset=latin-1",
            "text/plain", "", None,
        ])
    )  # fmt: skip
    if ctype is not None:
        head.append(f"Content-Type: {ctype}")
    return "\r\n".join(head).encode(), body


@budget(120)
@given(data=st.data())
def test_lying_framing_and_odd_encodings_are_answered_cleanly(site, data):
    """Content-Length missing, negative, non-numeric, of thousands of digits, bigger or smaller
    than the body, duplicated; chunked bodies; bodies in other encodings, not JSON, deeply
    nested; on every POST route and the login form."""
    route = data.draw(st.sampled_from([*POST_ROUTES, "/login"]), label="route")
    framing, body = data.draw(framings(site), label="framing")
    cred = f"Authorization: Bearer {site.tokens['A']}\r\n".encode()
    raw = (
        f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\nOrigin: {site.origin}\r\n".encode()
        + cred
        + framing
        + b"\r\n\r\n"
        + body
    )
    send_as_reader_a(site, raw, route)
    alive(site)


@budget(100)
@given(
    line=st.one_of(
        st.binary(max_size=80),
        st.tuples(
            st.sampled_from([b"GET", b"POST", b"HEAD", b"get", b"PRI", b"CONNECT", b"", b"G\x00T", b"\xff"]),
            st.sampled_from([b"/", b"/api/me", b"*", b"", b"/\x00", b"/\xff\xfe", b"/ /"]),
            st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.1.1", b"HTTP/x",
                             b"HTTP/01.1", b"http/1.1", b"HTTP/1." + b"1" * 30, b""]),
        ).map(b" ".join),
    ),
    extra=st.sampled_from([b"", b"Host: x\r\n", b"X\r\n", b": empty-name\r\n", b"Continued\r\n folded\r\n",
                           b"X-A: " + b"a" * 70_000 + b"\r\n", b"X-B: 1\r\n" * 101, b"\r\n\r\n\r\n",
                           b"Expect: 100-continue\r\nContent-Length: 2\r\n"]),
    end=st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\n", b""]),
)  # fmt: skip
def test_protocol_garbage_gets_an_answer_or_a_closed_connection_and_the_server_stays_up(
    site, line, extra, end
):
    """Request lines and headers malformed at the protocol level. A request line that is not
    ``METHOD TARGET HTTP/1.x`` gets no status line (``http.server`` answers such a line as
    HTTP/0.9): a blank one is closed without an answer, any other gets a bare JSON body (none for
    HEAD). Every other request gets a well-formed response, none a 5xx; nothing leaks and the
    server stays up."""
    auth = f"Authorization: Bearer {site.tokens['A']}\r\n".encode()
    raw = line + b"\r\n" + auth + extra + end
    before = state(site)
    method = "HEAD" if line.split()[:1] == [b"HEAD"] else "GET"
    reply = exchange(site, raw, method)
    event(f"status {reply.status}")
    # http.server reads the line up to LF and splits it on whitespace; it answers with a status
    # line only once it has read a version from 1.0 up to (not including) 2.0
    first = line.split(b"\n", 1)[0]
    words = first.decode("iso-8859-1").split()
    version = re.fullmatch(r"HTTP/(\d{1,10})\.(\d{1,10})", words[-1]) if len(words) >= 3 else None
    if version is not None and (words[-1] == "HTTP/0.9" or int(version.group(1)) >= 2):
        version = None
    if reply.status is None:
        assert version is None, (raw[:200], reply.raw[:200])
        assert reply.raw or not words or method == "HEAD", (raw[:200], reply.raw[:200])
        if reply.raw:
            assert json.loads(reply.raw)["error"]
        check_no_leak(site, raw, reply.raw)
    else:
        check_clean(site, raw, reply, method)
    assert state(site) == before
    alive(site)

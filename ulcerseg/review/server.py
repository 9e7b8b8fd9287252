"""Local blinded review web application (standard library ``http.server``).

Security model:

- bound to 127.0.0.1; a request must address the server as localhost (no DNS rebinding);
- every reader and adjudicator has a personal token (``ulcerseg review readers add``), stored
  in the study as SHA-256 only. The token arrives as ``?token=`` on the login page only (answered
  with an HttpOnly SameSite=Strict cookie and a redirect to the page without it; blanked in the
  log), as ``Authorization: Bearer`` or ``X-Review-Token``. The
  reader's identity is the token's: an ``assessor`` field in a request body is ignored;
- a login link does not replace another reader's valid session cookie unless the browser says
  it was typed, pasted or bookmarked (``Sec-Fetch-Site: none``): a link on another site could
  otherwise switch who is recorded. A link followed from another site (``Sec-Fetch-Site:
  cross-site`` or ``same-site``) never logs in directly either: the browser does not send the
  SameSite=Strict cookie with it, so the server cannot see whose session it would replace. Both
  are answered with a 409 page instead, naming the link's reader, whose button logs in
  explicitly (a same-origin form ``POST /login``);
- state-changing requests need ``Content-Type: application/json`` (else 415; the login form
  is form-encoded) and an Origin (or Referer) that is this server (else 403);
- every field is checked for type and range; the body is capped (413), a corrected mask's
  PNG header is checked against the frame before anything is decoded (413 when larger);
- a request (line, headers and body) must arrive within ``ReviewApp.request_timeout_s`` in all,
  however it is dribbled (408, or the connection is closed); at most
  ``ReviewApp.max_connections`` connections are served at once, others get 503; any
  error reaches the client as JSON, never as a traceback or a file path (paths carry subject IDs:
  they go to the log), and the server stays up;
- a polygon correction's ``px_per_mm`` must be a frame the server serves for the item: the
  scale that turns px into mm² is never the client's;
- files are only served from paths looked up in the study database by a 16-hex-digit photo
  key; nothing in a request is ever used as a path; images are decoded and re-encoded, so no
  EXIF or other metadata leaves the server.

Routes are one table (:data:`ROUTES`: exact paths, and :data:`PREFIX_ROUTES`: a path prefix
whose rest is passed to the handler); another module adds its own with :func:`add_route`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import io
import json
import logging
import math
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ulcerseg.errors import ConfigError, DecisionError, NeedsConfirmation, UlcersegError
from ulcerseg.healing import HealingConfig, load_healing_config
from ulcerseg.healing.rules import VisitHold, visit_holds
from ulcerseg.imageio import read_mask, read_rgb
from ulcerseg.review import views
from ulcerseg.review.blinding import encode_png_clean
from ulcerseg.review.decisions import (
    ADJUDICATOR,
    KEY_RE,
    READER,
    Action,
    ReviewItem,
    build_items,
    effective_decisions,
    find_disagreements,
    latest_reads,
    list_decisions,
    manual_area,
    mask_from_png,
    mask_from_polygon,
    open_study,
    record_decision,
    record_manual_measurement,
    salt_for,
    start_session,
    undo_last,
)
from ulcerseg.review.items import ManualItem, build_manual_items, inside_out_dir, reader_order
from ulcerseg.review.masks import mask_from_review_polygons, png_size
from ulcerseg.store import DB_NAME, connect
from ulcerseg.store.healing import proposed_status
from ulcerseg.store.review import Reader, add_reader, reader_for_token, run_input_roots, session_assessor

__all__ = ["ReviewApp", "make_server", "serve"]

log = logging.getLogger(__name__)

COOKIE = "ulcerseg_review_token"
"""The session cookie's name stem; each server's cookie is ``<COOKIE>_<port>`` (:func:`cookie_name`)."""


def cookie_name(port: int) -> str:
    """The session cookie of the review server on ``port``. Browsers scope cookies by host, not
    port: with one name, logging in to a second server on the same host (the adjudication
    server beside the readers') replaced the first one's session, and each server was sent
    the other's token."""
    return f"{COOKIE}_{int(port)}"


_STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
MAX_BODY = 4 * 1024 * 1024
"""Largest request body accepted (bytes); a corrected mask PNG of a rectified crop is far smaller."""
MAX_REASON = 500  # characters
MAX_VERTICES = 10_000
MAX_POLYGONS = 100
MAX_ID = 64  # session and other ids, characters
MAX_LOGIN_FORM = 1024  # bytes of the POST /login form (one token)


class HttpError(Exception):
    """An error answered as JSON ``{"error": message, **extra}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = int(status), message, extra


@dataclass
class ReviewApp:
    """State of one review server: items, settings, mode, DB path. Readers come from the study."""

    out_dir: Path
    items: list[ReviewItem]
    config: HealingConfig
    salt: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    # adjudication mode: only disputed photos, each shown with the readers' standing readings
    adjudicate: bool = False
    # the whole request (line, headers, body) must arrive within this many seconds
    request_timeout_s: float = 10.0
    # connections served at once; more are answered 503 (each holds a thread)
    max_connections: int = 32
    # flagged photos without a usable marker, measured with a hand-set scale
    manual_items: list[ManualItem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_key = {it.key: it for it in self.items}
        self.manual_by_key = {it.key: it for it in self.manual_items}

    @property
    def role(self) -> str:
        """The role this server's users must have."""
        return ADJUDICATOR if self.adjudicate else READER

    @classmethod
    def load(
        cls,
        out_dir: str | Path,
        config: HealingConfig | None = None,
        adjudicate: bool = False,
    ) -> ReviewApp:
        """Read the items to review from OUT/study.sqlite.

        ``adjudicate``: the items are the photos whose readers disagree (see
        :func:`ulcerseg.review.decisions.disagreements`).
        """
        cfg = config or load_healing_config(None)
        out_dir = Path(out_dir).resolve()
        with open_study(out_dir) as (conn, rows):
            salt = salt_for(conn)
            manual = build_manual_items(rows, run_input_roots(conn), salt)
            if adjudicate:
                disputed = {d["photo_sha256"] for d in find_disagreements(list_decisions(conn), cfg)}
                every = replace(cfg.review, review_all=True)  # a disputed photo may carry no flag
                items = [it for it in build_items(rows, out_dir, salt, every) if it.photo_sha256 in disputed]
                manual = [it for it in manual if it.photo_sha256 in disputed]
            else:
                # unflagged photos of a visit held because its photos fall on both sides of the
                # healed limit are served too: a reader is the only way to settle that visit
                held = {k for k, hold in visit_holds(rows, cfg).items() if hold == VisitHold.PHOTOS_DISAGREE}
                include = {
                    str(r.get("photo_sha256"))
                    for r in rows
                    if (str(r.get("subject_id")), str(r.get("ulcer_id")), str(r.get("visit"))) in held
                }
                items = build_items(rows, out_dir, salt, cfg.review, include)
        return cls(
            out_dir=out_dir, items=items, config=cfg, salt=salt, adjudicate=adjudicate, manual_items=manual
        )

    def connect(self) -> sqlite3.Connection:
        """A fresh store connection for one request (sqlite connections are per thread)."""
        return connect(self.out_dir / DB_NAME)

    def add_reader(self, name: str, adjudicator: bool = False) -> str:
        """Register a reader (or adjudicator) in the study; returns the personal token."""
        conn = self.connect()
        try:
            return add_reader(conn, name, ADJUDICATOR if adjudicator else READER)
        finally:
            conn.close()

    def reader(self, token: str) -> Reader | None:
        conn = self.connect()
        try:
            return reader_for_token(conn, token)
        finally:
            conn.close()

    def order(self, reader: str) -> list[ReviewItem | ManualItem]:
        """The items (manual-scale ones included) in ``reader``'s own random order."""
        return reader_order([*self.items, *self.manual_items], reader, self.salt, self.config.review.seed)

    def proposed_status(self, photo_sha256: str) -> str | None:
        """Proposed healing status of a photo, read per request from the ``healing`` table."""
        conn = self.connect()
        try:
            return proposed_status(conn, photo_sha256)
        finally:
            conn.close()

    def decisions(self) -> list[dict[str, Any]]:
        conn = self.connect()
        try:
            return [dict(d) for d in list_decisions(conn)]
        finally:
            conn.close()

    def done_keys(self, assessor: str, role: str = READER) -> set[str]:
        """Keys of the photos ``assessor`` has a standing decision on (skips and undos are not done)."""
        from ulcerseg.review.decisions import decision_role

        return {
            str(d["photo_sha256"])[:16]
            for d in effective_decisions(self.decisions())
            if d["assessor"] == assessor and decision_role(d) == role
        }

    def readings(self, photo_sha256: str) -> list[dict[str, Any]]:
        """The readers' standing readings of a photo (for the adjudicator), by assessor."""
        out = []
        for (sha, _), d in sorted(latest_reads(self.decisions()).items()):
            if sha == photo_sha256:
                out.append(
                    {
                        **{
                            k: d[k] for k in ("assessor", "action", "area_after_mm2", "reason", "decision_id")
                        },
                        "corrected": bool(d.get("corrected_mask_file")),
                    }
                )
        return out


def _static_bytes(name: str) -> bytes:
    return resources.files("ulcerseg.review").joinpath("static", name).read_bytes()


# --- field validation -------------------------------------------------------------------------
def _str_field(body: dict[str, Any], name: str, max_len: int, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise HttpError(400, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise HttpError(400, f"{name} must be a string")
    if len(value) > max_len:
        raise HttpError(400, f"{name} is longer than {max_len} characters")
    try:
        value.encode("utf-8")  # a JSON escape "\ud800" is a lone surrogate: no text, no SQLite value
    except UnicodeEncodeError:
        raise HttpError(400, f"{name} is not valid text") from None
    if _HIDDEN_CHARACTERS.search(value):
        # control characters (NUL, line breaks) and bidi overrides make the audit trail's text
        # read otherwise than it was typed, or make its CSV look binary to grep
        raise HttpError(400, f"{name} holds a control or text-direction character")
    return value


_HIDDEN_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _bool_field(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise HttpError(400, f"{name} must be true or false")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HttpError(400, f"{what} must be a finite number")
    try:
        number = float(value)  # a JSON integer of 400 digits overflows here
    except OverflowError:
        raise HttpError(400, f"{what} must be a finite number") from None
    if not math.isfinite(number):
        raise HttpError(400, f"{what} must be a finite number")
    return number


_TOKEN_IN_URL = re.compile(r"(token=)[^&\s]*")


def _redacted(text: str) -> str:
    """``text`` (a request line or path) with any ``token=`` value blanked, for the log."""
    return _TOKEN_IN_URL.sub(r"\1…", text)


def parse_points(
    value: Any, name: str, size: tuple[int, int], min_n: int, max_n: int, margin: float = 0.0
) -> list[list[float]]:
    """A list of ``min_n..max_n`` finite [x, y] pairs inside a ``size`` = (width, height) px frame
    (widened by ``margin`` px on every side)."""
    if not isinstance(value, list) or not min_n <= len(value) <= max_n:
        raise HttpError(400, f"{name} must be a list of {min_n} to {max_n} [x, y] points")
    w, h = size
    out = []
    for p in value:
        if not isinstance(p, list) or len(p) != 2:
            raise HttpError(400, f"{name}: every point must be an [x, y] pair")
        x, y = _number(p[0], f"{name} x"), _number(p[1], f"{name} y")
        if not (-margin <= x <= w + margin and -margin <= y <= h + margin):
            raise HttpError(400, f"{name}: point ({x:g}, {y:g}) is outside the {w}x{h} px frame")
        out.append([x, y])
    return out


def parse_mask_png(value: Any, size: tuple[int, int]) -> bytes:
    """PNG bytes of a data URL / base64 string whose header says exactly ``size`` (w, h).

    The header is read before any decoding: a larger image is refused with 413, another size
    with 400, so a small request cannot make the server allocate a huge bitmap.
    """
    if not isinstance(value, str):
        raise HttpError(400, "mask_png must be a base64 PNG string")
    b64 = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error):
        raise HttpError(400, "mask_png is not base64") from None
    dims = png_size(raw)
    if dims is None:
        raise HttpError(400, "mask_png is not a PNG")
    w, h = size
    if dims[0] > w or dims[1] > h:
        raise HttpError(413, f"mask_png is {dims[0]}x{dims[1]} px, larger than the {w}x{h} px frame")
    if dims != (w, h):
        raise HttpError(400, f"corrected mask is {dims[0]}x{dims[1]} px, the rectified frame is {w}x{h} px")
    return raw


Handler = Callable[["_Handler", str], None]
ROUTES: dict[tuple[str, str], Handler] = {}
"""(method, exact path) -> handler(request, "")."""
PREFIX_ROUTES: dict[tuple[str, str], Handler] = {}
"""(method, path prefix) -> handler(request, rest of the path); the longest prefix wins."""


def add_route(method: str, path: str, handler: Handler, prefix: bool = False) -> None:
    """Register a route (GET routes also answer HEAD). Handlers raise :class:`HttpError`."""
    (PREFIX_ROUTES if prefix else ROUTES)[(method, path)] = handler


class _DeadlineReader(io.RawIOBase):
    """Reads of a socket that all end by ``deadline`` (time.monotonic() s), else TimeoutError.

    A socket timeout bounds one read only: a request dribbled a byte every few seconds would
    hold its connection (and thread) for as long as the sender likes.
    """

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        self._sock, self._timeout_s = sock, timeout_s
        self.deadline = time.monotonic() + timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received within the request timeout")
        self._sock.settimeout(min(left, self._timeout_s))
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(self._timeout_s)  # writes keep the per-operation timeout


class _Handler(BaseHTTPRequestHandler):
    server_version = "ulcerseg-review"
    sys_version = ""
    app: ReviewApp  # set on the subclass made by make_server
    server: _ReviewServer  # the server make_server builds (a TCP server: (host, port) address)
    reader: Reader | None = None

    def setup(self) -> None:
        # socket timeout for every read and write; typeshed declares StreamRequestHandler.timeout a
        # ClassVar, but socketserver reads it from the instance
        self.timeout = self.app.request_timeout_s  # type: ignore[misc]
        super().setup()
        self.rfile.close()  # the socket's own file: requests are read through the deadline
        self._reader = _DeadlineReader(self.connection, self.app.request_timeout_s)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        # the request line, headers and body share one deadline
        self._reader.deadline = time.monotonic() + self.app.request_timeout_s
        super().handle_one_request()

    # -- plumbing -------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *(_redacted(str(a)) for a in args))

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'",
        )
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _error(self, status: int, error_text: str, /, **extra: Any) -> None:
        self._json(status, {"error": error_text, **extra})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by ``http.server`` itself (bad request line, header too long...) as JSON too."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._error_quietly(code, message or phrase)

    def _token_candidates(self, query: dict[str, list[str]], login: bool) -> list[tuple[str, bool]]:
        """Tokens offered by the request; ``?token=`` only on the login page (``login``): in
        any other URL it would end up in logs and the browser's history."""
        out: list[tuple[str, bool]] = []
        if login and "token" in query:
            out.append((query["token"][0], True))
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            out.append((auth[7:].strip(), False))
        header = self.headers.get("X-Review-Token")
        if header:
            out.append((header, False))
        cookie = self._cookie_token()
        if cookie is not None:
            out.append((cookie, False))
        return out

    def _cookie_token(self) -> str | None:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        name = cookie_name(self.server.server_address[1])
        return cookie[name].value if name in cookie else None

    def _login_needs_click(self, reader: Reader) -> str | None:
        """Why a login link for ``reader`` must not log in without a click on this server's own
        page (None: it may). Typed, pasted or bookmarked (``Sec-Fetch-Site: none``) it may.
        Followed from another site it may not: the browser leaves the SameSite=Strict cookie out
        of such a request, so another reader's session would be replaced unseen. Otherwise it
        may unless it replaces another reader's valid session cookie."""
        fetch_site = self.headers.get("Sec-Fetch-Site", "").strip().lower()
        if fetch_site == "none":
            return None
        if fetch_site in ("cross-site", "same-site"):
            return "from_another_site"
        cookie = self._cookie_token()
        current = self.app.reader(cookie) if cookie else None
        return "another_reader" if current is not None and current.name != reader.name else None

    def _authenticate(self, query: dict[str, list[str]], login: bool) -> tuple[Reader, str | None]:
        """The reader of the first valid token, and the token when it came as ``?token=``."""
        for value, from_query in self._token_candidates(query, login):
            reader = self.app.reader(value)
            if reader is not None:
                return reader, value if from_query else None
        raise HttpError(401, "missing, wrong or revoked reader token")

    def _own_origins(self) -> set[str]:
        port = self.server.server_address[1]
        return {f"http://{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}

    def _check_state_change(self, content_type: str = "application/json") -> None:
        """``content_type`` and an Origin/Referer of this server (CSRF)."""
        origin = self.headers.get("Origin")
        if not origin:
            try:
                referer = urlsplit(self.headers.get("Referer", ""))
            except ValueError:  # "http://[": urlsplit refuses a bracket that opens no IPv6 address
                origin = None
            else:
                origin = f"{referer.scheme}://{referer.netloc}" if referer.scheme and referer.netloc else None
        if origin is None or origin not in self._own_origins():
            raise HttpError(403, "cross-origin request refused (Origin must be this server)")
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype != content_type:
            raise HttpError(415, f"Content-Type must be {content_type}")

    def read_body(self, max_len: int = MAX_BODY) -> bytes:
        """The request body, at most ``max_len`` bytes (413 beyond), read by the deadline (408)."""
        raw_len = self.headers.get("Content-Length")
        if raw_len is None:
            raise HttpError(411, "Content-Length is required")
        digits = raw_len.strip()
        if not (digits.isascii() and digits.isdigit()):  # "²" is a digit to isdigit
            raise HttpError(400, "Content-Length is not a number")
        # int() refuses more than 4,300 digits (ValueError: a 500): a number that long is too
        # large anyway, leading zeros aside
        digits = digits.lstrip("0") or "0"
        length = int(digits) if len(digits) <= len(str(max_len)) else max_len + 1
        if length > max_len:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise HttpError(413, f"request body larger than {max_len} bytes")
        if length == 0:
            raise HttpError(400, "request body missing")
        try:
            data = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise HttpError(408, "request body timed out") from None
        if len(data) < length:
            self.close_connection = True
            raise HttpError(400, "request body shorter than Content-Length")
        return data

    def read_json(self) -> dict[str, Any]:
        """The JSON object in the body (size-capped, time-limited)."""
        data = self.read_body()
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise HttpError(400, "request body is not JSON") from None
        if not isinstance(obj, dict):
            raise HttpError(400, "request body must be a JSON object")
        return obj

    def item(self, key: str) -> ReviewItem | None:
        return self.app.by_key.get(key) if KEY_RE.match(key) else None

    # -- dispatch -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _route(self, method: str, path: str) -> tuple[Handler, str] | None:
        if (method, path) in ROUTES:
            return ROUTES[(method, path)], ""
        best = None
        for (m, prefix), handler in PREFIX_ROUTES.items():
            if m == method and path.startswith(prefix) and (best is None or len(prefix) > len(best[2])):
                best = (handler, path[len(prefix) :], prefix)
        return None if best is None else (best[0], best[1])

    def _dispatch(self, method: str) -> None:
        try:
            self._handle(method)
        except HttpError as err:
            if method != "GET":
                self.close_connection = True  # a refused body may be unread
            self._error_quietly(err.status, err.message, **err.extra)
        except NeedsConfirmation as err:
            self._error_quietly(409, "needs_confirmation", message=str(err), changes=err.changes)
        except DecisionError as err:
            self._error_quietly(400, str(err))
        except UlcersegError as err:  # details (file paths: subject IDs) go to the log only
            log.warning("review request %s %s failed: %s", method, _redacted(self.path[:200]), err)
            self._error_quietly(500, "request failed (see the server log)")
        except (TimeoutError, ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception:  # the client gets JSON, the log the traceback, and the server stays up
            log.exception("review request %s %s failed", method, _redacted(self.path[:200]))
            self.close_connection = True
            self._error_quietly(500, "internal error (see the server log)")

    def _error_quietly(self, status: int, error_text: str, /, **extra: Any) -> None:
        """The error reply, unless the client has gone (no traceback on the server's stderr)."""
        try:
            self._error(status, error_text, **extra)
        except OSError:  # BrokenPipeError, ConnectionResetError: nobody to tell
            self.close_connection = True

    def _handle(self, method: str) -> None:
        try:
            parts = urlsplit(self.path)
        except ValueError:  # an absolute target "http://[...": a bracket that opens no IPv6 address
            raise HttpError(400, "the request target is not a path") from None
        query = parse_qs(parts.query)
        port = self.server.server_address[1]
        hosts = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}
        if self.headers.get("Host", "") not in hosts:
            # a foreign Host header means DNS rebinding or a proxy: never answer those
            raise HttpError(HTTPStatus.FORBIDDEN, "requests must address the server as localhost")
        if method == "POST" and parts.path == "/login":
            self._login_form()
            return
        login = method == "GET" and parts.path in ("/", "/index.html")
        self.reader, login_token = self._authenticate(query, login)
        self._check_role(self.reader)
        if method != "GET":
            self._check_state_change()
        found = self._route(method, parts.path)
        if found is None:
            raise HttpError(404, "not found")
        handler, rest = found
        if login_token is not None:
            why = self._login_needs_click(self.reader)
            if why is not None:
                self._send(409, _login_page(why, self.reader.name, login_token), "text/html; charset=utf-8")
                return
            self._set_cookie(login_token, parts.path)
            return
        handler(self, rest)

    def _set_cookie(self, token: str, location: str) -> None:
        # the login link's token becomes the cookie, and the address bar (history, a
        # screenshot) loses it: 303 to the same page without the query
        cookie = f"{cookie_name(self.server.server_address[1])}={token}; HttpOnly; SameSite=Strict; Path=/"
        self._send(303, b"", "text/plain", {"Set-Cookie": cookie, "Location": location})

    def _login_form(self) -> None:
        """``POST /login`` from the 409 page's button: log in with the form's token, replacing
        whoever's cookie this browser holds. Same-origin only, so only a click on that page does it."""
        self._check_state_change("application/x-www-form-urlencoded")
        try:
            form = parse_qs(self.read_body(MAX_LOGIN_FORM).decode("ascii"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "the login form is not readable") from None
        token = (form.get("token") or [""])[0]
        reader = self.app.reader(token)
        if reader is None:
            raise HttpError(401, "missing, wrong or revoked reader token")
        self._check_role(reader)
        self._set_cookie(token, "/")

    def _check_role(self, reader: Reader) -> None:
        """403 unless ``reader`` has this server's role (reader or adjudicator)."""
        if reader.role != self.app.role:
            raise HttpError(403, f"this server is for {self.app.role}s; {reader.name} is a {reader.role}")

    @property
    def assessor(self) -> str:
        assert self.reader is not None
        return self.reader.name


_LOGIN_REASONS = {
    "another_reader": (
        "Another reader is logged in in this browser",
        "This login link was opened from a page, so it does not replace the reader now logged in: "
        "every decision is recorded under one reader's name, and a link on another site must not "
        "change whose. Nothing has changed.",
    ),
    "from_another_site": (
        "This login link came from another site",
        "A link followed from another site does not log in by itself: the browser hides from this "
        "server whether another reader is logged in here, and every decision is recorded under one "
        "reader's name. Nothing has changed.",
    ),
}


def _login_page(why: str, reader_name: str, token: str) -> bytes:
    """The 409 page of a login link that needs a click (``why``: a key of ``_LOGIN_REASONS``)."""
    title, text = (html.escape(part) for part in _LOGIN_REASONS[why])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
<p>{text}</p>
<p>This link logs in <strong>{html.escape(reader_name)}</strong>. If it is your personal link
and you mean to review now, log in explicitly; any other reader is then logged out of this
browser.</p>
<form method="post" action="/login">
<input type="hidden" name="token" value="{html.escape(token, quote=True)}">
<button type="submit">Log in with this link</button>
</form>
</body></html>
""".encode()


# --- handlers ---------------------------------------------------------------------------------
def _index(req: _Handler, _rest: str) -> None:
    req._send(200, _static_bytes("index.html"), "text/html; charset=utf-8")


def _static(req: _Handler, name: str) -> None:
    if name not in _STATIC:
        raise HttpError(404, "not found")
    req._send(200, _static_bytes(name), _STATIC[name])


def _session(req: _Handler, _rest: str) -> None:
    req.read_json()  # any "assessor" in it is ignored: the token says who this is
    with req.app.lock:
        conn = req.app.connect()
        try:
            session_id = start_session(conn, req.assessor)
        finally:
            conn.close()
    req._json(200, {"session_id": session_id, "assessor": req.assessor, "role": req.app.role})


def _me(req: _Handler, _rest: str) -> None:
    # ``name`` is what the client shows; ``assessor`` kept for older clients
    req._json(200, {"name": req.assessor, "assessor": req.assessor, "role": req.app.role})


def _items(req: _Handler, _rest: str) -> None:
    done = req.app.done_keys(req.assessor, req.app.role)
    order = req.app.order(req.assessor)
    req._json(
        200,
        {
            "assessor": req.assessor,
            "items": [
                {
                    "key": it.key,
                    "index": i,
                    "done": it.key in done,
                    "manual_scale": isinstance(it, ManualItem),
                }
                for i, it in enumerate(order)
            ],
            "n_items": len(order),
            "n_done": sum(1 for it in order if it.key in done),
            "show_visit_label": req.app.config.review.show_visit_label,
            "adjudicate": req.app.adjudicate,
        },
    )


def _item(req: _Handler, key: str) -> None:
    item: ReviewItem | ManualItem | None = req.item(key)
    if item is None and KEY_RE.match(key):
        item = req.app.manual_by_key.get(key)
    if item is None:
        raise HttpError(404, "no such item")
    public = item.public(req.app.config.review, req.app.proposed_status(item.photo_sha256))
    order = [it.key for it in req.app.order(req.assessor)]
    i = order.index(item.key)
    public.update(
        index=i,
        n_items=len(order),
        prev_key=order[i - 1] if i > 0 else None,
        next_key=order[i + 1] if i + 1 < len(order) else None,
    )
    if req.app.adjudicate:
        public["readings"] = req.app.readings(item.photo_sha256)
    req._json(200, public)


_READING_RE = re.compile(r"^reading/([0-9a-f]{16})\.png$")


def _reading_mask(req: _Handler, item: ReviewItem, decision_id: str) -> np.ndarray:
    """Adjudication only: the corrected mask of a reader's standing reading of ``item``."""
    if not req.app.adjudicate:
        raise HttpError(404, "no such image")
    for r in req.app.readings(item.photo_sha256):
        if r["decision_id"] == decision_id and r["corrected"]:
            d = next(d for d in req.app.decisions() if d["decision_id"] == decision_id)
            path = inside_out_dir(req.app.out_dir, d["corrected_mask_file"])
            if path is not None:
                return read_mask(path).astype(np.uint8) * 255
    raise HttpError(404, "no such image")


def _image(req: _Handler, rest: str) -> None:
    key, _, kind = rest.partition("/")
    item = req.item(key)
    reading = _READING_RE.match(kind)
    if item is not None and reading is not None:
        req._send(200, encode_png_clean(_reading_mask(req, item, reading.group(1))), "image/png")
        return
    if item is None or kind not in ("rectified.png", "mask.png"):
        raise HttpError(404, "no such image")
    if kind == "rectified.png":
        pixels = read_rgb(item.rectified_path)
    elif item.mask_path is not None:
        pixels = read_mask(item.mask_path).astype(np.uint8) * 255
    else:
        w, h = item.frame_size()
        pixels = np.zeros((h, w), np.uint8)
    req._send(200, encode_png_clean(pixels), "image/png")


def _session_id(req: _Handler, conn: sqlite3.Connection, body: dict[str, Any]) -> str | None:
    session_id = _str_field(body, "session_id", MAX_ID)
    if session_id:
        owner = session_assessor(conn, session_id)
        if owner is None:
            raise HttpError(400, "unknown session")
        if owner != req.assessor:
            raise HttpError(403, "the session belongs to another reader")
    return session_id or None


def _review_polygons_mask(
    body: dict[str, Any], item: ReviewItem, size: tuple[int, int], frame_px_per_mm: tuple[float, ...]
) -> np.ndarray:
    """Model-frame mask of ``polygons`` drawn in the review frame at ``px_per_mm`` (see
    :mod:`ulcerseg.review.views`), which must be one of ``frame_px_per_mm`` (the frames served
    for the item): at most :data:`MAX_POLYGONS` polygons and :data:`MAX_VERTICES` vertices in
    all, every vertex inside the review frame."""
    polygons = body["polygons"]
    if not isinstance(polygons, list) or not 1 <= len(polygons) <= MAX_POLYGONS:
        raise HttpError(400, f"polygons must be a list of 1 to {MAX_POLYGONS} polygons")
    ppm = _number(body.get("px_per_mm"), "px_per_mm")
    # the scale turns px into mm²: it must be a frame this server serves for the item (the review
    # frame, or the model's), never whatever the client sends
    if not any(math.isclose(ppm, known, rel_tol=1e-6) for known in frame_px_per_mm):
        shown = " or ".join(f"{v:.6g}" for v in frame_px_per_mm)
        raise HttpError(400, f"px_per_mm must be the review frame's ({shown}): reload the photo")
    if sum(len(p) for p in polygons if isinstance(p, list)) > MAX_VERTICES:
        raise HttpError(413, f"at most {MAX_VERTICES} vertices in all")
    f = ppm / item.px_per_mm  # review px per model px
    # pixel centres at integers: an outline along the frame's edge lies half a pixel outside it
    frame = (math.ceil(size[0] * f), math.ceil(size[1] * f))
    parsed = [parse_points(p, "polygons[]", frame, 3, MAX_VERTICES, margin=1.0) for p in polygons]
    try:
        return mask_from_review_polygons(parsed, ppm, item.px_per_mm, (size[1], size[0]))
    except DecisionError as err:
        raise HttpError(400, str(err)) from None


def _decision(req: _Handler, _rest: str) -> None:
    body = req.read_json()
    key = _str_field(body, "key", 16, required=True) or ""
    item: ReviewItem | ManualItem | None = req.item(key)
    action = _str_field(body, "action", 32, required=True) or ""
    if item is None and KEY_RE.match(key) and key in req.app.manual_by_key:
        # a photo without a marker: not assessable here, a measurement through /api/manual-scale
        if action != Action.NOT_ASSESSABLE:
            raise HttpError(400, "a photo without a marker is measured with POST /api/manual-scale")
        item = req.app.manual_by_key[key]
    if item is None:
        raise HttpError(400, "unknown item key")
    reason = _str_field(body, "reason", MAX_REASON)
    confirm = _bool_field(body, "confirm")
    mask = None
    if action == Action.CORRECT and isinstance(item, ReviewItem):
        w, h = item.frame_size()
        if body.get("mask_png") is not None:
            mask = mask_from_png(parse_mask_png(body["mask_png"], (w, h)), (h, w))
        elif body.get("polygons") is not None:
            frame = views.app_views(req.app).frame(item)
            scales = (frame.grid.px_per_mm, frame.model.px_per_mm)
            mask = _review_polygons_mask(body, item, (w, h), scales)
        elif body.get("polygon") is not None:
            mask = mask_from_polygon(
                parse_points(body["polygon"], "polygon", (w, h), 3, MAX_VERTICES), (h, w)
            )
    with req.app.lock:
        conn = req.app.connect()
        try:
            session_id = _session_id(req, conn, body)
            row = record_decision(
                conn,
                req.app.out_dir,
                item,
                req.assessor,
                action,
                reason=reason,
                corrected_mask=mask,
                session_id=session_id,
                role=req.app.role,
                confirm=confirm,
            )
        finally:
            conn.close()
    req._json(
        200,
        {
            "decision_id": row["decision_id"],
            "action": row["action"],
            "area_before_mm2": row["area_before_mm2"],
            "area_after_mm2": row["area_after_mm2"],
            "assessor": row["assessor"],
        },
    )


def _manual_scale(req: _Handler, _rest: str) -> None:
    """A photo without a usable marker: two points ``length_mm`` apart and a traced outline,
    all in photo px -> area mm², recorded with ``scale_source=manual``."""
    body = req.read_json()
    key = _str_field(body, "key", 16, required=True) or ""
    item = req.app.manual_by_key.get(key) if KEY_RE.match(key) else None
    if item is None:
        raise HttpError(400, "unknown manual-scale item key")
    if body.get("frame", "photo") != "photo":
        raise HttpError(400, 'frame must be "photo" (photo px)')
    if body.get("action", "correct") != "correct":
        raise HttpError(400, 'a manual-scale measurement is a "correct" action')
    frame = (item.width_px, item.height_px)
    name = "scale_points" if "scale_points" in body else "points"
    points = parse_points(body.get(name), name, frame, 2, 2)
    length_mm = _number(body.get("length_mm"), "length_mm")
    polygon = parse_points(body.get("polygon"), "polygon", frame, 3, MAX_VERTICES)
    confirm = _bool_field(body, "confirm")
    # rasterising a long outline takes a while: not under the lock every other request waits on
    measured = manual_area(points, length_mm, polygon, frame)
    with req.app.lock:
        conn = req.app.connect()
        try:
            row = record_manual_measurement(
                conn,
                item,
                req.assessor,
                points,
                length_mm,
                polygon,
                session_id=_session_id(req, conn, body),
                role=req.app.role,
                measured=measured,
                confirm=confirm,
            )
        finally:
            conn.close()
    details = json.loads(row["details"])
    req._json(
        200,
        {
            "decision_id": row["decision_id"],
            "action": row["action"],
            "area_after_mm2": row["area_after_mm2"],
            "mm_per_px": details["mm_per_px"],
            "scale_source": "manual",
            "assessor": row["assessor"],
        },
    )


def _undo(req: _Handler, _rest: str) -> None:
    body = req.read_json()
    expected = _str_field(body, "decision_id", MAX_ID)
    with req.app.lock:
        conn = req.app.connect()
        try:
            row = undo_last(
                conn, req.assessor, req.app.role, _session_id(req, conn, body), expected=expected or None
            )
        finally:
            conn.close()
    undone = row["undone"]
    req._json(
        200,
        {
            "decision_id": row["decision_id"],
            "undone_decision_id": undone["decision_id"],
            "key": str(undone["photo_sha256"])[:16],
            "undone_action": undone["action"],
        },
    )


def _my_decisions(req: _Handler, _rest: str) -> None:
    from ulcerseg.review.decisions import decision_role

    decisions = req.app.decisions()
    standing = {d["decision_id"] for d in effective_decisions(decisions)}
    index = {it.key: i for i, it in enumerate(req.app.order(req.assessor))}
    mine = []
    for d in decisions:
        if d["assessor"] != req.assessor or decision_role(d) != req.app.role:
            continue
        key = str(d["photo_sha256"])[:16]
        if key not in req.app.by_key and key not in req.app.manual_by_key:
            continue  # a photo this server does not offer (e.g. another mode)
        mine.append(
            {
                "decision_id": d["decision_id"],
                "key": key,
                "index": index.get(key),
                "action": d["action"],
                "reason": d["reason"],
                "area_after_mm2": d["area_after_mm2"],
                "decided_at": d["decided_at"],
                "standing": d["decision_id"] in standing,
            }
        )
    req._json(200, {"assessor": req.assessor, "decisions": mine})


add_route("GET", "/", _index)
add_route("GET", "/index.html", _index)
add_route("GET", "/static/", _static, prefix=True)
add_route("GET", "/api/me", _me)
add_route("POST", "/api/session", _session)
add_route("GET", "/api/items", _items)
add_route("GET", "/api/item/", _item, prefix=True)
add_route("GET", "/image/", _image, prefix=True)
add_route("POST", "/api/decision", _decision)
add_route("POST", "/api/undo", _undo)
add_route("POST", "/api/manual-scale", _manual_scale)
add_route("GET", "/api/my-decisions", _my_decisions)


def _view(req: _Handler, rest: str) -> None:
    """The review frame at native resolution, the whole photo and outlines (:mod:`views`)."""
    found = views.route(req.app, "/view/" + rest)
    if found is None:
        raise HttpError(404, "not found")
    req._send(*found)


add_route("GET", "/view/", _view, prefix=True)


_BUSY = json.dumps({"error": "server busy: too many connections, retry shortly"}).encode()


class _ReviewServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once: beyond that a connection
    is answered 503 and closed by the accepting thread, so slow clients cannot pile up threads."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max(1, int(max_connections)))

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # the thread never started
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        head = (
            "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(_BUSY)}\r\nCache-Control: no-store\r\nRetry-After: 1\r\n"
            "Connection: close\r\n\r\n"
        )
        # never block the accepting thread: the reply fits an empty send buffer
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(head.encode() + _BUSY)
            request.recv(65536)  # what arrived already: closing on unread data would reset the reply
        self.shutdown_request(request)


def make_server(app: ReviewApp, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server for ``app`` bound to ``host`` (localhost only by default)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UlcersegError(f"review server binds to localhost only, not {host!r}")
    handler = type("ReviewHandler", (_Handler,), {"app": app})
    try:
        return _ReviewServer((host, port), handler, app.max_connections)
    except OSError as err:
        if err.errno is None or err.filename is not None:
            raise
        # "Address already in use" alone does not say which: the CLI's one line names the address
        raise OSError(err.errno, err.strerror or str(err), f"{host}:{port}") from err


def login_url(port: int, token: str) -> str:
    """The personal login link of a reader for a server on ``port``."""
    return f"http://127.0.0.1:{port}/?token={token}"


def serve(
    out_dir: str | Path,
    config: HealingConfig | str | Path | None = None,
    port: int = 0,
    adjudicate: bool = False,
    reader: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the review app until interrupted; ``announce`` (default: a warning on this
    module's logger, which reaches stderr where logging is not set up; the CLI: its standard
    output) gets the lines saying how to log in.

    Readers log in with their personal link (``ulcerseg review readers add NAME``). When
    ``reader`` names someone not registered yet, or when the study has no active reader of the
    server's role (``reader1`` / ``adjudicator1`` is then made), that reader is registered now
    and the first line announced is their login URL: ``<what> N photos at <url>``. ``config``:
    a :class:`HealingConfig`, a YAML path or None (``configs/healing.yaml``), as ``--config``.
    """
    from ulcerseg.store.review import list_readers

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"review server port {port!r}: must be 0-65535 (0 picks a free port)")
    say = announce if announce is not None else log.warning
    cfg = config if isinstance(config, HealingConfig) else load_healing_config(config)
    app = ReviewApp.load(out_dir, cfg, adjudicate=adjudicate)
    server = make_server(app, port)
    port = int(server.server_address[1])
    conn = app.connect()
    try:
        known = {r.name: r for r in list_readers(conn)}
    finally:
        conn.close()
    active = [r for r in known.values() if r.active and r.role == app.role]
    new_name = None
    if reader is not None and reader.strip() not in known:
        new_name = reader.strip()
    elif reader is None and not active:
        new_name = "adjudicator1" if adjudicate else "reader1"
        while new_name in known:
            new_name += "x"
    what = "adjudicate" if adjudicate else "review"
    if new_name is not None:
        token = app.add_reader(new_name, adjudicator=adjudicate)
        say(f"{what} {len(app.items)} photos at {login_url(port, token)}")
        say(f"(new {app.role} {new_name!r}: this link is their personal login; it is shown only once)")
    else:
        say(f"{what} {len(app.items)} photos at http://127.0.0.1:{port}/")
        say(
            f"log in with a personal link http://127.0.0.1:{port}/?token=TOKEN "
            f"({len(active)} active {app.role}s; `ulcerseg review readers add NAME` makes one)"
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

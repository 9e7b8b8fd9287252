"""Local blinded review web application (standard library ``http.server``).

Security model: bound to 127.0.0.1, a random token (``secrets.token_urlsafe``) is required on
every request (``?token=`` on the first page, then an HttpOnly cookie, or the
``X-Review-Token`` header). Files are only served from paths looked up in the study database by
a 16-hex-digit photo key; nothing in a request is ever used as a path. Images are decoded and
re-encoded, so no EXIF or other metadata leaves the server.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ulcerseg.errors import UlcersegError
from ulcerseg.healing import HealingConfig, load_healing_config
from ulcerseg.review import views
from ulcerseg.review.blinding import encode_png_clean, load_rgb
from ulcerseg.review.decisions import (
    ADJUDICATOR,
    KEY_RE,
    READER,
    DecisionError,
    ReviewItem,
    build_items,
    find_disagreements,
    latest_reads,
    list_decisions,
    mask_from_png,
    mask_from_polygon,
    open_study,
    record_decision,
    salt_for,
    start_session,
)
from ulcerseg.review.masks import mask_from_review_polygons
from ulcerseg.store import DB_NAME, connect
from ulcerseg.store.healing import proposed_status
from ulcerseg.store.review import decided_photos, session_assessor

__all__ = ["ReviewApp", "make_server", "serve"]

log = logging.getLogger(__name__)

COOKIE = "ulcerseg_review_token"
_STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
_MAX_BODY = 20 * 1024 * 1024  # a corrected mask PNG is small; refuse anything huge


@dataclass
class ReviewApp:
    """State of one review server: items by key, settings, token, DB path."""

    out_dir: Path
    items: list[ReviewItem]
    config: HealingConfig
    token: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    # adjudication mode: only disputed photos; the readers' latest readings per photo sha256
    adjudicate: bool = False
    readings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_key = {it.key: it for it in self.items}

    @classmethod
    def load(
        cls,
        out_dir: str | Path,
        config: HealingConfig | None = None,
        token: str | None = None,
        adjudicate: bool = False,
    ) -> ReviewApp:
        """Read the items to review from OUT/study.sqlite.

        ``adjudicate``: the items are the photos whose readers disagree (see
        :func:`ulcerseg.review.decisions.disagreements`), each shown with the readings.
        """
        cfg = config or load_healing_config(None)
        out_dir = Path(out_dir).resolve()
        readings: dict[str, list[dict[str, Any]]] = {}
        with open_study(out_dir) as (conn, rows):
            salt = salt_for(conn)
            if adjudicate:
                decisions = list_decisions(conn)  # one read for both the disputes and readings
                disputed = {d["photo_sha256"] for d in find_disagreements(decisions, cfg.review)}
                every = replace(cfg.review, review_all=True)  # a disputed photo may carry no flag
                items = [it for it in build_items(rows, out_dir, salt, every) if it.photo_sha256 in disputed]
                for (sha, _), d in sorted(latest_reads(decisions).items()):
                    if sha in disputed:
                        readings.setdefault(sha, []).append(
                            {k: d[k] for k in ("assessor", "action", "area_after_mm2", "reason")}
                        )
            else:
                items = build_items(rows, out_dir, salt, cfg.review)
        return cls(
            out_dir=out_dir,
            items=items,
            config=cfg,
            token=token or secrets.token_urlsafe(24),
            adjudicate=adjudicate,
            readings=readings,
        )

    def connect(self) -> sqlite3.Connection:
        """A fresh store connection for one request (sqlite connections are per thread)."""
        return connect(self.out_dir / DB_NAME)

    def proposed_status(self, photo_sha256: str) -> str | None:
        """Proposed healing status of a photo, read per request from the ``healing`` table.

        Read live (not cached at start) so that healing recomputed while the server runs is
        what the assessor sees.
        """
        conn = self.connect()
        try:
            return proposed_status(conn, photo_sha256)
        finally:
            conn.close()

    def done_keys(self, assessor: str) -> set[str]:
        conn = self.connect()
        try:
            return {sha[:16] for sha in decided_photos(conn, assessor)}
        finally:
            conn.close()


def _static_bytes(name: str) -> bytes:
    return resources.files("ulcerseg.review").joinpath("static", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server_version = "ulcerseg-review"
    sys_version = ""
    app: ReviewApp  # set on the subclass made by make_server

    # -- plumbing -------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

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
        self.send_header("Referrer-Policy", "no-referrer")
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

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _authorised(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(authorised, came_with_query_token)."""
        expected = self.app.token.encode()
        candidates: list[tuple[str, bool]] = []
        if "token" in query:
            candidates.append((query["token"][0], True))
        header = self.headers.get("X-Review-Token")
        if header:
            candidates.append((header, False))
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        if COOKIE in cookie:
            candidates.append((cookie[COOKIE].value, False))
        for value, from_query in candidates:
            if hmac.compare_digest(value.encode(), expected):
                return True, from_query
        return False, False

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > _MAX_BODY:
            raise DecisionError("request body missing or too large")
        try:
            obj = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            raise DecisionError("request body is not JSON") from None
        if not isinstance(obj, dict):
            raise DecisionError("request body must be a JSON object")
        return obj

    def _item(self, key: str) -> ReviewItem | None:
        return self.app.by_key.get(key) if KEY_RE.match(key) else None

    # -- routes ---------------------------------------------------------------------------------
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

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        port = self.server.server_address[1]
        hosts = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}
        if self.headers.get("Host", "") not in hosts:
            # a foreign Host header means DNS rebinding or a proxy: never answer those
            self._error(HTTPStatus.FORBIDDEN, "requests must address the server as localhost")
            return
        ok, from_query = self._authorised(query)
        if not ok:
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong access token")
            return
        path = parts.path
        try:
            if method == "GET" and path in ("/", "/index.html"):
                headers = {}
                if from_query:
                    headers["Set-Cookie"] = f"{COOKIE}={self.app.token}; HttpOnly; SameSite=Strict; Path=/"
                self._send(200, _static_bytes("index.html"), "text/html; charset=utf-8", headers)
            elif method == "GET" and path.startswith("/static/"):
                name = path.removeprefix("/static/")
                if name not in _STATIC:
                    self._error(404, "not found")
                else:
                    self._send(200, _static_bytes(name), _STATIC[name])
            elif method == "POST" and path == "/api/session":
                self._post_session()
            elif method == "GET" and path == "/api/items":
                self._get_items(query)
            elif method == "GET" and path.startswith("/api/item/"):
                self._get_item(path.removeprefix("/api/item/"))
            elif method == "GET" and path.startswith("/image/"):
                self._get_image(path.removeprefix("/image/"))
            elif method == "POST" and path == "/api/decision":
                self._post_decision()
            elif method == "GET" and (view := views.route(self.app, path)) is not None:
                self._send(*view)
            else:
                self._error(404, "not found")
        except DecisionError as err:
            self._error(400, str(err))
        except UlcersegError as err:
            log.warning("review request failed: %s", err)
            self._error(500, str(err))

    def _post_session(self) -> None:
        body = self._read_json()
        assessor = str(body.get("assessor") or "").strip()
        with self.app.lock:
            conn = self.app.connect()
            try:
                session_id = start_session(conn, assessor)
            finally:
                conn.close()
        self._json(200, {"session_id": session_id, "assessor": assessor})

    def _get_items(self, query: dict[str, list[str]]) -> None:
        assessor = (query.get("assessor") or [""])[0].strip()
        done = self.app.done_keys(assessor) if assessor else set()
        self._json(
            200,
            {
                "items": [{"key": it.key, "done": it.key in done} for it in self.app.items],
                "show_visit_label": self.app.config.review.show_visit_label,
                "adjudicate": self.app.adjudicate,
            },
        )

    def _get_item(self, key: str) -> None:
        item = self._item(key)
        if item is None:
            self._error(404, "no such item")
            return
        status = self.app.proposed_status(item.photo_sha256)
        public = item.public(self.app.config.review, status)
        if self.app.adjudicate:
            public["readings"] = self.app.readings.get(item.photo_sha256, [])
        self._json(200, public)

    def _get_image(self, rest: str) -> None:
        key, _, kind = rest.partition("/")
        item = self._item(key)
        if item is None or item.rectified_path is None or kind not in ("rectified.png", "mask.png"):
            self._error(404, "no such image")
            return
        if kind == "rectified.png":
            pixels = load_rgb(item.rectified_path)
        elif item.mask_path is not None:
            pixels = (load_rgb(item.mask_path).max(axis=2) >= 128).astype(np.uint8) * 255
        else:
            h, w = load_rgb(item.rectified_path).shape[:2]
            pixels = np.zeros((h, w), np.uint8)
        self._send(200, encode_png_clean(pixels), "image/png")

    def _post_decision(self) -> None:
        body = self._read_json()
        item = self._item(str(body.get("key") or ""))
        if item is None:
            raise DecisionError("unknown item key")
        mask = None
        if body.get("action") == "correct":
            if item.rectified_path is None:
                raise DecisionError("this photo has no marker-plane frame: measure it with the manual scale")
            h, w = load_rgb(item.rectified_path).shape[:2]
            if body.get("mask_png"):
                data_url = str(body["mask_png"])
                b64 = data_url.split(",", 1)[1] if data_url.startswith("data:") else data_url
                try:
                    raw = base64.b64decode(b64, validate=True)
                except ValueError:
                    raise DecisionError("mask_png is not base64") from None
                mask = mask_from_png(raw, (h, w))
            elif body.get("polygons") or (body.get("polygon") and body.get("px_per_mm")):
                # review-frame px at the given px/mm (same origin as the model frame)
                polys = body.get("polygons") or [body["polygon"]]
                mask = mask_from_review_polygons(polys, body.get("px_per_mm"), item.px_per_mm, (h, w))
            elif body.get("polygon"):
                mask = mask_from_polygon(body["polygon"], (h, w))
        with self.app.lock:
            conn = self.app.connect()
            try:
                assessor = str(body.get("assessor") or "")
                session_id = body.get("session_id")
                if session_id:
                    found = session_assessor(conn, str(session_id))
                    if found is None:
                        raise DecisionError("unknown session")
                    assessor = found
                row = record_decision(
                    conn,
                    self.app.out_dir,
                    item,
                    assessor,
                    str(body.get("action") or ""),
                    reason=body.get("reason"),
                    corrected_mask=mask,
                    session_id=str(session_id) if session_id else None,
                    role=ADJUDICATOR if self.app.adjudicate else READER,
                )
            finally:
                conn.close()
        self._json(
            200,
            {
                "decision_id": row["decision_id"],
                "action": row["action"],
                "area_after_mm2": row["area_after_mm2"],
            },
        )


def make_server(app: ReviewApp, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server for ``app`` bound to ``host`` (localhost only by default)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UlcersegError(f"review server binds to localhost only, not {host!r}")
    handler = type("ReviewHandler", (_Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(
    out_dir: str | Path,
    config: HealingConfig | None = None,
    port: int = 0,
    token: str | None = None,
    adjudicate: bool = False,
) -> None:
    """Serve the review app until interrupted; prints (via click in the CLI) the access URL."""
    app = ReviewApp.load(out_dir, config, token, adjudicate=adjudicate)
    server = make_server(app, port)
    url = f"http://127.0.0.1:{server.server_address[1]}/?token={app.token}"
    import click  # CLI edge only: the URL must reach the user even without logging

    what = "adjudicate" if adjudicate else "review"
    click.echo(f"{what} {len(app.items)} photos at {url}", err=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

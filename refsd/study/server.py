"""``refsd study serve``: the rating web app on the standard library's threading HTTP server.

Routes (JSON in and out; every POST needs ``Content-Type: application/json``)::

    GET  /  /app.js  /app.css      the page (refsd/study/static; no external assets)
    GET  /files/<path>             a picture of the study (only the paths its items show)
    GET  /api/study                title, instructions, scale, "token" or "name" sign-in
    POST /api/login   {token | name}                          -> progress + next question
    POST /api/next    {token | name}                          -> progress + next question
    POST /api/answer  {token | name, item, value, ms}         -> progress + next question

A rater is identified by the token of their link (studies made with ``--raters N``) or, in
open studies, by the name they type. Errors are ``{"error": message}`` with 400 (bad input),
403 (unknown rater), 404 or 409 (answered before / page out of date); a refused answer changes
nothing stored (:mod:`.store`). The correct answers of attention checks never leave the server.
"""

from __future__ import annotations

import json
import mimetypes
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .definition import Study, StudyError, normalize_name
from .store import AnswerRefused, AnswerStore

__all__ = ["StudyServer", "make_server"]

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/app.css": "app.css"}
MAX_BODY = 64 * 1024
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'"


class StudyServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer holding the study and its answer store."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], study: Study, quiet: bool = True):
        self.study = study
        self.store = AnswerStore(study)
        self.pictures = study.images()
        self.quiet = quiet
        super().__init__(address, StudyHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"

    def item_payload(self, item_id: str | None) -> dict[str, Any] | None:
        if item_id is None:
            return None
        it = self.study.by_id[item_id]
        fam = self.study.data.get("families", {}).get(it["family"], {})
        return {"id": it["id"], "family": it["family"], "title": it.get("title") or fam.get("title", ""),
                "help": fam.get("help", ""), "text": it["text"], "swatch": it.get("swatch"),
                "images": ["/files/" + p for p in it["images"]]}

    def rater_of(self, body: dict[str, Any]) -> dict[str, Any]:
        """The rater a request speaks for (signed in on the way); AnswerRefused 403 otherwise."""
        study = self.study
        if study.uses_tokens:
            rid = study.rater_for_token(body.get("token"))
            if rid is None:
                raise AnswerRefused("unknown rater code: open the personal link you were given "
                                    "(ask the person running the study for one)", 403)
            self.store.sign_in("token", rid, body["token"], rid)
        else:
            name = body.get("name")
            try:
                key = normalize_name(name)
            except StudyError as e:
                raise AnswerRefused(str(e), 403 if name is None else 400) from e
            self.store.sign_in("name", key, key, " ".join(name.split()))
        return self.store.rater(rid if study.uses_tokens else key)

    def state(self, rater: dict[str, Any], progress: dict[str, Any] | None = None) -> dict[str, Any]:
        prog = progress or self.store.progress(rater)
        return {"rater": rater["label"], "done": prog["done"], "total": prog["total"],
                "item": self.item_payload(prog["next"])}


class StudyHandler(BaseHTTPRequestHandler):
    server: StudyServer
    server_version = "RefSDStudy/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # -- responses --------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str, **extra: Any) -> None:
        self._json(status, {"error": message, **extra})

    # -- GET --------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = unquote(urlsplit(self.path).path)
        if path in PAGES:
            name = PAGES[path]
            ctype = {"html": "text/html", "js": "text/javascript", "css": "text/css"}[name.rsplit(".", 1)[1]]
            self._send(200, (STATIC / name).read_bytes(), f"{ctype}; charset=utf-8")
        elif path == "/api/study":
            s = self.server.study
            self._json(200, {"title": s.title, "instructions": s.data.get("instructions", ""),
                             "scale": s.data["scale"], "signin": "token" if s.uses_tokens else "name",
                             "total": len(s.items)})
        elif path.startswith("/files/"):
            rel = path[len("/files/"):]
            if rel not in self.server.pictures:  # only the study's own pictures: no path tricks
                self._error(404, f"{rel[:80]!r} is not a picture of this study")
                return
            file = self.server.study.folder / rel
            ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self._send(200, file.read_bytes(), ctype, cache="private, max-age=3600")
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._error(404, f"no page {path[:80]!r}; open {self.server.url}")

    do_HEAD = do_GET

    # -- POST -------------------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        if self.headers.get_content_type() != "application/json":
            raise AnswerRefused("send JSON (Content-Type: application/json)", 415)
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError as e:
            raise AnswerRefused("bad Content-Length", 400) from e
        if n > MAX_BODY:
            raise AnswerRefused(f"request too large ({n} bytes)", 413)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AnswerRefused(f"the request is not valid JSON: {e}", 400) from e
        if not isinstance(body, dict):
            raise AnswerRefused("the request must be a JSON object", 400)
        return body

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        srv = self.server
        rater = None
        try:
            if path not in ("/api/login", "/api/next", "/api/answer"):
                raise AnswerRefused(f"no API {path[:80]!r}", 404)
            body = self._body()
            rater = srv.rater_of(body)
            if path == "/api/answer":
                prog = srv.store.answer(rater, body.get("item"), body.get("value"), body.get("ms"))
                self._json(200, {"ok": True, **srv.state(rater, prog)})
            else:
                self._json(200, srv.state(rater))
        except AnswerRefused as e:
            extra = {}
            if e.status == 409 and rater is not None:
                extra = srv.state(rater)  # where the rater really is: the page continues from there
            self._error(e.status, str(e), **e.extra, **extra)
        except StudyError as e:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(e))


def make_server(folder: str | Path, host: str = "127.0.0.1", port: int = 8765, quiet: bool = True) -> StudyServer:
    """A ready (not yet serving) study server; ``port=0`` picks a free port (see ``.url``)."""
    study = Study.load(folder)
    try:
        return StudyServer((host, int(port)), study, quiet=quiet)
    except OSError as e:
        raise StudyError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from e

"""HTTP and routing of the web demo (stdlib ``http.server``, threaded): the page and its static files, the JSON API
and the spoken replies as wav files. Everything the model does is in ``osum.web.service``.

    GET  /                 the page (static/index.html; app.js, style.css and the recorder's worklet beside it)
    GET  /api/info         the modes (available or why not), the understanding tasks, the limits
    POST /api/run          {"mode", "audio": {"name", "data": base64}, "task" | "prompt", "text", "conversation",
                           "think", "seed"} -> the mode's result; a spoken reply as "audio_url"
    POST /api/new          {"conversation": old id} -> {"conversation": a new id}: a new conversation
    GET  /audio/<id>.wav   a spoken reply (the last few are kept)

Errors are JSON ``{"ok": false, "error": one line}``: the input's fault (400, the message names the file or field)
or the server's (500: the traceback goes to the server log, never to the page).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from osum.web.inputs import InputError
from osum.web.service import DemoService

log = logging.getLogger("osum.web")
STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".ico": "image/x-icon"}
# The page loads nothing from elsewhere: its own files, its recordings (blob:) and the server's wavs.
CSP = "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; connect-src 'self'"
MAX_BODY = 64 * 1024 * 1024  # bytes of one request (base64 audio)
KEEP_AUDIO = 64  # spoken replies kept for the page to play


class AudioStore:
    """The last ``keep`` wavs by id (least recently made dropped)."""

    def __init__(self, keep: int = KEEP_AUDIO):
        self.keep, self.items, self.lock = keep, OrderedDict(), threading.Lock()

    def put(self, data: bytes) -> str:
        key = uuid.uuid4().hex[:16]
        with self.lock:
            self.items[key] = data
            while len(self.items) > self.keep:
                self.items.popitem(last=False)
        return key

    def get(self, key: str) -> bytes | None:
        with self.lock:
            return self.items.get(key)


class RequestError(InputError):
    """A request the server cannot take (too large, not JSON), with its HTTP status."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


def one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DemoHandler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = "osum-web"
    protocol_version = "HTTP/1.1"

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif path == "/api/info":
            self._json(HTTPStatus.OK, {"ok": True, **self.server.service.info()})
        elif path.startswith("/audio/") and path.endswith(".wav"):
            data = self.server.audio.get(path.removeprefix("/audio/").removesuffix(".wav"))
            if data is None:
                self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": "this reply's audio is no longer kept"})
            else:
                self._send(HTTPStatus.OK, data, "audio/wav")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no such page: {path}"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/run":
            self._api(self._run)
        elif path == "/api/new":
            self._api(lambda body: {"conversation": self.server.service.new_conversation(
                str(body.get("conversation") or "") if isinstance(body, dict) else None)})
        else:
            self._discard_body()
            self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no such API: {path}"})

    def _run(self, body: object) -> dict:
        result = self.server.service.run(body)  # type: ignore[arg-type]
        wav = result.pop("wav", None)
        if wav is not None:
            result["audio_url"] = f"/audio/{self.server.audio.put(wav)}.wav"
            result["audio_bytes"] = len(wav)
        return result

    # ------------------------------------------------------------------ plumbing
    def _api(self, call) -> None:
        try:
            result = call(self._read_json())
        except RequestError as e:
            self._json(e.status, {"ok": False, "error": one_line(e)})
        except InputError as e:
            self._json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": one_line(e)})
        except Exception as e:  # the server's fault: the traceback to the log, one line to the page
            log.exception("%s %s failed", self.command, self.path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"ok": False, "error": f"internal error ({type(e).__name__}: {one_line(e, 200)}); "
                                              "the server log has the details"})
        else:
            self._json(HTTPStatus.OK, {"ok": True, **result})

    def _read_json(self) -> object:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise RequestError("the request has a bad Content-Length") from None
        if length > MAX_BODY:
            self.close_connection = True  # the body is not read
            raise RequestError(f"the request is {length / 2**20:.0f} MB; this demo takes at most "
                               f"{MAX_BODY // 2**20} MB", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RequestError("the request body is not JSON") from None

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _static(self, name: str) -> None:
        target = (STATIC / name).resolve()
        if target.parent != STATIC or not target.is_file() or target.suffix not in CONTENT_TYPES:
            self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no such file: {name}"})
            return
        self._send(HTTPStatus.OK, target.read_bytes(), CONTENT_TYPES[target.suffix])

    def _json(self, status: HTTPStatus, payload: dict) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the page went away
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.info("%s %s", self.address_string(), format % args)


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: DemoService, host: str = "127.0.0.1", port: int = 7860):
        super().__init__((host, port), DemoHandler)
        self.service, self.audio = service, AudioStore()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{'[' + shown + ']' if ':' in str(shown) else shown}:{port}/"

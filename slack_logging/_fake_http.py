"""The fake Slack's HTTP side: a threaded loopback server, request bodies, answers on the wire.

What the answers say is decided by :class:`slack_logging._fake_rules.SlackRules`; this module
only reads requests (JSON or form bodies, chunked or not) and writes answers (or resets).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs

from slack_logging._fake_records import Surface

__all__ = [
    "Answer",
    "Handler",
    "Served",
    "Server",
    "default_body",
    "json_answer",
    "parse_body",
    "read_request_body",
    "send_answer",
    "text_answer",
]

_MAX_REQUEST = 10 * 1024 * 1024
_DEFAULT_BODIES = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "no_service",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "rollup_error",
}


class Served(Protocol):
    """What the server hands each request to (the fake)."""

    def _handle(self, handler: Handler) -> None: ...

    def _note_error(self, error: BaseException) -> None: ...


@dataclass
class Answer:
    status: int | None  # None: reset the connection instead of answering
    error: str | None = None
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def text_answer(status: int, body: str, headers: Mapping[str, str] | None = None) -> Answer:
    content_type = (
        "application/json; charset=utf-8"
        if body.lstrip().startswith("{")
        else "text/plain; charset=utf-8"
    )
    error = None if 200 <= status < 300 else reason_of(body)
    return Answer(status, error, body.encode("utf-8"), content_type, dict(headers or {}))


def reason_of(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return body.strip().split("\n", 1)[0] or None


def json_answer(data: Mapping[str, Any], status: int = 200, **headers: str) -> Answer:
    error = data.get("error") if data.get("ok") is False else None
    body = json.dumps(data).encode("utf-8")
    return Answer(status, error, body, "application/json; charset=utf-8", dict(headers))


def default_body(status: int) -> str:
    if status in _DEFAULT_BODIES:
        return _DEFAULT_BODIES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "error"


def parse_body(raw: bytes, content_type: str, surface: Surface) -> dict[str, Any] | None:
    """The request payload as a dict, or None when it cannot be read."""
    try:
        text = raw.decode("utf-8")
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
            if surface == "webhook":
                data: object = json.loads(form.get("payload", ""))
            else:
                data = form
                for key in ("blocks", "attachments", "metadata"):
                    if key in form:
                        data[key] = json.loads(form[key])
        else:
            data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_request_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        size = 0
        while size <= _MAX_REQUEST:
            line = handler.rfile.readline(1024)
            try:
                length = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                break
            if length == 0:
                # Skip any trailers up to the blank line that ends the body.
                while handler.rfile.readline(1024).strip():
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(length))
            handler.rfile.readline(1024)
            size += length
        # A body we cannot frame leaves the connection unusable for the next request.
        handler.close_connection = True
        return b"".join(chunks)
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    return handler.rfile.read(min(length, _MAX_REQUEST)) if length > 0 else b""


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive like Slack does, so transports reuse them for real.
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections end on their own even if nobody calls stop().
    timeout = 30
    server: Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; Nagle plus delayed ACK would add 40 ms to each.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: a test's output is not the place for an access log."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # server_close() would join handler threads without a deadline; stop() joins them itself.
    block_on_close = False

    def __init__(self, fake: Served, host: str, port: int) -> None:
        self.fake = fake
        self._track = threading.Lock()
        self._handler_threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        super().__init__((host, port), Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_one,
            args=(request, client_address),
            name="FakeSlack-request",
            daemon=True,
        )
        with self._track:
            self._handler_threads.add(thread)
            self._sockets.add(request)
        thread.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._track:
                self._handler_threads.discard(threading.current_thread())
                self._sockets.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # Clients that time out or hang up mid-answer are part of the scenarios under test.
        if error is not None and not isinstance(error, OSError):
            self.fake._note_error(error)

    def hang_up_all(self) -> list[threading.Thread]:
        """Wake every handler blocked on a keep-alive read; return the threads still running."""
        with self._track:
            sockets, threads = list(self._sockets), list(self._handler_threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return threads


def send_answer(handler: Handler, answer: Answer) -> None:
    """Write ``answer`` to the client, or reset the connection when its status is None."""
    if answer.status is None:
        handler.close_connection = True
        # Linger 0 makes close() send RST: the client sees a reset, not a clean EOF.
        with contextlib.suppress(OSError):
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        # The socket closes for real only once its file objects are closed too.
        handler.rfile.close()
        handler.connection.close()
        return
    handler.send_response(answer.status)
    custom = {name.lower() for name in answer.headers}
    for name, value in answer.headers.items():
        handler.send_header(name, value)
    if "content-type" not in custom:
        handler.send_header("Content-Type", answer.content_type)
    handler.send_header("Content-Length", str(len(answer.body)))
    handler.end_headers()
    handler.wfile.write(answer.body)

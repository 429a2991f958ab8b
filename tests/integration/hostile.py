"""A hostile workspace: an HTTP server on 127.0.0.1 that answers chosen routes the way no real
workspace should (wrong JSON types, HTML, truncated or endless bodies, huge Retry-After, reset
connections, names that try to leave a directory), for tests/integration/test_hostile_server.py.

Every route not given an answer gets what a real workspace says about a missing object (404
RESOURCE_DOES_NOT_EXIST), and the SDK's start-up probe (`/.well-known/databricks-config`) a
normal answer, so only the route under test misbehaves. Answers are plain functions of the
request handler; `HostileServer.answer(method, path, fn)` sets one. Every loop here is bounded in
count and time, and stops when the server stops.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[BaseHTTPRequestHandler], None]


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, *, content_type: str = "application/json",
         headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


def json_answer(value: Any, status: int = 200, **headers: str) -> Answer:
    return lambda h: send(h, status, json.dumps(value).encode(), headers=headers)


def raw_answer(body: bytes, status: int = 200, content_type: str = "application/json") -> Answer:
    return lambda h: send(h, status, body, content_type=content_type)


def missing(handler: BaseHTTPRequestHandler) -> None:
    send(handler, 404, json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST",
                                   "message": "does not exist"}).encode())


def nested(depth: int) -> bytes:
    """A JSON object with `depth` levels of arrays under a valid endpoint name."""
    return b'{"name": "support-agent", "config": ' + b"[" * depth + b"]" * depth + b"}"


def truncated(handler: BaseHTTPRequestHandler) -> None:
    """Promises 1,000 bytes, sends 20, hangs up."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b'{"name": "support-ag')
    handler.wfile.flush()
    handler.close_connection = True


def reset(handler: BaseHTTPRequestHandler) -> None:
    """Closes the connection with a TCP reset, without a byte of answer."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


class HostileServer:
    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Answer] = {}
        self.requests: list[tuple[str, str]] = []
        self.stopped = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""  # for answers that look at it
                if path == "/.well-known/databricks-config":
                    json_answer({"workspace_id": "1"})(self)
                    return
                server.requests.append((self.command, path))
                server.answers.get((self.command, path), missing)(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.token = "dapi" + "feedfacefeedfacefeedfacefeedface"

    def answer(self, method: str, path: str, fn: Answer) -> None:
        self.answers[(method, path)] = fn

    def trickle(self, *, every: float = 1.0, limit: int = 120) -> Answer:
        """An answer that sends one byte every `every` seconds (at most `limit` bytes), never
        finishing its promised body: a server that holds a call open."""
        def answer(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(limit + 10))
            handler.end_headers()
            for _ in range(limit):
                if self.stopped.wait(every):
                    return
                try:
                    handler.wfile.write(b" ")
                    handler.wfile.flush()
                except OSError:
                    return
        return answer

    def start(self) -> HostileServer:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()

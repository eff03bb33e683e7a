"""A real HTTP upstream on loopback: a small stateful fake third-party API behind ``ThreadingHTTPServer``.

Registered for every test module by ``conftest.py``; use the ``upstream`` fixture (its base URL) and
``unused_port`` (a loopback port nothing listens on).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from fakes import in_thread


class _Upstream(BaseHTTPRequestHandler):
    """``/ok`` JSON; ``/fail?key=K&times=N`` 503 N times (default 2) per key, then 200; ``/401`` a JSON
    auth error; ``/echo`` the request; ``/text?say=S`` S as plain text; ``/close`` JSON and ``Connection: close``.
    """

    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do; /close ends the connection after answering
    server: _UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path == "/ok":
            self._json(200, {"ok": True, "items": [{"id": "cus_1"}, {"id": "cus_2"}]})
        elif url.path == "/close":
            self._json(200, {"ok": True}, close=True)
        elif url.path == "/fail":
            if self.server.count(query.get("key", "")) <= int(query.get("times", "2")):
                self._json(503, {"error": {"message": "upstream overloaded"}})
            else:
                self._json(200, {"recovered": True})
        elif url.path == "/401":
            self._json(401, {"error": {"message": "Invalid API key provided"}})
        elif url.path == "/echo":
            echoed = {
                "method": self.command,
                "path": url.path,
                "query": query,
                "headers": {name.lower(): value for name, value in self.headers.items()},
                "body": body.decode("utf-8"),
            }
            self._json(200, echoed)
        elif url.path == "/text":
            data = query.get("say", "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._json(404, {"error": {"message": "no such route"}})

    def _json(self, status: int, payload: Any, *, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        if close:
            self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Upstream)
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, key: str) -> int:
        """How many requests ``key`` has seen, this one included."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The fake upstream's base URL."""
    server = _UpstreamServer()
    with in_thread(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port

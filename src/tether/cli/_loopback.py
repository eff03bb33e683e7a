"""The one-shot loopback listener that receives an authorization redirect (RFC 8252 §7.3), and PKCE (RFC 7636).

Internal to ``tether auth login``: it serves one request on the redirect path, hands its query to ``answer``
and shows the browser the page ``answer`` returns; any other path (a favicon) gets a 404 and it keeps waiting.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["CALLBACK_PATH", "LoopbackServer", "listen", "page", "pkce_pair", "wait"]

CALLBACK_PATH = "/callback"


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)``: 32 random bytes, the S256 method (RFC 7636 §4.1, §4.2)."""
    verifier = _b64url(secrets.token_bytes(32))
    return verifier, _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def page(title: str, text: str) -> str:
    """The small HTML page the browser shows once the redirect arrived."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>tether: {html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;margin:3em'><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text)}</p></body></html>"
    )


class LoopbackServer(HTTPServer):
    """Serves the redirect path; ``answer`` (set before serving) turns its query into a status and a page."""

    answer: Callable[[dict[str, str]], tuple[int, str]]
    path: str
    answered = False

    @property
    def redirect_uri(self) -> str:
        """The URI the authorization server must redirect to: this listener's actual port and path."""
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes | bytearray) else host
        return f"http://{f'[{host}]' if ':' in host else host}:{port}{self.path}"


class _LoopbackServer6(LoopbackServer):
    address_family = socket.AF_INET6


class _RedirectHandler(BaseHTTPRequestHandler):
    server: LoopbackServer

    def do_GET(self) -> None:  # http.server dispatches to this name
        parts = urlsplit(self.path)
        if parts.path != self.server.path:  # a favicon, a stray request: not the redirect, keep waiting
            self._send(404, page("Not found", "This is tether's login listener."))
            return
        status, shown = self.server.answer(dict(parse_qsl(parts.query, keep_blank_values=True)))
        self.server.answered = True
        self._send(status, shown)

    def _send(self, status: int, shown: str) -> None:
        body = shown.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries the authorization code


def listen(redirect_uri: str | None, port: int | None) -> LoopbackServer:
    """The one-shot listener: on the configured redirect URI's port and path, else on ``port`` (0: any)."""
    host, path = "127.0.0.1", CALLBACK_PATH
    if redirect_uri is not None:
        parts = urlsplit(redirect_uri)
        host, path = parts.hostname or host, parts.path or "/"
        port = parts.port if parts.port is not None else port
    server_class = _LoopbackServer6 if ":" in host else LoopbackServer
    server = server_class((host, port or 0), _RedirectHandler)  # OSError: the port is taken
    server.path = path
    return server


def wait(server: LoopbackServer, timeout: float) -> bool:
    """Serve until the redirect arrives or ``timeout`` seconds pass; whether it arrived."""
    deadline = time.monotonic() + timeout
    while not server.answered:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        server.timeout = min(left, 0.5)
        server.handle_request()
    return True

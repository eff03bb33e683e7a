"""The admin guard: who may see ``tether serve``'s dashboard (and, later, use its backend proxy).

The rule, from the architecture: the admin surfaces need ``TETHER_ADMIN_TOKEN`` unless the service is bound to
loopback. So:

- bound to loopback, no token: open (only this machine can connect);
- bound to anything else, no token: every admin request answers 403 saying to set ``TETHER_ADMIN_TOKEN``;
- with a token: the request must carry it, as ``Authorization: Bearer TOKEN`` (scripts) or as the cookie a
  browser gets by opening ``/?token=TOKEN`` once. That visit answers with a redirect to the same page without
  the token, so the token does not stay in the address bar or the history.

The cookie holds an HMAC of the token, not the token: it opens the dashboard, but whoever reads it does not
learn the token itself. Every comparison is constant-time and the token is never logged.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import html
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

__all__ = ["COOKIE", "MIN_TOKEN_LENGTH", "TOKEN_ENV", "AdminGuard", "is_loopback"]

TOKEN_ENV = "TETHER_ADMIN_TOKEN"  # noqa: S105 (the variable's name, not a token)
COOKIE = "tether_admin"

Endpoint = Callable[[Request], Awaitable[Response]]

_COOKIE_LABEL = b"tether admin session v1"
# Below this length a token is guessable by someone who can keep asking; `tether serve` warns.
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]").lower()
    if host in ("localhost", "localhost."):
        return True
    try:
        return _loopback_ip(host)
    except ValueError:  # another host name: it may resolve to anything, so it is not loopback
        return False


def _loopback_ip(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%")[0])
    # ::ffff:127.0.0.1 is loopback too, which ipaddress says only from Python 3.13 on.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class AdminGuard:
    """Decides whether a request may reach an admin endpoint.

    Use :meth:`check` from an endpoint or middleware (``None`` means "go on", anything else is the answer to
    send), or wrap an endpoint with :meth:`protect`.

    Args:
        token: The admin token (``TETHER_ADMIN_TOKEN``); ``None`` or empty for none.
        loopback: Whether the service is bound to a loopback address only. Even then, a request that arrived
            on a non-loopback address (the app served elsewhere than its caller said) needs the token.
    """

    def __init__(self, token: str | None, *, loopback: bool) -> None:
        self._token = token or None
        self.loopback = loopback
        self._digest = _digest(self._token) if self._token else b""
        self._session = hmac.new(self._token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest() if self._token else ""

    @property
    def enabled(self) -> bool:
        """Whether a token is configured."""
        return self._token is not None

    def __repr__(self) -> str:  # never the token
        return f"AdminGuard(token={'set' if self._token else 'unset'}, loopback={self.loopback})"

    def check(self, request: Request) -> Response | None:
        """``None`` if ``request`` may go on; else the response to send instead (401, 403 or a redirect)."""
        if self._token is None:
            if self.loopback and _arrived_on_loopback(request):
                return None
            return _refuse(
                request,
                403,
                f"This tether serve is reachable from other machines, so its admin pages need a token: set "
                f"{TOKEN_ENV} (a long random string) in its environment and restart it, or bind it to 127.0.0.1.",
            )
        offered = request.query_params.get("token")
        if offered is not None and request.method in ("GET", "HEAD"):
            if not self._matches(offered):
                return _refuse(request, 401, "That admin token is wrong.")
            return self._login(request)
        authorization = request.headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            if self._matches(credentials.strip()):
                return None
            return _refuse(request, 401, "That admin token is wrong.")
        session = request.cookies.get(COOKIE)
        if session is not None and hmac.compare_digest(session.encode(), self._session.encode()):
            return None
        return _refuse(
            request,
            401,
            f"This page needs the admin token ({TOKEN_ENV}): open it once as /?token=TOKEN, "
            "or send Authorization: Bearer TOKEN.",
        )

    def protect(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint``, answered only for requests :meth:`check` lets through."""

        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            refusal = self.check(request)
            if refusal is not None:
                return refusal
            return await endpoint(request)

        return guarded

    def _matches(self, offered: str) -> bool:
        # Digests first, so the comparison takes the same time whatever the offered token's length.
        return hmac.compare_digest(_digest(offered), self._digest)

    def _login(self, request: Request) -> Response:
        rest = [(key, value) for key, value in request.query_params.multi_items() if key != "token"]
        # One leading slash: "//host/…" would send the browser to another site.
        target = "/" + request.url.path.lstrip("/") + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            COOKIE,
            self._session,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _arrived_on_loopback(request: Request) -> bool:
    server = request.scope.get("server")
    if not server or not isinstance(server[0], str):
        return True  # a Unix socket, or a server that does not say: the bind address decided
    try:
        return _loopback_ip(server[0])
    except ValueError:  # a Unix socket's path: reachable only through the file system
        return True


def _refuse(request: Request, status: int, message: str) -> Response:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="tether"'
    if "text/html" in request.headers.get("accept", ""):
        title = "Forbidden" if status == 403 else "Admin token needed"
        page = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>tether: "
            f"{title}</title></head><body style='font:16px system-ui,sans-serif;margin:3em;max-width:40em'>"
            f"<h1>{title}</h1><p>{html.escape(message)}</p></body></html>"
        )
        return HTMLResponse(page, status_code=status, headers=headers)
    return JSONResponse({"error": "forbidden" if status == 403 else "unauthorized", "detail": message}, status, headers)

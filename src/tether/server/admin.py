"""Token guards: who may use ``tether serve``'s dashboard and its backend proxy.

The rule, from the architecture: these surfaces need a token unless the service is bound to loopback. Each has
a token of its own, because a browser holds the proxy's: ``TETHER_ADMIN_TOKEN`` opens the dashboard,
``TETHER_PROXY_TOKEN`` the proxy (:mod:`tether.server.proxy`), and neither opens the other. For each:

- bound to loopback, no token: open (only this machine can connect);
- bound to anything else, no token: every request answers 403 saying which variable to set;
- with a token: the request must carry it, as ``Authorization: Bearer TOKEN`` (scripts), as a header of the
  surface's own (the proxy's ``X-Tether-Proxy-Token``), or, for the dashboard, as the cookie a browser gets by
  opening ``/?token=TOKEN`` once. That visit answers with a redirect to the same page without the token, so
  the token does not stay in the address bar or the history.

The dashboard's cookie holds an HMAC of the token, not the token: it opens the dashboard, but whoever reads it
does not learn the token itself. Every comparison is constant-time and a token is never logged.
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

from tether.observe.redact import register_secret, register_sensitive_name

__all__ = ["COOKIE", "MIN_TOKEN_LENGTH", "TOKEN_ENV", "AdminGuard", "TokenGuard", "is_loopback"]

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


class TokenGuard:
    """Decides whether a request may reach a surface that needs a token (the rule is in the module's docstring).

    Use :meth:`check` from an endpoint or middleware (``None`` means "go on", anything else is the answer to
    send), or wrap an endpoint with :meth:`protect`.

    Args:
        token: The token; ``None`` or empty for none.
        loopback: Whether the service is bound to a loopback address only. Even then, a request that arrived
            on a non-loopback address (the app served elsewhere than its caller said) needs the token.
        env: The environment variable the token comes from, named in refusals.
        label: What the token is called in messages (``"admin"``, ``"proxy"``).
        surface: What it opens, in messages (``"admin pages"``, ``"backend proxy"``).
        header: A header that may carry the token besides ``Authorization: Bearer``.
        loopback_hosts: While open (loopback, no token), also require the ``Host`` header to name a loopback
            address: a web page whose own host name its attacker points at 127.0.0.1 (DNS rebinding) is then
            refused, since its requests still say that name.
    """

    def __init__(
        self,
        token: str | None,
        *,
        loopback: bool,
        env: str,
        label: str,
        surface: str,
        header: str | None = None,
        loopback_hosts: bool = False,
    ) -> None:
        self._token = token or None
        self.loopback = loopback
        self.env, self.label, self.surface = env, label, surface
        self._header = header or None  # as written, for messages; header lookups ignore case
        self._loopback_hosts = loopback_hosts
        self._digest = _digest(self._token) if self._token else b""
        # Masked wherever tether writes text (logs, errors), should a request or a header list ever carry it there.
        if self._token:
            register_secret(self._token)
        if self._header:
            register_sensitive_name(self._header)

    @property
    def enabled(self) -> bool:
        """Whether a token is configured."""
        return self._token is not None

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}(token={'set' if self._token else 'unset'}, loopback={self.loopback})"

    def check(self, request: Request) -> Response | None:
        """``None`` if ``request`` may go on; else the response to send instead (401, 403, or the dashboard's
        redirect after a login)."""
        if self._token is None:
            return self._open(request)
        return self._authenticate(request)

    def protect(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint``, answered only for requests :meth:`check` lets through."""

        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            refusal = self.check(request)
            if refusal is not None:
                return refusal
            return await endpoint(request)

        return guarded

    def _open(self, request: Request) -> Response | None:
        if not (self.loopback and _arrived_on_loopback(request)):
            return self._refuse(
                request,
                403,
                f"This tether serve is reachable from other machines, so a token guards its {self.surface}: set "
                f"{self.env} (a long random string) in its environment and restart it, or bind it to 127.0.0.1.",
            )
        if self._loopback_hosts and not _addressed_to_loopback(request):
            return self._refuse(
                request,
                403,
                f"Without {self.env}, the {self.surface} answers only requests addressed to this machine "
                "(Host 127.0.0.1, [::1] or localhost), so that a web page cannot reach it under a name of its "
                f"own; use one of those, or set {self.env}.",
            )
        return None

    def _authenticate(self, request: Request) -> Response | None:
        offered = self._offered(request)
        if offered is None:
            return self._missing(request)
        return None if self._matches(offered) else self._wrong(request)

    def _offered(self, request: Request) -> str | None:
        """The token the request carries (the surface's header first, then a bearer token), if any."""
        if self._header is not None:
            value = request.headers.get(self._header)
            if value is not None and value.strip():
                return value.strip()
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None

    def _missing(self, request: Request) -> Response | None:
        how = "Authorization: Bearer TOKEN" + (f" or {self._header}: TOKEN" if self._header else "")
        return self._refuse(request, 401, f"The {self.surface} needs the {self.label} token ({self.env}): send {how}.")

    def _matches(self, offered: str) -> bool:
        # Digests first, so the comparison takes the same time whatever the offered token's length.
        return hmac.compare_digest(_digest(offered), self._digest)

    def _wrong(self, request: Request) -> Response:
        return self._refuse(request, 401, f"That {self.label} token is wrong.")

    def _refuse(self, request: Request, status: int, message: str) -> Response:
        headers = {"Cache-Control": "no-store"}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="tether"'
        if "text/html" not in request.headers.get("accept", ""):
            error = "forbidden" if status == 403 else "unauthorized"
            return JSONResponse({"error": error, "detail": message}, status, headers)
        title = "Forbidden" if status == 403 else f"{self.label.capitalize()} token needed"
        page = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>tether: "
            f"{title}</title></head><body style='font:16px system-ui,sans-serif;margin:3em;max-width:40em'>"
            f"<h1>{title}</h1><p>{html.escape(message)}</p></body></html>"
        )
        return HTMLResponse(page, status_code=status, headers=headers)


class AdminGuard(TokenGuard):
    """Decides whether a request may reach an admin endpoint (the dashboard): ``TETHER_ADMIN_TOKEN``.

    Besides a bearer token, a browser opens the dashboard once with ``/?token=TOKEN`` and then holds a session
    cookie derived from the token.

    Args:
        token: The admin token (``TETHER_ADMIN_TOKEN``); ``None`` or empty for none.
        loopback: Whether the service is bound to a loopback address only. Even then, a request that arrived
            on a non-loopback address (the app served elsewhere than its caller said) needs the token.
    """

    def __init__(self, token: str | None, *, loopback: bool) -> None:
        # loopback_hosts: open on loopback, the dashboard still answers only requests addressed to this machine,
        # so a web page that points a name of its own at 127.0.0.1 (DNS rebinding) cannot read it.
        super().__init__(
            token, loopback=loopback, env=TOKEN_ENV, label="admin", surface="admin pages", loopback_hosts=True
        )
        self._session = hmac.new(self._token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest() if self._token else ""

    def _authenticate(self, request: Request) -> Response | None:
        offered = request.query_params.get("token")
        if offered is not None and request.method in ("GET", "HEAD"):
            return self._login(request) if self._matches(offered) else self._wrong(request)
        return super()._authenticate(request)

    def _missing(self, request: Request) -> Response | None:
        session = request.cookies.get(COOKIE)
        if session is not None and hmac.compare_digest(session.encode(), self._session.encode()):
            return None
        return self._refuse(
            request,
            401,
            f"This page needs the admin token ({TOKEN_ENV}): open it once as /?token=TOKEN, "
            "or send Authorization: Bearer TOKEN.",
        )

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


def _addressed_to_loopback(request: Request) -> bool:
    host = request.headers.get("host")
    if host is None:
        return True  # HTTP/1.0 without Host: not a browser, and DNS rebinding needs one
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    return bool(name) and is_loopback(name)

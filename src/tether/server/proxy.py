"""The backend proxy of ``tether serve``: ``/proxy/{name}/{path}`` calls an integration for a browser.

The browser holds only the proxy token (``TETHER_PROXY_TOKEN``); tether adds the integration's credentials on
the server, through ``hub.async_client(name)``, so every client policy applies: auth, timeouts, retries, rate
limit, breaker, cache, fallback and call records. Only integrations with a ``[integrations.NAME.proxy]``
table are exposed, and only the methods and paths its ``allow`` list names.

A request goes through, in order:

1. a CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, without a token,
   for the integration's ``cors_origins`` only (403 for any other origin);
2. the token guard (:class:`~tether.server.admin.TokenGuard`): 401 without the right token, 403 when none is
   set and the service is not bound to loopback;
3. browsers' cross-site requests from an origin not in ``cors_origins`` are refused (403): CORS only stops a
   page from reading the answer, and a form post would otherwise still spend the API key;
4. 404 for an integration that is not exposed; 400 for a path or query that could leave ``base_url``
   (:mod:`tether.server.proxy_rules`); 403 for a method and path the allow list does not name;
5. 413 for a body over the cap (1 MiB by default);
6. the call. The API's answer, error statuses included, goes back as it came, minus hop-by-hop headers,
   cookies and the others :func:`~tether.server.proxy_rules.response_headers` drops. When tether itself
   gives up, the answer is JSON naming the error class and its hint: 429 (throttled, with ``Retry-After``),
   503 (circuit open, with ``Retry-After``), 504 (a timeout), 502 (connection, TLS, credentials, anything else).

Every answer for a configured origin carries its CORS headers, so a page can read tether's refusals too.
"""

from __future__ import annotations

import math
import re
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import quote

import httpx2
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tether import errors
from tether.hub import Hub
from tether.observe.log import logger
from tether.server.admin import TokenGuard
from tether.server.proxy_rules import (
    TOKEN_HEADER,
    Exposure,
    PathRefused,
    checked_path,
    checked_query,
    response_headers,
)

__all__ = ["MAX_BODY", "PREFIX", "TOKEN_ENV", "TOKEN_HEADER", "Proxy"]

PREFIX = "/proxy/"
TOKEN_ENV = "TETHER_PROXY_TOKEN"  # noqa: S105 (the variable's name, not a token)
MAX_BODY = 1024 * 1024  # request bodies above this answer 413: a browser's API call, not an upload service

_NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_NO_BODY = frozenset({204, 304})


class Proxy:
    """The ASGI app that serves ``/proxy/…`` for the integrations of ``hub`` that have a ``proxy`` table.

    Args:
        hub: The integrations; one async client is made per exposed integration, on its first request.
        token: ``TETHER_PROXY_TOKEN``; ``None`` for none.
        loopback: Whether the service is bound to loopback only (no token then means open to this machine).
        max_body: Largest request body forwarded, in bytes.
    """

    def __init__(self, hub: Hub, *, token: str | None, loopback: bool, max_body: int = MAX_BODY) -> None:
        self.hub = hub
        self.guard = TokenGuard(
            token,
            loopback=loopback,
            env=TOKEN_ENV,
            label="proxy",
            surface="backend proxy",
            header=TOKEN_HEADER,
            loopback_hosts=True,
        )
        self.max_body = max_body
        self.exposed = {
            name: exposure
            for name, config in hub.integrations.items()
            if (exposure := Exposure.of(name, config)) is not None
        }
        self._clients: dict[str, httpx2.AsyncClient] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.answer(request)
        await response(scope, receive, send)

    async def aclose(self) -> None:
        """Close the clients (their connection pools)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def answer(self, request: Request) -> Response:
        """The response to one request under ``/proxy/``."""
        name, rest = _split(_raw_path(request.scope))
        exposure = self.exposed.get(name) if name is not None else None
        origin = request.headers.get("origin")
        if request.method == "OPTIONS" and origin is not None and "access-control-request-method" in request.headers:
            return self._preflight(exposure, origin)
        cors = exposure.cors_headers(origin) if exposure is not None else []
        refusal = self.guard.check(request) or _cross_site(request, exposure, origin)
        if refusal is not None:
            return _with(refusal, cors)
        if exposure is None:
            return _problem(404, "not_found", _not_exposed(name), cors)
        try:
            path = checked_path(rest)
            url = exposure.url(rest, checked_query(request.scope.get("query_string", b"")))
        except PathRefused as exc:
            logger.info("proxy %s: refused a request path: %s", exposure.name, exc)
            return _problem(400, "bad_path", f"This path cannot be proxied: {exc}.", cors)
        if not exposure.allows(request.method, path):
            allowed = ", ".join(exposure.allow)
            detail = (
                f"{request.method} {path} is not allowed through the proxy for {exposure.name!r}; allowed: {allowed}"
            )
            return _problem(403, "not_allowed", detail, cors)
        body = await _read_body(request, self.max_body)
        if body is None:
            detail = f"The request body is over the proxy's limit of {self.max_body} bytes."
            return _problem(413, "too_large", detail, cors)
        return await self._forward(request, exposure, url, body, cors)

    def _preflight(self, exposure: Exposure | None, origin: str) -> Response:
        if exposure is None or not exposure.allows_origin(origin):
            # One answer for both, so that a preflight, which needs no token, does not tell which names exist.
            detail = "This origin may not call this path: it is not exposed, or the origin is not in its cors_origins."
            return _problem(403, "origin_not_allowed", detail, [("Vary", "Origin")])
        return Response(status_code=204, headers=dict(exposure.preflight_headers(origin)))

    async def _forward(
        self, request: Request, exposure: Exposure, url: httpx2.URL, body: bytes, cors: list[tuple[str, str]]
    ) -> Response:
        client = self._client(exposure.name)
        upstream = client.build_request(
            request.method, url, headers=exposure.forwarded(request.headers.items()), content=body or None
        )
        try:
            response = await client.send(upstream, stream=True)
        except httpx2.HTTPError as exc:
            return _failure(exposure.name, exc, cors)
        headers = response_headers(response.headers)
        if request.method == "HEAD" or response.status_code in _NO_BODY or response.status_code < 200:
            length = response.headers.get("content-length")
            await response.aclose()
            answer = Response(status_code=response.status_code)
            answer.raw_headers = headers
            if request.method == "HEAD" and length is not None and "content-encoding" not in response.headers:
                answer.raw_headers.append((b"content-length", length.encode("latin-1")))
        elif response.is_closed:  # read inside the retry loop: send it whole, with its length
            answer = Response(response.content, status_code=response.status_code)
            answer.raw_headers += headers
        else:  # a large body or an event stream: pass it on as it arrives
            answer = StreamingResponse(
                response.aiter_bytes(), status_code=response.status_code, background=BackgroundTask(response.aclose)
            )
            answer.raw_headers += headers
        return _with(answer, cors)

    def _client(self, name: str) -> httpx2.AsyncClient:
        client = self._clients.get(name)
        if client is None:
            # No cookie jar: one client serves every browser, so a cookie the API set for one would go to all.
            client = self.hub.async_client(name, cookies=CookieJar(policy=_KeepNone()), follow_redirects=False)
            self._clients[name] = client
        return client


class _KeepNone(DefaultCookiePolicy):
    """A cookie policy that accepts no cookie."""

    def set_ok(self, cookie: Cookie, request: Any) -> bool:
        return False


def _raw_path(scope: Scope) -> bytes:
    raw = scope.get("raw_path")
    if raw is None:
        # A server that keeps no raw path: judge the decoded one, re-encoded. The rules still hold; only an
        # encoded slash can no longer be told from a separator, and then it is one.
        raw = quote(scope["path"], safe="/").encode("ascii")
    root = scope.get("root_path", "").encode("utf-8")
    return raw[len(root) :] if root and raw.startswith(root) else bytes(raw)


def _split(raw: bytes) -> tuple[str | None, bytes]:
    """The integration's name and the raw path after it; no name when that segment is not a plain name."""
    if not raw.startswith(PREFIX.encode()):
        return None, b""
    name, slash, rest = raw[len(PREFIX) :].partition(b"/")
    if not _NAME.match(name):
        return None, slash + rest
    return name.decode("ascii"), slash + rest


def _cross_site(request: Request, exposure: Exposure | None, origin: str | None) -> Response | None:
    """A refusal for a browser's request made by a page of an origin not in ``cors_origins``."""
    site = request.headers.get("sec-fetch-site")
    if exposure is not None and exposure.allows_origin(origin):
        return None
    if origin is None and site not in ("cross-site", "same-site"):
        return None  # not a browser, or a page of tether's own origin, or the user typing the URL
    if origin is not None and site == "same-origin":
        return None
    where = f"in cors_origins of {exposure.name!r}" if exposure is not None else "configured"
    detail = f"Requests from web pages are accepted only from the origins {where}."
    return _problem(403, "origin_not_allowed", detail, [])


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` when it is over ``limit`` bytes (reading stops there)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _failure(name: str, exc: httpx2.HTTPError, cors: list[tuple[str, str]]) -> Response:
    """The answer when tether gave up on the call: the error's class and hint, never a secret."""
    status, wait = 502, None
    if isinstance(exc, errors.ThrottledError | errors.CircuitOpenError):
        status = 429 if isinstance(exc, errors.ThrottledError) else 503
        wait = exc.retry_in
    elif isinstance(exc, errors.RateLimitError):
        status, wait = 429, exc.retry_after
    elif isinstance(exc, httpx2.TimeoutException):
        status = 504
    payload: dict[str, Any] = {"error": type(exc).__name__, "integration": name}
    if isinstance(exc, errors.CallError | errors.AuthError):
        payload.update(detail=exc.summary, hint=exc.hint)
    else:  # not one of tether's errors: its text may hold anything, so only its class is said
        payload.update(detail="the call to the API failed", hint="see tether serve's log")
        logger.warning("proxy %s: the call failed: %s", name, type(exc).__name__)
    if isinstance(exc, errors.CallError):
        payload["attempts"] = len(exc.attempts)
    headers = {"Cache-Control": "no-store"}
    if wait is not None:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return _with(JSONResponse(payload, status, headers), cors)


def _not_exposed(name: str | None) -> str:
    if name is None:
        return "Expected /proxy/NAME/PATH, NAME an integration of tether.toml."
    return (
        f"Integration {name!r} is not exposed through the proxy: it needs an [integrations.{name}.proxy] "
        "table with an allow list (and enabled = true)."
    )


def _problem(status: int, error: str, detail: str, cors: list[tuple[str, str]]) -> Response:
    return _with(JSONResponse({"error": error, "detail": detail}, status, {"Cache-Control": "no-store"}), cors)


def _with(response: Response, headers: list[tuple[str, str]]) -> Response:
    response.raw_headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    return response

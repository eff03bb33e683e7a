"""Faults injected on demand, so tests can script an unreliable upstream one request at a time.

Every option is read from a query parameter or, when that is absent, from a header (handy for SDKs
that make query parameters awkward). The query parameter wins when both are present.

=====================  ==============================  ==============================================
Query parameter        Header                          Meaning
=====================  ==============================  ==============================================
``fault``              ``X-Sandbox-Fault``             Comma-separated faults, applied in order.
``key``                ``X-Sandbox-Key``               Names a counter; requests carrying it are
                                                       recorded for ``GET /v1/requests?key=``.
``fail_times``         ``X-Sandbox-Fail-Times``        Inject only into the first N requests with
                                                       ``key``, then answer normally.
``retry_after``        ``X-Sandbox-Retry-After``       Add ``Retry-After: N`` (seconds) to a status.
``retry_after_date``   ``X-Sandbox-Retry-After-Date``  Add ``Retry-After`` as an HTTP-date N seconds
                                                       from now.
=====================  ==============================  ==============================================

Faults:

- ``status:NNN`` (400-599): that status and a JSON body ``{"error": {"type", "message", "code"}}``.
- ``429`` or ``rate_limit``: a 429 with ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (epoch
  seconds) headers; add ``retry_after``/``retry_after_date`` for a ``Retry-After`` header.
- ``latency:S``: wait S seconds, then carry on (with the next fault, or the normal response).
- ``reset``: abort the connection with a TCP RST before answering; clients see a read error
  (``httpx2.ReadError``; over TLS, OpenSSL reports it as an unexpected EOF instead).
- ``disconnect``: close the connection (FIN) before answering; "server disconnected" for clients.
- ``truncated_json``: 200, ``application/json``, a JSON document cut in half (and a matching
  ``Content-Length``), so reading succeeds and parsing fails.
- ``invalid_json``: 200, ``application/json``, body ``<html>oops</html>``.
- ``wrong_content_type``: 200, ``text/html``, an HTML page.
- ``body_error``: 200 announcing a longer ``Content-Length`` than is sent, then the connection closes
  mid-body.

``fault=status:503&fail_times=2&key=flaky`` therefore fails twice and succeeds from the third request
on. ``reset``, ``disconnect`` and ``body_error`` need :mod:`tether.sandbox.server`, which lets the app
drop connections; under any other server they answer 501.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DROP_CONNECTION", "FaultMiddleware", "RecordedRequest", "RequestLog", "error_response"]

DROP_CONNECTION = "tether.sandbox.connection"
"""Scope extension ``{"drop": Callable[[bool], None]}``: close the connection now, with RST if True."""

_TERMINAL_FAULTS = frozenset(
    {
        "429",
        "rate_limit",
        "reset",
        "disconnect",
        "body_error",
        "truncated_json",
        "invalid_json",
        "wrong_content_type",
    }
)
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
_SAMPLE = {"id": "cus_fault", "object": "customer", "name": "Fault Sample", "email": "fault@example.com"}
_SAMPLE_BODY = json.dumps({"object": "list", "data": [_SAMPLE] * 3, "has_more": False}).encode()
_HTML_BODY = b"<!doctype html><html><body><h1>Service temporarily unavailable</h1></body></html>"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request that carried a sandbox ``key``."""

    method: str
    path: str
    idempotency_key: str | None
    headers: dict[str, str]


@dataclass(slots=True)
class RequestLog:
    """Requests seen per sandbox key; the counters behind ``fail_times``."""

    _by_key: defaultdict[str, list[RecordedRequest]] = field(default_factory=lambda: defaultdict(list))

    def record(self, key: str, request: RecordedRequest) -> int:
        """Remember ``request`` under ``key`` and return how many requests carried that key so far."""
        self._by_key[key].append(request)
        return len(self._by_key[key])

    def requests(self, key: str) -> list[RecordedRequest]:
        """Return the requests recorded under ``key``, oldest first."""
        return list(self._by_key.get(key, []))


def error_response(
    status: int, type_: str, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Build the sandbox's error shape: ``{"error": {"type", "message", "code"}}``."""
    return JSONResponse({"error": {"type": type_, "message": message, "code": code}}, status, headers)


class FaultMiddleware:
    """Pure ASGI middleware that records keyed requests and injects the faults they ask for.

    Args:
        app: The application behind the faults.
        log: Where keyed requests are recorded and counted.
        exempt_paths: Paths that are neither recorded nor faulted (the introspection endpoint).
    """

    def __init__(self, app: ASGIApp, *, log: RequestLog, exempt_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.log = log
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        key = _option(request, "key")
        seen = 0
        if key is not None:
            headers = dict(request.headers)
            entry = RecordedRequest(request.method, request.url.path, headers.get("idempotency-key"), headers)
            seen = self.log.record(key, entry)
        spec = _option(request, "fault")
        if spec is None:
            await self.app(scope, receive, send)
            return
        try:
            faults = _parse_faults(spec)
            fail_times = _int_option(request, "fail_times")
            retry = _retry_after(request)
            if fail_times is not None and key is None:
                raise ValueError("fail_times needs a key to count requests by")
        except ValueError as exc:
            response = error_response(400, "invalid_request_error", str(exc), code="sandbox_usage")
            await response(scope, receive, send)
            return
        if fail_times is None or seen <= fail_times:
            for name, argument in faults:
                if name == "latency":
                    await asyncio.sleep(argument)
                else:
                    await _answer(name, argument, retry, scope, receive, send)
                    return
        await self.app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class _RetryAfter:
    headers: dict[str, str]
    wait: int


def _parse_faults(spec: str) -> list[tuple[str, float]]:
    faults = []
    for part in filter(None, (text.strip() for text in spec.split(","))):
        name, colon, argument = part.partition(":")
        if name in _TERMINAL_FAULTS and not colon:
            faults.append((name, 0.0))
            continue
        if name not in ("status", "latency") or not colon:
            raise ValueError(f"unknown fault {part!r}; see tether.sandbox.faults for the list")
        try:
            value = float(argument)
        except ValueError:
            raise ValueError(f"fault {part!r} needs a number after the colon") from None
        if name == "status" and not (value.is_integer() and 400 <= value <= 599):
            raise ValueError(f"fault {part!r} needs a status from 400 to 599")
        if not 0 <= value < float("inf"):
            raise ValueError(f"fault {part!r} needs a non-negative number of seconds")
        faults.append((name, value))
    return faults


async def _answer(name: str, argument: float, retry: _RetryAfter, scope: Scope, receive: Receive, send: Send) -> None:
    if name in ("429", "rate_limit"):
        headers = {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + retry.wait),
            **retry.headers,
        }
        message = "Injected fault: too many requests, slow down."
        await error_response(429, "rate_limit_error", message, code="rate_limited", headers=headers)(
            scope, receive, send
        )
    elif name == "status":
        status = int(argument)
        type_ = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        message = f"Injected fault: {status} {http.HTTPStatus(status).phrase}."
        await error_response(status, type_, message, code="sandbox_fault", headers=retry.headers)(scope, receive, send)
    elif name == "truncated_json":
        await _send_raw(send, "application/json", _SAMPLE_BODY[: len(_SAMPLE_BODY) // 2])
    elif name == "invalid_json":
        await _send_raw(send, "application/json", b"<html>oops</html>")
    elif name == "wrong_content_type":
        await _send_raw(send, "text/html; charset=utf-8", _HTML_BODY)
    else:
        await _drop(name, scope, receive, send)


async def _drop(name: str, scope: Scope, receive: Receive, send: Send) -> None:
    extension: dict[str, Any] = scope.get("extensions", {}).get(DROP_CONNECTION, {})
    drop: Callable[[bool], None] | None = extension.get("drop")
    if drop is None:
        message = f"fault={name} needs the connection control of tether.sandbox.server"
        await error_response(501, "api_error", message, code="sandbox_usage")(scope, receive, send)
        return
    if name == "body_error":
        length = b"%d" % len(_SAMPLE_BODY)
        headers = [(b"content-type", b"application/json"), (b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _SAMPLE_BODY[:20], "more_body": True})
    drop(name == "reset")
    # Returning before the server has seen the disconnect makes uvicorn log an error and answer 500.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1):
            while (await receive())["type"] != "http.disconnect":
                pass


async def _send_raw(send: Send, content_type: str, body: bytes) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _option(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        value = request.headers.get("x-sandbox-" + name.replace("_", "-"))
    return value


def _int_option(request: Request, name: str) -> int | None:
    value = _option(request, name)
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _retry_after(request: Request) -> _RetryAfter:
    seconds, date = _int_option(request, "retry_after"), _int_option(request, "retry_after_date")
    if seconds is not None and date is not None:
        raise ValueError("give retry_after or retry_after_date, not both")
    if seconds is not None:
        return _RetryAfter({"Retry-After": str(seconds)}, seconds)
    if date is not None:
        return _RetryAfter({"Retry-After": email.utils.formatdate(time.time() + date, usegmt=True)}, date)
    # Without a Retry-After, X-RateLimit-Reset still has to point somewhere in the future.
    return _RetryAfter({}, 1)

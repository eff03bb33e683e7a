"""The sandbox application: a small fake third-party API to point tether at.

Endpoints:

- ``GET /health``: ``{"status": "ok"}``, no credentials needed.
- ``GET /v1/customers?limit=&starting_after=``: a Stripe-style list
  ``{"object": "list", "data": [...], "has_more": bool}`` over 25 seeded customers.
- ``GET /v1/customers/{id}``: one customer, or 404 ``resource_missing``.
- ``POST /v1/customers``: create from a JSON or form body (``name``, ``email``, ``description``). The
  ``Idempotency-Key`` header is echoed in the ``idempotency_key`` field; repeating the key returns the
  same object with ``Idempotent-Replayed: true`` (and a 400 if the parameters differ).
- ``POST /v1/chat/completions`` and ``GET /v1/models``: just enough of the OpenAI API for its SDK,
  including ``stream: true``.
- ``GET /v1/requests?key=K``: what the sandbox saw for a fault ``key`` (see :mod:`.faults`); needs no
  credentials and is never faulted.
- ``POST /oauth/token`` and ``GET /oauth/stats``: an OAuth 2.0 client-credentials token endpoint
  (see :mod:`.oauth`).

Everything else under ``/v1/`` needs one of ``X-API-Key: <api_key>``, ``?api_key=<api_key>``,
``Authorization: Bearer <bearer_token>`` or a bearer token from ``/oauth/token`` that has not expired, else a
401 ``authentication_error``. Every response carries
an ``X-Request-Id``.
"""

from __future__ import annotations

import hmac
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.sandbox.faults import FaultMiddleware, RequestLog, error_response
from tether.sandbox.oauth import TokenIssuer
from tether.sandbox.webhooks import send_endpoint

__all__ = ["SANDBOX_API_KEY", "SANDBOX_BEARER_TOKEN", "create_app"]

# Published fake credentials, there for the demo and the tests to send.
SANDBOX_API_KEY = "sk_test_sandbox"
SANDBOX_BEARER_TOKEN = "tok_sandbox"  # noqa: S105

_REQUESTS_PATH = "/v1/requests"
_FIELDS = ("name", "email", "description")
_MODELS = {"object": "list", "data": [{"id": "sandbox-1", "object": "model", "created": 0, "owned_by": "sandbox"}]}


def create_app(*, api_key: str = SANDBOX_API_KEY, bearer_token: str = SANDBOX_BEARER_TOKEN) -> Starlette:
    """Build a fresh sandbox app with its own customers, idempotency cache and fault counters.

    Args:
        api_key: Accepted in ``X-API-Key`` or the ``api_key`` query parameter.
        bearer_token: Accepted in ``Authorization: Bearer``.
    """
    log = RequestLog()
    customers = _Customers()
    issuer = TokenIssuer()

    async def requests_seen(request: Request) -> Response:
        key = request.query_params.get("key")
        if key is None:
            return error_response(400, "invalid_request_error", "key is required", code="parameter_missing")
        seen = log.requests(key)
        return JSONResponse(
            {
                "key": key,
                "count": len(seen),
                "idempotency_keys": [entry.idempotency_key for entry in seen],
                "requests": [
                    {"method": e.method, "path": e.path, "idempotency_key": e.idempotency_key, "headers": e.headers}
                    for e in seen
                ],
            }
        )

    routes = [
        Route("/health", _health),
        Route("/v1/customers", customers.list, methods=["GET"]),
        Route("/v1/customers", customers.create, methods=["POST"]),
        Route("/v1/customers/{customer_id}", customers.retrieve),
        Route("/v1/chat/completions", _chat_completions, methods=["POST"]),
        Route("/v1/models", _models),
        Route(_REQUESTS_PATH, requests_seen),
        Route("/oauth/token", issuer.token, methods=["POST"]),
        Route("/oauth/stats", issuer.stats),
        Route("/sandbox/webhooks", send_endpoint, methods=["POST"]),
    ]
    middleware = [
        Middleware(_RequestIdMiddleware),
        Middleware(FaultMiddleware, log=log, exempt_paths=frozenset({_REQUESTS_PATH})),
        Middleware(_AuthMiddleware, api_key=api_key, bearer_token=bearer_token, issuer=issuer),
    ]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: _http_error})


class _RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{next(self._ids):06d}"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Request-Id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


class _AuthMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: str, bearer_token: str, issuer: TokenIssuer) -> None:
        self.app = app
        self.api_key = api_key
        self.bearer_token = bearer_token
        self.issuer = issuer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        guarded = scope["type"] == "http" and path.startswith("/v1/") and path != _REQUESTS_PATH
        if guarded and not self._authorized(Request(scope)):
            message = "No valid credentials: send X-API-Key, ?api_key= or Authorization: Bearer."
            headers = {"WWW-Authenticate": 'Bearer realm="sandbox", error="invalid_token"'}
            await error_response(401, "authentication_error", message, headers=headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest so a timing side channel cannot be demonstrated against the sandbox either.
        return (
            _same(request.headers.get("x-api-key"), self.api_key)
            or _same(request.query_params.get("api_key"), self.api_key)
            or (
                scheme.lower() == "bearer"
                and (_same(token.strip(), self.bearer_token) or self.issuer.valid(token.strip()))
            )
        )


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class _Customers:
    """The customer store: seeded, insertion-ordered, with an idempotency cache for creates."""

    def __init__(self, seeded: int = 25) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.replays: dict[str, tuple[dict[str, str], dict[str, Any]]] = {}
        for number in range(1, seeded + 1):
            self._add(f"Customer {number}", f"customer{number}@example.com", None, None, 1_700_000_000 + number)

    def _add(
        self, name: str | None, email: str | None, description: str | None, key: str | None, created: int
    ) -> dict[str, Any]:
        customer_id = f"cus_{len(self.items) + 1:04d}"
        self.items[customer_id] = {
            "id": customer_id,
            "object": "customer",
            "name": name,
            "email": email,
            "description": description,
            "created": created,
            "idempotency_key": key,
        }
        return self.items[customer_id]

    async def list(self, request: Request) -> Response:
        limit_text = request.query_params.get("limit", "10")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            return error_response(400, "invalid_request_error", "limit must be 1-100", code="parameter_invalid")
        ids = list(self.items)
        start = 0
        after = request.query_params.get("starting_after")
        if after is not None:
            if after not in self.items:
                return error_response(400, "invalid_request_error", f"No such customer: {after!r}")
            start = ids.index(after) + 1
        page = ids[start : start + int(limit_text)]
        return JSONResponse(
            {
                "object": "list",
                "url": "/v1/customers",
                "data": [self.items[customer_id] for customer_id in page],
                "has_more": start + len(page) < len(ids),
            }
        )

    async def retrieve(self, request: Request) -> Response:
        customer = self.items.get(request.path_params["customer_id"])
        if customer is None:
            message = f"No such customer: {request.path_params['customer_id']!r}"
            return error_response(404, "invalid_request_error", message, code="resource_missing")
        return JSONResponse(customer)

    async def create(self, request: Request) -> Response:
        fields = await _read_fields(request)
        if isinstance(fields, Response):
            return fields
        key = request.headers.get("idempotency-key")
        if key is not None and key in self.replays:
            first_fields, customer = self.replays[key]
            if first_fields != fields:
                message = "Keys for idempotent requests can only be used with the same parameters."
                return error_response(400, "idempotency_error", message, code="idempotency_key_in_use")
            return JSONResponse(customer, headers={"Idempotent-Replayed": "true"})
        name, email, description = (fields.get(name) for name in _FIELDS)
        customer = self._add(name, email, description, key, int(time.time()))
        if key is not None:
            self.replays[key] = (fields, customer)
        return JSONResponse(customer)


async def _read_fields(request: Request) -> dict[str, str] | Response:
    body = await request.body()
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            return error_response(400, "invalid_request_error", "The body is not valid JSON.")
        if not isinstance(data, dict):
            return error_response(400, "invalid_request_error", "The JSON body must be an object.")
    elif content_type in ("application/x-www-form-urlencoded", ""):
        # parse_qsl rather than request.form(), which would need python-multipart.
        data = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
    else:
        return error_response(415, "invalid_request_error", f"Unsupported content type {content_type!r}.")
    fields = {name: data[name] for name in _FIELDS if data.get(name) is not None}
    if not all(isinstance(value, str) for value in fields.values()):
        return error_response(400, "invalid_request_error", f"{', '.join(_FIELDS)} must be strings.")
    return fields


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _models(request: Request) -> Response:
    return JSONResponse(_MODELS)


async def _chat_completions(request: Request) -> Response:
    try:
        body = json.loads(await request.body())
        messages = body["messages"]
        prompt = " ".join(_text(message.get("content")) for message in messages)
    except (ValueError, KeyError, TypeError, AttributeError):
        return error_response(400, "invalid_request_error", "Send a JSON object with a messages list.")
    reply = f"Sandbox reply to: {_text(messages[-1].get('content')) if messages else ''}".strip()
    model = str(body.get("model", "sandbox-1"))
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model}
    if body.get("stream"):
        return StreamingResponse(_stream(base, reply), media_type="text/event-stream")
    prompt_tokens, completion_tokens = len(prompt.split()), len(reply.split())
    choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})


async def _stream(base: dict[str, Any], reply: str) -> AsyncIterator[str]:
    deltas: list[dict[str, str]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": word + " "} for word in reply.split()]
    for delta in [*deltas, {}]:
        choice = {"index": 0, "delta": delta, "finish_reason": None if delta else "stop"}
        yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"
    yield "data: [DONE]\n\n"


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = exc.detail if isinstance(exc, HTTPException) else "Internal error."
    code = "resource_missing" if status == 404 else None
    return error_response(status, "invalid_request_error", message, code=code)

"""The receiver: a pure ASGI app that takes an API's webhook, verifies it and commits it before answering.

Mounted where webhooks should arrive (``tether serve`` mounts it at ``/webhooks``), it answers
``POST /{integration}``, checking in this order, so that nothing unverified is parsed and nothing unparsed is
stored:

1. an integration with a ``webhooks`` table, else 404; a POST, else 405;
2. the size (``max_body``; ``Content-Length`` first, then the bytes as they arrive), else 413;
3. the signature, over the raw bytes, else 401 with the reason (never a secret or a signature);
4. the body: JSON, or a form (Slack's interactive payloads: its ``payload`` field is JSON), else 400;
5. commit to the inbox (:class:`~tether.webhooks.writer.InboxWriter`); a store that cannot take it gives 503
   with ``Retry-After`` so the provider sends the event again later;
6. 200 ``{"status": "accepted"}``, or ``{"status": "duplicate"}`` for an event id already in the inbox.

Bad input of any kind is a 4xx. Slack's ``url_verification`` handshake is answered with its challenge (after
the signature check) and not stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from tether.config.webhooks import WebhookConfig
from tether.observe.log import logger
from tether.observe.redact import is_sensitive_name
from tether.webhooks._body import parse_body
from tether.webhooks.inbox import Inbox, Incoming
from tether.webhooks.schemes import Scheme, VerificationError, scheme_for
from tether.webhooks.worker import Worker
from tether.webhooks.writer import InboxWriter

__all__ = ["Endpoint", "WebhookReceiver", "endpoint_for"]

_JSON = [(b"content-type", b"application/json")]
_MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class Endpoint:
    """One integration's webhook settings, compiled for the receiver."""

    integration: str
    scheme: Scheme
    max_body: int
    event_id: Callable[[dict[str, str], Any], str | None]
    event_type: Callable[[dict[str, str], Any], str | None]


def endpoint_for(integration: str, config: WebhookConfig) -> Endpoint:
    """Compile ``config``: the scheme with its secrets, and where the event id and type are read from."""
    options = config.hmac.model_dump() if config.hmac is not None else {}
    scheme = scheme_for(
        config.scheme, [secret.value for secret in config.all_secrets], tolerance=config.tolerance, **options
    )
    return Endpoint(
        integration,
        scheme,
        config.max_body,
        _locator(config.event_id) or scheme.event_id,
        _locator(config.event_type) or scheme.event_type,
    )


def _locator(spec: str | None) -> Callable[[dict[str, str], Any], str | None] | None:
    """``"header:NAME"`` or ``"json:dotted.path"`` as a function of (headers, payload)."""
    if spec is None:
        return None
    kind, _, where = spec.partition(":")
    if kind == "header":
        name = where.lower()
        return lambda headers, payload: headers.get(name)
    path = where.split(".")

    def from_json(headers: dict[str, str], payload: Any) -> str | None:
        for part in path:
            if not isinstance(payload, dict):
                return None
            payload = payload.get(part)
        return None if payload is None or isinstance(payload, dict | list) else str(payload)

    return from_json


class WebhookReceiver:
    """The ASGI app, with the worker that processes what it receives (when one is given).

    It starts its inbox writer and worker at ASGI lifespan startup, or on the first request when mounted inside
    an app whose lifespan never reaches it (Starlette and FastAPI do not pass lifespan to mounted apps); then
    call :meth:`aclose` from that app's own shutdown.

    Args:
        endpoints: The integrations that receive webhooks, by name.
        inbox: Where events are committed.
        worker: Processes the committed events in this process (``None``: another process does).
        grace: Seconds :meth:`aclose` gives events being processed to finish.
    """

    def __init__(
        self, endpoints: dict[str, Endpoint], inbox: Inbox, *, worker: Worker | None = None, grace: float = 10.0
    ) -> None:
        self.endpoints = endpoints
        self.inbox = inbox
        self.worker = worker
        self.grace = grace
        self.writer = InboxWriter(inbox, on_commit=worker.wake if worker is not None else None)
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the writer, and the worker when on an event loop (idempotent).

        The inbox creates its tables on first use, in the writer's thread, so a first request that starts the
        receiver does not run DDL on the event loop; the lifespans create them up front to fail early.
        """
        with self._lock:
            if self._started:
                return
            self.writer.start()
            self._started = True
        if self.worker is not None:
            self.worker.start()

    async def aclose(self) -> None:
        """Commit what is in flight, stop the writer, then let the worker finish (see :meth:`Worker.stop`)."""
        with self._lock:
            started, self._started = self._started, False
        if not started:
            return
        await asyncio.to_thread(self.writer.stop)
        if self.worker is not None:
            await self.worker.stop(self.grace)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, body, headers = await self._handle(scope, receive)
        content = json.dumps(body, separators=(",", ":")).encode()
        # With a Content-Length the server sends the body as it is, rather than as a chunked stream.
        headers = [*_JSON, (b"content-length", b"%d" % len(content)), *headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        name = path.strip("/")
        endpoint = self.endpoints.get(name) if "/" not in name else None
        if endpoint is None:
            return 404, {"error": "not_found", "message": f"no webhooks are configured for {name!r}"}, []
        if scope["method"] != "POST":
            return 405, {"error": "method_not_allowed", "message": "webhooks are POSTed"}, [(b"allow", b"POST")]
        headers = _headers(scope)
        body = await _read(receive, headers.get("content-length"), endpoint.max_body)
        if body is None:
            message = f"the body is larger than the {endpoint.max_body} bytes allowed"
            return 413, {"error": "payload_too_large", "message": message}, [(b"connection", b"close")]
        try:
            endpoint.scheme.verify(body, headers)
        except VerificationError as exc:
            logger.warning("%s: webhook refused: %s", endpoint.integration, exc.reason)
            return 401, {"error": "invalid_signature", "message": exc.reason}, []
        try:
            payload = parse_body(body, headers.get("content-type", ""))
        except ValueError:
            return 400, {"error": "invalid_body", "message": "the body is neither JSON nor a form"}, []
        reply = endpoint.scheme.handshake(payload)
        if reply is not None:
            return 200, reply, []
        event_id = endpoint.event_id(headers, payload) or "sha256:" + hashlib.sha256(body).hexdigest()
        if len(event_id) > _MAX_ID_LENGTH:
            return 400, {"error": "invalid_event_id", "message": f"the event id is over {_MAX_ID_LENGTH} chars"}, []
        event_type = endpoint.event_type(headers, payload)
        kept = {name: value for name, value in headers.items() if not is_sensitive_name(name)}
        incoming = Incoming(endpoint.integration, event_id, event_type, kept, body, time.time())
        if not self._started:
            self.start()
        try:
            new = await self.writer.accept(incoming)
        except Exception as exc:
            logger.error("%s: webhook %s not stored: %s", endpoint.integration, event_id, exc)
            message = "the inbox could not store the event; send it again later"
            return 503, {"error": "unavailable", "message": message}, [(b"retry-after", b"5")]
        return 200, {"status": "accepted" if new else "duplicate", "id": event_id}, []

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(self.inbox.ensure_schema)
                    self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-cased names; for a name sent twice, the first value (a second signature header is not merged)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name not in headers:
            headers[name] = raw_value.decode("latin-1")
    return headers


async def _read(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it is known to exceed ``limit``."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)

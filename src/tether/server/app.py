"""The ASGI application behind ``tether serve``.

Routes:

- ``POST /webhooks/{integration}``: the webhook receiver (:mod:`tether.webhooks.receiver`).
- ``GET /healthz``: liveness, 200 while the process serves requests.
- ``GET /readyz``: readiness, 200 when the store answers and the inbox writer runs, else 503 with the reason
  (a load balancer then sends webhooks to another instance).

Webhook requests reach the receiver directly, without Starlette's router in between: that path is the one
that has to be fast. Everything else goes through a Starlette app, which also runs the lifespan: the inbox
writer and the worker start before the first request is accepted and stop after the last one has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tether import webhooks
from tether.hub import Hub
from tether.observe.log import logger

__all__ = ["create_app"]

WEBHOOKS_PREFIX = "/webhooks"


def create_app(hub: Hub, *, process: bool = True, concurrency: int = 8, grace: float = 10.0) -> ASGIApp:
    """The service for ``hub``: webhooks, health and readiness.

    Args:
        hub: The integrations; the app closes it at shutdown.
        process: Run a webhook worker in this process (see :func:`tether.webhooks.app`).
        concurrency: Events that worker processes at once.
        grace: Seconds events being processed get to finish at shutdown.
    """
    receiver = webhooks.app(hub, process=process, concurrency=concurrency, grace=grace)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(receiver.inbox.ensure_schema)
        receiver.start()
        consumed = sorted(receiver.worker.consumes()) if receiver.worker is not None else []
        logger.info(
            "tether serve: webhooks for %s; processing %s",
            ", ".join(sorted(receiver.endpoints)) or "no integration",
            ", ".join(consumed) or "none in this process",
        )
        try:
            yield
        finally:
            await receiver.aclose()
            await asyncio.to_thread(hub.close)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problems = []
        if not receiver.writer.running:
            problems.append("the inbox writer is not running")
        try:
            await asyncio.to_thread(receiver.inbox.ping)
        except Exception as exc:
            problems.append(f"the store does not answer: {exc}")
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    service = Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)], lifespan=lifespan)
    return _Dispatch(receiver, service)


class _Dispatch:
    """``/webhooks/…`` straight to the receiver; everything else, lifespan included, to the service."""

    def __init__(self, receiver: ASGIApp, service: ASGIApp) -> None:
        self.receiver, self.service = receiver, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(WEBHOOKS_PREFIX + "/"):
            root = scope.get("root_path", "")
            await self.receiver({**scope, "root_path": root + WEBHOOKS_PREFIX}, receive, send)
            return
        await self.service(scope, receive, send)

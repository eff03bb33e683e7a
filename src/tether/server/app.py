"""The ASGI application behind ``tether serve``.

Routes:

- ``POST /webhooks/{integration}``: the webhook receiver (:mod:`tether.webhooks.receiver`).
- ``GET /healthz``: liveness, 200 while the process serves requests.
- ``GET /readyz``: readiness, 200 when the store answers and the inbox writer runs, else 503 with the reason
  (a load balancer then sends webhooks to another instance).
- ``GET /metrics``: Prometheus metrics of every call in the store (:mod:`tether.observe.metrics`), open to
  scrapers like the probes.
- ``GET /`` and ``GET /api/overview``: the dashboard (:mod:`tether.server.dashboard`), behind the admin guard
  (:mod:`tether.server.admin`): ``TETHER_ADMIN_TOKEN`` unless the service is bound to loopback.
- ``/proxy/{name}/{path}``, every method: the backend proxy (:mod:`tether.server.proxy`), which calls an
  integration with its credentials for a browser: ``TETHER_PROXY_TOKEN`` unless bound to loopback.

Webhook requests reach the receiver directly, without Starlette's router in between: that path is the one
that has to be fast. Proxy requests too, for another reason: the proxy judges the raw path, byte for byte,
and must see every request under ``/proxy/``, also those whose decoded path a router would not match.
Everything else goes through a Starlette app, which also runs the lifespan: the inbox writer, the worker and
the alert monitor start before the first request is accepted and stop after the last one has finished.
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
from tether.observe.metrics import metrics_endpoint
from tether.server.admin import AdminGuard
from tether.server.dashboard import dashboard_routes
from tether.server.monitor import Monitor
from tether.server.proxy import MAX_BODY, Proxy
from tether.server.proxy import PREFIX as PROXY_PREFIX

__all__ = ["create_app"]

WEBHOOKS_PREFIX = "/webhooks"


def create_app(
    hub: Hub,
    *,
    process: bool = True,
    concurrency: int = 8,
    grace: float = 10.0,
    admin_token: str | None = None,
    loopback: bool = True,
    monitor: bool = True,
    proxy_token: str | None = None,
    proxy_max_body: int = MAX_BODY,
) -> ASGIApp:
    """The service for ``hub``: webhooks, health and readiness, metrics, alerts, the dashboard and the proxy.

    Args:
        hub: The integrations; the app closes it at shutdown.
        process: Run a webhook worker in this process (see :func:`tether.webhooks.app`).
        concurrency: Events that worker processes at once.
        grace: Seconds events being processed get to finish at shutdown.
        admin_token: The token the dashboard asks for (``TETHER_ADMIN_TOKEN``); ``None`` for none.
        loopback: Whether the server is bound to loopback only. Without a token, the dashboard answers only
            then, and only to requests that arrived on a loopback address.
        monitor: Evaluate the alert rules and check TLS certificates in this process.
        proxy_token: The token the backend proxy asks for (``TETHER_PROXY_TOKEN``); ``None`` for none. The
            same loopback rule applies as for the dashboard.
        proxy_max_body: Largest request body the proxy forwards, in bytes (larger ones answer 413).
    """
    receiver = webhooks.app(hub, process=process, concurrency=concurrency, grace=grace)
    watcher = Monitor(hub) if monitor else None
    guard = AdminGuard(admin_token, loopback=loopback)
    proxy = Proxy(hub, token=proxy_token, loopback=loopback, max_body=proxy_max_body)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(receiver.inbox.ensure_schema)
        receiver.start()
        if watcher is not None:
            await watcher.start()
        consumed = sorted(receiver.worker.consumes()) if receiver.worker is not None else []
        logger.info(
            "tether serve: webhooks for %s; processing %s",
            ", ".join(sorted(receiver.endpoints)) or "no integration",
            ", ".join(consumed) or "none in this process",
        )
        try:
            yield
        finally:
            if watcher is not None:
                await watcher.aclose()
            await proxy.aclose()
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

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint(hub, extra=watcher.gauges if watcher is not None else None)),
        *dashboard_routes(hub, guard, alerts=watcher.active if watcher is not None else None),
    ]
    service = Starlette(routes=routes, lifespan=lifespan)
    return _Dispatch(receiver, proxy, service)


class _Dispatch:
    """``/webhooks/…`` straight to the receiver, ``/proxy/…`` to the proxy; everything else, lifespan included,
    to the service."""

    def __init__(self, receiver: ASGIApp, proxy: ASGIApp, service: ASGIApp) -> None:
        self.receiver, self.proxy, self.service = receiver, proxy, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(WEBHOOKS_PREFIX + "/"):
                root = scope.get("root_path", "")
                await self.receiver({**scope, "root_path": root + WEBHOOKS_PREFIX}, receive, send)
                return
            if path.startswith(PROXY_PREFIX):
                await self.proxy(scope, receive, send)
                return
        await self.service(scope, receive, send)

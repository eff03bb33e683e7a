"""Webhooks: verified, committed before the 2xx, deduplicated, processed with retries, replayable.

``tether.webhooks.app(hub)`` is the ASGI app that receives them (``tether serve`` mounts it at ``/webhooks``);
``hub.on(name, "invoice.paid")`` registers a handler; the inbox lives in the tether store. See docs/webhooks.md.

    hub = tether.Hub.from_config()

    @hub.on("stripe", "invoice.*")
    async def invoice_changed(event: tether.webhooks.WebhookEvent) -> None:
        ...

    app.mount("/webhooks", tether.webhooks.app(hub))   # Starlette / FastAPI
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether.webhooks.events import WebhookEvent
from tether.webhooks.inbox import Inbox, StoredEvent
from tether.webhooks.receiver import WebhookReceiver, endpoint_for
from tether.webhooks.schemes import VerificationError
from tether.webhooks.worker import Worker

if TYPE_CHECKING:
    from tether.hub import Hub

__all__ = [
    "Inbox",
    "StoredEvent",
    "VerificationError",
    "WebhookEvent",
    "WebhookReceiver",
    "Worker",
    "app",
    "worker",
]


def app(hub: Hub, *, process: bool = True, concurrency: int = 8, grace: float = 10.0) -> WebhookReceiver:
    """The receiver for every integration of ``hub`` that has a ``webhooks`` table.

    Args:
        hub: The integrations, their store (the inbox) and their ``hub.on`` handlers.
        process: Also run a worker in this process for the integrations it can process (handlers registered
            on ``hub``, or ``forward``). ``False`` when other processes run the workers (:func:`worker`).
        concurrency: Events processed at once by that worker.
        grace: Seconds events being processed get to finish at shutdown.
    """
    configs = hub.webhook_configs()
    endpoints = {name: endpoint_for(name, config) for name, config in configs.items()}
    return WebhookReceiver(
        endpoints,
        hub.inbox,
        worker=worker(hub, concurrency=concurrency) if process else None,
        grace=grace,
    )


def worker(hub: Hub, *, concurrency: int = 8, poll: float = 1.0) -> Worker:
    """A worker for ``hub``'s handlers and forwards, for a process that processes but does not receive.

    Run it with ``await worker.run()`` (until cancelled) or ``worker.start()`` then ``await worker.stop()``.
    """
    return Worker(hub.webhook_configs(), hub.inbox, hub.webhook_handlers, concurrency=concurrency, poll=poll)

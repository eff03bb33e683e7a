"""Workers: take due events from the inbox under a lease, run the handlers and forwarding, record the outcome.

A worker claims only the integrations it can process (those with handlers registered on its hub, or with
``forward``), so a ``tether serve`` that only receives leaves the rest to the application's own workers
sharing the store. Each event runs its matching handlers in order (async ones on the loop, sync ones in a
thread), then is forwarded when configured; any exception, a non-2xx from the forward URL or the integration's
``lease`` running out fails the attempt. A failed event is retried after ``backoff`` (doubling, with jitter,
up to ``max_backoff``) until ``attempts`` is spent, then it goes to dead-letter with its last error.

Delivery to handlers is at least once: completion is recorded after they return, so a worker killed between
the two runs them again elsewhere. A completed event never runs again, except by ``tether webhooks replay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import random
import time
import uuid
from collections.abc import Callable

import httpx2

from tether.config.webhooks import ForwardConfig, WebhookConfig
from tether.observe.log import logger
from tether.webhooks.events import Handlers, WebhookEvent
from tether.webhooks.inbox import Claimed, Inbox
from tether.webhooks.schemes import Scheme, scheme_for

__all__ = ["Worker"]

_LEASE_MARGIN = 30.0  # the lease outlives the attempt's own time limit, so a slow attempt is not taken twice
_PURGE_EVERY = 600.0


class Worker:
    """Processes the inbox's due events, ``concurrency`` at a time.

    Args:
        configs: The webhook settings of every integration that receives webhooks.
        inbox: The inbox.
        handlers: The ``hub.on`` registry.
        concurrency: Events in flight at once.
        poll: Seconds between looks at the inbox when nothing wakes the worker (events due for a retry, or
            committed by another process).
        random: ``[0, 1)``, for backoff jitter.
    """

    def __init__(
        self,
        configs: dict[str, WebhookConfig],
        inbox: Inbox,
        handlers: Handlers,
        *,
        concurrency: int = 8,
        poll: float = 1.0,
        random: Callable[[], float] = random.random,
    ) -> None:
        self.configs, self.inbox, self.handlers = configs, inbox, handlers
        self.concurrency, self.poll, self._random = concurrency, poll, random
        self.holder = f"worker-{uuid.uuid4().hex[:12]}"
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self._client: httpx2.AsyncClient | None = None
        self._last_purge = 0.0
        self._signers: dict[str, Scheme] = {}  # the forward signer per integration, built once
        self.processed = 0
        self.failed = 0

    def consumes(self) -> set[str]:
        """The integrations this worker takes events of."""
        forwarded = {name for name, config in self.configs.items() if config.forward is not None}
        return forwarded | (self.handlers.integrations() & set(self.configs))

    def wake(self) -> None:
        """Look at the inbox now (thread-safe): new events were committed."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(wake.set)

    def start(self) -> None:
        """Run on the current event loop until :meth:`stop`."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self.run(), name="tether-webhook-worker")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let events in flight finish for up to ``grace`` seconds, then hand the rest back."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._runner is not None:
            await self._runner
            self._runner = None
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=grace)
        unfinished = [inbox_id for inbox_id, task in self._tasks.items() if not task.done()]
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if unfinished:
            released = await asyncio.to_thread(self.inbox.release, self.holder, unfinished)
            logger.info("webhooks: %d unfinished event(s) handed back for another worker", released)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self) -> None:
        """Claim and process until stopped."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        self._stopping = False
        names = self.consumes()
        if not names:
            return
        lease = max(self.configs[name].lease for name in names) + _LEASE_MARGIN
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._tasks)
            claimed: list[Claimed] = []
            if free > 0:
                try:
                    claimed = await asyncio.to_thread(self.inbox.claim, self.holder, names, limit=free, lease=lease)
                except Exception as exc:
                    logger.error("webhooks: cannot read the inbox: %s", exc)
            for event in claimed:
                task = asyncio.create_task(self._process(event))
                self._tasks[event.id] = task
                task.add_done_callback(functools.partial(self._done, event.id))
            await self._purge(set(self.configs))
            if len(claimed) == free and free > 0:
                continue  # there may be more due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)

    def _done(self, inbox_id: int, task: asyncio.Task[None]) -> None:
        self._tasks.pop(inbox_id, None)
        if self._wake is not None:
            self._wake.set()

    async def _process(self, claimed: Claimed) -> None:
        config = self.configs[claimed.integration]
        event = WebhookEvent(
            claimed.integration,
            claimed.event_id,
            claimed.event_type,
            claimed.body,
            claimed.headers,
            claimed.attempts,
            claimed.received_at,
            claimed.id,
        )
        try:
            await asyncio.wait_for(self._handle(event, config), config.lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(event, config, exc)
            return
        if await asyncio.to_thread(self.inbox.complete, claimed.id, self.holder):
            self.processed += 1
        else:
            logger.warning("%s: webhook %s finished after its lease ran out", event.integration, event.id)

    async def _handle(self, event: WebhookEvent, config: WebhookConfig) -> None:
        for handler in self.handlers.matching(event.integration, event.type):
            if inspect.iscoroutinefunction(handler):
                await handler(event)
            else:
                result = await asyncio.to_thread(handler, event)
                if inspect.isawaitable(result):
                    await result
        if config.forward is not None:
            await self._forward(event, config.forward)

    async def _forward(self, event: WebhookEvent, forward: ForwardConfig) -> None:
        if self._client is None:
            self._client = httpx2.AsyncClient()
        signer = self._signers.get(event.integration)
        if signer is None:
            signer = self._signers[event.integration] = scheme_for("standard", [forward.secret.value])
        headers = {
            "content-type": event.headers.get("content-type", "application/json"),
            "tether-integration": event.integration,
            **({"tether-event-type": event.type} if event.type else {}),
            **forward.headers,
            **signer.sign(event.body, timestamp=int(time.time()), event_id=event.id),
        }
        response = await self._client.post(
            str(forward.url), content=event.body, headers=headers, timeout=forward.timeout
        )
        if not response.is_success:
            raise RuntimeError(f"forwarding to {forward.url} answered {response.status_code}")

    async def _failed(self, event: WebhookEvent, config: WebhookConfig, exc: Exception) -> None:
        self.failed += 1
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, TimeoutError):
            error = f"the attempt took longer than the lease ({config.lease:g} s)"
        retry_in: float | None = None
        if event.attempt < config.attempts:
            ceiling = min(config.max_backoff, config.backoff * 2.0 ** min(event.attempt - 1, 62))
            retry_in = ceiling * (0.5 + self._random() / 2)
        await asyncio.to_thread(self.inbox.fail, event.inbox_id, self.holder, error, retry_in=retry_in)
        if retry_in is None:
            logger.error(
                "%s: webhook %s is dead after %d attempts: %s",
                event.integration,
                event.id,
                event.attempt,
                error,
                extra={"tether": {"event": "webhook_dead", "integration": event.integration}},
            )
        else:
            logger.warning(
                "%s: webhook %s attempt %d failed (%s); next in %.0f s",
                event.integration,
                event.id,
                event.attempt,
                error,
                retry_in,
            )

    async def _purge(self, names: set[str]) -> None:
        now = time.monotonic()
        if now - self._last_purge < _PURGE_EVERY:
            return
        self._last_purge = now
        for name in sorted(names):
            try:
                await asyncio.to_thread(self.inbox.purge, name, older_than=self.configs[name].retention)
            except Exception as exc:
                logger.warning("webhooks: retention purge failed for %s: %s", name, exc)

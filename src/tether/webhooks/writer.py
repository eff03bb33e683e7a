"""Group commit: the receiver's events committed many to a transaction, from one thread.

A request hands its event to :meth:`InboxWriter.accept` and waits; one thread takes every event waiting at that
moment, commits them together (:meth:`Inbox.add`) and wakes their requests. Nothing waits on a timer: a lone
event is committed at once, and while one commit is on its way to the disk the next batch gathers behind it,
so the cost of a durable commit is shared by every event that arrived during the previous one. Each request
still gets its answer only after its own event is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable

from tether.observe.log import logger
from tether.webhooks.inbox import Inbox, Incoming

__all__ = ["InboxWriter"]

_Waiting = tuple[Incoming, asyncio.AbstractEventLoop, "asyncio.Future[bool]"]


class InboxWriter:
    """Commits events to ``inbox`` in batches of up to ``max_batch``.

    Args:
        inbox: Where events go.
        max_batch: The most events one transaction holds.
        on_commit: Called (from the writer's thread) after each batch that stored a new event.
    """

    def __init__(self, inbox: Inbox, *, max_batch: int = 256, on_commit: Callable[[], None] | None = None) -> None:
        self.inbox = inbox
        self.max_batch = max_batch
        self.on_commit = on_commit
        # The hand-off is a SimpleQueue (C: a put wakes the writer without running Python code in the request);
        # the lock only orders accept() against stop(), so that nothing is queued behind the stop marker.
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0
        self.events = 0

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopping

    def start(self) -> None:
        """Start the writer's thread (once; later calls do nothing)."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="tether-inbox-writer", daemon=True)
            self._thread.start()

    async def accept(self, event: Incoming) -> bool:
        """Commit ``event``; ``True`` once it is new and on disk, ``False`` for a duplicate.

        Raises:
            RuntimeError: the writer is stopping or stopped.
            Exception: the commit failed (the store's own error); the event may be retried by its sender.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            if self._stopping or self._thread is None:
                raise RuntimeError("the webhook inbox writer is not running")
            self._queue.put((event, loop, future))
        return await future

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is waiting, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None and not self._stopping:
                self._queue.put(None)  # the stop marker: after every accepted event
            self._stopping = True
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        take, stopping = self._queue.get, False
        while not stopping:
            batch = [take()]
            # Only this thread takes from the queue, so what qsize() counts is there to take without waiting.
            batch += [take() for _ in range(min(self.max_batch - 1, self._queue.qsize()))]
            stopping = batch[-1] is None  # stop() queues its marker after every accepted event
            events = [waiting for waiting in batch if waiting is not None]
            if events:
                self._commit(events)

    def _commit(self, batch: list[_Waiting]) -> None:
        error: Exception | None = None
        results: list[bool] = []
        try:
            results = self.inbox.add([event for event, _, _ in batch])
        except Exception as exc:  # the store's error goes back to every request in the batch
            error = exc
            logger.error("webhook inbox: could not commit %d event(s): %s", len(batch), exc)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool]]] = {}
        for index, (_, loop, future) in enumerate(batch):
            by_loop.setdefault(loop, []).append((future, results[index] if error is None else False))
        for loop, waiting in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, waiting, error)
        if error is None:
            self.batches += 1
            self.events += len(batch)
            if self.on_commit is not None and any(results):
                self.on_commit()


def _settle(waiting: list[tuple[asyncio.Future[bool], bool]], error: Exception | None) -> None:
    for future, new in waiting:
        if future.done():  # the request went away; its event is committed all the same
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(new)

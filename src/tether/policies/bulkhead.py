"""A bulkhead: a cap on an integration's calls in flight, so one slow API cannot take every worker with it.

Sync callers share one count per process (threads); each event loop has its own count, because an asyncio
primitive belongs to one loop. A caller waits for a place up to its limit, then gets ``None`` back and fails
with ``ThrottledError`` instead of queueing past its deadline.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

__all__ = ["Bulkhead"]


class Bulkhead:
    """At most ``limit`` attempts in flight at once.

    Args:
        limit: Attempts allowed in flight.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a bulkhead needs a limit of at least 1")
        self.limit = limit
        self._threads = threading.BoundedSemaphore(limit)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def acquire(self, wait: float) -> bool:
        """Take a place, waiting up to ``wait`` seconds; ``False`` when none freed up in time."""
        return self._threads.acquire(timeout=max(0.0, wait))

    def release(self) -> None:
        self._threads.release()

    async def aacquire(self, wait: float) -> bool:
        """The async :meth:`acquire`, counted per event loop."""
        semaphore = self._semaphore()
        if not semaphore.locked():
            await semaphore.acquire()  # free: no timer needed
            return True
        try:
            async with asyncio.timeout(max(0.0, wait)):
                await semaphore.acquire()
        except TimeoutError:
            return False
        return True

    def arelease(self) -> None:
        self._semaphore().release()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._loops.get(loop)
        if semaphore is None:
            semaphore = self._loops[loop] = asyncio.Semaphore(self.limit)
        return semaphore

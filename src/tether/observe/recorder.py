"""The recorder: call records appended in memory on the hot path, written to the store by a background thread.

:meth:`Recorder.record` extends a list with the record's fields (no lock, no I/O, no object kept per call:
see :mod:`tether.observe.columns`), so recording costs a call almost nothing. A daemon thread wakes every
``flush_interval``, hands the batch to the listeners (the Prometheus exporter) and writes it to the call log
in one transaction. If the store is down, records wait in memory, at most ``buffer`` of them; beyond that the
oldest are dropped (a tenth of the buffer at a time) and counted in :attr:`Recorder.dropped`, so a store
outage never slows or fails a call. Records are flushed when the hub closes and when the interpreter exits; a
forked child starts with an empty buffer (its parent writes what it had).
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from tether.observe.calllog import CallLog
from tether.observe.columns import WIDTH, Calls
from tether.observe.log import logger
from tether.observe.records import CallRecord, Row

__all__ = ["Hook", "Listener", "Recorder"]

Listener = Callable[[Calls], None]
Hook = Callable[[CallRecord], None]

_MAX_BATCH = 5000  # records per transaction
_PURGE_EVERY = 3600.0
_COMPLAIN_EVERY = 60.0


class Recorder:
    """Buffers call records and writes them to a :class:`~tether.observe.calllog.CallLog` in batches.

    Args:
        call_log: Makes the call log on first flush (opening the store is the flush thread's job).
        flush_interval: Seconds between writes.
        buffer: Records held at most while the store is slow or down.
        retention: Seconds call records are kept (``None``: never purged by this recorder).
        summary_retention: Seconds the per-minute summaries are kept.
        wall: The wall clock (Unix seconds).
    """

    def __init__(
        self,
        call_log: Callable[[], CallLog] | None,
        *,
        flush_interval: float = 1.0,
        buffer: int = 100_000,
        retention: float | None = 7 * 86400.0,
        summary_retention: float = 30 * 86400.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._make_log = call_log
        self._log: CallLog | None = None
        self.flush_interval = flush_interval
        self.buffer = buffer
        self.retention, self.summary_retention = retention, summary_retention
        self._wall = wall
        # The queued records' fields, one record after another: appended to by callers, taken from the front
        # by the flush. Only dropping (when full) and taking hold _take_lock; appending needs no lock.
        self._values: list[Any] = []
        self._take_lock = threading.Lock()
        # Batches the listeners have seen but the store has not taken yet (it is down): written first, and
        # never shown to the listeners again, so an outage does not count a call twice.
        self._unwritten: collections.deque[Calls] = collections.deque()
        self._listeners: list[Listener] = []
        self._hooks: tuple[Hook, ...] = ()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._purged_at = 0.0
        self._complained_at = 0.0
        self.dropped = 0
        self.written = 0
        _live.add(self)

    def record(self, record: Row) -> None:
        """Queue ``record``: a plain tuple in :class:`CallRecord`'s field order, or a :class:`CallRecord`.

        Called on the hot path: a list extended (one C call, atomic under the GIL: a flush never sees half a
        record), and a thread start the first time.
        """
        if self._closed:
            self.dropped += 1
            return
        if len(record) != WIDTH:  # it would shift every record queued after it
            raise ValueError(f"a call record has {WIDTH} fields, not {len(record)}")
        values = self._values
        values += record
        if len(values) > self.buffer * WIDTH:
            self._drop_oldest()
        if self._thread is None:  # _start checks _closed again under its lock
            self._start()
        if self._hooks:
            named = CallRecord._make(record)
            for hook in self._hooks:
                try:
                    hook(named)
                except Exception:
                    logger.exception("tether: a call-record hook failed")

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook`` with each record as it is made, on the caller's thread (and in its context: that
        is what lets the OpenTelemetry hook parent its span to the application's). Keep it cheap."""
        self._hooks = (*self._hooks, hook)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every batch, from the flush thread, before it is written to the store.

        A batch is a :class:`~tether.observe.columns.Calls`: iterating it gives :class:`CallRecord` values,
        and ``batch.column("status")`` one field of every record (far cheaper, for a listener that runs for
        every call). A listener must be quick and must not raise (an exception is logged and the batch goes on).
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._values) // WIDTH + sum(len(batch) for batch in self._unwritten)

    def flush(self) -> int:
        """Write every queued record now; the number written. Safe from any thread."""
        with self._flush_lock:
            return self._flush_locked()

    def close(self) -> None:
        """Stop the thread after a last flush. Records made after this are dropped."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, self.flush_interval * 2))
        self.flush()
        _live.discard(self)

    # -- the flush thread ------------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="tether-recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()
            self._purge()

    def _flush_locked(self) -> int:
        # Every queued record goes to the listeners now, once, whether or not the store takes it; what the
        # store has not taken waits in _unwritten, oldest first, within the buffer.
        while batch := self._take():
            for listener in list(self._listeners):
                try:
                    listener(batch)
                except Exception:
                    logger.exception("tether: a call-record listener failed")
            self._unwritten.append(batch)
        total = 0
        while self._unwritten:
            held = self._unwritten[0]
            if not self._write(held):
                break
            self._unwritten.popleft()
            total += len(held)
        self._trim()
        self.written += total
        return total

    def _take(self) -> Calls:
        """The oldest queued records, at most a transaction's worth, off the queue."""
        values = self._values
        with self._take_lock:  # against _drop_oldest; callers append meanwhile, after what is taken
            taken = values[: _MAX_BATCH * WIDTH]
            del values[: len(taken)]
        return Calls(taken)

    def _drop_oldest(self) -> None:
        """Make room in a full queue: drop its oldest tenth (at once: deleting from the front of the list
        moves the rest, so one record at a time would cost each call a copy of the whole buffer)."""
        values = self._values
        with self._take_lock:
            excess = len(values) // WIDTH - self.buffer
            if excess <= 0:  # another caller, or the flush, made room meanwhile
                return
            dropped = min(len(values) // WIDTH, excess + max(1, self.buffer // 10))
            del values[: dropped * WIDTH]
            self.dropped += dropped

    def _trim(self) -> None:
        """Drop the oldest records the store has not taken beyond the buffer."""
        excess = self.pending - self.buffer
        while excess > 0 and self._unwritten:
            oldest = self._unwritten[0]
            if len(oldest) <= excess:
                self._unwritten.popleft()
                self.dropped += len(oldest)
                excess -= len(oldest)
            else:
                del oldest.values[: excess * WIDTH]
                self.dropped += excess
                excess = 0

    def _write(self, batch: Calls) -> bool:
        if self._make_log is None:
            return True
        try:
            if self._log is None:
                self._log = self._make_log()
            self._log.write(batch)
            return True
        except Exception as exc:
            now = time.monotonic()
            if now - self._complained_at >= _COMPLAIN_EVERY:
                self._complained_at = now
                logger.warning(
                    "tether: cannot write call records (%s: %s); %d waiting, %d dropped so far",
                    type(exc).__name__,
                    exc,
                    self.pending,
                    self.dropped,
                )
            return False

    def _purge(self) -> None:
        log = self._log
        if log is None or self.retention is None:
            return
        now = self._wall()
        if now - self._purged_at < _PURGE_EVERY:
            return
        self._purged_at = now
        try:
            log.purge(records_before=now - self.retention, summaries_before=now - self.summary_retention)
        except Exception as exc:
            logger.warning("tether: cannot purge old call records (%s: %s)", type(exc).__name__, exc)

    def _after_fork(self) -> None:
        # The thread did not survive the fork and the parent will write what was queued.
        self._values = []
        self._take_lock = threading.Lock()
        self._unwritten = collections.deque()
        self._thread = None
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()


_live: weakref.WeakSet[Recorder] = weakref.WeakSet()


def _flush_all() -> None:
    for recorder in list(_live):
        try:
            recorder.flush()
        except Exception:  # pragma: no cover - the interpreter is exiting; nothing else can be done
            logger.exception("tether: could not write the last call records")


def _reset_all_after_fork() -> None:
    for recorder in list(_live):
        recorder._after_fork()


atexit.register(_flush_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)

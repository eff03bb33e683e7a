"""The HTTP cache as a table of rows, written once for SQLite and PostgreSQL; each backend brings its SQL.

One row per response, body included. An entry is kept until nobody has looked it up for its ``tti`` (tether
passes the freshness lifetime plus the stale window, so every response a fallback may still serve is kept),
and the least recently used go first when the bodies outgrow ``max_bytes``. A newer response for the same
request variant replaces the older one: it is the last good response. A lookup records its use only now and
then (see :data:`TOUCH_INTERVAL`), so a hit rarely writes.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable
from typing import NamedTuple

import hishel

from tether.store import CacheStorage
from tether.store._cache_records import decode, encode, encode_headers
from tether.store._health import Health

__all__ = ["CLEANUP_BATCH", "DEFAULT_MAX_BYTES", "Row", "SqlCacheStorage", "Stored"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# A hit writes only when this much time has passed since the entry's last recorded use (or half its TTI).
TOUCH_INTERVAL = 60.0
# Expired rows are deleted this many at a time, by the writes that come across them.
CLEANUP_BATCH = 100
# The size limit is checked every this many stores: summing sizes on every write would cost more than it saves.
SIZE_CHECK_EVERY = 32


class Row(NamedTuple):
    """A new row of the ``http_cache`` table, in its columns' order."""

    id: uuid.UUID
    key: str
    variant: str
    request: str
    status: int
    headers: str
    body: bytes
    size: int
    ttl_deadline: float | None
    tti: float | None
    expires_at: float | None
    last_used: float


class Stored(NamedTuple):
    """A row as a lookup reads it back."""

    id: uuid.UUID
    request: str
    status: int
    headers: str
    body: bytes
    ttl_deadline: float | None
    tti: float | None
    expires_at: float | None
    last_used: float


class SqlCacheStorage(CacheStorage):
    """hishel's storage interface over an ``http_cache`` table; subclasses run the SQL.

    Args:
        health: Runs every operation, turning the backend's failures into misses.
        max_bytes: Bodies kept at most, in all; the least recently used are evicted beyond it.
        wall: The time source for expiry (HTTP dates are wall-clock time).
    """

    def __init__(self, health: Health, *, max_bytes: int, wall: Callable[[], float]) -> None:
        super().__init__()
        self.max_bytes, self._health, self._wall = max_bytes, health, wall
        self._stores = 0

    def salt(self) -> bytes:
        return self._health.require("salt read", self._salt)

    def create_entry(
        self,
        request: hishel.Request,
        response: hishel.Response,
        key: str,
        *,
        ttl: float | None = None,
        tti: float | None = None,
    ) -> hishel.Entry:
        entry, record = encode(request, response)
        now = self._wall()
        ttl_deadline, tti = self._limits(ttl, tti, now)
        row = Row(
            record.id,
            key,
            record.variant,
            record.request,
            record.status,
            record.headers,
            record.body,
            len(record.body),
            ttl_deadline,
            tti,
            self._expires_at(ttl_deadline, tti, now),
            now,
        )
        self._stores += 1
        evict = self._stores % SIZE_CHECK_EVERY == 0
        self._health.attempt("write", lambda: self._put(row, now, evict=evict))
        return entry

    def get_entries(self, key: str) -> list[hishel.Entry]:
        now = self._wall()
        rows = self._health.attempt("read", lambda: self._select(key, now))
        if not rows:
            return []
        entries, touches = [], []
        for row in rows:
            entries.append(decode(row.id, row.request, row.status, row.headers, row.body))
            lagging = row.tti is not None and row.expires_at is not None and row.expires_at - now < row.tti / 2
            if lagging or now - row.last_used >= TOUCH_INTERVAL:
                touches.append((row.id, self._expires_at(row.ttl_deadline, row.tti, now)))
        if touches:
            self._health.attempt("write", lambda: self._touch(touches, now))
        return entries

    def update_headers(self, id: uuid.UUID, headers: hishel.Headers) -> None:
        self._health.attempt("write", lambda: self._set_headers(id, encode_headers(headers)))

    def remove_entry(self, id: uuid.UUID) -> None:
        self._health.attempt("write", lambda: self._delete(id))

    def close(self) -> None:
        """Nothing to do: the store owns the connections."""

    # --- the backend's SQL -----------------------------------------------------------------------------

    @abc.abstractmethod
    def _salt(self) -> bytes:
        """The store's salt, created by whichever process asks first."""

    @abc.abstractmethod
    def _put(self, row: Row, now: float, *, evict: bool) -> None:
        """Store ``row`` in place of the same variant's, delete some expired rows, and evict if asked."""

    @abc.abstractmethod
    def _select(self, key: str, now: float) -> list[Stored]:
        """The unexpired rows of ``key``."""

    @abc.abstractmethod
    def _touch(self, uses: list[tuple[uuid.UUID, float | None]], now: float) -> None:
        """Record that these entries were used at ``now``; each comes with its new expiry."""

    @abc.abstractmethod
    def _set_headers(self, id_: uuid.UUID, headers: str) -> None:
        """Replace an entry's stored response headers (nothing if it is gone)."""

    @abc.abstractmethod
    def _delete(self, id_: uuid.UUID) -> None:
        """Delete an entry (nothing if it is gone)."""

"""The HTTP cache's table in the SQLite store, behind hishel's storage interface.

hishel's own ``SqliteStorage`` is not used, for three reasons: it owns tables called ``entries`` and
``streams``, names too generic for a file that also holds tether's other data; left to open its own file it
writes a ``.gitignore`` containing ``*`` into the folder, which for the default store is the project's root;
and it streams bodies chunk by chunk with soft deletes to protect readers, which tether does not need because
it caches only responses it has already buffered. This table keeps one row per response, body included.

Entries are kept until nobody has looked them up for their ``tti`` (tether passes the freshness lifetime plus
the stale window, so every response a fallback may still serve is kept), and the least recently used go
first when the cache outgrows ``max_bytes``. A storage failure is logged and reads as a miss: the request
then goes to the API, as it would without a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import hishel

from tether.store import CacheStorage
from tether.store.sqlite import SqliteStore

__all__ = ["DEFAULT_MAX_BYTES", "SqliteCacheStorage"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
logger = logging.getLogger("tether.store")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS http_cache (
        id BLOB PRIMARY KEY,
        key TEXT NOT NULL,
        variant TEXT NOT NULL,
        request TEXT NOT NULL,
        status INTEGER NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        size INTEGER NOT NULL,
        ttl_deadline REAL,
        tti REAL,
        expires_at REAL,
        last_used REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS http_cache_by_key ON http_cache (key)",
    "CREATE INDEX IF NOT EXISTS http_cache_by_expiry ON http_cache (expires_at)",
    "CREATE INDEX IF NOT EXISTS http_cache_by_use ON http_cache (last_used)",
)
# A hit writes only when this much time has passed since the entry's last recorded use (or half its TTI).
_TOUCH_INTERVAL = 60.0
_CLEANUP_BATCH = 100
# The size limit is checked every this many stores: summing sizes on every write would cost more than it saves.
_SIZE_CHECK_EVERY = 32


class SqliteCacheStorage(CacheStorage):
    """The ``http_cache`` table of a :class:`~tether.store.sqlite.SqliteStore`.

    Args:
        store: The store whose connection it uses (and which closes it).
        max_bytes: Bodies kept at most, in all; the least recently used are evicted beyond it.
        wall: The time source for expiry (HTTP dates are wall-clock time).
    """

    def __init__(
        self, store: SqliteStore, *, max_bytes: int = DEFAULT_MAX_BYTES, wall: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.store, self.max_bytes, self._wall = store, max_bytes, wall
        self._stores_since_check = 0
        self._failing = False

    def salt(self) -> bytes:
        return self.store.meta("http_cache.salt", lambda: uuid.uuid4().bytes + uuid.uuid4().bytes)

    def create_entry(
        self,
        request: hishel.Request,
        response: hishel.Response,
        key: str,
        *,
        ttl: float | None = None,
        tti: float | None = None,
    ) -> hishel.Entry:
        body = _read(response.stream)
        entry = hishel.Entry(id=uuid.uuid4(), request=request, response=_with_body(response, response.headers, body))
        now = self._wall()
        ttl_deadline, tti = self._limits(ttl, tti, now)
        row = (
            entry.id.bytes,
            key,
            _variant(request, response.headers),
            json.dumps({"method": request.method, "url": request.url, "headers": _pairs(request.headers)}),
            response.status_code,
            json.dumps(_pairs(response.headers)),
            body,
            len(body),
            ttl_deadline,
            tti,
            self._expires_at(ttl_deadline, tti, now),
            now,
        )
        self._write(self._insert, row, now)
        return entry

    def get_entries(self, key: str) -> list[hishel.Entry]:
        now = self._wall()
        try:
            with self._connection() as connection:
                rows = connection.execute(
                    "SELECT id, request, status, headers, body, ttl_deadline, tti, expires_at, last_used"
                    " FROM http_cache WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                    (key, now),
                ).fetchall()
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            self._failed("read", exc)
            return []
        entries = []
        for id_, request, status, headers, body, ttl_deadline, tti, expires_at, last_used in rows:
            stored = json.loads(request)
            entries.append(
                hishel.Entry(
                    id=uuid.UUID(bytes=bytes(id_)),
                    request=hishel.Request(stored["method"], stored["url"], _headers(stored["headers"])),
                    response=_with_body(hishel.Response(status), _headers(json.loads(headers)), bytes(body)),
                )
            )
            lagging = tti is not None and expires_at is not None and expires_at - now < tti / 2
            if lagging or now - last_used >= _TOUCH_INTERVAL:
                self._write(self._touch, (now, self._expires_at(ttl_deadline, tti, now), id_), now)
        return entries

    def update_headers(self, id: uuid.UUID, headers: hishel.Headers) -> None:
        self._write(self._update, (json.dumps(_pairs(headers)), id.bytes), self._wall())

    def remove_entry(self, id: uuid.UUID) -> None:
        self._write(self._remove, (id.bytes,), self._wall())

    def close(self) -> None:
        """Nothing to do: the store owns the connection."""

    def _connection(self) -> Any:
        self.store.ensure_schema("http_cache", _SCHEMA)
        return self.store.connection()

    def _write(
        self, action: Callable[[sqlite3.Connection, tuple[Any, ...], float], None], row: Any, now: float
    ) -> None:
        try:
            with self._connection() as connection:
                action(connection, row, now)
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            self._failed("write", exc)
        else:
            self._failing = False

    def _insert(self, connection: sqlite3.Connection, row: tuple[Any, ...], now: float) -> None:
        # A newer response for the same request variant replaces the older one: it is the last good response.
        connection.execute("DELETE FROM http_cache WHERE key = ? AND variant = ?", (row[1], row[2]))
        connection.execute("INSERT INTO http_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        connection.execute(
            "DELETE FROM http_cache WHERE id IN (SELECT id FROM http_cache WHERE expires_at <= ? LIMIT ?)",
            (now, _CLEANUP_BATCH),
        )
        self._stores_since_check += 1
        if self._stores_since_check >= _SIZE_CHECK_EVERY:
            self._stores_since_check = 0
            self._evict(connection)

    def _evict(self, connection: sqlite3.Connection) -> None:
        total = connection.execute("SELECT COALESCE(SUM(size), 0) FROM http_cache").fetchone()[0]
        excess = int(total) - self.max_bytes
        if excess <= 0:
            return
        freed = 0
        for id_, size in connection.execute("SELECT id, size FROM http_cache ORDER BY last_used").fetchall():
            connection.execute("DELETE FROM http_cache WHERE id = ?", (id_,))
            freed += size
            if freed >= excess:
                break

    @staticmethod
    def _touch(connection: sqlite3.Connection, row: tuple[Any, ...], now: float) -> None:
        connection.execute("UPDATE http_cache SET last_used = ?, expires_at = ? WHERE id = ?", row)

    @staticmethod
    def _update(connection: sqlite3.Connection, row: tuple[Any, ...], now: float) -> None:
        connection.execute("UPDATE http_cache SET headers = ? WHERE id = ?", row)

    @staticmethod
    def _remove(connection: sqlite3.Connection, row: tuple[Any, ...], now: float) -> None:
        connection.execute("DELETE FROM http_cache WHERE id = ?", row)

    def _failed(self, what: str, exc: BaseException) -> None:
        # The first failure of a run is a warning; repeats would flood the log while the disk is full.
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        logger.log(
            level,
            f"HTTP cache {what} failed in {self.store.url}: {type(exc).__name__}: {exc}; serving without the cache",
            extra={"tether": {"event": "store_error", "store": self.store.url, "operation": what}},
        )


def _read(stream: Iterator[bytes] | Any) -> bytes:
    if stream is None:
        return b""
    if not isinstance(stream, Iterable):
        raise TypeError("tether's cache stores buffered bodies only, not async streams")
    return b"".join(stream)


def _with_body(response: hishel.Response, headers: hishel.Headers, body: bytes) -> hishel.Response:
    return hishel.Response(status_code=response.status_code, headers=headers, stream=iter((body,)))


def _pairs(headers: hishel.Headers) -> list[tuple[str, list[str]]]:
    return [(name, headers.get_list(name) or []) for name in headers]


def _headers(pairs: list[list[Any]]) -> hishel.Headers:
    return hishel.Headers({name: list(values) for name, values in pairs})


def _variant(request: hishel.Request, response_headers: hishel.Headers) -> str:
    """Which variant of the resource a response is: the request's values of the headers named in ``Vary``."""
    vary = response_headers.get("vary")
    if not vary:
        return ""
    names = sorted({name.strip().lower() for name in vary.split(",") if name.strip()})
    picked = [(name, request.headers.get_list(name)) for name in names]
    return hashlib.sha256(json.dumps(picked).encode()).hexdigest()

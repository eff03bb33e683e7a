"""The HTTP cache's table in the SQLite store, behind hishel's storage interface.

hishel's own ``SqliteStorage`` is not used, for three reasons: it owns tables called ``entries`` and
``streams``, names too generic for a file that also holds tether's other data; left to open its own file it
writes a ``.gitignore`` containing ``*`` into the folder, which for the default store is the project's root;
and it streams bodies chunk by chunk with soft deletes to protect readers, which tether does not need because
it caches only responses it has already buffered. What the table keeps, and when rows go, is
:mod:`tether.store._sql_cache`'s, shared with PostgreSQL; this module is SQLite's SQL.

A storage failure is logged and reads as a miss: the request then goes to the API, as it would without a cache.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

from tether.store._cache_records import SALT_NAME, new_salt
from tether.store._health import Health
from tether.store._sql_cache import CLEANUP_BATCH, DEFAULT_MAX_BYTES, Row, SqlCacheStorage, Stored
from tether.store.sqlite import SqliteStore

__all__ = ["DEFAULT_MAX_BYTES", "SqliteCacheStorage"]

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
_ERRORS = (sqlite3.Error, OSError, RuntimeError)


class SqliteCacheStorage(SqlCacheStorage):
    """The ``http_cache`` table of a :class:`~tether.store.sqlite.SqliteStore`.

    Args:
        store: The store whose connection it uses (and which closes it).
        max_bytes: Bodies kept at most, in all; the least recently used are evicted beyond it.
        wall: The time source for expiry (HTTP dates are wall-clock time).
    """

    def __init__(
        self, store: SqliteStore, *, max_bytes: int = DEFAULT_MAX_BYTES, wall: Callable[[], float] = time.time
    ) -> None:
        # A local file is tried on every call: its failures cost no timeout, and a freed disk helps at once.
        super().__init__(Health(store.url, _ERRORS), max_bytes=max_bytes, wall=wall)
        self.store = store

    def _salt(self) -> bytes:
        return self.store.meta(SALT_NAME, new_salt)

    def _connection(self) -> Any:
        self.store.ensure_schema("http_cache", _SCHEMA)
        return self.store.connection()

    def _put(self, row: Row, now: float, *, evict: bool) -> None:
        with self._connection() as connection:
            connection.execute("DELETE FROM http_cache WHERE key = ? AND variant = ?", (row.key, row.variant))
            connection.execute(
                "INSERT INTO http_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (row.id.bytes, *row[1:])
            )
            connection.execute(
                "DELETE FROM http_cache WHERE id IN (SELECT id FROM http_cache WHERE expires_at <= ? LIMIT ?)",
                (now, CLEANUP_BATCH),
            )
            if evict:
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

    def _select(self, key: str, now: float) -> list[Stored]:
        with self._connection() as connection:
            rows = connection.execute(
                "SELECT id, request, status, headers, body, ttl_deadline, tti, expires_at, last_used"
                " FROM http_cache WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, now),
            ).fetchall()
        return [Stored(uuid.UUID(bytes=bytes(row[0])), row[1], row[2], row[3], bytes(row[4]), *row[5:]) for row in rows]

    def _touch(self, uses: list[tuple[uuid.UUID, float | None]], now: float) -> None:
        with self._connection() as connection:
            connection.executemany(
                "UPDATE http_cache SET last_used = ?, expires_at = ? WHERE id = ?",
                [(now, expires_at, id_.bytes) for id_, expires_at in uses],
            )

    def _set_headers(self, id_: uuid.UUID, headers: str) -> None:
        with self._connection() as connection:
            connection.execute("UPDATE http_cache SET headers = ? WHERE id = ?", (headers, id_.bytes))

    def _delete(self, id_: uuid.UUID) -> None:
        with self._connection() as connection:
            connection.execute("DELETE FROM http_cache WHERE id = ?", (id_.bytes,))

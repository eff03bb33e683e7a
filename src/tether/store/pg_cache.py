"""The HTTP cache's table in the PostgreSQL store: :mod:`tether.store._sql_cache`'s behaviour, PostgreSQL's SQL.

The table is SQLite's, with PostgreSQL types, plus a unique ``(key, variant)``: a newer response replaces the
older one in a single upsert, so two processes storing the same request at once leave one row, not two.
Evicting the least recently used is one statement (a running sum over ``last_used``).

A failure (server down, pool exhausted, a restart that broke the pooled connections twice over) is logged
once and reads as a miss; the server is then left alone for ``retry_interval`` seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import psycopg

from tether.store._cache_records import SALT_NAME, new_salt
from tether.store._health import Health
from tether.store._sql_cache import CLEANUP_BATCH, DEFAULT_MAX_BYTES, Row, SqlCacheStorage, Stored
from tether.store.postgres import Connection, PostgresStore

__all__ = ["PostgresCacheStorage"]

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS http_cache (
        id UUID PRIMARY KEY,
        key TEXT NOT NULL,
        variant TEXT NOT NULL,
        request TEXT NOT NULL,
        status SMALLINT NOT NULL,
        headers TEXT NOT NULL,
        body BYTEA NOT NULL,
        size INTEGER NOT NULL,
        ttl_deadline DOUBLE PRECISION,
        tti DOUBLE PRECISION,
        expires_at DOUBLE PRECISION,
        last_used DOUBLE PRECISION NOT NULL,
        CONSTRAINT http_cache_variant UNIQUE (key, variant)
    )""",
    "CREATE INDEX IF NOT EXISTS http_cache_by_expiry ON http_cache (expires_at)",
    "CREATE INDEX IF NOT EXISTS http_cache_by_use ON http_cache (last_used)",
)
_UPSERT = """INSERT INTO http_cache (
        id, key, variant, request, status, headers, body, size, ttl_deadline, tti, expires_at, last_used
    ) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (key, variant) DO UPDATE SET
        id = EXCLUDED.id, request = EXCLUDED.request, status = EXCLUDED.status, headers = EXCLUDED.headers,
        body = EXCLUDED.body, size = EXCLUDED.size, ttl_deadline = EXCLUDED.ttl_deadline, tti = EXCLUDED.tti,
        expires_at = EXCLUDED.expires_at, last_used = EXCLUDED.last_used"""
_CLEANUP = "DELETE FROM http_cache WHERE id IN (SELECT id FROM http_cache WHERE expires_at <= %s LIMIT %s)"
# Rows go oldest use first while the bodies used before them still leave the total above the limit.
_EVICT = """DELETE FROM http_cache WHERE id IN (
    SELECT id FROM (
        SELECT id, size, SUM(size) OVER (ORDER BY last_used, id) AS running, SUM(size) OVER () AS total
        FROM http_cache
    ) AS ranked
    WHERE total > %(limit)s AND running - size < total - %(limit)s
)"""
_SELECT = """SELECT id, request, status, headers, body, ttl_deadline, tti, expires_at, last_used
    FROM http_cache WHERE key = %s AND (expires_at IS NULL OR expires_at > %s)"""
_ERRORS = (psycopg.Error, OSError, RuntimeError)


class PostgresCacheStorage(SqlCacheStorage):
    """The ``http_cache`` table of a :class:`~tether.store.postgres.PostgresStore`.

    Args:
        store: The store whose pool it uses (and which closes it).
        max_bytes: Bodies kept at most, in all, across every process; the least recently used go beyond it.
        wall: The time source for expiry (HTTP dates are wall-clock time).
        retry_interval: Seconds to leave the server alone after a failure.
    """

    def __init__(
        self,
        store: PostgresStore,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        wall: Callable[[], float] = time.time,
        retry_interval: float = 3.0,
    ) -> None:
        super().__init__(Health(store.url, _ERRORS, retry_interval=retry_interval), max_bytes=max_bytes, wall=wall)
        self.store = store

    def _salt(self) -> bytes:
        return self.store.meta(SALT_NAME, new_salt)

    def _run(self, work: Callable[[Connection], T]) -> T:
        self.store.ensure_schema("http_cache", _SCHEMA)
        return self.store.run(work)

    def _put(self, row: Row, now: float, *, evict: bool) -> None:
        def put(connection: Connection) -> None:
            connection.execute(_UPSERT, row)
            connection.execute(_CLEANUP, (now, CLEANUP_BATCH))
            if evict:
                connection.execute(_EVICT, {"limit": self.max_bytes})

        self._run(put)

    def _select(self, key: str, now: float) -> list[Stored]:
        def select(connection: Connection) -> list[Stored]:
            rows = connection.execute(_SELECT, (key, now)).fetchall()
            return [Stored(*row) for row in rows]

        return self._run(select)

    def _touch(self, uses: list[tuple[uuid.UUID, float | None]], now: float) -> None:
        def touch(connection: Connection) -> None:
            with connection.cursor() as cursor:
                cursor.executemany(
                    "UPDATE http_cache SET last_used = %s, expires_at = %s WHERE id = %s",
                    [(now, expires_at, id_) for id_, expires_at in uses],
                )

        self._run(touch)

    def _set_headers(self, id_: uuid.UUID, headers: str) -> None:
        self._run(
            lambda connection: connection.execute("UPDATE http_cache SET headers = %s WHERE id = %s", (headers, id_))
        )

    def _delete(self, id_: uuid.UUID) -> None:
        self._run(lambda connection: connection.execute("DELETE FROM http_cache WHERE id = %s", (id_,)))

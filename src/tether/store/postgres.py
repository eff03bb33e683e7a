"""The PostgreSQL store: one database shared by every process on every machine, through a small pool.

The pool (psycopg_pool) opens on first use and keeps at most ``max_connections`` connections, none while idle
for long; a caller waits at most ``timeout`` seconds for one, so an unreachable server fails an operation
quickly instead of hanging a call. Every use is one transaction. Schema changes take a transaction-scoped
advisory lock, because concurrent ``CREATE TABLE IF NOT EXISTS`` in two processes can still collide.

A password is better kept out of ``tether.toml``: libpq reads ``PGPASSWORD`` and ``~/.pgpass``, so
``postgresql://app@db.internal/app`` is enough. Whatever the URL holds, :attr:`PostgresStore.url` masks it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import TupleRow
    from psycopg_pool import ConnectionPool
except ImportError as exc:
    raise ImportError("tether's PostgreSQL store needs psycopg: pip install 'tether[postgresql]'") from exc

from tether.store import CacheStorage, Store, public_url

__all__ = ["Connection", "PostgresStore"]

Connection = psycopg.Connection[TupleRow]
T = TypeVar("T")

# The table a schema statement creates (tether's DDL is all "CREATE TABLE IF NOT EXISTS name (" or indexes).
_CREATE_TABLE = re.compile(r"\s*CREATE TABLE IF NOT EXISTS (\w+)", re.IGNORECASE)
_META_SCHEMA = ("CREATE TABLE IF NOT EXISTS tether_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",)
# pg_advisory_xact_lock's key for schema changes: "tether" in ASCII, then 1.
_SCHEMA_LOCK = 0x7465746865720001
# Seconds any one statement may run.
STATEMENT_TIMEOUT = 30.0
# A pooled connection nobody used for this long is closed: an idle app should not hold the server's slots.
_MAX_IDLE_SECONDS = 300.0


class PostgresStore(Store):
    """A store in a PostgreSQL database.

    Args:
        url: A libpq URL, e.g. ``postgresql://app@db.internal:5432/app?sslmode=require``. Its own
            ``connect_timeout`` and ``application_name`` win over tether's; a ``statement_timeout`` of
            :data:`STATEMENT_TIMEOUT` is added to its ``options`` unless they set one.
        max_connections: The pool's size; the process's threads take turns beyond it.
        connect_timeout: Seconds libpq waits for a new connection (whole seconds, at least 2).
        timeout: Seconds an operation waits for a pooled connection before it fails.
    """

    dialect = "postgresql"

    def __init__(self, url: str, *, max_connections: int = 4, connect_timeout: int = 2, timeout: float = 1.0) -> None:
        self.url = public_url(url)
        self._conninfo = url
        self._options: dict[str, Any] = {}
        given = conninfo_to_dict(url)
        if "connect_timeout" not in given:
            self._options["connect_timeout"] = max(2, connect_timeout)
        if "application_name" not in given:
            self._options["application_name"] = "tether"
        options = str(given.get("options") or "")
        if "statement_timeout" not in options:
            # A statement stuck on a lock or a sick server fails after this, freeing its pooled connection,
            # instead of holding a recorder, a webhook worker or a request forever. Added to the URL's own
            # options (a search_path, say), which a keyword would otherwise replace.
            timeout_option = f"-c statement_timeout={int(STATEMENT_TIMEOUT * 1000)}"
            self._options["options"] = f"{options} {timeout_option}".strip()
        self._max_connections, self._timeout = max_connections, timeout
        self._lock = threading.RLock()
        self._pool: ConnectionPool[Connection] | None = None
        self._finalizer: Callable[[], object] | None = None
        self._schemas: set[str] = set()
        self._closed = False
        self._cache: CacheStorage | None = None

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection in a transaction: committed when the block ends, rolled back if it raises.

        Raises:
            psycopg.Error: the server is unreachable (``psycopg_pool.PoolTimeout``) or a statement failed.
            RuntimeError: the store was closed.
        """
        with self._open().connection() as connection:
            yield connection

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one transaction, run once more if the pooled connection turned out dead.

        A server restart or failover leaves the pool holding connections that fail on first use; the pool's
        idle connections are then checked and ``work`` runs again on a live one. ``work`` must be safe to
        repeat: it may have run before the connection broke.

        Raises:
            psycopg.Error: as :meth:`connection`.
            RuntimeError: the store was closed.
        """
        used: Connection | None = None
        try:
            with self.connection() as connection:
                used = connection
                return work(connection)
        except psycopg.OperationalError:
            if used is None or not used.broken:
                raise
        self._open().check()
        with self.connection() as connection:
            return work(connection)

    def ensure_schema(self, name: str, statements: Iterable[str]) -> None:
        """Run ``statements`` (idempotent DDL) once per process for the component ``name``.

        A role that may not create tables (one that only reads, for ``tether status`` or the dashboard) gets on
        when the tables are there already; the DDL's own error stands when one is missing.
        """
        with self._lock:
            if name in self._schemas:
                return
        ddl = tuple(statements)

        def create(connection: Connection) -> None:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in ddl:
                connection.execute(statement)

        try:
            self.run(create)
        except psycopg.errors.InsufficientPrivilege:
            if not self._tables_exist(ddl):
                raise
        with self._lock:
            self._schemas.add(name)

    def _tables_exist(self, ddl: Iterable[str]) -> bool:
        """Whether every table ``ddl`` creates exists (on the connection's search path)."""
        tables = [match.group(1) for statement in ddl if (match := _CREATE_TABLE.match(statement))]
        with self.connection() as connection:
            found = [connection.execute("SELECT to_regclass(%s)", (table,)).fetchone() for table in tables]
        return all(row is not None and row[0] is not None for row in found)

    def meta(self, name: str, default: Callable[[], bytes]) -> bytes:
        """A value kept in the store under ``name``, set to ``default()`` by whichever process asks first."""
        self.ensure_schema("meta", _META_SCHEMA)

        def read(connection: Connection) -> bytes:
            # A racing process's insert makes this one wait for its commit, then do nothing; the read sees it.
            connection.execute(
                "INSERT INTO tether_meta (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, default())
            )
            row = connection.execute("SELECT value FROM tether_meta WHERE name = %s", (name,)).fetchone()
            assert row is not None
            return bytes(row[0])

        return self.run(read)

    def cache_storage(self) -> CacheStorage:
        with self._lock:
            if self._cache is None:
                from tether.store.pg_cache import PostgresCacheStorage

                self._cache = PostgresCacheStorage(self)
            return self._cache

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._finalizer is not None:
                self._finalizer()  # closes the pool, once
            self._pool = None

    def _open(self) -> ConnectionPool[Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the store {self.url} is closed")
            if self._pool is None:
                pool: ConnectionPool[Connection] = ConnectionPool(
                    self._conninfo,
                    kwargs=self._options,
                    min_size=0,
                    max_size=self._max_connections,
                    open=False,
                    timeout=self._timeout,
                    max_idle=_MAX_IDLE_SECONDS,
                    # A failed connect is not retried by the pool on its own backoff, which grows for as long as
                    # the outage lasts and would keep the pool empty minutes after the server is back: the next
                    # caller that needs a connection asks for a new one, and the cache's retry interval paces them.
                    reconnect_timeout=0.0,
                    name="tether",
                )
                # Not waiting: with min_size 0 there is nothing to wait for, and the first use connects.
                pool.open(wait=False)
                self._pool = pool
                # A store dropped without close() still stops its pool's worker threads.
                self._finalizer = weakref.finalize(self, pool.close)
            return self._pool

"""The SQLite store: one file, one connection shared by the process's threads, WAL for other processes.

Every use holds the store's lock, so sync clients in many threads and the async clients' worker threads (the
async path never touches SQLite on the event loop) take turns on the one connection; other processes read and
write the same file concurrently through SQLite's write-ahead log. The file is created with owner-only
permissions, since cached response bodies are the API's data.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tether.store import MEMORY, CacheStorage, Store

__all__ = ["SqliteStore"]

# How long to retry switching to WAL: several processes opening a new file fight over that lock, and SQLite
# reports "locked" at once there instead of waiting for the busy timeout.
_WAL_RETRY_SECONDS = 5.0
_BUSY_TIMEOUT_SECONDS = 5.0
_META_SCHEMA = ("CREATE TABLE IF NOT EXISTS tether_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",)


class SqliteStore(Store):
    """A store in one SQLite file (or in memory, for tests).

    Args:
        path: The database file (created with its folder when first used), or ``":memory:"``.
        url: The URL it was configured as, for messages.
    """

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, url: str | None = None) -> None:
        self.path = str(path)
        self.url = url or f"sqlite:///{self.path}"
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._finalizer: Callable[[], object] | None = None
        self._schemas: set[str] = set()
        self._closed = False
        self._cache: CacheStorage | None = None
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, held exclusively for the ``with`` block (opened on first use).

        Raises:
            sqlite3.Error: the file cannot be opened or is not a database.
            RuntimeError: the store was closed.
        """
        with self._lock:
            yield self._connect()

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A second connection, for queries only (see :meth:`Store.reading`): WAL lets it read while the
        store's connection writes. An in-memory store has one connection, so it reads there."""
        if self.path == MEMORY:
            with self.connection() as connection:
                yield connection
            return
        with self._read_lock:
            if self._closed:
                raise RuntimeError(f"the store {self.url} is closed")
            if self._reader is None:
                with self._lock:
                    self._connect()  # the file exists, in WAL mode, before a second connection opens it
                reader = sqlite3.connect(
                    self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
                )
                reader.execute("PRAGMA query_only=ON")
                self._reader = reader
                weakref.finalize(self, reader.close)
            yield self._reader

    def ensure_schema(self, name: str, statements: Iterable[str]) -> None:
        """Run ``statements`` (idempotent DDL) once per process for the component ``name``."""
        with self._lock:
            if name in self._schemas:
                return
            connection = self._connect()
            for statement in statements:
                connection.execute(statement)
            self._schemas.add(name)

    def meta(self, name: str, default: Callable[[], bytes]) -> bytes:
        """A value kept in the store under ``name``, set to ``default()`` by whichever process asks first."""
        self.ensure_schema("meta", _META_SCHEMA)
        with self.connection() as connection:
            connection.execute("INSERT OR IGNORE INTO tether_meta (name, value) VALUES (?, ?)", (name, default()))
            row = connection.execute("SELECT value FROM tether_meta WHERE name = ?", (name,)).fetchone()
        return bytes(row[0])

    def cache_storage(self) -> CacheStorage:
        with self._lock:
            if self._cache is None:
                from tether.store.http_cache import SqliteCacheStorage

                self._cache = SqliteCacheStorage(self)
            return self._cache

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._finalizer is not None:
                self._finalizer()  # closes the connection, once
            self._connection = None
        with self._read_lock:  # after the read in progress, if there is one
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"the store {self.url} is closed")
        if self._connection is not None:
            return self._connection
        if self.path != MEMORY:
            _create_private(Path(self.path))
        # Autocommit: every statement is its own transaction, so a failure never leaves one open.
        connection = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            if self.path != MEMORY:
                _switch_to_wal(connection)
                connection.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        # A store dropped without close() still closes its connection (Python 3.13 warns otherwise).
        self._finalizer = weakref.finalize(self, connection.close)
        return connection


def _create_private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _switch_to_wal(connection: sqlite3.Connection) -> None:
    deadline = time.monotonic() + _WAL_RETRY_SECONDS
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.1))

"""The store: what tether keeps beyond one process, shared by every process that points at it.

Today that is the HTTP cache, including the responses kept past their freshness so that a fallback can serve
them when the API is down. Tokens, the webhook inbox, call records and alerts will live here too.

The ``store`` key of ``tether.toml`` picks the backend by URL (:func:`open_store`):

- ``sqlite:///PATH``: one SQLite file, the embedded default (``sqlite:///tether.db`` next to the config). A
  relative ``PATH`` is resolved against the config file's folder; ``sqlite:////abs/path.db`` is absolute;
  ``sqlite:///:memory:`` lives and dies with the process (tests).
- ``postgresql://`` (or ``postgres://``): a PostgreSQL database shared by every process on every machine
  (:class:`~tether.store.postgres.PostgresStore`, with the ``tether[postgresql]`` extra).

A backend is a :class:`Store`; the HTTP cache talks to the :class:`CacheStorage` it hands out, which is
hishel's storage interface plus a per-store salt for credential fingerprints. The optional ``cache_store`` key
puts the cache somewhere else (:func:`open_cache_storage`): another SQLite file or PostgreSQL database, or
Redis (:class:`~tether.store.redis_cache.RedisCacheStorage`, with the ``tether[redis]`` extra), which holds
only the cache. Every cache storage reads a failure of its backend as a miss: a cache that is down is a slow
cache, never a failed call.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import hishel

from tether.observe.redact import MASK, is_sensitive_name

__all__ = [
    "CacheStorage",
    "SqlConnection",
    "SqlCursor",
    "Store",
    "open_cache_storage",
    "open_store",
    "public_url",
    "sqlite_path",
]

SQLITE_PREFIX = "sqlite:///"
MEMORY = ":memory:"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class CacheStorage(hishel.BaseStorage):
    """hishel's storage interface, plus the salt tether derives credential fingerprints with.

    Entries are stored and returned with their whole body in memory: tether caches only responses it has
    already buffered (at most 8 MiB, see :data:`tether.client.call.BUFFER_LIMIT`).
    """

    @abc.abstractmethod
    def salt(self) -> bytes:
        """A random value created once per store and kept with it, so keys made by any process agree."""


class SqlCursor(Protocol):
    """What tether reads back from a statement, on either backend."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...


class SqlConnection(Protocol):
    """The part of a DB-API connection tether's components use (``sqlite3`` and psycopg 3 both have it)."""

    def execute(self, statement: str, params: Sequence[Any] = ..., /) -> SqlCursor: ...


class Store(abc.ABC):
    """A store backend. Opening one touches nothing; the first use does.

    Components that keep tables of their own (tokens, the webhook inbox) write their SQL once with ``?``
    placeholders, pass it through :meth:`sql`, and create their tables with :meth:`ensure_schema`, choosing
    the DDL by :attr:`dialect`.

    Attributes:
        url: Where the store is, as configured (it never holds a credential).
        dialect: ``"sqlite"`` or ``"postgresql"``.
    """

    url: str
    dialect: ClassVar[Literal["sqlite", "postgresql"]]

    @abc.abstractmethod
    def connection(self) -> contextlib.AbstractContextManager[SqlConnection]:
        """A connection for the ``with`` block. On PostgreSQL the block is one transaction; on SQLite each
        statement commits on its own unless the block runs ``BEGIN``/``COMMIT`` itself.
        """

    def reading(self) -> contextlib.AbstractContextManager[SqlConnection]:
        """A connection for the ``with`` block's queries, which must not write.

        Long reads (the dashboard's, the inbox counts) go here: on SQLite it is a connection of its own, so
        they read a snapshot while the store's connection goes on writing (webhook events, call records)
        instead of waiting for them. On PostgreSQL every block has a pooled connection of its own already.
        """
        return self.connection()

    @abc.abstractmethod
    def ensure_schema(self, name: str, statements: Iterable[str]) -> None:
        """Run ``statements`` (idempotent DDL) once per process for the component ``name``."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqlConnection]:
        """One write transaction for the ``with`` block: committed when it ends, rolled back if it raises.

        On SQLite it opens with ``BEGIN IMMEDIATE`` (the write lock up front, so two writers never deadlock
        upgrading a read lock); on PostgreSQL the connection's block is one transaction already.
        """
        with self.connection() as connection:
            if self.dialect == "postgresql":
                yield connection
                return
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):  # the failed statement may have ended the transaction
                    connection.execute("ROLLBACK")
                raise

    def sql(self, statement: str) -> str:
        """``statement`` with its ``?`` placeholders in this backend's style."""
        return statement.replace("?", "%s") if self.dialect == "postgresql" else statement

    @abc.abstractmethod
    def cache_storage(self) -> CacheStorage:
        """The HTTP cache's storage (one per store, shared by every client)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's connections. Clients that still use it then see cache misses."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def sqlite_path(url: str, base_dir: Path) -> str:
    """The file a ``sqlite:///`` URL names, resolved against ``base_dir`` when relative (or ``:memory:``).

    Raises:
        ValueError: not a ``sqlite:///`` URL.
    """
    if not url.startswith(SQLITE_PREFIX) or url == SQLITE_PREFIX:
        raise ValueError(f"not a sqlite:/// URL: {url!r}")
    rest = url[len(SQLITE_PREFIX) :]
    if rest == MEMORY:
        return MEMORY
    path = Path(rest).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def open_store(url: str, base_dir: Path) -> Store:
    """The store a ``store`` URL names; nothing is opened until it is used.

    Raises:
        ValueError: neither a ``sqlite:///`` nor a ``postgresql://`` URL.
        ImportError: a PostgreSQL URL without the ``tether[postgresql]`` extra installed.
    """
    if url.startswith(POSTGRES_SCHEMES):
        from tether.store.postgres import PostgresStore

        return PostgresStore(url)
    from tether.store.sqlite import SqliteStore

    return SqliteStore(sqlite_path(url, base_dir), url=url)


def open_cache_storage(url: str, base_dir: Path) -> tuple[CacheStorage, Callable[[], None]]:
    """The HTTP cache a ``cache_store`` URL names, and what releases it; nothing is opened until it is used.

    A ``redis://`` URL gives a cache of its own; a store URL gives that store's cache, released with the store.

    Raises:
        ValueError: not a Redis, PostgreSQL or SQLite URL.
        ImportError: the extra the URL's backend needs is not installed.
    """
    if url.startswith(REDIS_SCHEMES):
        from tether.store.redis_cache import RedisCacheStorage

        storage = RedisCacheStorage(url)
        return storage, storage.close
    store = open_store(url, base_dir)
    return store.cache_storage(), store.close


def public_url(url: str) -> str:
    """``url`` with its password masked (``postgresql://app:***@db/tether``), fit for logs and messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user_info, host = netloc.rsplit("@", 1)
        user, has_password, _ = user_info.partition(":")
        netloc = f"{user}:{MASK}@{host}" if has_password else netloc
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(is_sensitive_name(name) for name, _ in pairs):
        query = urlencode([(name, MASK if is_sensitive_name(name) else value) for name, value in pairs], safe="*/:")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # Not urlunsplit: it drops an empty authority, and postgresql:///db (a local socket) would lose a slash.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")

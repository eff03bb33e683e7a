"""The store: what tether keeps beyond one process, shared by every process that points at it.

Today that is the HTTP cache, including the responses kept past their freshness so that a fallback can serve
them when the API is down. Tokens, the webhook inbox, call records and alerts will live here too.

The ``store`` key of ``tether.toml`` picks the backend by URL:

- ``sqlite:///PATH``: one SQLite file, the embedded default (``sqlite:///tether.db`` next to the config). A
  relative ``PATH`` is resolved against the config file's folder; ``sqlite:////abs/path.db`` is absolute;
  ``sqlite:///:memory:`` lives and dies with the process (tests).
- PostgreSQL is the planned backend for several machines; it is refused by the config until it exists.

A backend is a :class:`Store`; the HTTP cache talks to the :class:`CacheStorage` it hands out, which is
hishel's storage interface plus a per-store salt for credential fingerprints. A Redis or PostgreSQL cache
slots in by implementing :class:`CacheStorage` (``hishel.RedisStorage`` already implements the hishel part).
"""

from __future__ import annotations

import abc
from pathlib import Path

import hishel

__all__ = ["CacheStorage", "Store", "open_store", "sqlite_path"]

SQLITE_PREFIX = "sqlite:///"
MEMORY = ":memory:"


class CacheStorage(hishel.BaseStorage):
    """hishel's storage interface, plus the salt tether derives credential fingerprints with.

    Entries are stored and returned with their whole body in memory: tether caches only responses it has
    already buffered (at most 8 MiB, see :data:`tether.client.call.BUFFER_LIMIT`).
    """

    @abc.abstractmethod
    def salt(self) -> bytes:
        """A random value created once per store and kept with it, so keys made by any process agree."""


class Store(abc.ABC):
    """A store backend. Opening one touches nothing; the first use does.

    Attributes:
        url: Where the store is, as configured (it never holds a credential).
    """

    url: str

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
    """The store a ``store`` URL names; nothing is opened until it is used."""
    from tether.store.sqlite import SqliteStore

    return SqliteStore(sqlite_path(url, base_dir), url=url)

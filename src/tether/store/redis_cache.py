"""The HTTP cache in Redis, for teams who already run Redis and want the cache shared without PostgreSQL.

Keys, under ``prefix`` (default ``tether:cache:``):

- ``entry:<id>``: a hash of one response (``request``, ``status``, ``headers``, ``body``; the record format of
  :mod:`tether.store._cache_records`), expiring after its TTI: Redis drops it, so there is no cleanup of ours.
- ``index:<cache key>``: a hash from each variant of the request to ``[id, ttl_deadline, tti]``, expiring with
  the longest-lived entry it lists. A newer response for a variant replaces the older one.
- ``salt``: the salt of credential fingerprints, created with ``SET NX`` by whichever process asks first.

A lookup is two round trips (the index, then every listed entry with its TTL restarted, pipelined); a store
is two. Size is Redis's business: give it a ``maxmemory`` and a ``volatile-lru`` or ``allkeys-lru`` policy,
and the least recently used responses go first. An entry whose index field outlives it (evicted, removed) is
skipped; the field goes when the variant is stored again or the index expires.

hishel's ``RedisStorage`` is not used: it streams bodies chunk by chunk under soft deletes, needs Redis 7, and
logs every failure, where tether caches bodies it has already buffered and logs an outage once.

Redis failing (down, timing out, out of memory) never fails a call: it is logged once, a lookup reads as a
miss and a write is skipped, and Redis is left alone for ``retry_interval`` seconds.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.typing import EncodableT, FieldT
except ImportError as exc:
    raise ImportError("tether's Redis cache needs redis-py: pip install 'tether[redis]'") from exc

import hishel

from tether.store import CacheStorage, public_url
from tether.store._cache_records import decode, encode, encode_headers, new_salt
from tether.store._health import Health

__all__ = ["PREFIX", "RedisCacheStorage"]

PREFIX = "tether:cache:"
_ERRORS = (redis.RedisError, OSError)
# Headers are updated only on an entry that still exists: HSET on a key that expired would bring it back
# without a TTL, for good.
_SET_HEADERS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('HSET', KEYS[1], 'headers', ARGV[1])
end
return 0
"""


class RedisCacheStorage(CacheStorage):
    """hishel's storage interface over Redis keys that expire by themselves.

    Args:
        url: A redis-py URL, e.g. ``redis://cache.internal:6379/2`` or ``rediss://:password@host:6380/0``.
        prefix: Put before every key, so several applications can share one Redis.
        connect_timeout: Seconds to wait for a connection.
        timeout: Seconds to wait for an answer (a stored body can be up to 8 MiB).
        retry_interval: Seconds to leave Redis alone after a failure.
        wall: The time source for TTL deadlines (HTTP dates are wall-clock time).

    Attributes:
        url: Where the cache is, without its password.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = PREFIX,
        connect_timeout: float = 0.25,
        timeout: float = 1.0,
        retry_interval: float = 3.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if connect_timeout <= 0 or timeout <= 0:
            raise ValueError("Redis timeouts must be positive: without one, an outage blocks every call")
        super().__init__()
        self.url, self.prefix, self._wall = public_url(url), prefix, wall
        # No connection until the first command. One retry on a fresh connection: a pooled socket that died
        # with a Redis restart is not an outage.
        self._redis = redis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 1), socket_connect_timeout=connect_timeout, socket_timeout=timeout
        )
        self._update_headers = self._redis.register_script(_SET_HEADERS)
        self._health = Health(self.url, _ERRORS, retry_interval=retry_interval)

    def salt(self) -> bytes:
        def read() -> bytes:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self.prefix + "salt", new_salt(), nx=True)
                pipe.get(self.prefix + "salt")
                _, value = pipe.execute()
            return bytes(value)

        return self._health.require("salt read", read)

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
        life = self._life(ttl_deadline, tti, now)
        if life is not None and life <= 0:
            return entry  # expired already: nothing to keep
        index_key, entry_key = self._index_key(key), self._entry_key(record.id)
        listing = json.dumps([record.id.hex, ttl_deadline, tti])

        def put() -> None:
            listed = self._listed(cast(dict[bytes, bytes], self._redis.hgetall(index_key)))
            replaced = listed.get(record.variant)
            listed[record.variant] = (record.id.hex, ttl_deadline, tti)
            with self._redis.pipeline(transaction=True) as pipe:
                if replaced is not None:
                    pipe.delete(self._entry_key(replaced[0]))
                fields: dict[FieldT, EncodableT] = {
                    "request": record.request,
                    "status": record.status,
                    "headers": record.headers,
                    "body": record.body,
                }
                pipe.hset(entry_key, mapping=fields)
                _expire(pipe, entry_key, life)
                pipe.hset(index_key, record.variant, listing)
                _expire(pipe, index_key, self._longest(listed.values(), now))
                pipe.execute()

        self._health.attempt("write", put)
        return entry

    def get_entries(self, key: str) -> list[hishel.Entry]:
        now = self._wall()
        index_key = self._index_key(key)

        def read() -> list[hishel.Entry]:
            listed = list(self._listed(cast(dict[bytes, bytes], self._redis.hgetall(index_key))).values())
            if not listed:
                return []
            with self._redis.pipeline(transaction=False) as pipe:
                for id_hex, ttl_deadline, tti in listed:
                    entry_key = self._entry_key(id_hex)
                    pipe.hgetall(entry_key)
                    _expire(pipe, entry_key, self._life(ttl_deadline, tti, now))  # a lookup restarts the TTI
                _expire(pipe, index_key, self._longest(listed, now))
                replies = pipe.execute()
            entries = []
            for (id_hex, ttl_deadline, tti), fields in zip(listed, replies[: 2 * len(listed) : 2], strict=True):
                life = self._life(ttl_deadline, tti, now)
                if fields and (life is None or life > 0):  # gone (removed, evicted), or past its TTL deadline
                    entries.append(_entry(id_hex, fields))
            return entries

        return self._health.attempt("read", read) or []

    def update_headers(self, id: uuid.UUID, headers: hishel.Headers) -> None:
        self._health.attempt(
            "write", lambda: self._update_headers(keys=[self._entry_key(id)], args=[encode_headers(headers)])
        )

    def remove_entry(self, id: uuid.UUID) -> None:
        self._health.attempt("write", lambda: self._redis.delete(self._entry_key(id)))

    def close(self) -> None:
        """Close the connections to Redis."""
        self._redis.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, prefix={self.prefix!r})"

    def _entry_key(self, id_: uuid.UUID | str) -> str:
        return f"{self.prefix}entry:{id_.hex if isinstance(id_, uuid.UUID) else id_}"

    def _index_key(self, key: str) -> str:
        return f"{self.prefix}index:{key}"

    @staticmethod
    def _listed(index: dict[bytes, bytes]) -> dict[str, tuple[str, float | None, float | None]]:
        listed = {}
        for variant, value in index.items():
            id_hex, ttl_deadline, tti = json.loads(value)
            listed[variant.decode()] = (id_hex, ttl_deadline, tti)
        return listed

    def _life(self, ttl_deadline: float | None, tti: float | None, now: float) -> float | None:
        """Seconds an entry used at ``now`` has left, or ``None`` if it never expires."""
        expires_at = self._expires_at(ttl_deadline, tti, now)
        return None if expires_at is None else expires_at - now

    def _longest(self, listed: Any, now: float) -> float | None:
        """How long an index must live: as long as the longest-lived entry it lists could."""
        lives = [self._life(ttl_deadline, tti, now) for _, ttl_deadline, tti in listed]
        return None if None in lives else max(cast(list[float], lives), default=0.0)


def _expire(pipe: Any, key: str, life: float | None) -> None:
    if life is None:
        pipe.persist(key)
    else:
        pipe.pexpire(key, max(1, math.ceil(life * 1000)))


def _entry(id_hex: str, fields: dict[bytes, bytes]) -> hishel.Entry:
    request, status, headers = fields[b"request"].decode(), int(fields[b"status"]), fields[b"headers"].decode()
    return decode(uuid.UUID(hex=id_hex), request, status, headers, fields[b"body"])

"""Policy state shared through Redis: every process on every machine draws on the same budgets and breakers.

Each :meth:`RedisState.admit` and :meth:`RedisState.report` is one atomic round trip, a cached Lua script
(``EVALSHA``, see :mod:`tether.state._lua` for the keys and their TTLs) that reads the time from Redis, so
processes whose clocks disagree still agree on every decision. The decisions are :class:`MemoryState`'s.

Redis going away must not take the integrations with it: when it is unreachable or errs, the decision comes from
an in-process :class:`MemoryState` (the ``fallback``), one warning is logged on ``tether.state`` for the whole
outage (and one when Redis answers again), and Redis is tried again at most every ``retry_interval`` seconds,
by one caller at a time, so an outage costs one connect timeout per interval rather than one per call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

try:
    import redis
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.commands.core import AsyncScript, Script
    from redis.retry import Retry
except ImportError as exc:
    raise ImportError("tether's Redis state backend needs redis-py: pip install 'tether[redis]'") from exc

from tether.policies.breaker import BreakerSettings, State
from tether.policies.clock import Clock, SystemClock
from tether.policies.ratelimit import RateLimitSignal
from tether.state._lua import ADMIT, REPORT
from tether.state.base import GO, Admission, Level, Limits, levels
from tether.state.memory import SLOW_DOWN, SLOW_DOWN_FOR, MemoryState

__all__ = ["RedisState"]

logger = logging.getLogger("tether.state")

_ERRORS = (redis.RedisError, OSError)
_NO_BREAKER = BreakerSettings()
_REJECTED = {1: "rate_limit", 2: "circuit_open", 3: "paused"}
_PARTS = ("tat", "pause", "rate", "breaker", "window", "tokens")
_ADMIT_PARTS = ("tat", "pause", "rate", "breaker", "tokens")  # the order the scripts take them in
_REPORT_PARTS = ("pause", "rate", "breaker", "window", "tokens")


class RedisState:
    """Budgets, pauses and breakers shared by every process that points at the same Redis.

    Args:
        url: A redis-py URL, e.g. ``redis://localhost:6379/0`` or ``rediss://:password@host:6380``.
        prefix: Put before every key, so several applications can share one Redis.
        fallback: Decides while Redis is unreachable (default: a new :class:`MemoryState`).
        clock: Times the retry interval during an outage (default: the system clock). Decisions kept in Redis
            always use Redis's own clock.
        connect_timeout: Seconds to wait for a connection.
        timeout: Seconds to wait for an answer.
        retry_interval: Seconds between attempts to reach Redis during an outage.
        idle_ttl: Seconds a learned rate, and a breaker nobody calls, are kept after their last use.

    The async methods use their own connections, bound to the event loop of the first ``aadmit``/``areport``;
    close them with :meth:`aclose` before that loop ends.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tether:",
        fallback: MemoryState | None = None,
        clock: Clock | None = None,
        connect_timeout: float = 0.25,
        timeout: float = 0.25,
        retry_interval: float = 3.0,
        idle_ttl: float = 3600.0,
    ) -> None:
        if connect_timeout <= 0 or timeout <= 0:
            raise ValueError("Redis timeouts must be positive: without one, an outage blocks every call")
        self.prefix = prefix
        self.clock = clock or SystemClock()
        self.fallback = fallback if fallback is not None else MemoryState(clock=self.clock)
        self.retry_interval = retry_interval
        self._url = url
        self._where = _describe(url)
        self._connect_timeout, self._timeout = connect_timeout, timeout
        self._idle_ms = max(1, round(idle_ttl * 1000))
        # One retry on a fresh connection: a pooled socket that died with a Redis restart is not an outage.
        self._redis = redis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 1), socket_connect_timeout=connect_timeout, socket_timeout=timeout
        )
        self._admit: Script = self._redis.register_script(ADMIT)
        self._report: Script = self._redis.register_script(REPORT)
        self._aredis: aioredis.Redis | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._aadmit: AsyncScript | None = None
        self._areport: AsyncScript | None = None
        self._keys: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._script_clock: Clock | None = None  # tests only: feed the scripts this time instead of Redis TIME

    # -- the contract ---------------------------------------------------------------------------------------

    def admit(self, key: str, limits: Limits, *, max_wait: float) -> Admission:
        """May an attempt on ``key`` go now (see :class:`~tether.state.base.StateBackend`)? Never raises for Redis."""
        if self._use_redis():
            plan = levels(key, limits)
            try:
                reply = self._admit(keys=self._admit_keys(plan), args=self._admit_args(plan, max_wait))
            except _ERRORS as exc:
                self._failed(exc)
            else:
                self._answered()
                return _admission(reply)
        return self.fallback.admit(key, limits, max_wait=max_wait)

    def report(
        self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal, probe: bool = False
    ) -> State | None:
        """Record an attempt's outcome; returns the breaker's new state when it changed. Never raises for Redis."""
        if self._use_redis():
            plan = levels(key, limits)
            try:
                reply = self._report(keys=self._report_keys(plan), args=self._report_args(plan, failure, signal, probe))
            except _ERRORS as exc:
                self._failed(exc)
            else:
                self._answered()
                return _state(reply)
        return self.fallback.report(key, limits, failure=failure, signal=signal, probe=probe)

    async def aadmit(self, key: str, limits: Limits, *, max_wait: float) -> Admission:
        """:meth:`admit` without blocking the event loop."""
        if self._use_redis():
            plan = levels(key, limits)
            try:
                script = self._async_scripts()[0]
                reply = await _uncancelled(script(keys=self._admit_keys(plan), args=self._admit_args(plan, max_wait)))
            except _ERRORS as exc:
                self._failed(exc)
            else:
                self._answered()
                return _admission(reply)
        return await self.fallback.aadmit(key, limits, max_wait=max_wait)

    async def areport(
        self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal, probe: bool = False
    ) -> State | None:
        """:meth:`report` without blocking the event loop."""
        if self._use_redis():
            plan = levels(key, limits)
            try:
                script = self._async_scripts()[1]
                reply = await _uncancelled(
                    script(keys=self._report_keys(plan), args=self._report_args(plan, failure, signal, probe))
                )
            except _ERRORS as exc:
                self._failed(exc)
            else:
                self._answered()
                return _state(reply)
        return await self.fallback.areport(key, limits, failure=failure, signal=signal, probe=probe)

    # -- lifecycle --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync connections (async ones need :meth:`aclose`)."""
        self._redis.close()

    async def aclose(self) -> None:
        """Close every connection, async and sync."""
        client, self._aredis, self._aloop = self._aredis, None, None
        if client is not None:
            await client.aclose()
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<RedisState {self._where} prefix={self.prefix!r}{' DOWN' if self._down else ''}>"

    # -- outage handling ---------------------------------------------------------------------------------------

    def _use_redis(self) -> bool:
        """False during an outage, except for the one caller whose turn it is to try Redis again."""
        if not self._down:
            return True
        now = self.clock.monotonic()
        with self._lock:
            if now < self._retry_at:
                return False
            self._retry_at = now + self.retry_interval  # the others keep using the fallback meanwhile
            return True

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._retry_at = self.clock.monotonic() + self.retry_interval
            if self._down:
                return
            self._down = True
        logger.warning(
            "Redis at %s failed (%s: %s); deciding rate limits and breakers in this process until it answers "
            "(next try in %gs)",
            self._where,
            type(exc).__name__,
            exc,
            self.retry_interval,
        )

    def _answered(self) -> None:
        if not self._down:
            return
        with self._lock:
            if not self._down:
                return
            self._down = False
        logger.warning("Redis at %s answers again; rate limits and breakers are shared again", self._where)

    # -- script arguments and replies -----------------------------------------------------------------------------

    def _async_scripts(self) -> tuple[AsyncScript, AsyncScript]:
        loop = asyncio.get_running_loop()
        if self._aredis is None or self._aloop is not loop or self._aadmit is None or self._areport is None:
            self._aredis = aioredis.Redis.from_url(
                self._url,
                retry=AsyncRetry(NoBackoff(), 1),
                socket_connect_timeout=self._connect_timeout,
                socket_timeout=self._timeout,
            )
            self._aloop = loop
            self._aadmit = self._aredis.register_script(ADMIT)
            self._areport = self._aredis.register_script(REPORT)
        return self._aadmit, self._areport

    def _names(self, key: str) -> dict[str, str]:
        """The Redis key of each part of one level's state."""
        names = self._keys.get(key)
        if names is None:
            # The integration's name is the hash tag of its keys and its groups', so all share one cluster slot,
            # as a script touching both needs. Names cannot contain "|" (the config refuses it).
            integration, _, group = key.partition("|")
            base = f"{self.prefix}{{{integration}}}:" + (f"{group}:" if group else "")
            names = self._keys.setdefault(key, {part: base + part for part in _PARTS})
        return names

    def _admit_keys(self, plan: tuple[Level, ...]) -> list[str]:
        return [self._names(level.key)[part] for level in plan for part in _ADMIT_PARTS]

    def _report_keys(self, plan: tuple[Level, ...]) -> list[str]:
        return [self._names(level.key)[part] for level in plan for part in _REPORT_PARTS]

    def _now(self) -> str | float:
        return "" if self._script_clock is None else self._script_clock.monotonic()

    def _admit_args(self, plan: tuple[Level, ...], max_wait: float) -> list[str | float | int]:
        args: list[str | float | int] = [self._now(), max_wait, self._idle_ms, len(plan)]
        for level in plan:
            rate, tokens, breaker = level.rate, level.tokens, level.breaker
            args += (
                rate.interval if rate is not None else 0,
                rate.burst if rate is not None else 1,
                tokens.interval if tokens is not None else 0,
                tokens.interval * (tokens.burst - 1) if tokens is not None else 0,
                0 if breaker is None else 1,
                0 if breaker is None else breaker.probes,
                0 if breaker is None else breaker.open_for,
            )
        return args

    def _report_args(
        self, plan: tuple[Level, ...], failure: bool | None, signal: RateLimitSignal, probe: bool
    ) -> list[str | float | int]:
        learned = signal.learned
        remaining = signal.tokens_remaining
        args: list[str | float | int] = [
            self._now(),
            self._idle_ms,
            len(plan),
            "" if failure is None else str(int(failure)),
            int(probe),
            signal.pause or 0,
            learned.interval if learned is not None else 0,
            int(signal.slow_down),
            SLOW_DOWN,
            round(SLOW_DOWN_FOR * 1000),
            signal.tokens_used,
            "" if remaining is None else remaining,
        ]
        for level in plan:
            rate, tokens = level.rate, level.tokens
            breaker = level.breaker or _NO_BREAKER
            args += (
                int(level.learns),
                rate.interval if rate is not None else 0,
                tokens.interval if tokens is not None else 0,
                tokens.interval * (tokens.burst - 1) if tokens is not None else 0,
                0 if level.breaker is None else 1,
                breaker.failure_ratio,
                breaker.window,
                breaker.min_calls,
                breaker.open_for,
            )
        return args


def _admission(reply: Any) -> Admission:
    code, value, probe, *again = reply
    if code:
        return Admission(rejected=_REJECTED[code], retry_in=float(value))
    wait = float(value)
    if again and again[0]:
        return Admission(wait=wait, probe=bool(probe), again=True)
    return Admission(wait=wait, probe=bool(probe)) if wait or probe else GO


def _state(reply: Any) -> State | None:
    return None if reply is None else State(reply.decode() if isinstance(reply, bytes) else reply)


def _describe(url: str) -> str:
    """Where the URL points, without its credentials, for log lines."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


async def _uncancelled(awaitable: Awaitable[Any]) -> Any:
    """Await a redis-py call without losing a cancellation.

    On Python 3.11, redis.asyncio can swallow a ``CancelledError`` delivered while a command is in flight
    (measured: about a quarter of cancels of an in-flight command), so ``task.cancel()`` or ``asyncio.timeout``
    around a tether call would be ignored. A cancellation requested during the await is re-raised here.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result = await awaitable
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result

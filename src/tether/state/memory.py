"""In-process policy state: the embedded default, and the fallback while Redis is unreachable.

The decisions here are the reference: the Redis scripts (:mod:`tether.state._lua`) compute the same expressions
in the same order, and a test holds them to the same answers under one clock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from tether.policies.breaker import BreakerState, CircuitBreaker, State
from tether.policies.clock import Clock, SystemClock
from tether.policies.ratelimit import Rate, RateLimitSignal
from tether.state.base import GO, Admission, Level, Limits, levels

__all__ = ["SLOW_DOWN", "SLOW_DOWN_FOR", "MemoryState"]

# A 429 that says nothing about the limit lowers the rate to this fraction of what was in effect, for this long
# (then the configured rate applies again; if it is still too high, the next 429 lowers it again).
SLOW_DOWN = 0.9
SLOW_DOWN_FOR = 300.0
# Sums of intervals and products of them can differ in the last bits: a slot this close counts as now.
_EPSILON = 1e-9


@dataclass
class _Key:
    tat: float | None = None
    token_tat: float | None = None
    paused_until: float = 0.0
    learned: float | None = None  # the emission interval the API reported (burst 1), or a slow-down's
    learned_until: float = math.inf
    breaker: BreakerState = field(default_factory=BreakerState)


class MemoryState:
    """Budgets, pauses and breakers for every integration of this process. Thread-safe."""

    name = "memory"

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()

    def admit(self, key: str, limits: Limits, *, max_wait: float) -> Admission:
        now = self.clock.monotonic()
        plan = levels(key, limits)
        with self._lock:
            entries = [self._entry(level.key, now) for level in plan]
            start = now
            for entry in entries:
                start = max(start, entry.paused_until)
            wait = start - now
            if wait > max_wait:
                return Admission(rejected="paused", retry_in=wait)
            # Every level with a budget must have room: the attempt goes when the last of them does.
            needs = []
            for level, entry in zip(plan, entries, strict=True):
                need = 0.0
                interval, burst = _effective(level, entry)
                if interval:
                    need = max(need, _reserved(entry.tat, interval * (burst - 1), start))
                if level.tokens is not None:
                    tolerance = level.tokens.interval * (level.tokens.burst - 1)
                    need = max(need, _reserved(entry.token_tat, tolerance, start))
                needs.append(need)
            need = max(needs)
            room = max(0.0, max_wait - wait)
            if need > room:
                return Admission(rejected="rate_limit", retry_in=wait + need)
            wait += need
            probe = False
            for level, entry in zip(plan, entries, strict=True):
                if level.breaker is not None:
                    half_open_before = entry.breaker.state is not State.CLOSED
                    allowed, retry_in = CircuitBreaker(level.breaker).admit(entry.breaker, now)
                    if not allowed:
                        return Admission(rejected="circuit_open", retry_in=retry_in)
                    probe = probe or half_open_before
            # The group's own budget is the later one: take only its slot now, and the integration's once the
            # call is about to go, so calls queued for a scarce group do not hold the integration's slots.
            again = len(needs) == 2 and needs[1] > needs[0]
            go = start + need
            for level, entry in zip(plan[1:] if again else plan, entries[1:] if again else entries, strict=True):
                interval, _ = _effective(level, entry)
                if interval:
                    tat = entry.tat
                    entry.tat = (tat if tat is not None and tat >= go else go) + interval
        if again:
            return Admission(wait=wait, probe=probe, again=True)
        return Admission(wait=wait, probe=probe) if wait or probe else GO

    def report(
        self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal, probe: bool = False
    ) -> State | None:
        now = self.clock.monotonic()
        new_state = None
        with self._lock:
            for level in levels(key, limits):
                entry = self._entry(level.key, now)
                if level.learns:
                    _learn(level, entry, signal, now)
                if level.tokens is not None:
                    _debit(level.tokens, entry, signal, now)
                if failure is not None and level.breaker is not None:
                    new_state = CircuitBreaker(level.breaker).record(entry.breaker, now, failure=failure, probe=probe)
        return new_state

    async def aadmit(self, key: str, limits: Limits, *, max_wait: float) -> Admission:
        return self.admit(key, limits, max_wait=max_wait)

    async def areport(
        self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal, probe: bool = False
    ) -> State | None:
        return self.report(key, limits, failure=failure, signal=signal, probe=probe)

    def _entry(self, key: str, now: float) -> _Key:
        entry = self._keys.get(key) or self._keys.setdefault(key, _Key())
        if entry.learned is not None and now >= entry.learned_until:
            entry.learned, entry.learned_until = None, math.inf
        return entry


def _effective(level: Level, entry: _Key) -> tuple[float, int]:
    """The emission interval and burst in effect: the slower of the configured rate and the learned one."""
    rate = level.rate
    if entry.learned is not None and (rate is None or entry.learned > rate.interval):
        return entry.learned, 1
    return (rate.interval, rate.burst) if rate is not None else (0.0, 1)


def _reserved(tat: float | None, tolerance: float, start: float) -> float:
    """Seconds after ``start`` until a bucket with this TAT has room (GCRA)."""
    if tat is None or tat < start:
        return 0.0
    reserved = tat - tolerance - start
    return reserved if reserved > _EPSILON else 0.0


def _learn(level: Level, entry: _Key, signal: RateLimitSignal, now: float) -> None:
    """Keep what the API said: a pause for every caller, the budget it reported, or that it wants less."""
    if signal.pause:
        entry.paused_until = max(entry.paused_until, now + signal.pause)
    learned = signal.learned
    if learned is not None:
        entry.learned, entry.learned_until = learned.interval, math.inf
    elif signal.slow_down:
        interval, _ = _effective(level, entry)
        if interval:
            entry.learned, entry.learned_until = interval / SLOW_DOWN, now + SLOW_DOWN_FOR


def _debit(tokens: Rate, entry: _Key, signal: RateLimitSignal, now: float) -> None:
    """Spend the tokens the response used; trust the API's own count when it is lower than ours."""
    interval = tokens.interval
    tat = entry.token_tat
    if signal.tokens_used:
        tat = (tat if tat is not None and tat > now else now) + signal.tokens_used * interval
    if signal.tokens_remaining is not None:
        # Room for exactly the tokens the API says are left (never more than a full budget).
        told = now + interval * (tokens.burst - 1) + interval - signal.tokens_remaining * interval
        if tat is None or told > tat:
            tat = told
    entry.token_tat = tat

"""In-process policy state: the embedded default, and the fallback while Redis is unreachable."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tether.policies.breaker import BreakerState, CircuitBreaker, State
from tether.policies.clock import Clock, SystemClock
from tether.policies.ratelimit import GCRA, Rate, RateLimitSignal
from tether.state.base import GO, Admission, Limits

__all__ = ["MemoryState"]


@dataclass
class _Key:
    tat: float | None = None
    paused_until: float = 0.0
    learned: Rate | None = None
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
        with self._lock:
            entry = self._keys.get(key) or self._keys.setdefault(key, _Key())
            start = max(now, entry.paused_until)
            rate = _effective(limits.rate, entry.learned)
            wait, tat = start - now, entry.tat
            if wait > max_wait:
                return Admission(rejected="paused", retry_in=wait)
            if rate is not None:
                gcra = GCRA(rate)
                reserved, tat = gcra.reserve(entry.tat, start, max_wait=max(0.0, max_wait - wait))
                if reserved is None:
                    return Admission(rejected="rate_limit", retry_in=wait + gcra.wait(entry.tat, start))
                wait += reserved
            probe = False
            if limits.breaker is not None:
                breaker = CircuitBreaker(limits.breaker)
                half_open_before = entry.breaker.state is not State.CLOSED
                allowed, retry_in = breaker.admit(entry.breaker, now)
                if not allowed:
                    return Admission(rejected="circuit_open", retry_in=retry_in)
                probe = half_open_before
            entry.tat = tat
        return Admission(wait=wait, probe=probe) if wait or probe else GO

    def report(self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal) -> State | None:
        now = self.clock.monotonic()
        with self._lock:
            entry = self._keys.get(key) or self._keys.setdefault(key, _Key())
            if signal.pause:
                entry.paused_until = max(entry.paused_until, now + signal.pause)
            if signal.limit and signal.window:
                entry.learned = Rate(signal.limit, signal.window)
            if failure is None or limits.breaker is None:
                return None
            return CircuitBreaker(limits.breaker).record(entry.breaker, now, failure=failure)

    async def aadmit(self, key: str, limits: Limits, *, max_wait: float) -> Admission:
        return self.admit(key, limits, max_wait=max_wait)

    async def areport(self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal) -> State | None:
        return self.report(key, limits, failure=failure, signal=signal)


def _effective(configured: Rate | None, learned: Rate | None) -> Rate | None:
    """The smaller of the configured rate and the one the API reported."""
    if configured is None or learned is None:
        return configured or learned
    return learned if learned.interval > configured.interval else configured

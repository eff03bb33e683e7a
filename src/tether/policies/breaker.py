"""The circuit breaker's decision: a failure ratio over a sliding time window, with half-open probes.

States: CLOSED (calls flow, outcomes counted) → OPEN when, over the last ``window`` seconds, at least
``min_calls`` calls were made and the failed fraction reached ``failure_ratio`` → after ``open_for``,
HALF_OPEN: up to ``probes`` calls may go; one success closes the circuit, one failure opens it again. Only a
probe's outcome counts while half-open: a slow call admitted before the trip that answers now proves nothing
about the API's recovery.

The window is kept as per-second buckets so memory is bounded whatever the traffic. Pure: time is passed in.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = ["BreakerSettings", "BreakerState", "CircuitBreaker", "State"]


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    """When a breaker opens and for how long."""

    failure_ratio: float = 0.5
    window: float = 30.0
    min_calls: int = 10
    open_for: float = 30.0
    probes: int = 1
    slow_call: float | None = None


@dataclass
class BreakerState:
    """The mutable part, kept by a state backend."""

    state: State = State.CLOSED
    opened_until: float = 0.0
    probes_out: int = 0
    probes_until: float = 0.0  # probe permits lapse then, so a lost probe cannot wedge the breaker half-open
    buckets: dict[int, list[int]] | None = None  # second -> [calls, failures]


class CircuitBreaker:
    """Decisions for one breaker; the state lives outside so a backend can share it."""

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings

    def admit(self, state: BreakerState, now: float) -> tuple[bool, float]:
        """Whether a call may go now, and if not, seconds until the breaker half-opens."""
        if state.state is State.OPEN:
            if now < state.opened_until:
                return False, state.opened_until - now
            state.state, state.probes_out = State.HALF_OPEN, 0
        if state.state is State.HALF_OPEN:
            if state.probes_out >= self.settings.probes:
                if now < state.probes_until:
                    return False, state.probes_until - now
                state.probes_out = 0  # the probes never reported back: hand out new ones
            state.probes_out += 1
            state.probes_until = now + self.settings.open_for
        return True, 0.0

    def record(self, state: BreakerState, now: float, *, failure: bool, probe: bool = False) -> State | None:
        """Count an outcome (``probe``: of a call admitted half-open). Returns the new state when it changed."""
        if state.state is State.HALF_OPEN:
            if not probe:
                return None
            if failure:
                return self._open(state, now)
            state.state, state.buckets, state.probes_out = State.CLOSED, None, 0
            return State.CLOSED
        if state.state is State.OPEN:
            return None  # a call admitted before the trip; it does not reopen or extend
        buckets = state.buckets if state.buckets is not None else {}
        state.buckets = buckets
        second = math.floor(now)
        horizon = second - math.ceil(self.settings.window)
        for old in [key for key in buckets if key <= horizon]:
            del buckets[old]
        counts = buckets.setdefault(second, [0, 0])
        counts[0] += 1
        counts[1] += int(failure)
        calls = sum(bucket[0] for bucket in buckets.values())
        failures = sum(bucket[1] for bucket in buckets.values())
        if failure and calls >= self.settings.min_calls and failures / calls >= self.settings.failure_ratio:
            return self._open(state, now)
        return None

    def _open(self, state: BreakerState, now: float) -> State:
        state.state, state.opened_until, state.buckets, state.probes_out = (
            State.OPEN,
            now + self.settings.open_for,
            None,
            0,
        )
        return State.OPEN

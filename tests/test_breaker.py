"""The circuit breaker's decisions without HTTP: when it opens, how long it stays open, the half-open probes,
and how the in-memory state backend drives it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.policies import ManualClock
from tether.policies.breaker import BreakerSettings, BreakerState, CircuitBreaker, State
from tether.policies.ratelimit import Rate, RateLimitSignal
from tether.state.base import GO, Admission, Limits
from tether.state.memory import MemoryState

SETTINGS = BreakerSettings(failure_ratio=0.5, window=10.0, min_calls=4, open_for=30.0, probes=1)
NO_SIGNAL = RateLimitSignal()


class Breaker:
    """A breaker, its state and the time, driven one call at a time."""

    def __init__(self, settings: BreakerSettings = SETTINGS, *, now: float = 100.0) -> None:
        self.breaker = CircuitBreaker(settings)
        self.state = BreakerState()
        self.now = now
        self.probe = False  # the last admitted call was a half-open probe

    def admit(self) -> tuple[bool, float]:
        half_open = self.state.state is not State.CLOSED
        allowed, retry_in = self.breaker.admit(self.state, self.now)
        self.probe = allowed and half_open
        return allowed, retry_in

    def record(self, *, failure: bool) -> State | None:
        """The outcome of the last admitted call."""
        return self.breaker.record(self.state, self.now, failure=failure, probe=self.probe)

    def call(self, *, failure: bool) -> State | None:
        """Admit a call and record its outcome; the call must be admitted."""
        allowed, _ = self.admit()
        assert allowed
        return self.record(failure=failure)

    def calls(self, outcomes: str) -> list[State | None]:
        """``"FFSF"``: failures and successes, each one admitted and recorded."""
        return [self.call(failure=outcome == "F") for outcome in outcomes]

    def trip(self) -> None:
        self.calls("FFFF")
        assert self.state.state is State.OPEN


# --- CLOSED → OPEN ---------------------------------------------------------------------------------------


def test_a_closed_breaker_admits_every_call() -> None:
    breaker = Breaker()
    assert [breaker.admit() for _ in range(50)] == [(True, 0.0)] * 50


def test_opens_when_the_failure_ratio_is_reached_over_min_calls() -> None:
    breaker = Breaker()
    assert breaker.calls("SSF") == [None, None, None]
    assert breaker.call(failure=True) is State.OPEN  # 2 of 4 failed: 0.5
    assert breaker.state.state is State.OPEN
    assert breaker.state.opened_until == breaker.now + 30.0


def test_does_not_open_before_min_calls_even_when_every_call_failed() -> None:
    breaker = Breaker()
    assert breaker.calls("FFF") == [None, None, None]
    assert breaker.state.state is State.CLOSED
    assert breaker.call(failure=True) is State.OPEN


def test_stays_closed_while_the_failure_ratio_is_below_the_threshold() -> None:
    breaker = Breaker()
    assert breaker.calls("SSSFSSSFSSSF") == [None] * 12  # 1 in 4 failed
    assert breaker.state.state is State.CLOSED


def test_only_a_failure_opens_it() -> None:
    """A success never opens the breaker, even one that brings the calls to ``min_calls``."""
    breaker = Breaker()
    assert breaker.calls("FFFS") == [None] * 4  # 3 of 4 failed, but the last call succeeded
    assert breaker.call(failure=True) is State.OPEN


def test_a_failure_ratio_of_one_needs_every_call_to_fail() -> None:
    breaker = Breaker(BreakerSettings(failure_ratio=1.0, window=10.0, min_calls=3))
    assert breaker.calls("FFSFFFF") == [None] * 7  # the success stays in the window
    breaker.now += 11.0
    assert breaker.calls("FF") == [None, None]
    assert breaker.call(failure=True) is State.OPEN


def test_failures_older_than_the_window_do_not_count() -> None:
    breaker = Breaker()
    breaker.calls("FFF")
    breaker.now += SETTINGS.window + 1.0
    assert breaker.call(failure=True) is None  # one call in the window, fewer than min_calls
    assert breaker.state.state is State.CLOSED


def test_failures_inside_the_window_still_count() -> None:
    breaker = Breaker()
    breaker.calls("FFF")
    breaker.now += SETTINGS.window - 1.0
    assert breaker.call(failure=True) is State.OPEN


def test_the_window_slides_so_old_successes_stop_diluting_new_failures() -> None:
    breaker = Breaker()
    breaker.calls("SSSSSSSS")
    breaker.now += SETTINGS.window + 1.0
    assert breaker.calls("FFF") == [None] * 3
    assert breaker.call(failure=True) is State.OPEN


def test_window_memory_is_bounded_whatever_the_traffic() -> None:
    breaker = Breaker(BreakerSettings(min_calls=1_000_000))
    for _ in range(5_000):
        breaker.call(failure=False)
        breaker.now += 0.25
    assert breaker.state.buckets is not None
    assert len(breaker.state.buckets) <= math.ceil(breaker.breaker.settings.window) + 1


# --- OPEN ------------------------------------------------------------------------------------------------


def test_open_rejects_with_the_time_left_until_open_for_passes() -> None:
    breaker = Breaker()
    breaker.trip()
    opened = breaker.now
    for elapsed in (0.0, 1.0, 15.0, 29.5):
        breaker.now = opened + elapsed
        allowed, retry_in = breaker.admit()
        assert not allowed
        assert retry_in == pytest.approx(30.0 - elapsed)
    breaker.now = opened + 30.0
    assert breaker.admit() == (True, 0.0)
    assert breaker.state.state is State.HALF_OPEN


def test_outcomes_reported_while_open_are_ignored() -> None:
    """Calls admitted before the trip that finish after it neither close, reopen nor extend the breaker."""
    breaker = Breaker()
    breaker.trip()
    opened_until = breaker.state.opened_until
    breaker.now += 10.0
    assert breaker.record(failure=True) is None
    assert breaker.record(failure=False) is None
    assert breaker.state.state is State.OPEN
    assert breaker.state.opened_until == opened_until


# --- HALF_OPEN -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("probes", [1, 2, 5])
def test_half_open_admits_exactly_the_configured_number_of_probes(probes: int) -> None:
    breaker = Breaker(BreakerSettings(min_calls=4, open_for=30.0, probes=probes))
    breaker.trip()
    breaker.now += 30.0
    assert [breaker.admit() for _ in range(probes + 3)] == [(True, 0.0)] * probes + [
        (False, 30.0)
    ] * 3  # retry_in: when the probe permits lapse
    assert breaker.state.state is State.HALF_OPEN


def test_a_probe_success_closes_the_breaker_and_forgets_the_old_failures() -> None:
    breaker = Breaker()
    breaker.trip()
    breaker.now += 30.0
    assert breaker.admit() == (True, 0.0)
    assert breaker.record(failure=False) is State.CLOSED
    assert breaker.state.state is State.CLOSED
    assert breaker.calls("FFF") == [None] * 3  # a fresh window: min_calls again before it can open
    assert breaker.call(failure=True) is State.OPEN


def test_a_probe_failure_opens_the_breaker_again_for_open_for() -> None:
    breaker = Breaker()
    breaker.trip()
    breaker.now += 31.0
    assert breaker.admit() == (True, 0.0)
    breaker.now += 2.0
    assert breaker.record(failure=True) is State.OPEN
    assert breaker.state.opened_until == breaker.now + 30.0
    assert breaker.admit() == (False, 30.0)


def test_after_reopening_a_new_probe_is_allowed_once_open_for_passes_again() -> None:
    breaker = Breaker()
    breaker.trip()
    breaker.now += 30.0
    breaker.call(failure=True)
    breaker.now += 30.0
    assert breaker.admit() == (True, 0.0)
    assert breaker.record(failure=False) is State.CLOSED


# --- properties ------------------------------------------------------------------------------------------

SETTINGS_STRATEGY = st.builds(
    BreakerSettings,
    failure_ratio=st.floats(min_value=0.05, max_value=1.0),
    window=st.integers(1, 20).map(float),
    min_calls=st.integers(1, 15),
    open_for=st.floats(min_value=0.5, max_value=60.0),
    probes=st.integers(1, 3),
)
STEPS = st.lists(st.tuples(st.floats(min_value=0.0, max_value=4.0), st.booleans()), max_size=200)


@given(settings=SETTINGS_STRATEGY, steps=STEPS)
def test_the_breaker_never_opens_with_fewer_than_min_calls_in_the_window(
    settings: BreakerSettings, steps: list[tuple[float, bool]]
) -> None:
    breaker, state = CircuitBreaker(settings), BreakerState()
    now = 0.0
    since_closed: list[tuple[float, bool]] = []  # outcomes recorded while closed since it last closed
    for gap, failure in steps:
        now += gap
        allowed, retry_in = breaker.admit(state, now)
        if not allowed:
            assert state.state in (State.OPEN, State.HALF_OPEN)
            assert retry_in >= 0.0
            continue
        before = state.state
        changed = breaker.record(state, now, failure=failure, probe=before is not State.CLOSED)
        if before is State.CLOSED:
            since_closed.append((now, failure))
            if changed is State.OPEN:
                in_window = [outcome for at, outcome in since_closed if at > now - settings.window]
                assert failure
                assert len(in_window) >= settings.min_calls
                since_closed = []
            else:
                assert changed is None
        elif changed is State.CLOSED:
            since_closed = []


@given(settings=SETTINGS_STRATEGY, steps=STEPS)
def test_an_open_breaker_admits_nothing_before_open_for_has_passed(
    settings: BreakerSettings, steps: list[tuple[float, bool]]
) -> None:
    breaker, state = CircuitBreaker(settings), BreakerState()
    now, opened_at = 0.0, None
    for gap, failure in steps:
        now += gap
        probe = state.state is not State.CLOSED
        allowed, _ = breaker.admit(state, now)
        if opened_at is not None and now < opened_at + settings.open_for:
            assert not allowed
        if allowed and breaker.record(state, now, failure=failure, probe=probe) is State.OPEN:
            opened_at = now


def test_a_late_outcome_of_a_call_admitted_before_the_trip_does_not_decide_half_open() -> None:
    breaker = Breaker()
    breaker.trip()
    breaker.now += 30.0
    assert breaker.admit() == (True, 0.0)  # the probe
    assert breaker.breaker.record(breaker.state, breaker.now, failure=False) is None  # not the probe's
    assert breaker.state.state is State.HALF_OPEN
    assert breaker.record(failure=False) is State.CLOSED


# --- the in-memory state backend drives the breaker -------------------------------------------------------


def memory(settings: BreakerSettings = SETTINGS, rate: Rate | None = None) -> tuple[MemoryState, Limits, ManualClock]:
    clock = ManualClock(start=100.0)
    return MemoryState(clock=clock), Limits(rate=rate, breaker=settings), clock


def trip(state: MemoryState, limits: Limits) -> None:
    for _ in range(4):
        assert state.admit("acme", limits, max_wait=30.0).rejected is None
        changed = state.report("acme", limits, failure=True, signal=NO_SIGNAL)
    assert changed is State.OPEN


def test_memory_state_rejects_with_circuit_open_and_the_time_left() -> None:
    state, limits, clock = memory()
    trip(state, limits)
    clock.advance(12.0)
    admission = state.admit("acme", limits, max_wait=30.0)
    assert (admission.rejected, admission.retry_in) == ("circuit_open", 18.0)


def test_memory_state_marks_the_half_open_admission_as_a_probe() -> None:
    state, limits, clock = memory()
    trip(state, limits)
    clock.advance(30.0)
    probe = state.admit("acme", limits, max_wait=30.0)
    assert (probe.rejected, probe.probe) == (None, True)
    assert state.admit("acme", limits, max_wait=30.0).rejected == "circuit_open"
    assert state.report("acme", limits, failure=False, signal=NO_SIGNAL, probe=True) is State.CLOSED
    assert state.admit("acme", limits, max_wait=30.0) == GO


def test_memory_state_ignores_outcomes_without_a_breaker_verdict() -> None:
    state, limits, _ = memory()
    for _ in range(20):
        assert state.admit("acme", limits, max_wait=30.0) == GO
        assert state.report("acme", limits, failure=None, signal=NO_SIGNAL) is None


def test_memory_state_without_breaker_settings_never_opens() -> None:
    state, _, _ = memory()
    limits = Limits()
    for _ in range(50):
        assert state.admit("acme", limits, max_wait=30.0) == GO
        assert state.report("acme", limits, failure=True, signal=NO_SIGNAL) is None


def test_a_call_rejected_by_the_open_breaker_reserves_no_rate_limit_slot() -> None:
    state, limits, clock = memory(rate=Rate(1, 1.0))
    for _ in range(4):
        admission = state.admit("acme", limits, max_wait=30.0)
        clock.advance(admission.wait)
        state.report("acme", limits, failure=True, signal=NO_SIGNAL)
    for _ in range(10):
        assert state.admit("acme", limits, max_wait=30.0).rejected == "circuit_open"
    clock.advance(30.0)
    assert state.admit("acme", limits, max_wait=30.0) == Admission(probe=True)  # no wait behind rejected calls


def test_breakers_of_different_integrations_are_independent() -> None:
    state, limits, _ = memory()
    trip(state, limits)
    assert state.admit("globex", limits, max_wait=30.0) == GO

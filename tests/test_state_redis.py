"""RedisState against a real Redis: the same decisions as MemoryState, shared across processes and coroutines,
and an outage that degrades to in-process state instead of failing calls.

The shared Redis is ``$TETHER_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). Without it the tests skip,
except under CI, where they fail. Every test works under its own key prefix and deletes what it wrote.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.policies.breaker import BreakerSettings, State
from tether.policies.clock import ManualClock
from tether.policies.ratelimit import Rate, RateLimitSignal
from tether.state.base import GO, Admission, Group, Limits
from tether.state.memory import MemoryState
from tether.state.redis import RedisState

REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NO_SIGNAL = RateLimitSignal()
FAIL, OK = True, False


# -- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis; skipped when it is down, except under CI, where that is a failure."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Redis at {REDIS_URL}: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; whatever it wrote is deleted afterwards."""
    value = f"tether-test:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{value}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def state(redis_url: str, prefix: str) -> AsyncIterator[RedisState]:
    backend = RedisState(redis_url, prefix=prefix)
    yield backend
    await backend.aclose()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client, to look at what the scripts wrote."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


class Driver:
    """Calls a backend through its sync or its async methods, so one scenario checks both."""

    def __init__(self, backend: MemoryState | RedisState, mode: str) -> None:
        self.backend, self.mode = backend, mode
        self.started: float | None = None

    def about(self, seconds: float, expected: float) -> bool:
        """``seconds`` is ``expected`` less at most the time since the first call (the clock ran on meanwhile)."""
        elapsed = time.monotonic() - (self.started or 0.0)
        return expected - elapsed - 0.002 <= seconds <= expected + 1e-9

    async def admit(self, limits: Limits, *, key: str = "api", max_wait: float = 60.0) -> Admission:
        self.started = self.started or time.monotonic()
        if self.mode == "async":
            return await self.backend.aadmit(key, limits, max_wait=max_wait)
        return self.backend.admit(key, limits, max_wait=max_wait)

    async def report(
        self,
        limits: Limits,
        *,
        key: str = "api",
        failure: bool | None = None,
        signal: RateLimitSignal = NO_SIGNAL,
        probe: bool = False,
    ) -> State | None:
        self.started = self.started or time.monotonic()
        if self.mode == "async":
            return await self.backend.areport(key, limits, failure=failure, signal=signal, probe=probe)
        return self.backend.report(key, limits, failure=failure, signal=signal, probe=probe)


@pytest.fixture(params=["memory-sync", "redis-sync", "redis-async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    """The same scenario against the reference MemoryState and against RedisState, sync and async."""
    backend, mode = request.param.split("-")
    return Driver(MemoryState() if backend == "memory" else request.getfixturevalue("state"), mode)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tether.state" and r.levelno == logging.WARNING]


# -- the same decisions as MemoryState ----------------------------------------------------------------------


async def test_first_attempt_goes_now_and_the_second_waits_one_interval(driver: Driver) -> None:
    limits = Limits(rate=Rate(10, 1))
    assert await driver.admit(limits) == GO
    second = await driver.admit(limits)
    assert second.rejected is None
    assert driver.about(second.wait, 0.1)


async def test_burst_lets_that_many_go_at_once_then_spaces_the_rest(driver: Driver) -> None:
    limits = Limits(rate=Rate(10, 1, burst=3))
    assert [await driver.admit(limits) for _ in range(3)] == [GO, GO, GO]
    fourth = await driver.admit(limits)
    assert driver.about(fourth.wait, 0.1)


async def test_a_wait_longer_than_max_wait_is_rejected_and_reserves_nothing(driver: Driver) -> None:
    limits = Limits(rate=Rate(1, 1))
    assert await driver.admit(limits) == GO
    rejected = await driver.admit(limits, max_wait=0.5)
    assert rejected.rejected == "rate_limit"
    assert driver.about(rejected.retry_in, 1.0)
    # Had the rejected attempt reserved a slot, this one would wait two intervals.
    accepted = await driver.admit(limits, max_wait=5.0)
    assert driver.about(accepted.wait, 1.0)


async def test_a_pause_from_the_api_holds_every_caller_and_only_ever_extends(driver: Driver) -> None:
    assert await driver.report(Limits(), signal=RateLimitSignal(pause=0.5)) is None
    await driver.report(Limits(), signal=RateLimitSignal(pause=0.1))  # shorter: does not shorten the pause
    paused = await driver.admit(Limits())
    assert driver.about(paused.wait, 0.5)
    too_long = await driver.admit(Limits(rate=Rate(100, 1)), max_wait=0.2)
    assert too_long.rejected == "paused"
    assert driver.about(too_long.retry_in, 0.5)


async def test_a_rate_limit_starts_counting_at_the_end_of_a_pause(driver: Driver) -> None:
    limits = Limits(rate=Rate(10, 1))
    await driver.report(limits, signal=RateLimitSignal(pause=0.5))
    first, second = await driver.admit(limits), await driver.admit(limits)
    assert driver.about(first.wait, 0.5)
    assert driver.about(second.wait - first.wait, 0.1)


async def test_the_smaller_of_the_configured_and_the_learned_rate_wins(driver: Driver) -> None:
    generous, strict = Limits(rate=Rate(100, 1)), Limits(rate=Rate(2, 1))
    learned_strict = RateLimitSignal(limit=2, window=1)
    learned_generous = RateLimitSignal(limit=100, window=1)
    await driver.report(generous, key="a", signal=learned_strict)
    await driver.report(strict, key="b", signal=learned_generous)
    for key in ("a", "b"):
        limits = generous if key == "a" else strict
        assert await driver.admit(limits, key=key) == GO
        assert driver.about((await driver.admit(limits, key=key)).wait, 0.5), key


async def test_a_learned_rate_applies_without_a_configured_one(driver: Driver) -> None:
    await driver.report(Limits(), signal=RateLimitSignal(limit=4, window=1))
    assert await driver.admit(Limits()) == GO
    assert driver.about((await driver.admit(Limits())).wait, 0.25)


async def test_breaker_opens_once_the_failure_ratio_is_reached_over_min_calls(driver: Driver) -> None:
    limits = Limits(breaker=BreakerSettings(failure_ratio=0.5, min_calls=4, open_for=5.0))
    outcomes = [await driver.report(limits, failure=failure) for failure in (FAIL, OK, FAIL)]
    assert outcomes == [None, None, None]  # 2 of 3 failed, but fewer than min_calls
    assert await driver.admit(limits) == GO
    assert await driver.report(limits, failure=OK) is None  # 2 of 4: only a failure can open it
    assert await driver.report(limits, failure=FAIL) is State.OPEN  # 3 of 5
    rejected = await driver.admit(limits)
    assert rejected.rejected == "circuit_open"
    assert driver.about(rejected.retry_in, 5.0)
    assert await driver.report(limits, failure=FAIL) is None  # late outcomes neither reopen nor extend


async def test_outcomes_without_a_breaker_or_without_a_verdict_change_nothing(driver: Driver) -> None:
    breaker = Limits(breaker=BreakerSettings(min_calls=1))
    assert await driver.report(Limits(), failure=FAIL) is None
    assert await driver.report(breaker, failure=None) is None
    assert await driver.admit(breaker) == GO


@pytest.mark.parametrize(("outcome", "after"), [(OK, State.CLOSED), (FAIL, State.OPEN)])
async def test_half_open_admits_exactly_probes_and_the_first_outcome_decides(
    driver: Driver, outcome: bool, after: State
) -> None:
    limits = Limits(breaker=BreakerSettings(min_calls=1, open_for=0.2, probes=2))
    assert await driver.report(limits, failure=FAIL) is State.OPEN
    await asyncio.sleep(0.21)
    driver.started = time.monotonic()
    admissions = [await driver.admit(limits) for _ in range(4)]
    assert admissions[:2] == [Admission(probe=True)] * 2
    assert [admission.rejected for admission in admissions[2:]] == ["circuit_open"] * 2
    assert all(driver.about(admission.retry_in, 0.2) for admission in admissions[2:])  # the probes' lease
    assert await driver.report(limits, failure=outcome, probe=True) is after
    if after is State.CLOSED:
        assert await driver.admit(limits) == GO
        assert await driver.report(limits, failure=OK) is None  # the window starts afresh
    else:
        reopened = await driver.admit(limits)
        assert reopened.rejected == "circuit_open"
        assert driver.about(reopened.retry_in, 0.2)


async def test_an_outcome_of_a_call_admitted_before_the_trip_does_not_decide_half_open(driver: Driver) -> None:
    limits = Limits(breaker=BreakerSettings(min_calls=1, open_for=0.05))
    assert await driver.report(limits, failure=FAIL) is State.OPEN
    await asyncio.sleep(0.06)
    assert await driver.admit(limits) == Admission(probe=True)
    assert await driver.report(limits, failure=OK) is None  # a slow call from before the trip answers late
    assert await driver.report(limits, failure=FAIL) is None
    assert (await driver.admit(limits)).rejected == "circuit_open"  # the probe is still out
    assert await driver.report(limits, failure=OK, probe=True) is State.CLOSED


async def test_a_rate_limit_rejection_hands_out_no_probe(driver: Driver) -> None:
    limits = Limits(rate=Rate(1, 1), breaker=BreakerSettings(min_calls=1, open_for=0.05, probes=1))
    assert await driver.admit(limits) == GO
    assert await driver.report(limits, failure=FAIL) is State.OPEN
    await asyncio.sleep(0.06)
    assert (await driver.admit(limits, max_wait=0.1)).rejected == "rate_limit"
    probe = await driver.admit(limits, max_wait=2.0)
    assert probe.probe
    assert driver.about(probe.wait, 1.0)


# -- endpoint groups, token budgets, slowing down -------------------------------------------------------------


async def test_a_group_call_needs_room_in_its_group_and_in_its_integration(driver: Driver) -> None:
    search = Limits(rate=Rate(10, 1), group=Group("GET /search*", rate=Rate(1, 1)))
    other = Limits(rate=Rate(10, 1))
    assert await driver.admit(search) == GO  # took a slot of both
    third = await driver.admit(other)
    assert driver.about(third.wait, 0.1)  # the integration's budget counted the search call
    queued = await driver.admit(search)
    # The group's slot is the later one: only it is taken; the integration's is asked for when the call goes.
    assert queued.again
    assert driver.about(queued.wait, 1.0)
    fourth = await driver.admit(other)
    assert driver.about(fourth.wait, 0.2)  # not held up behind the queued search call
    assert (await driver.admit(search, max_wait=0.5)).rejected == "rate_limit"
    later = await driver.admit(search.outer())
    assert not later.again
    assert driver.about(later.wait, 0.3)


async def test_a_busy_integration_holds_group_calls_too(driver: Driver) -> None:
    search = Limits(rate=Rate(1, 1), group=Group("GET /search*", rate=Rate(10, 1)))
    assert await driver.admit(Limits(rate=Rate(1, 1))) == GO
    held = await driver.admit(search)
    assert not held.again  # the integration's slot is the later one: both are taken at once
    assert driver.about(held.wait, 1.0)


async def test_a_group_with_its_own_breaker_neither_feeds_nor_consults_the_integrations(driver: Driver) -> None:
    breaker = BreakerSettings(min_calls=1, open_for=60)
    fragile = Limits(breaker=breaker, group=Group("POST /v1/reports", breaker=breaker))
    rest = Limits(breaker=breaker)
    assert await driver.report(fragile, failure=FAIL) is State.OPEN
    assert (await driver.admit(fragile)).rejected == "circuit_open"
    assert await driver.admit(rest) == GO  # the rest of the API is fine
    assert await driver.report(rest, failure=FAIL) is State.OPEN
    assert (await driver.admit(rest)).rejected == "circuit_open"


async def test_a_group_without_a_breaker_answers_to_the_integrations(driver: Driver) -> None:
    limits = Limits(breaker=BreakerSettings(min_calls=1, open_for=60), group=Group("/search*", rate=Rate(5, 1)))
    assert await driver.report(limits, failure=FAIL) is State.OPEN
    assert (await driver.admit(Limits(breaker=limits.breaker))).rejected == "circuit_open"


async def test_what_the_api_says_is_kept_by_a_group_with_its_own_rate(driver: Driver) -> None:
    search = Limits(group=Group("GET /search*", rate=Rate(30, 60)))
    await driver.report(search, signal=RateLimitSignal(pause=0.5))
    assert (await driver.admit(search, max_wait=0.1)).rejected == "paused"
    assert await driver.admit(Limits()) == GO  # the core API is not paused
    plain_group = Limits(group=Group("POST /v1/reports", breaker=BreakerSettings()))
    await driver.report(plain_group, key="other", signal=RateLimitSignal(pause=0.5))
    assert (await driver.admit(Limits(), key="other", max_wait=0.1)).rejected == "paused"


async def test_tokens_used_are_debited_and_hold_calls_once_the_budget_is_spent(driver: Driver) -> None:
    limits = Limits(tokens=Rate(1000, 1, burst=1000))  # 1,000 tokens a second
    assert await driver.admit(limits) == GO
    await driver.report(limits, signal=RateLimitSignal(tokens_used=600))
    assert await driver.admit(limits) == GO  # 400 left: a call may go, its cost is not known before
    await driver.report(limits, signal=RateLimitSignal(tokens_used=900))
    held = await driver.admit(limits)
    assert driver.about(held.wait, 0.501)  # 1,500 spent of 1,000 (the budget less the one token the next call needs)
    assert (await driver.admit(limits, max_wait=0.1)).rejected == "rate_limit"


async def test_the_apis_own_lower_token_count_wins(driver: Driver) -> None:
    limits = Limits(tokens=Rate(1000, 1, burst=1000))
    await driver.report(limits, signal=RateLimitSignal(tokens_used=10, tokens_remaining=0))
    held = await driver.admit(limits)
    assert driver.about(held.wait, 0.001)  # nothing left: the next token comes in 1 ms
    await driver.report(limits, key="b", signal=RateLimitSignal(tokens_remaining=5000))
    assert await driver.admit(limits, key="b") == GO  # more than the budget: the budget still caps it


async def test_a_429_that_says_nothing_lowers_the_rate_until_it_expires(driver: Driver) -> None:
    limits = Limits(rate=Rate(10, 1))
    await driver.report(limits, signal=RateLimitSignal(slow_down=True))
    assert await driver.admit(limits) == GO
    lowered = await driver.admit(limits)
    assert driver.about(lowered.wait, 0.1 / 0.9)
    await driver.report(limits, signal=RateLimitSignal(slow_down=True))
    assert driver.about((await driver.admit(limits)).wait, 2 * 0.1 / 0.9)
    fourth = await driver.admit(limits)
    assert driver.about(fourth.wait, 2 * 0.1 / 0.9 + 0.1 / 0.81)  # lowered again, from the lowered rate
    await driver.report(Limits(), key="unlimited", signal=RateLimitSignal(slow_down=True))
    assert await driver.admit(Limits(), key="unlimited") == GO  # nothing configured: nothing to lower


# -- exactly MemoryState's numbers, under one manual clock --------------------------------------------------

OPS = st.one_of(
    st.tuples(st.just("admit"), st.sampled_from([0.0, 0.05, 0.3, 1.0, math.inf])),
    st.tuples(
        st.just("report"),
        st.sampled_from([None, FAIL, OK]),
        st.sampled_from([0.0, 0.0, 0.2, 1.5]),
        st.sampled_from([None, None, (2.0, 1.0), (50.0, 1.0), (1.0, 3.0)]),
        st.booleans(),  # a probe's outcome
        st.sampled_from([False, False, True]),  # slow down
        st.sampled_from([0.0, 0.0, 30.0, 700.0]),  # tokens used
        st.sampled_from([None, None, 0.0, 100.0]),  # tokens remaining
    ),
    st.tuples(st.just("advance"), st.sampled_from([0.001, 0.05, 0.1, 0.3, 1.0])),
)
RATES = st.one_of(
    st.none(),
    st.builds(Rate, st.integers(1, 20), st.sampled_from([0.5, 1.0]), st.integers(1, 3)),
)
BREAKERS = st.one_of(
    st.none(),
    st.builds(
        BreakerSettings,
        failure_ratio=st.sampled_from([0.3, 0.5, 1.0]),
        window=st.sampled_from([1.0, 2.0, 5.0]),
        min_calls=st.integers(1, 4),
        open_for=st.sampled_from([0.1, 0.5, 1.0]),
        probes=st.integers(1, 2),
    ),
)


TOKENS = st.one_of(st.none(), st.builds(lambda n: Rate(n, 1.0, burst=n), st.sampled_from([100, 1000])))
GROUPS = st.one_of(st.none(), st.builds(Group, st.just("POST /v1/x*"), rate=RATES, breaker=BREAKERS, tokens=TOKENS))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=RATES,
    breaker=BREAKERS,
    tokens=TOKENS,
    group=GROUPS,
    ops=st.lists(OPS, max_size=40),
)
async def test_every_decision_equals_memory_state_under_the_same_clock(
    state: RedisState,
    rate: Rate | None,
    breaker: BreakerSettings | None,
    tokens: Rate | None,
    group: Group | None,
    ops: list[tuple[Any, ...]],
) -> None:
    clock = ManualClock(start=1_000.0)
    memory = MemoryState(clock=clock)
    state._script_clock = clock  # the scripts take this time instead of Redis TIME
    key, limits = uuid.uuid4().hex, Limits(rate=rate, breaker=breaker, tokens=tokens, group=group)
    for op in ops:
        if op[0] == "admit":
            expected = memory.admit(key, limits, max_wait=op[1])
            assert state.admit(key, limits, max_wait=op[1]) == expected, op
        elif op[0] == "report":
            _, failure, pause, learned, probe, slow_down, used, remaining = op
            signal = RateLimitSignal(
                pause=pause,
                limit=learned and learned[0],
                window=learned and learned[1],
                slow_down=slow_down,
                tokens_used=used,
                tokens_remaining=remaining,
            )
            expected_state = memory.report(key, limits, failure=failure, signal=signal, probe=probe)
            assert state.report(key, limits, failure=failure, signal=signal, probe=probe) is expected_state, op
        else:
            clock.advance(op[1])


async def test_a_probe_that_never_reports_is_handed_out_again_after_open_for(driver: Driver) -> None:
    limits = Limits(breaker=BreakerSettings(min_calls=1, open_for=0.1))
    assert await driver.report(limits, failure=FAIL) is State.OPEN
    await asyncio.sleep(0.11)
    driver.started = time.monotonic()
    assert await driver.admit(limits) == Admission(probe=True)  # ... and its process dies
    rejected = await driver.admit(limits)
    assert rejected.rejected == "circuit_open"
    assert driver.about(rejected.retry_in, 0.1)
    await asyncio.sleep(0.11)
    assert await driver.admit(limits) == Admission(probe=True)


# -- what is left in Redis --------------------------------------------------------------------------------


async def test_every_key_has_a_ttl_no_longer_than_what_it_records(state: RedisState, raw: redis.Redis) -> None:
    limits = Limits(rate=Rate(10, 1), breaker=BreakerSettings(min_calls=10, window=5.0, open_for=2.0))
    state.admit("a", limits, max_wait=1.0)
    state.admit("a", limits, max_wait=1.0)
    state.report("a", limits, failure=FAIL, signal=RateLimitSignal(pause=3.0, limit=5, window=1))
    state.report("b", Limits(breaker=BreakerSettings(min_calls=1, open_for=2.0)), failure=FAIL, signal=NO_SIGNAL)
    ttl = {key.decode().removeprefix(state.prefix): raw.pttl(key) for key in raw.scan_iter(f"{state.prefix}*")}
    assert set(ttl) == {"{a}:tat", "{a}:pause", "{a}:rate", "{a}:window", "{b}:breaker"}
    assert 1_000 < ttl["{a}:tat"] <= 1_200  # the TAT (0.2 s ahead) plus a second
    assert 3_900 < ttl["{a}:pause"] <= 4_000
    assert 3_590_000 < ttl["{a}:rate"] <= 3_600_000
    assert 6_900 < ttl["{a}:window"] <= 7_000  # the window plus two seconds
    assert 3_602_900 < ttl["{b}:breaker"] <= 3_603_000  # open for 2 s, then idle_ttl


async def test_group_and_token_keys_share_the_integrations_hash_tag_and_expire(
    state: RedisState, raw: redis.Redis
) -> None:
    limits = Limits(tokens=Rate(1000, 1, burst=1000), group=Group("POST /v1/chat/*", rate=Rate(10, 1)))
    state.admit("ai", limits, max_wait=1.0)
    state.report("ai", limits, failure=None, signal=RateLimitSignal(tokens_used=1500.0, slow_down=True))
    ttl = {key.decode().removeprefix(state.prefix): raw.pttl(key) for key in raw.scan_iter(f"{state.prefix}*")}
    assert set(ttl) == {"{ai}:tokens", "{ai}:POST /v1/chat/*:tat", "{ai}:POST /v1/chat/*:rate"}
    assert 2_400 < ttl["{ai}:tokens"] <= 2_500  # 1.5 s of budget spent, plus a second
    assert 299_000 < ttl["{ai}:POST /v1/chat/*:rate"] <= 300_000  # a slow-down lasts five minutes


async def test_a_closing_breaker_deletes_its_keys(state: RedisState, raw: redis.Redis) -> None:
    limits = Limits(breaker=BreakerSettings(min_calls=1, open_for=0.05))
    state.report("api", limits, failure=FAIL, signal=NO_SIGNAL)
    await asyncio.sleep(0.06)
    assert state.admit("api", limits, max_wait=0).probe
    assert state.report("api", limits, failure=OK, signal=NO_SIGNAL, probe=True) is State.CLOSED
    assert list(raw.scan_iter(f"{state.prefix}*")) == []


# -- across processes ---------------------------------------------------------------------------------------


Call = tuple[float, float, Admission]  # wall clock before and after, and the answer
PACED = Limits(rate=Rate(1, 1))  # a slot a second: no call takes half that, even on a loaded machine
PROBED = Limits(breaker=BreakerSettings(min_calls=1, open_for=0.05, probes=3))


def _admit_in_process(url: str, prefix: str, barrier: Any, results: Any) -> None:
    """A worker: connect, then with the others at once admit 25 times on ``paced``, then 10 times on ``probed``."""
    with RedisState(url, prefix=prefix) as backend:
        backend.admit("warm-up", Limits(), max_wait=0)  # the connection, so each timed call is one round trip
        calls: dict[str, list[Call]] = {"paced": [], "probed": []}
        for key, limits, count in (("paced", PACED, 25), ("probed", PROBED, 10)):
            barrier.wait(timeout=30)
            for _ in range(count):
                before = time.time()
                admission = backend.admit(key, limits, max_wait=3600)
                calls[key].append((before, time.time(), admission))
    results.put(calls)


@pytest.fixture(scope="module")
def four_processes(redis_url: str) -> Iterator[tuple[str, dict[str, list[Call]]]]:
    """Four spawned processes' admissions on two shared keys (one batch of processes for both tests)."""
    prefix = f"tether-test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(redis_url)
    try:
        with RedisState(redis_url, prefix=prefix) as backend:
            assert backend.report("probed", PROBED, failure=FAIL, signal=NO_SIGNAL) is State.OPEN
        time.sleep(0.06)  # past open_for: the processes find the breaker ready to half-open
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(4), context.Queue()
        workers = [
            context.Process(target=_admit_in_process, args=(redis_url, prefix, barrier, results)) for _ in "1234"
        ]
        for worker in workers:
            worker.start()
        try:
            outputs = [results.get(timeout=60) for _ in workers]
        finally:
            for worker in workers:
                worker.join(timeout=10)
        assert [worker.exitcode for worker in workers] == [0] * 4
        yield prefix, {key: [call for output in outputs for call in output[key]] for key in ("paced", "probed")}
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def slot_numbers(calls: list[Call], tat: float, interval: float) -> list[int]:
    """Which slot each admission got, counting back from the final TAT (slot 1 is the last one handed out).

    A slot is (Redis time of the call + wait); the call happened between ``before`` and ``after``, so this
    is exact while each call took less than half an interval.
    """
    slots = []
    for before, after, admission in calls:
        assert after - before < interval / 2, "a call took too long to tell its slot"
        slots.append(round((tat - ((before + after) / 2 + admission.wait)) / interval))
    return slots


@pytest.mark.slow
def test_four_processes_get_distinct_evenly_spaced_slots(
    four_processes: tuple[str, dict[str, list[Call]]], raw: redis.Redis
) -> None:
    prefix, calls = four_processes
    assert all(admission.rejected is None for _, _, admission in calls["paced"])
    tat = float(raw.get(f"{prefix}{{paced}}:tat") or 0)
    assert sorted(slot_numbers(calls["paced"], tat, 1.0)) == list(range(1, 101))


@pytest.mark.slow
def test_four_processes_share_exactly_probes_half_open_permits(
    four_processes: tuple[str, dict[str, list[Call]]],
) -> None:
    answers = [admission for _, _, admission in four_processes[1]["probed"]]
    assert [admission for admission in answers if admission.rejected is None] == [Admission(probe=True)] * 3
    assert sum(admission.rejected == "circuit_open" for admission in answers) == 37


# -- async ----------------------------------------------------------------------------------------------------


async def test_a_hundred_concurrent_admissions_get_distinct_slots(state: RedisState, raw: redis.Redis) -> None:
    limits = Limits(rate=Rate(1, 10))  # 10 s apart: all hundred calls take far less than half that
    await state.aadmit("warm-up", Limits(), max_wait=0)
    before = time.time()
    admissions = await asyncio.gather(*(state.aadmit("shared", limits, max_wait=3600) for _ in range(100)))
    after = time.time()
    tat = float(raw.get(f"{state.prefix}{{shared}}:tat") or 0)
    slots = slot_numbers([(before, after, admission) for admission in admissions], tat, 10.0)
    assert sorted(slots) == list(range(1, 101))


async def test_waiting_for_an_unresponsive_redis_does_not_block_the_event_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A listener that never accepts: connecting works, answers never come.
    with closing(socket.socket()) as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(1)
        port = black_hole.getsockname()[1]
        backend = RedisState(f"redis://127.0.0.1:{port}/0", connect_timeout=0.1, timeout=0.1)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            started = time.perf_counter()
            admission = await backend.aadmit("api", Limits(rate=Rate(10, 1)), max_wait=1.0)
            elapsed = time.perf_counter() - started
        finally:
            task.cancel()
            await backend.aclose()
    assert admission == GO  # from the fallback
    assert elapsed >= 0.1
    assert ticks >= elapsed / 0.005 / 3  # the loop kept turning while Redis did not answer
    assert len(warnings_of(caplog)) == 1


# -- outages --------------------------------------------------------------------------------------------------


async def test_without_redis_decisions_come_from_the_fallback_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fallback = MemoryState(clock=ManualClock())
    limits = Limits(rate=Rate(10, 1), breaker=BreakerSettings(min_calls=1, open_for=30.0))
    async with RedisState(f"redis://:secret@127.0.0.1:{free_port()}/0", fallback=fallback) as backend:
        assert backend.admit("api", limits, max_wait=1.0) == GO
        assert (await backend.aadmit("api", limits, max_wait=1.0)).wait == pytest.approx(0.1)
        assert fallback.admit("api", limits, max_wait=1.0).wait == pytest.approx(0.2)  # the very same state
        for _ in range(50):
            backend.admit("api", limits, max_wait=0)
            await backend.aadmit("api", limits, max_wait=0)
        assert backend.report("api", limits, failure=FAIL, signal=NO_SIGNAL) is State.OPEN
        assert await backend.areport("api", limits, failure=FAIL, signal=NO_SIGNAL) is None
        assert (await backend.aadmit("api", limits, max_wait=60)).rejected == "circuit_open"
    [warning] = warnings_of(caplog)
    assert "127.0.0.1" in warning
    assert "secret" not in warning


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_report_during_an_outage_goes_to_the_fallback(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    limits = Limits(breaker=BreakerSettings(min_calls=1))
    async with RedisState(f"redis://127.0.0.1:{free_port()}/0") as backend:
        assert await Driver(backend, mode).report(limits, failure=FAIL) is State.OPEN
        assert backend.fallback.admit("api", limits, max_wait=0).rejected == "circuit_open"
    assert len(warnings_of(caplog)) == 1


async def test_redis_erring_is_an_outage_too(
    redis_url: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # A key of the wrong type makes the script fail inside Redis.
    prefix = f"tether-test:{uuid.uuid4().hex}:"
    raw.hset(f"{prefix}{{api}}:tat", "not", "a string")
    try:
        with RedisState(redis_url, prefix=prefix) as backend:
            assert backend.admit("api", Limits(rate=Rate(10, 1)), max_wait=0) == GO
            assert backend.admit("api", Limits(rate=Rate(10, 1)), max_wait=0).rejected == "rate_limit"
    finally:
        raw.delete(f"{prefix}{{api}}:tat")
    assert len(warnings_of(caplog)) == 1


class RedisServer:
    """A redis-server of this test's own, to stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.port, self.directory = free_port(), directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.process = subprocess.Popen(
            [*command, "no", "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.1)
        try:
            for _ in range(100):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.02)
            raise RuntimeError("redis-server did not start")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_an_outage_warns_once_retries_on_schedule_and_recovers(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    limits = Limits(rate=Rate(1, 10))
    with RedisState(own_redis.url, clock=clock, retry_interval=3.0) as backend:
        assert backend.admit("api", limits, max_wait=60) == GO
        assert backend.admit("api", limits, max_wait=60).wait > 9  # Redis has the TAT
        own_redis.stop()
        # The fallback starts empty: the first attempt goes at once, then it spaces them itself.
        assert backend.admit("api", limits, max_wait=60) == GO
        for _ in range(20):
            assert backend.admit("api", limits, max_wait=0).rejected == "rate_limit"
            assert backend.report("api", limits, failure=OK, signal=NO_SIGNAL) is None
        clock.advance(3.0)
        assert backend.admit("api", limits, max_wait=60).wait == pytest.approx(7.0)  # tried Redis: still down
        assert len(warnings_of(caplog)) == 1
        own_redis.start()  # empty again: the first attempt it decides goes at once
        clock.advance(2.9)
        assert backend.admit("api", limits, max_wait=60).wait == pytest.approx(14.1)  # no retry yet: the fallback
        clock.advance(0.1)
        assert backend.admit("api", limits, max_wait=60) == GO  # Redis again
        assert backend.admit("api", limits, max_wait=60).wait > 9
        own_redis.stop()
        backend.admit("api", limits, max_wait=60)
    assert [message.split(" ")[3] for message in warnings_of(caplog)] == ["failed", "answers", "failed"]


def test_a_restarted_redis_is_no_outage_for_an_idle_connection(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisState(own_redis.url) as backend:
        assert backend.admit("api", Limits(rate=Rate(1, 1)), max_wait=60) == GO
        own_redis.stop()
        own_redis.start()  # forgot the scripts and dropped the pooled connection
        assert backend.admit("api", Limits(rate=Rate(1, 1)), max_wait=60) == GO
    assert warnings_of(caplog) == []


# -- construction ---------------------------------------------------------------------------------------------


def test_without_redis_py_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tether.state.redis")
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'tether\[redis\]'"):
        importlib.import_module("tether.state.redis")


def test_zero_timeouts_are_refused() -> None:
    with pytest.raises(ValueError, match="timeouts must be positive"):
        RedisState(REDIS_URL, timeout=0)


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("redis://:hunter2@cache.internal:6380/1", "cache.internal:6380"),
        ("rediss://user:hunter2@cache.internal/0", "cache.internal:6379"),
        ("unix://:hunter2@/run/redis/redis.sock?db=1", "/run/redis/redis.sock"),
    ],
)
def test_repr_names_the_server_but_not_the_password(url: str, where: str) -> None:
    with RedisState(url, prefix="app:") as backend:
        assert repr(backend) == f"<RedisState {where} prefix='app:'>"
    assert backend.name == "redis"


async def test_cancelling_a_call_waiting_on_redis_is_never_lost(redis_url: str) -> None:
    """redis.asyncio on Python 3.11 can swallow a cancel of an in-flight command; tether re-raises it."""
    state = RedisState(redis_url, prefix=f"tether:cancel-{uuid.uuid4().hex}:")
    limits = Limits()
    lost = 0
    try:
        for attempt in range(1500):
            task = asyncio.create_task(state.aadmit("k", limits, max_wait=1.0))
            for _ in range(attempt % 13):  # cancel at different points of the command's round trip
                await asyncio.sleep(0)
            finished_first = task.done()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                continue
            lost += not finished_first
    finally:
        await state.aclose()
        state.close()
    assert lost == 0

"""Rate limits, API pauses and the circuit breaker through real sync and async tether clients.

Each test runs through ``hub.client`` and ``hub.async_client`` against fake upstreams behind
``httpx2.MockTransport``. Time is a :class:`ManualClock` that the fake sleeps advance, shared with the hub's
in-memory state: nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx2
import pytest

import tether
from fakes import Timeline
from tether.config import parse_config
from tether.policies import ManualClock
from tether.state import MemoryState

TOML = """
[integrations.acme]
base_url = "https://api.acme.test"
{extra}
"""
BREAKER = """
retry = false
breaker = { min_calls = 4, failure_ratio = 0.5, open_for = "30s" }
"""

Outcome = Callable[[httpx2.Request], httpx2.Response]


# --- fakes ---------------------------------------------------------------------------------------------


class Upstream:
    """A fake API that plays its outcomes in order, repeating the last one, and notes when each call arrived."""

    def __init__(self, clock: ManualClock, *outcomes: Outcome) -> None:
        self.clock = clock
        self.outcomes = outcomes
        self.started: list[float] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.started.append(self.clock.monotonic())
        return self.outcomes[min(len(self.started), len(self.outcomes)) - 1](request)

    @property
    def calls(self) -> int:
        return len(self.started)


def status(code: int, headers: dict[str, str] | None = None) -> Outcome:
    return lambda request: httpx2.Response(code, headers=headers)


def ok(headers: dict[str, str] | None = None) -> Outcome:
    return lambda request: httpx2.Response(200, headers=headers, json={"ok": True})


def raises(exc_type: type[httpx2.TransportError], message: str = "boom") -> Outcome:
    def outcome(request: httpx2.Request) -> httpx2.Response:
        raise exc_type(message, request=request)

    return outcome


def takes(seconds: float, clock: ManualClock, then: Outcome) -> Outcome:
    """An outcome that arrives after ``seconds`` of manual time."""

    def outcome(request: httpx2.Request) -> httpx2.Response:
        clock.advance(seconds)
        return then(request)

    return outcome


# --- a hub on manual time, driven through its sync or async client --------------------------------------


class Tether:
    """A hub whose calls go through its sync or its async client, so one test body covers both.

    Every call makes a new client: clients of one integration share the hub's state, which is the point.
    """

    def __init__(self, mode: str, extra: str) -> None:
        self.mode = mode
        self.timeline = Timeline()
        self.clock = self.timeline.clock
        self.state = MemoryState(clock=self.clock)
        self.hub = tether.Hub(
            parse_config(TOML.format(extra=extra), env={}),
            clock=self.clock,
            sleep=self.timeline.sleep,
            async_sleep=self.timeline.async_sleep,
            state=self.state,
        )

    @property
    def waits(self) -> list[float]:
        return self.timeline.waits

    def upstream(self, *outcomes: Outcome) -> Upstream:
        return Upstream(self.clock, *outcomes)

    async def get(self, upstream: Upstream, path: str = "/v1/things") -> tether.TetherResponse:
        network = httpx2.MockTransport(upstream)
        if self.mode == "sync":
            with self.hub.client("acme", network=network) as client:
                response = client.get(path)
        else:
            async with self.hub.async_client("acme", network=network) as client:
                response = await client.get(path)
        assert isinstance(response, tether.TetherResponse)
        return response

    async def fail(self, upstream: Upstream, error: type[tether.CallError]) -> Any:
        """Make a call that must raise ``error``; returns the error."""
        with pytest.raises(error) as caught:
            await self.get(upstream)
        return caught.value

    async def trip(self, upstream: Upstream | None = None) -> Upstream:
        """Open the breaker of the BREAKER config with four 503s."""
        upstream = upstream or self.upstream(status(503))
        for _ in range(4):
            assert (await self.get(upstream)).status_code == 503
        return upstream


MakeTether = Callable[..., Tether]


@pytest.fixture(params=["sync", "async"])
def make_tether(request: pytest.FixtureRequest) -> MakeTether:
    def make(extra: str = "") -> Tether:
        return Tether(request.param, extra)

    return make


def breaker_states(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (record.levelname, record.tether["state"])  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == "tether" and getattr(record, "tether", {}).get("event") == "breaker"
    ]


# --- the client-side rate limit ------------------------------------------------------------------------


async def test_rate_limit_spaces_calls_one_interval_apart(make_tether: MakeTether) -> None:
    t = make_tether('rate_limit = "10/s"')
    upstream = t.upstream(ok())
    for _ in range(10):
        assert (await t.get(upstream)).status_code == 200
    assert upstream.started == pytest.approx([n / 10 for n in range(10)])
    assert t.waits == pytest.approx([0.1] * 9)


async def test_rate_limit_burst_goes_at_once_then_calls_are_spaced(make_tether: MakeTether) -> None:
    t = make_tether('rate_limit = { requests = 10, per = "1s", burst = 3 }')
    upstream = t.upstream(ok())
    for _ in range(5):
        await t.get(upstream)
    assert upstream.started == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


async def test_concurrent_async_calls_reserve_successive_slots() -> None:
    clock = ManualClock()
    waits: list[float] = []

    async def record(seconds: float) -> None:  # time stands still: every call asks at the same instant
        waits.append(seconds)

    config = parse_config(TOML.format(extra='rate_limit = "10/s"'), env={})
    hub = tether.Hub(config, clock=clock, async_sleep=record, state=MemoryState(clock=clock))
    upstream = Upstream(clock, ok())
    async with hub.async_client("acme", network=httpx2.MockTransport(upstream)) as client:
        responses = await asyncio.gather(*(client.get("/v1/things") for _ in range(5)))
    assert [response.status_code for response in responses] == [200] * 5
    assert sorted(waits) == pytest.approx([0.1, 0.2, 0.3, 0.4])


async def test_max_wait_too_short_for_the_next_slot_raises_throttled_without_sending(make_tether: MakeTether) -> None:
    t = make_tether('rate_limit = { requests = 1, per = "10s", max_wait = "1s" }')
    upstream = t.upstream(ok())
    await t.get(upstream)
    error = await t.fail(upstream, tether.ThrottledError)
    assert isinstance(error, httpx2.RequestError)
    assert error.retry_in == pytest.approx(10.0)
    assert "rate limit" in error.summary
    assert "max_wait" in error.hint
    assert error.attempts == ()
    assert upstream.calls == 1
    assert t.waits == []
    t.clock.advance(10.0)
    assert (await t.get(upstream)).status_code == 200  # the rejection reserved no slot


async def test_the_deadline_bounds_the_wait_for_a_slot(make_tether: MakeTether) -> None:
    t = make_tether('timeout = "5s"\nrate_limit = "1/10s"')
    upstream = t.upstream(ok())
    await t.get(upstream)
    error = await t.fail(upstream, tether.ThrottledError)
    assert error.retry_in == pytest.approx(10.0)
    assert upstream.calls == 1


# --- pauses the API asks for ---------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["5", "date"])
async def test_a_429_with_retry_after_pauses_the_other_clients(make_tether: MakeTether, retry_after: str) -> None:
    t = make_tether("retry = false")
    if retry_after == "date":
        retry_after = formatdate(t.clock.wall() + 5, usegmt=True)
    limited = t.upstream(status(429, {"Retry-After": retry_after}))
    assert (await t.get(limited)).status_code == 429
    other = t.upstream(ok())
    assert (await t.get(other)).status_code == 200
    assert t.waits == [5.0]
    assert other.started == [5.0]


async def test_a_429_pause_longer_than_the_deadline_fails_other_clients_at_once(make_tether: MakeTether) -> None:
    t = make_tether('retry = false\ntimeout = "2s"')
    assert (await t.get(t.upstream(status(429, {"Retry-After": "5"})))).status_code == 429
    other = t.upstream(ok())
    error = await t.fail(other, tether.ThrottledError)
    assert error.retry_in == pytest.approx(5.0)
    assert "hold off" in error.summary
    assert "every client of this integration" in error.hint
    assert other.calls == 0
    assert t.waits == []


async def test_a_retried_429_waits_for_retry_after_once_not_twice(make_tether: MakeTether) -> None:
    t = make_tether('retry = { attempts = 2, backoff = "1ms" }')
    upstream = t.upstream(status(429, {"Retry-After": "5"}), ok())
    assert (await t.get(upstream)).status_code == 200
    assert upstream.started == [0.0, 5.0]
    assert t.waits == [5.0]


async def test_a_503_with_retry_after_pauses_the_other_clients(make_tether: MakeTether) -> None:
    t = make_tether("retry = false\nbreaker = false")
    await t.get(t.upstream(status(503, {"Retry-After": "3"})))
    other = t.upstream(ok())
    await t.get(other)
    assert other.started == [3.0]


async def test_a_sync_clients_429_pauses_the_async_clients() -> None:
    t = Tether("sync", "retry = false")
    await t.get(t.upstream(status(429, {"Retry-After": "5"})))
    t.mode = "async"
    other = t.upstream(ok())
    await t.get(other)
    assert other.started == [5.0]


async def test_ignoring_retry_after_also_ignores_its_pause(make_tether: MakeTether) -> None:
    t = make_tether("retry = { attempts = 1, respect_retry_after = false }")
    await t.get(t.upstream(status(429, {"Retry-After": "5"})))
    other = t.upstream(ok())
    await t.get(other)
    assert other.started == [0.0]


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(1_700_000_000 + 7)}, 7.0),  # epoch
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7"}, 7.0),  # delta seconds
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "17.28s"}, 17.28),  # OpenAI
        ({"RateLimit": "limit=100, remaining=0, reset=12"}, 12.0),  # IETF
    ],
)
async def test_remaining_zero_pauses_the_integration_until_the_reset(
    make_tether: MakeTether, headers: dict[str, str], pause: float
) -> None:
    t = make_tether()
    last = t.upstream(ok(headers))
    assert (await t.get(last)).status_code == 200
    other = t.upstream(ok())
    await t.get(other)
    assert other.started == pytest.approx([pause])
    assert t.waits == pytest.approx([pause])


async def test_requests_left_in_the_window_do_not_pause(make_tether: MakeTether) -> None:
    t = make_tether()
    await t.get(t.upstream(ok({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "60"})))
    other = t.upstream(ok())
    await t.get(other)
    assert other.started == [0.0]


async def test_a_rate_the_api_announces_slows_the_next_calls(make_tether: MakeTether) -> None:
    t = make_tether()
    upstream = t.upstream(ok({"RateLimit-Policy": "2;w=1", "RateLimit-Remaining": "1"}))
    for _ in range(4):
        await t.get(upstream)
    assert upstream.started == pytest.approx([0.0, 0.0, 0.5, 1.0])


# --- the circuit breaker -------------------------------------------------------------------------------


async def test_503s_open_the_breaker_and_the_next_call_fails_without_being_sent(make_tether: MakeTether) -> None:
    t = make_tether(BREAKER)
    upstream = await t.trip()
    t.clock.advance(2.0)
    error = await t.fail(upstream, tether.CircuitOpenError)
    assert isinstance(error, httpx2.RequestError)
    assert error.retry_in == pytest.approx(28.0)
    assert "circuit breaker open" in error.summary
    assert error.integration == "acme"
    assert upstream.calls == 4


async def test_after_open_for_one_probe_goes_and_its_success_closes_the_breaker(make_tether: MakeTether) -> None:
    t = make_tether(BREAKER)
    await t.trip()
    t.clock.advance(30.0)
    others: list[BaseException] = []

    def probe(request: httpx2.Request) -> httpx2.Response:
        """While the probe is out, another client's call is refused: one probe only."""
        other = t.hub.client("acme", network=httpx2.MockTransport(ok()))
        with other, pytest.raises(tether.CircuitOpenError) as caught:
            other.get("/v1/things")
        others.append(caught.value)
        return httpx2.Response(200)

    upstream = t.upstream(probe, ok())
    assert (await t.get(upstream)).status_code == 200
    assert len(others) == 1
    for _ in range(5):
        assert (await t.get(upstream)).status_code == 200
    assert upstream.calls == 6
    assert (await t.get(t.upstream(status(503)))).status_code == 503  # a fresh window: one 503 does not reopen
    assert (await t.get(upstream)).status_code == 200


async def test_a_failed_probe_opens_the_breaker_again(make_tether: MakeTether) -> None:
    t = make_tether(BREAKER)
    upstream = await t.trip()
    t.clock.advance(30.0)
    assert (await t.get(upstream)).status_code == 503
    error = await t.fail(upstream, tether.CircuitOpenError)
    assert error.retry_in == pytest.approx(30.0)
    assert upstream.calls == 5


@pytest.mark.parametrize("code", [429, 404, 400, 401])
async def test_client_errors_and_429s_never_open_the_breaker(make_tether: MakeTether, code: int) -> None:
    t = make_tether(BREAKER)
    upstream = t.upstream(status(code))
    for _ in range(12):
        assert (await t.get(upstream)).status_code == code
    assert upstream.calls == 12


async def test_a_slow_call_counts_as_a_failure(make_tether: MakeTether) -> None:
    t = make_tether(
        'retry = false\nbreaker = { min_calls = 4, failure_ratio = 0.5, open_for = "30s", slow_call = "2s" }'
    )
    upstream = t.upstream(takes(3.0, t.clock, ok()))
    for _ in range(4):
        assert (await t.get(upstream)).status_code == 200
    await t.fail(upstream, tether.CircuitOpenError)
    assert upstream.calls == 4


async def test_a_call_faster_than_slow_call_is_a_success(make_tether: MakeTether) -> None:
    t = make_tether(
        'retry = false\nbreaker = { min_calls = 4, failure_ratio = 0.5, open_for = "30s", slow_call = "2s" }'
    )
    upstream = t.upstream(takes(1.5, t.clock, ok()))
    for _ in range(10):
        assert (await t.get(upstream)).status_code == 200
    assert upstream.calls == 10


@pytest.mark.parametrize(
    ("exc_type", "error"),
    [
        (httpx2.ConnectError, tether.ConnectionFailedError),
        (httpx2.ReadTimeout, tether.ReadTimeoutError),
        (httpx2.ConnectTimeout, tether.ConnectTimeoutError),
    ],
)
async def test_connection_errors_and_timeouts_count_as_failures(
    make_tether: MakeTether, exc_type: type[httpx2.TransportError], error: type[tether.CallError]
) -> None:
    t = make_tether(BREAKER)
    upstream = t.upstream(raises(exc_type))
    for _ in range(4):
        await t.fail(upstream, error)
    await t.fail(upstream, tether.CircuitOpenError)
    assert upstream.calls == 4


async def test_misconfiguration_errors_do_not_count_as_failures(make_tether: MakeTether) -> None:
    t = make_tether(BREAKER)
    upstream = t.upstream(raises(httpx2.UnsupportedProtocol))
    for _ in range(10):
        await t.fail(upstream, tether.CallError)
    assert upstream.calls == 10


async def test_the_breaker_opening_mid_retry_stops_the_retries(make_tether: MakeTether) -> None:
    t = make_tether('retry = { attempts = 10, backoff = "1ms" }\nbreaker = { min_calls = 4, open_for = "30s" }')
    upstream = t.upstream(status(503))
    error = await t.fail(upstream, tether.CircuitOpenError)
    assert upstream.calls == 4
    assert [attempt.status for attempt in error.attempts] == [503] * 4
    assert error.retry_in == pytest.approx(30.0, abs=0.01)


async def test_breaker_transitions_are_logged_on_the_tether_logger(
    make_tether: MakeTether, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tether")
    t = make_tether(BREAKER)
    await t.trip()
    assert breaker_states(caplog) == [("WARNING", "open")]
    record = next(r for r in caplog.records if getattr(r, "tether", {}).get("event") == "breaker")
    assert record.tether == {"event": "breaker", "integration": "acme", "state": "open", "backend": "memory"}  # type: ignore[attr-defined]
    assert "circuit breaker open" in record.getMessage()
    t.clock.advance(30.0)
    await t.get(t.upstream(ok()))
    assert breaker_states(caplog)[-1] == ("INFO", "closed")


async def test_the_half_open_transition_is_logged(make_tether: MakeTether, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tether")
    t = make_tether(BREAKER)
    await t.trip()
    t.clock.advance(30.0)
    await t.get(t.upstream(ok()))
    assert [state for _, state in breaker_states(caplog)] == ["open", "half_open", "closed"]


@pytest.mark.parametrize("refusal", ["circuit_open", "paused"])
async def test_a_refused_call_is_not_logged_as_a_success(
    make_tether: MakeTether, caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    t = make_tether(BREAKER + 'timeout = "2s"')
    if refusal == "circuit_open":
        await t.trip()
    else:
        await t.get(t.upstream(status(429, {"Retry-After": "5"})))
    caplog.clear()
    await t.fail(t.upstream(ok()), tether.CircuitOpenError if refusal == "circuit_open" else tether.ThrottledError)
    calls = [r.tether for r in caplog.records if getattr(r, "tether", {}).get("event") == "call"]  # type: ignore[attr-defined]
    assert len(calls) == 1
    assert calls[0]["outcome"] != "success"


async def test_breaker_false_never_opens(make_tether: MakeTether) -> None:
    t = make_tether("retry = false\nbreaker = false")
    upstream = t.upstream(status(503))
    for _ in range(30):
        assert (await t.get(upstream)).status_code == 503
    assert upstream.calls == 30


async def test_an_open_breaker_rejects_at_once_without_io(make_tether: MakeTether) -> None:
    """A sanity bound, not a benchmark: rejecting must not touch the network or take pathologically long."""
    t = make_tether(BREAKER)
    upstream = await t.trip()
    network = httpx2.MockTransport(upstream)
    durations = []
    if t.mode == "sync":
        with t.hub.client("acme", network=network) as client:
            for _ in range(20):
                started = time.perf_counter()
                with pytest.raises(tether.CircuitOpenError):
                    client.get("/v1/things")
                durations.append(time.perf_counter() - started)
    else:
        async with t.hub.async_client("acme", network=network) as client:
            for _ in range(20):
                started = time.perf_counter()
                with pytest.raises(tether.CircuitOpenError):
                    await client.get("/v1/things")
                durations.append(time.perf_counter() - started)
    assert upstream.calls == 4
    assert t.waits == []
    assert min(durations) < 0.005


async def test_a_probe_that_ends_in_an_uncounted_error_does_not_wedge_the_breaker(make_tether: MakeTether) -> None:
    t = make_tether(BREAKER)
    await t.trip()
    t.clock.advance(30.0)
    await t.fail(t.upstream(raises(httpx2.UnsupportedProtocol)), tether.CallError)
    t.clock.advance(3600.0)
    upstream = t.upstream(ok())
    assert (await t.get(upstream)).status_code == 200

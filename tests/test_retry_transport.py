"""Retries, waits, deadlines and idempotency through real sync and async tether clients.

Each test runs twice, once through ``hub.client`` and once through ``hub.async_client``, against a fake upstream
behind ``httpx2.MockTransport``. Time is a :class:`ManualClock` that the fake sleep advances: nothing sleeps.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import httpx2
import pytest

import tether
from fakes import Timeline
from tether.config import parse_config
from tether.policies import ManualClock

TOML = """
[integrations.acme]
base_url = "https://api.acme.test"
timeout = {{ total = "{total}", connect = "5s"{read} }}
retry = {{ attempts = {attempts}, backoff = "{backoff}", max_backoff = "30s", budget = {budget} }}
breaker = false  # these tests are about retries; the breaker is tested on its own
{extra}
"""

Outcome = Callable[[httpx2.Request], httpx2.Response]


# --- fakes ---------------------------------------------------------------------------------------------


class Upstream:
    """A fake API that plays its outcomes in order, repeating the last one, and remembers what it was sent."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = outcomes
        self.requests: list[httpx2.Request] = []
        self.headers: list[httpx2.Headers] = []
        self.timeouts: list[dict[str, float]] = []
        self.started: list[float] = []
        self.clock: ManualClock | None = None

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        # The transport reuses one request object for every attempt: keep a copy of what each one carried.
        self.requests.append(request)
        self.headers.append(httpx2.Headers(request.headers))
        self.timeouts.append(dict(request.extensions["timeout"]))
        if self.clock is not None:
            self.started.append(self.clock.monotonic())
        outcome = self.outcomes[min(len(self.requests), len(self.outcomes)) - 1]
        return outcome(request)

    @property
    def calls(self) -> int:
        return len(self.requests)


def status(code: int, headers: dict[str, str] | None = None, **kwargs: Any) -> Outcome:
    return lambda request: httpx2.Response(code, headers=headers, **kwargs)


def ok(payload: object = None) -> Outcome:
    return lambda request: httpx2.Response(200, json={"ok": True} if payload is None else payload)


def raises(exc_type: type[httpx2.TransportError], message: str = "boom") -> Outcome:
    def outcome(request: httpx2.Request) -> httpx2.Response:
        raise exc_type(message, request=request)

    return outcome


def takes(seconds: float | Callable[[httpx2.Request], float], clock: ManualClock, then: Outcome) -> Outcome:
    """An outcome that arrives after ``seconds`` of (manual) time."""

    def outcome(request: httpx2.Request) -> httpx2.Response:
        clock.advance(seconds(request) if callable(seconds) else seconds)
        return then(request)

    return outcome


class BrokenBody(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A response body that drops the connection after its first chunk."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"items": ['
        raise httpx2.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"items": ['
        raise httpx2.ReadError("connection reset by peer")


def broken_body() -> Outcome:
    return lambda request: httpx2.Response(200, headers={"Content-Type": "application/json"}, stream=BrokenBody())


# --- a hub on manual time, driven through its sync or async client --------------------------------------


class Tether:
    """A hub whose calls go through its sync or its async client, so one test body covers both."""

    def __init__(self, mode: str, config: str) -> None:
        self.mode = mode
        self.timeline = Timeline()
        self.clock = self.timeline.clock
        self.hub = tether.Hub(
            parse_config(config, env={}),
            clock=self.clock,
            sleep=self.timeline.sleep,
            async_sleep=self.timeline.async_sleep,
        )

    @property
    def waits(self) -> list[float]:
        return self.timeline.waits

    async def request(
        self, upstream: Upstream, method: str, url: str, *, raise_for_status: bool = False, **kwargs: Any
    ) -> tether.TetherResponse:
        upstream.clock = self.clock
        network = httpx2.MockTransport(upstream)
        if self.mode == "sync":
            with self.hub.client("acme", network=network, raise_for_status=raise_for_status) as client:
                response = client.request(method, url, **kwargs)
        else:
            async with self.hub.async_client("acme", network=network, raise_for_status=raise_for_status) as client:
                response = await client.request(method, url, **kwargs)
        assert isinstance(response, tether.TetherResponse)
        return response

    def body(self, *chunks: bytes) -> Iterator[bytes] | AsyncIterator[bytes]:
        """A one-shot streamed request body of the right flavour for this client."""

        def sync_body() -> Iterator[bytes]:
            yield from chunks

        async def async_body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return sync_body() if self.mode == "sync" else async_body()


MakeTether = Callable[..., Tether]


@pytest.fixture(params=["sync", "async"])
def make_tether(request: pytest.FixtureRequest) -> MakeTether:
    def make(
        *,
        total: str = "30s",
        read: str | None = None,
        attempts: int = 4,
        backoff: str = "1s",
        budget: float = 0.2,
        extra: str = "",
        config: str | None = None,
    ) -> Tether:
        """A hub from TOML's template, or from ``config`` verbatim."""
        config = config or TOML.format(
            total=total,
            read=f', read = "{read}"' if read else "",
            attempts=attempts,
            backoff=backoff,
            budget=budget,
            extra=extra,
        )
        return Tether(request.param, config)

    return make


# --- retries -------------------------------------------------------------------------------------------


async def test_fails_twice_then_succeeds_on_the_third_attempt(make_tether: MakeTether) -> None:
    t = make_tether()
    upstream = Upstream(status(503), status(502), ok())
    response = await t.request(upstream, "GET", "/v1/things")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert upstream.calls == 3
    assert len(t.waits) == 2
    assert 0.0 <= t.waits[0] <= 1.0  # backoff * 2**0
    assert 0.0 <= t.waits[1] <= 2.0  # backoff * 2**1


async def test_success_reports_every_attempt_and_the_waits_in_response_extensions(make_tether: MakeTether) -> None:
    t = make_tether()
    response = await t.request(Upstream(status(503), status(500), ok()), "GET", "/v1/things")
    attempts = response.extensions["tether.attempts"]
    assert [attempt.number for attempt in attempts] == [1, 2, 3]
    assert [attempt.status for attempt in attempts] == [503, 500, 200]
    assert [attempt.wait for attempt in attempts] == [*t.waits, 0.0]
    assert response.extensions["tether.waited"] == pytest.approx(sum(t.waits))
    assert response.extensions["tether.integration"] == "acme"
    assert response.extensions["tether.elapsed"] == pytest.approx(sum(t.waits))


async def test_first_try_success_has_one_attempt_and_no_wait(make_tether: MakeTether) -> None:
    t = make_tether()
    response = await t.request(Upstream(ok()), "GET", "/v1/things")
    assert [attempt.status for attempt in response.extensions["tether.attempts"]] == [200]
    assert t.waits == []


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
async def test_retryable_status_is_retried(make_tether: MakeTether, code: int) -> None:
    t = make_tether()
    upstream = Upstream(status(code), ok())
    response = await t.request(upstream, "GET", "/v1/things")
    assert response.status_code == 200
    assert upstream.calls == 2


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422])
async def test_client_error_status_is_not_retried(make_tether: MakeTether, code: int) -> None:
    t = make_tether()
    upstream = Upstream(status(code), ok())
    response = await t.request(upstream, "GET", "/v1/things")
    assert response.status_code == code
    assert upstream.calls == 1
    assert t.waits == []


async def test_retries_stop_when_attempts_are_exhausted(make_tether: MakeTether) -> None:
    t = make_tether(attempts=3)
    upstream = Upstream(status(503))
    response = await t.request(upstream, "GET", "/v1/things")
    assert response.status_code == 503
    assert upstream.calls == 3
    assert len(t.waits) == 2


async def test_retry_false_makes_a_single_attempt(make_tether: MakeTether) -> None:
    t = make_tether(config='integrations.acme = { base_url = "https://api.acme.test", retry = false }')
    upstream = Upstream(status(503))
    await t.request(upstream, "GET", "/v1/things")
    assert upstream.calls == 1


# --- waits the server asks for -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_seconds_is_the_wait(make_tether: MakeTether, code: int) -> None:
    t = make_tether()
    upstream = Upstream(status(code, {"Retry-After": "2"}), ok())
    response = await t.request(upstream, "GET", "/v1/things")
    assert response.status_code == 200
    assert t.waits == [2.0]
    assert response.extensions["tether.attempts"][0].wait == 2.0


async def test_retry_after_http_date_is_the_wait_until_that_time(make_tether: MakeTether) -> None:
    t = make_tether()
    t.clock.advance(0.25)  # a wall clock off the whole second, as HTTP-dates never are
    asked: list[float] = []

    def rate_limited(request: httpx2.Request) -> httpx2.Response:
        date = formatdate(t.clock.wall() + 7, usegmt=True)
        asked.append(parsedate_to_datetime(date).timestamp() - t.clock.wall())
        return httpx2.Response(429, headers={"Retry-After": date})

    response = await t.request(Upstream(rate_limited, ok()), "GET", "/v1/things")
    assert response.status_code == 200
    assert t.waits == [pytest.approx(asked[0])]
    assert asked[0] == pytest.approx(6.75)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"X-RateLimit-Reset": str(1_700_000_000 + 5)}, 5.0),  # epoch seconds; ManualClock's wall starts here
        ({"RateLimit-Reset": "3"}, 3.0),
        ({"x-ratelimit-reset-requests": "1m30s"}, 90.0),
    ],
)
async def test_rate_limit_reset_is_the_wait_when_there_is_no_retry_after(
    make_tether: MakeTether, headers: dict[str, str], wait: float
) -> None:
    t = make_tether(total="5m")
    response = await t.request(Upstream(status(429, headers), ok()), "GET", "/v1/things")
    assert response.status_code == 200
    assert t.waits == [wait]


async def test_retry_after_wins_over_rate_limit_reset(make_tether: MakeTether) -> None:
    t = make_tether()
    headers = {"Retry-After": "2", "X-RateLimit-Reset": "9"}
    await t.request(Upstream(status(429, headers), ok()), "GET", "/v1/things")
    assert t.waits == [2.0]


async def test_retry_after_past_the_deadline_fails_at_once_without_sleeping(make_tether: MakeTether) -> None:
    t = make_tether(total="10s")
    upstream = Upstream(status(429, {"Retry-After": "60"}), ok())
    with pytest.raises(tether.RateLimitError) as caught:
        await t.request(upstream, "GET", "/v1/things", raise_for_status=True)
    assert upstream.calls == 1
    assert t.waits == []
    error = caught.value
    assert error.retry_after == 60.0
    assert "asked to wait 60.0s, more than the 10.0s left" in error.hint
    assert "timeout.total" in error.hint


async def test_server_error_with_retry_after_past_the_deadline_says_so_in_its_hint(make_tether: MakeTether) -> None:
    t = make_tether(total="10s")
    upstream = Upstream(status(503, {"Retry-After": "120"}))
    with pytest.raises(tether.ServerError) as caught:
        await t.request(upstream, "GET", "/v1/things", raise_for_status=True)
    assert upstream.calls == 1
    assert t.waits == []
    assert "asked to wait 120.0s" in caught.value.hint


async def test_retry_after_is_ignored_when_respect_retry_after_is_off(make_tether: MakeTether) -> None:
    t = make_tether(
        config="""
        [integrations.acme]
        base_url = "https://api.acme.test"
        timeout = "10s"
        retry = { backoff = "100ms", respect_retry_after = false }
        """
    )
    response = await t.request(Upstream(status(429, {"Retry-After": "60"}), ok()), "GET", "/v1/things")
    assert response.status_code == 200
    assert 0.0 <= t.waits[0] <= 0.1


async def test_malformed_retry_after_date_does_not_break_the_call(make_tether: MakeTether) -> None:
    t = make_tether()
    headers = {"Retry-After": "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"}
    response = await t.request(Upstream(status(429, headers), ok()), "GET", "/v1/things")
    assert response.status_code == 200


# --- transport errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_connect_error_is_retried_for_any_method(make_tether: MakeTether, method: str) -> None:
    t = make_tether()
    upstream = Upstream(raises(httpx2.ConnectError, "connection refused"), ok())
    response = await t.request(upstream, method, "/v1/things")
    assert response.status_code == 200
    assert upstream.calls == 2
    first = response.extensions["tether.attempts"][0]
    assert (first.status, first.error) == (None, "ConnectError: connection refused")


async def test_read_timeout_is_retried_for_get(make_tether: MakeTether) -> None:
    t = make_tether()
    upstream = Upstream(raises(httpx2.ReadTimeout, "timed out"), ok())
    response = await t.request(upstream, "GET", "/v1/things")
    assert response.status_code == 200
    assert upstream.calls == 2


async def test_read_timeout_is_not_retried_for_post_without_an_idempotency_key(make_tether: MakeTether) -> None:
    t = make_tether()
    upstream = Upstream(raises(httpx2.ReadTimeout, "timed out"), ok())
    with pytest.raises(tether.ReadTimeoutError):
        await t.request(upstream, "POST", "/v1/charges", json={"amount": 100})
    assert upstream.calls == 1


async def test_error_while_reading_the_body_is_retried(make_tether: MakeTether) -> None:
    t = make_tether()
    upstream = Upstream(broken_body(), ok({"items": [1, 2]}))
    response = await t.request(upstream, "GET", "/v1/things")
    assert response.json() == {"items": [1, 2]}
    assert upstream.calls == 2
    assert response.extensions["tether.attempts"][0].error == "ReadError: connection reset by peer"


async def test_body_that_keeps_breaking_ends_in_connection_lost(make_tether: MakeTether) -> None:
    t = make_tether(attempts=2)
    upstream = Upstream(broken_body())
    with pytest.raises(tether.ConnectionLostError) as caught:
        await t.request(upstream, "GET", "/v1/things")
    assert upstream.calls == 2
    assert isinstance(caught.value.__cause__, httpx2.ReadError)


async def test_fatal_transport_error_is_not_retried(make_tether: MakeTether) -> None:
    t = make_tether()
    upstream = Upstream(raises(httpx2.LocalProtocolError, "bad header"), ok())
    with pytest.raises(tether.ConnectionLostError):
        await t.request(upstream, "GET", "/v1/things")
    assert upstream.calls == 1


# --- idempotency and replay ----------------------------------------------------------------------------


async def test_post_to_503_is_not_retried_without_an_idempotency_key(make_tether: MakeTether) -> None:
    t = make_tether()
    upstream = Upstream(status(503), ok())
    response = await t.request(upstream, "POST", "/v1/charges", json={"amount": 100})
    assert response.status_code == 503
    assert upstream.calls == 1
    with pytest.raises(tether.ServerError) as caught:
        response.raise_for_status()
    assert "POST without an idempotency key could run twice" in caught.value.hint


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_configured_idempotency_key_makes_post_retried_with_the_same_key(
    make_tether: MakeTether, method: str
) -> None:
    t = make_tether(extra='idempotency_header = "Idempotency-Key"')
    upstream = Upstream(status(503), status(500), ok())
    response = await t.request(upstream, method, "/v1/charges", json={"amount": 100})
    assert response.status_code == 200
    assert upstream.calls == 3
    keys = [headers["Idempotency-Key"] for headers in upstream.headers]
    assert len(set(keys)) == 1
    assert uuid.UUID(keys[0])


async def test_two_logical_calls_get_different_idempotency_keys(make_tether: MakeTether) -> None:
    t = make_tether(extra='idempotency_header = "Idempotency-Key"')
    upstream = Upstream(ok())
    await t.request(upstream, "POST", "/v1/charges", json={"amount": 100})
    await t.request(upstream, "POST", "/v1/charges", json={"amount": 100})
    first, second = (headers["Idempotency-Key"] for headers in upstream.headers)
    assert first != second


async def test_get_gets_no_generated_idempotency_key(make_tether: MakeTether) -> None:
    t = make_tether(extra='idempotency_header = "Idempotency-Key"')
    upstream = Upstream(ok())
    await t.request(upstream, "GET", "/v1/things")
    assert "Idempotency-Key" not in upstream.headers[0]


async def test_user_supplied_idempotency_key_is_kept_on_every_attempt(make_tether: MakeTether) -> None:
    t = make_tether(extra='idempotency_header = "Idempotency-Key"')
    upstream = Upstream(status(503), ok())
    headers = {"Idempotency-Key": "order-42"}
    await t.request(upstream, "POST", "/v1/charges", json={"amount": 1}, headers=headers)
    assert [sent["Idempotency-Key"] for sent in upstream.headers] == ["order-42", "order-42"]


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Idempotency-Key"])
async def test_user_supplied_idempotency_key_makes_post_retryable_without_config(
    make_tether: MakeTether, header: str
) -> None:
    t = make_tether()
    upstream = Upstream(status(503), ok())
    response = await t.request(upstream, "POST", "/v1/charges", json={"amount": 1}, headers={header: "order-42"})
    assert response.status_code == 200
    assert upstream.calls == 2


async def test_streamed_request_body_is_never_replayed(make_tether: MakeTether) -> None:
    t = make_tether()
    upstream = Upstream(status(503), ok())
    response = await t.request(upstream, "PUT", "/v1/files/a", content=t.body(b"part one, ", b"part two"))
    assert response.status_code == 503
    assert upstream.calls == 1
    assert upstream.requests[0].content == b"part one, part two"


async def test_streamed_request_body_is_not_replayed_even_after_a_connect_error(make_tether: MakeTether) -> None:
    t = make_tether()
    upstream = Upstream(raises(httpx2.ConnectError, "refused"), ok())
    with pytest.raises(tether.ConnectionFailedError):
        await t.request(upstream, "PUT", "/v1/files/a", content=t.body(b"data"))
    assert upstream.calls == 1


# --- the retry budget ----------------------------------------------------------------------------------


async def test_retry_budget_caps_retries_at_its_ratio_of_calls(make_tether: MakeTether) -> None:
    t = make_tether(backoff="1ms", budget=0.2)
    upstream = Upstream(status(503))
    calls = 100
    for _ in range(calls):
        response = await t.request(upstream, "GET", "/v1/things")
        assert response.status_code == 503
    assert t.clock.monotonic() < 10.0  # every call happened inside one budget window
    retries = upstream.calls - calls
    assert retries <= max(10, int(0.2 * calls))
    assert retries == len(t.waits) > 0


async def test_retry_budget_is_shared_by_every_client_and_refills_after_the_window(make_tether: MakeTether) -> None:
    t = make_tether(backoff="1ms", budget=0.2)
    upstream = Upstream(status(503))
    for _ in range(5):  # at 5 calls the floor of 10 retries applies, and 5 calls want 15
        await t.request(upstream, "GET", "/v1/things")
    assert upstream.calls == 5 + 10
    other = Upstream(status(503))
    await t.request(other, "GET", "/v1/things")
    assert other.calls == 1  # no retry left for a new client of the same integration
    t.clock.advance(10.0)
    refilled = Upstream(status(503), ok())
    assert (await t.request(refilled, "GET", "/v1/things")).status_code == 200
    assert refilled.calls == 2


async def test_budget_of_one_turns_the_budget_off(make_tether: MakeTether) -> None:
    t = make_tether(backoff="1ms", budget=1.0)
    upstream = Upstream(status(503))
    for _ in range(10):
        await t.request(upstream, "GET", "/v1/things")
    assert upstream.calls == 10 * 4


# --- the deadline --------------------------------------------------------------------------------------


async def test_per_attempt_timeouts_shrink_to_the_remaining_deadline(make_tether: MakeTether) -> None:
    t = make_tether(total="10s", read="4s", attempts=10, backoff="100ms")

    def slow(request: httpx2.Request) -> httpx2.Response:
        """Answers 503 after 2.5 s, or times out first when the attempt's read limit is shorter."""
        limit = request.extensions["timeout"]["read"]
        t.clock.advance(min(2.5, limit))
        if limit < 2.5:
            raise httpx2.ReadTimeout("timed out", request=request)
        return httpx2.Response(503)

    upstream = Upstream(slow)
    with pytest.raises(tether.DeadlineExceededError):
        await t.request(upstream, "GET", "/v1/things")
    assert upstream.calls == 4
    for started, timeouts in zip(upstream.started, upstream.timeouts, strict=True):
        remaining = 10.0 - started
        assert timeouts == {
            "connect": pytest.approx(min(5.0, remaining)),
            "read": pytest.approx(min(4.0, remaining)),
            "write": pytest.approx(remaining),  # no write limit: the deadline bounds it
            "pool": pytest.approx(min(5.0, remaining)),
        }
    assert upstream.timeouts[0]["read"] == 4.0
    assert upstream.timeouts[-1]["read"] < 2.5
    assert t.clock.monotonic() == pytest.approx(10.0)


async def test_deadline_running_out_across_timeouts_raises_deadline_exceeded(make_tether: MakeTether) -> None:
    t = make_tether(total="10s", read="3s", attempts=20)
    slow = takes(lambda request: request.extensions["timeout"]["read"], t.clock, raises(httpx2.ReadTimeout))
    upstream = Upstream(slow)
    with pytest.raises(tether.DeadlineExceededError) as caught:
        await t.request(upstream, "GET", "/v1/things")
    error = caught.value
    assert isinstance(error, httpx2.TimeoutException)
    assert upstream.calls > 1
    assert t.clock.monotonic() <= 10.0
    assert "10s deadline ran out" in str(error)
    assert "raise timeout.total" in error.hint
    assert isinstance(error.__cause__, httpx2.ReadTimeout)


async def test_deadline_running_out_during_backoff_ends_with_the_status_error_and_a_hint(
    make_tether: MakeTether,
) -> None:
    t = make_tether(total="3500ms", backoff="100ms", attempts=20)
    upstream = Upstream(takes(1.0, t.clock, status(503)))
    with pytest.raises(tether.ServerError) as caught:
        await t.request(upstream, "GET", "/v1/things", raise_for_status=True)
    assert 2 <= upstream.calls <= 4
    assert "(deadline exceeded)" in caught.value.hint
    assert t.clock.monotonic() <= 3.5 + 1.0  # at most the attempt that was already under way overran


# --- what a failed call reports ------------------------------------------------------------------------


async def test_giving_up_lists_every_attempt_with_its_status_or_error_and_wait(make_tether: MakeTether) -> None:
    t = make_tether(attempts=4)
    upstream = Upstream(
        raises(httpx2.ConnectError, "connection refused"),
        status(502),
        raises(httpx2.ReadTimeout, "timed out"),
        status(503, {"X-Request-Id": "req_last"}),
    )
    with pytest.raises(tether.ServerError) as caught:
        await t.request(upstream, "GET", "/v1/things", raise_for_status=True)
    attempts = caught.value.attempts
    assert [(a.number, a.status, a.error) for a in attempts] == [
        (1, None, "ConnectError: connection refused"),
        (2, 502, None),
        (3, None, "ReadTimeout: timed out"),
        (4, 503, None),
    ]
    assert [a.wait for a in attempts] == [*t.waits, 0.0]
    assert attempts[-1].request_id == "req_last"
    assert "after 3 retries (attempts exhausted)" in caught.value.hint


async def test_response_raise_for_status_raises_the_typed_error(make_tether: MakeTether) -> None:
    t = make_tether(attempts=2)
    response = await t.request(Upstream(status(503)), "GET", "/v1/things")
    assert response.status_code == 503
    with pytest.raises(tether.ServerError) as caught:
        response.raise_for_status()
    assert caught.value is response.extensions["tether.error"]
    assert caught.value.response is response
    assert len(caught.value.attempts) == 2


async def test_raise_for_status_returns_the_response_on_success(make_tether: MakeTether) -> None:
    t = make_tether()
    response = await t.request(Upstream(ok()), "GET", "/v1/things")
    assert response.raise_for_status() is response


async def test_client_with_raise_for_status_raises_from_the_call_itself(make_tether: MakeTether) -> None:
    t = make_tether()
    with pytest.raises(tether.NotFoundError):
        await t.request(Upstream(status(404)), "GET", "/v1/things/missing", raise_for_status=True)


async def test_raise_for_status_can_be_chosen_per_request(make_tether: MakeTether) -> None:
    t = make_tether()
    with pytest.raises(tether.NotFoundError):
        await t.request(Upstream(status(404)), "GET", "/v1/x", extensions={"tether.raise_for_status": True})
    response = await t.request(
        Upstream(status(404)), "GET", "/v1/x", raise_for_status=True, extensions={"tether.raise_for_status": False}
    )
    assert response.status_code == 404


async def test_status_errors_are_caught_as_httpx2_http_status_errors(make_tether: MakeTether) -> None:
    t = make_tether(attempts=1)
    with pytest.raises(httpx2.HTTPStatusError) as caught:
        await t.request(Upstream(status(500)), "GET", "/v1/things", raise_for_status=True)
    assert isinstance(caught.value, tether.ServerError)
    assert caught.value.response.status_code == 500


async def test_timeout_errors_are_caught_as_httpx2_timeout_exceptions(make_tether: MakeTether) -> None:
    t = make_tether(attempts=2)
    with pytest.raises(httpx2.TimeoutException) as caught:
        await t.request(Upstream(raises(httpx2.ReadTimeout)), "GET", "/v1/things")
    assert isinstance(caught.value, tether.ReadTimeoutError)
    assert isinstance(caught.value, httpx2.ReadTimeout)


def test_a_failed_call_prints_nothing_when_the_application_has_not_configured_logging() -> None:
    script = """
import httpx2, tether
from tether.config import parse_config
hub = tether.Hub(parse_config('integrations.acme = { base_url = "https://api.acme.test", retry = false }'))
def refuse(request):
    raise httpx2.ConnectError("connection refused", request=request)
try:
    hub.client("acme", network=httpx2.MockTransport(refuse)).get("/v1/things")
except tether.ConnectionFailedError:
    pass
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert result.stderr == ""


def test_a_failed_call_writes_a_warning_on_the_tether_logger(caplog: pytest.LogCaptureFixture) -> None:
    hub = tether.Hub(
        parse_config('integrations.acme = { base_url = "https://api.acme.test", retry = false }'),
        clock=ManualClock(),
        sleep=Timeline().sleep,
    )
    with hub.client("acme", network=httpx2.MockTransport(Upstream(status(503)))) as client:
        client.get("/v1/things")
    records = [record for record in caplog.records if record.name == "tether" and record.levelname == "WARNING"]
    assert len(records) == 1
    assert records[0].tether["status"] == 503  # type: ignore[attr-defined]


def test_clients_remember_joined_urls_per_base_url() -> None:
    """The joined-URL cache follows a changed ``base_url`` and never serves a URL from the old one."""
    from tether.client.clients import TetherClient

    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200)

    with TetherClient(base_url="http://a.test/v1", transport=httpx2.MockTransport(handler)) as client:
        client.get("/items")
        client.get("/items")
        client.base_url = httpx2.URL("http://b.test/v2/")
        client.get("/items")
        client.get("http://c.test/absolute")
    assert seen == [
        "http://a.test/v1/items",
        "http://a.test/v1/items",
        "http://b.test/v2/items",
        "http://c.test/absolute",
    ]

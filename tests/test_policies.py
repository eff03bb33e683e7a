"""The sans-IO policies on their own: backoff, the retry budget, wait headers and the retry decision. No HTTP."""

from __future__ import annotations

import random
import ssl
from email.utils import formatdate

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.config.models import DEFAULT_RETRY_STATUSES, IDEMPOTENT_METHODS, RetryConfig
from tether.policies import Backoff, GiveUp, ManualClock, RetryBudget, RetryPolicy, RetryState
from tether.policies.headers import parse_rate_limit_reset, parse_retry_after, retry_wait_from_headers
from tether.policies.retry import ErrorKind, classify_exception

NOW = 1_700_000_000.0
REQUEST = httpx2.Request("GET", "https://api.acme.test/v1/things")


# --- Backoff -------------------------------------------------------------------------------------------


@given(
    base=st.floats(min_value=0.001, max_value=100.0),
    cap=st.floats(min_value=0.001, max_value=1_000.0),
    retry=st.integers(min_value=0, max_value=10_000),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_every_delay_lies_between_zero_and_the_capped_exponential_ceiling(
    base: float, cap: float, retry: int, draw: float
) -> None:
    backoff = Backoff(base=base, cap=cap, random=lambda: draw)
    delay = backoff.delay(retry)
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(retry, 62))
    assert delay <= cap


@given(retry=st.integers(min_value=0, max_value=100))
def test_delays_with_the_real_random_source_stay_within_bounds(retry: int) -> None:
    backoff = Backoff(base=0.5, cap=20.0)
    assert 0.0 <= backoff.delay(retry) <= min(20.0, 0.5 * 2**retry)


@given(seed=st.integers(), retries=st.integers(min_value=1, max_value=30))
def test_delays_are_deterministic_with_an_injected_random_source(seed: int, retries: int) -> None:
    first = Backoff(base=1.0, cap=30.0, random=random.Random(seed).random)
    second = Backoff(base=1.0, cap=30.0, random=random.Random(seed).random)
    assert [first.delay(n) for n in range(retries)] == [second.delay(n) for n in range(retries)]


def test_delay_is_the_random_draw_times_the_ceiling() -> None:
    backoff = Backoff(base=1.0, cap=30.0, random=lambda: 0.25)
    assert [backoff.delay(n) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 7.5]


def test_ceiling_doubles_each_retry_until_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    assert [backoff.ceiling(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_ceiling_does_not_overflow_for_absurd_retry_counts() -> None:
    assert Backoff(base=1.0, cap=30.0).ceiling(10**9) == 30.0


# --- RetryBudget ---------------------------------------------------------------------------------------


def spend(budget: RetryBudget, count: int) -> int:
    """Try ``count`` retries; how many the budget allowed."""
    return sum(budget.try_spend() for _ in range(count))


def test_budget_allows_min_retries_at_low_traffic() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=10, clock=ManualClock())
    budget.record_call()
    assert spend(budget, 10) == 10
    assert budget.try_spend() is False


def test_budget_allows_min_retries_even_with_no_calls_recorded() -> None:
    budget = RetryBudget(ratio=0.2, min_retries=3, clock=ManualClock())
    assert spend(budget, 5) == 3


def test_budget_caps_retries_at_the_ratio_of_recent_calls() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=10, clock=ManualClock())
    for _ in range(200):
        budget.record_call()
    assert spend(budget, 100) == 40


def test_budget_grows_as_more_calls_are_recorded() -> None:
    budget = RetryBudget(ratio=0.5, window=10.0, min_retries=0, clock=ManualClock())
    budget.record_call()
    assert budget.try_spend() is False  # int(0.5 * 1) == 0
    budget.record_call()
    assert budget.try_spend() is True
    assert budget.try_spend() is False


def test_window_expiry_frees_the_budget() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=10, clock=clock)
    budget.record_call()
    assert spend(budget, 20) == 10
    clock.advance(9.9)
    assert budget.try_spend() is False
    clock.advance(0.1)  # the retries made at t=0 are now exactly one window old
    assert spend(budget, 20) == 10


def test_retries_expire_one_by_one_as_the_window_slides() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, window=10.0, min_retries=2, clock=clock)
    assert budget.try_spend() is True  # t=0
    clock.advance(5.0)
    assert budget.try_spend() is True  # t=5
    assert budget.try_spend() is False
    clock.advance(5.0)  # t=10: the first retry left the window, the second has not
    assert budget.try_spend() is True
    assert budget.try_spend() is False


def test_old_calls_stop_counting_towards_the_ratio() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.5, window=10.0, min_retries=0, clock=clock)
    for _ in range(10):
        budget.record_call()
    clock.advance(10.0)
    assert budget.try_spend() is False


# --- Retry-After and rate-limit reset headers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2", 2.0), ("0", 0.0), ("2.5", 2.5), (" 120 ", 120.0)],
)
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_http_date_in_the_future_is_the_seconds_until_then() -> None:
    assert parse_retry_after(formatdate(NOW + 30, usegmt=True), now=NOW) == 30.0


def test_retry_after_http_date_is_measured_from_the_given_now() -> None:
    assert parse_retry_after(formatdate(NOW + 30, usegmt=True), now=NOW + 0.25) == pytest.approx(29.75)


def test_retry_after_http_date_in_the_past_means_no_wait() -> None:
    assert parse_retry_after(formatdate(NOW - 3600, usegmt=True), now=NOW) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",
        "1e3",
        "5 seconds",
        "Mon, 32 Jan 2024 00:00:00 GMT",
        "Mon, 01 Jan 2024 99:00:00 GMT",
        "Mon, 01 Jan 2024 00:00:00",  # no zone: ambiguous, so ignored
    ],
)
def test_retry_after_garbage_is_treated_as_absent(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@given(value=st.text())
def test_retry_after_never_raises_on_arbitrary_text(value: str) -> None:
    wait = parse_retry_after(value, now=NOW)
    assert wait is None or wait >= 0.0


def test_retry_after_with_an_absurd_year_is_treated_as_absent() -> None:
    assert parse_retry_after("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", now=NOW) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (str(int(NOW) + 42), 42.0),  # epoch seconds (GitHub)
        (str(int(NOW) - 42), 0.0),  # an epoch already passed
        ("30", 30.0),  # delta seconds (IETF RateLimit-Reset)
        ("1.5", 1.5),
        ("12ms", 0.012),  # OpenAI's durations
        ("1m30s", 90.0),
        ("6m0s", 360.0),
        ("2s", 2.0),
    ],
)
def test_rate_limit_reset_accepts_epochs_deltas_and_durations(value: str, seconds: float) -> None:
    assert parse_rate_limit_reset(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "  ", "soon", "-3", "5 minutes", "1m30", "ms", "inf", "nan"])
def test_rate_limit_reset_garbage_is_treated_as_absent(value: str | None) -> None:
    assert parse_rate_limit_reset(value, now=NOW) is None


@given(value=st.text())
def test_rate_limit_reset_never_raises_on_arbitrary_text(value: str) -> None:
    wait = parse_rate_limit_reset(value, now=NOW)
    assert wait is None or wait >= 0.0


def test_retry_after_wins_over_rate_limit_reset_headers() -> None:
    headers = httpx2.Headers({"Retry-After": "3", "X-RateLimit-Reset": str(int(NOW) + 60)})
    assert retry_wait_from_headers(headers, now=NOW) == 3.0


@pytest.mark.parametrize(
    "name", ["X-RateLimit-Reset", "RateLimit-Reset", "x-ratelimit-reset-requests", "X-Rate-Limit-Reset"]
)
def test_rate_limit_reset_headers_are_used_without_retry_after(name: str) -> None:
    assert retry_wait_from_headers(httpx2.Headers({name: "7"}), now=NOW) == 7.0


def test_a_malformed_retry_after_falls_back_to_the_reset_header() -> None:
    headers = httpx2.Headers({"Retry-After": "whenever", "X-RateLimit-Reset": "4"})
    assert retry_wait_from_headers(headers, now=NOW) == 4.0


def test_no_wait_headers_means_no_requested_wait() -> None:
    assert retry_wait_from_headers(httpx2.Headers({"Content-Type": "application/json"}), now=NOW) is None


# --- RetryState ----------------------------------------------------------------------------------------


def policy(**overrides: object) -> RetryPolicy:
    fields: dict[str, object] = {
        "attempts": 4,
        "backoff": Backoff(base=1.0, cap=30.0, random=lambda: 0.5),
        "statuses": DEFAULT_RETRY_STATUSES,
        "methods": IDEMPOTENT_METHODS,
    }
    fields.update(overrides)
    return RetryPolicy(**fields)  # type: ignore[arg-type]


def retry_state(
    clock: ManualClock | None = None,
    *,
    budget: RetryBudget | None = None,
    deadline: float = 30.0,
    idempotent: bool = True,
    replayable: bool = True,
    **policy_overrides: object,
) -> RetryState:
    return RetryState(
        policy(**policy_overrides),
        budget=budget,
        clock=clock or ManualClock(),
        deadline=deadline,
        idempotent=idempotent,
        replayable=replayable,
    )


@pytest.mark.parametrize("status", sorted(DEFAULT_RETRY_STATUSES))
def test_retryable_status_is_retried_after_the_backoff(status: int) -> None:
    state = retry_state()
    assert state.on_response(status, {}) == 0.5
    assert state.give_up is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_non_retryable_status_ends_the_call(status: int) -> None:
    state = retry_state()
    assert state.on_response(status, {}) is None
    assert state.give_up is GiveUp.NOT_RETRYABLE


def test_success_ends_the_call_as_success() -> None:
    state = retry_state()
    assert state.on_response(200, {}) is None
    assert state.give_up is GiveUp.SUCCESS
    assert [attempt.status for attempt in state.attempts] == [200]


def test_waits_follow_the_backoff_ceiling_of_each_retry() -> None:
    state = retry_state(attempts=5)
    assert [state.on_response(503, {}) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, None]


def test_attempts_exhausted_ends_the_call() -> None:
    state = retry_state(attempts=3)
    assert state.on_response(503, {}) is not None
    assert state.on_response(503, {}) is not None
    assert state.on_response(503, {}) is None
    assert state.give_up is GiveUp.ATTEMPTS
    assert len(state.attempts) == 3


def test_each_attempt_records_its_status_elapsed_time_and_the_wait_after_it() -> None:
    clock = ManualClock()
    state = retry_state(clock, attempts=3)
    for status, took in [(502, 0.2), (503, 0.3), (200, 0.1)]:
        state.begin_attempt({})
        clock.advance(took)
        wait = state.on_response(status, {"x-request-id": "ignored"}, request_id=f"req-{status}")
        if wait is not None:
            clock.advance(wait)
    assert [(a.number, a.status, a.elapsed, a.wait, a.request_id) for a in state.attempts] == [
        (1, 502, pytest.approx(0.2), 0.5, "req-502"),
        (2, 503, pytest.approx(0.3), 1.0, "req-503"),
        (3, 200, pytest.approx(0.1), 0.0, "req-200"),
    ]
    assert state.elapsed() == pytest.approx(2.1)


def test_non_idempotent_request_is_not_retried_on_a_status() -> None:
    state = retry_state(idempotent=False)
    assert state.on_response(503, {}) is None
    assert state.give_up is GiveUp.NOT_IDEMPOTENT


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ConnectError("refused", request=REQUEST),
        httpx2.ConnectTimeout("connect timed out", request=REQUEST),
        httpx2.PoolTimeout("no free connection", request=REQUEST),
    ],
    ids=type,
)
def test_connect_failure_is_retried_even_when_not_idempotent(exc: Exception) -> None:
    state = retry_state(idempotent=False)
    assert state.on_error(exc) == 0.5


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ReadTimeout("read timed out", request=REQUEST),
        httpx2.ReadError("reset", request=REQUEST),
        httpx2.RemoteProtocolError("peer closed", request=REQUEST),
    ],
    ids=type,
)
def test_failure_after_sending_is_retried_only_when_idempotent(exc: Exception) -> None:
    assert retry_state(idempotent=True).on_error(exc) == 0.5
    state = retry_state(idempotent=False)
    assert state.on_error(exc) is None
    assert state.give_up is GiveUp.NOT_IDEMPOTENT


def test_error_attempt_records_the_exception_class_and_message() -> None:
    state = retry_state()
    state.on_error(httpx2.ConnectError("connection refused", request=REQUEST))
    assert state.attempts[0].status is None
    assert state.attempts[0].error == "ConnectError: connection refused"


def test_not_replayable_body_is_never_retried_even_after_a_connect_error() -> None:
    for outcome in (lambda s: s.on_response(503, {}), lambda s: s.on_error(httpx2.ConnectError("x"))):
        state = retry_state(replayable=False)
        assert outcome(state) is None
        assert state.give_up is GiveUp.NOT_REPLAYABLE


def test_fatal_transport_error_is_not_retried() -> None:
    state = retry_state()
    assert state.on_error(httpx2.UnsupportedProtocol("ftp://", request=REQUEST)) is None
    assert state.give_up is GiveUp.NOT_RETRYABLE


def test_refused_certificate_is_not_retried() -> None:
    exc = httpx2.ConnectError("certificate verify failed", request=REQUEST)
    exc.__cause__ = ssl.SSLCertVerificationError("certificate has expired")
    state = retry_state()
    assert state.on_error(exc) is None
    assert state.give_up is GiveUp.NOT_RETRYABLE


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx2.ConnectError("x"), ErrorKind.CONNECT),
        (httpx2.ConnectTimeout("x"), ErrorKind.CONNECT),
        (httpx2.PoolTimeout("x"), ErrorKind.CONNECT),
        (httpx2.ReadTimeout("x"), ErrorKind.TIMEOUT),
        (httpx2.WriteTimeout("x"), ErrorKind.TIMEOUT),
        (httpx2.ReadError("x"), ErrorKind.BODY),
        (httpx2.WriteError("x"), ErrorKind.BODY),
        (httpx2.RemoteProtocolError("x"), ErrorKind.BODY),
        (httpx2.LocalProtocolError("x"), ErrorKind.FATAL),
        (httpx2.UnsupportedProtocol("x"), ErrorKind.FATAL),
        (httpx2.ProxyError("x"), ErrorKind.FATAL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.value,
)
def test_transport_exceptions_are_classified_by_how_they_bear_on_retrying(exc: Exception, kind: ErrorKind) -> None:
    assert classify_exception(exc) is kind


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_on_429_and_503(status: int) -> None:
    state = retry_state()
    assert state.on_response(status, {"retry-after": "7"}) == 7.0
    assert state.requested_wait == 7.0
    assert state.attempts[-1].wait == 7.0


def test_rate_limit_reset_is_honoured_without_retry_after() -> None:
    clock = ManualClock(wall_start=NOW)
    state = retry_state(clock)
    assert state.on_response(429, {"x-ratelimit-reset": str(int(NOW) + 12)}) == 12.0


def test_retry_after_http_date_is_measured_against_the_wall_clock() -> None:
    clock = ManualClock(start=500.0, wall_start=NOW)
    state = retry_state(clock)
    assert state.on_response(503, {"retry-after": formatdate(NOW + 9, usegmt=True)}) == 9.0


def test_retry_after_on_other_statuses_is_ignored_in_favour_of_backoff() -> None:
    state = retry_state()
    assert state.on_response(500, {"retry-after": "7"}) == 0.5
    assert state.requested_wait is None


def test_retry_after_is_ignored_when_not_respected() -> None:
    state = retry_state(respect_retry_after=False)
    assert state.on_response(429, {"retry-after": "7"}) == 0.5


def test_requested_wait_past_the_deadline_gives_up_at_once() -> None:
    state = retry_state(deadline=10.0)
    assert state.on_response(429, {"retry-after": "60"}) is None
    assert state.give_up is GiveUp.WAIT_PAST_DEADLINE
    assert state.requested_wait == 60.0


def test_requested_wait_that_fits_the_remaining_deadline_is_taken() -> None:
    clock = ManualClock()
    state = retry_state(clock, deadline=10.0)
    clock.advance(4.0)
    assert state.on_response(429, {"retry-after": "5"}) == 5.0
    assert retry_state(clock, deadline=10.0).on_response(429, {"retry-after": "10"}) is None


def test_backoff_past_the_deadline_gives_up_as_deadline_exceeded() -> None:
    state = retry_state(deadline=5.0, backoff=Backoff(base=20.0, cap=30.0, random=lambda: 0.5))
    assert state.on_response(503, {}) is None
    assert state.give_up is GiveUp.DEADLINE


def test_no_retry_once_the_deadline_has_passed() -> None:
    clock = ManualClock()
    state = retry_state(clock, deadline=5.0)
    clock.advance(5.0)
    assert state.on_error(httpx2.ConnectError("x")) is None
    assert state.give_up is GiveUp.DEADLINE


def test_budget_exhaustion_gives_up() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_retries=1, clock=clock)
    first = retry_state(clock, budget=budget)
    assert first.on_response(503, {}) == 0.5
    assert first.on_response(503, {}) is None
    assert first.give_up is GiveUp.BUDGET
    second = retry_state(clock, budget=budget)
    assert second.on_error(httpx2.ConnectError("x")) is None
    assert second.give_up is GiveUp.BUDGET


def test_each_call_is_recorded_in_the_budget() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.5, min_retries=0, clock=clock)
    for _ in range(4):
        retry_state(clock, budget=budget)
    assert spend(budget, 5) == 2


def test_a_wait_that_does_not_fit_spends_nothing_from_the_budget() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_retries=1, clock=clock)
    assert retry_state(clock, budget=budget, deadline=5.0).on_response(429, {"retry-after": "60"}) is None
    assert budget.try_spend() is True


def test_begin_attempt_cuts_each_time_limit_to_the_remaining_deadline() -> None:
    clock = ManualClock()
    state = retry_state(clock, deadline=10.0)
    limits = {"connect": 5.0, "read": None, "write": 20.0, "pool": 5.0}
    assert state.begin_attempt(limits) == {"connect": 5.0, "read": 10.0, "write": 10.0, "pool": 5.0}
    clock.advance(7.5)
    assert state.begin_attempt(limits) == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


def test_begin_attempt_never_hands_out_a_zero_or_negative_time_limit() -> None:
    clock = ManualClock()
    state = retry_state(clock, deadline=1.0)
    clock.advance(3.0)
    assert all(value is not None and value > 0 for value in state.begin_attempt({"read": None}).values())


def test_policy_from_config_carries_every_setting() -> None:
    config = RetryConfig(attempts=6, backoff=0.25, max_backoff=8.0, statuses=[503], methods=["get"])
    built = RetryPolicy.from_config(config)
    assert built.attempts == 6
    assert (built.backoff.base, built.backoff.cap) == (0.25, 8.0)
    assert built.statuses == frozenset({503})
    assert built.methods == frozenset({"GET"})
    assert built.respect_retry_after is True

"""Client-side rate limiting without HTTP: rate strings, GCRA's invariants, the headers APIs send about their
limits, and the in-memory state that every client of an integration shares."""

from __future__ import annotations

import math
from email.utils import formatdate
from itertools import pairwise

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.policies import ManualClock
from tether.policies.endpoints import EndpointRules
from tether.policies.ratelimit import GCRA, Rate, RateLimitSignal, read_rate_limit_headers, tokens_used
from tether.state.base import GO, Limits
from tether.state.memory import MemoryState

NOW = 1_700_000_000.0
EPSILON = 1e-9


# --- Rate.parse ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "requests", "per"),
    [
        ("100/s", 100, 1.0),
        ("6000/1m", 6000, 60.0),
        ("10/sec", 10, 1.0),
        ("10/secs", 10, 1.0),
        ("10/second", 10, 1.0),
        ("10/seconds", 10, 1.0),
        ("1000/hour", 1000, 3600.0),
        ("1000/hours", 1000, 3600.0),
        ("5/30s", 5, 30.0),
        ("2/min", 2, 60.0),
        ("2/minute", 2, 60.0),
        ("50000/day", 50000, 86400.0),
        ("10/500ms", 10, 0.5),
        ("1.5/s", 1.5, 1.0),
        ("7/5", 7, 5.0),  # a bare number is seconds, as everywhere in tether.toml
        ("  100 / s  ", 100, 1.0),
    ],
)
def test_rate_parse_reads_the_count_and_the_window(text: str, requests: float, per: float) -> None:
    rate = Rate.parse(text)
    assert (rate.requests, rate.per, rate.burst) == (requests, pytest.approx(per), 1)


@pytest.mark.parametrize(
    "text",
    ["", "fast", "100", "/s", "s/100", "100/fortnight", "100 per second", "0/s", "-5/s", "10/0s", "1/2/3", "1e3/s"],
)
def test_rate_parse_rejects_garbage_with_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate|positive"):
        Rate.parse(text)


def test_rate_parse_rejects_a_rate_without_a_window() -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate.parse("100/")


@given(requests=st.integers(1, 1_000_000), seconds=st.integers(1, 100_000))
def test_rate_parse_reads_back_any_count_over_any_whole_number_of_seconds(requests: int, seconds: int) -> None:
    assert Rate.parse(f"{requests}/{seconds}s") == Rate(requests, seconds)


def test_rate_parse_passes_the_burst_through() -> None:
    assert Rate.parse("10/s", burst=5) == Rate(10, 1.0, 5)


@pytest.mark.parametrize(("requests", "per", "burst"), [(0, 1, 1), (-1, 1, 1), (1, 0, 1), (1, -2, 1), (1, 1, 0)])
def test_rate_refuses_non_positive_values(requests: float, per: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"positive|burst"):
        Rate(requests, per, burst)


def test_rate_interval_is_the_window_over_the_count_and_it_prints_compactly() -> None:
    assert Rate(100, 1.0).interval == pytest.approx(0.01)
    assert Rate(6000, 60.0).interval == pytest.approx(0.01)
    assert str(Rate(6000, 60.0)) == "6000/60s"


# --- GCRA ----------------------------------------------------------------------------------------------

RATES = st.builds(
    Rate,
    requests=st.integers(1, 50),
    per=st.sampled_from([0.1, 0.5, 1.0, 2.0, 60.0]),
    burst=st.integers(1, 10),
)
GAPS = st.lists(st.floats(min_value=0.0, max_value=3.0, allow_nan=False), min_size=1, max_size=60)


def _send_times(rate: Rate, gaps: list[float], max_wait: float) -> list[float]:
    """Arrivals at the cumulated ``gaps``; the time each admitted request goes (arrival + its wait)."""
    gcra, tat, now, sent = GCRA(rate), None, 0.0, []
    for gap in gaps:
        now += gap
        wait, tat = gcra.reserve(tat, now, max_wait=max_wait)
        if wait is not None:
            sent.append(now + wait)
    return sent


@given(rate=RATES, gaps=GAPS, max_wait=st.floats(min_value=0.0, max_value=100.0))
def test_no_window_admits_more_than_the_burst_plus_the_window_over_the_interval(
    rate: Rate, gaps: list[float], max_wait: float
) -> None:
    sent = _send_times(rate, gaps, max_wait)
    assert sent == sorted(sent)
    for first in range(len(sent)):
        for last in range(first, len(sent)):
            window = sent[last] - sent[first]
            assert last - first + 1 <= rate.burst + window / rate.interval + 1e-6


@given(rate=RATES, gaps=GAPS, max_wait=st.floats(min_value=0.0, max_value=100.0))
def test_waits_are_never_negative_nor_longer_than_max_wait(rate: Rate, gaps: list[float], max_wait: float) -> None:
    gcra, tat, now = GCRA(rate), None, 0.0
    for gap in gaps:
        now += gap
        wait, tat = gcra.reserve(tat, now, max_wait=max_wait)
        assert wait is None or 0.0 <= wait <= max_wait


@given(rate=RATES, gaps=GAPS, max_wait=st.floats(min_value=0.0, max_value=2.0))
def test_a_rejected_reservation_changes_nothing(rate: Rate, gaps: list[float], max_wait: float) -> None:
    gcra, tat, now = GCRA(rate), None, 0.0
    for gap in gaps:
        now += gap
        wait, new_tat = gcra.reserve(tat, now, max_wait=max_wait)
        if wait is None:
            assert tat is not None  # an idle bucket always admits
            assert new_tat == tat
        tat = new_tat


@given(rate=RATES, gaps=GAPS)
def test_rejected_requests_leave_the_later_decisions_as_if_they_never_came(rate: Rate, gaps: list[float]) -> None:
    """Replaying only the admitted arrivals yields the same waits: a rejection leaves no trace."""
    gcra, tat, now, admitted = GCRA(rate), None, 0.0, []
    for gap in gaps:
        now += gap
        wait, tat = gcra.reserve(tat, now, max_wait=rate.interval)
        if wait is not None:
            admitted.append((now, wait))
    replay_tat = None
    for arrival, wait in admitted:
        replayed, replay_tat = gcra.reserve(replay_tat, arrival, max_wait=math.inf)
        assert replayed == wait


@given(rate=RATES, extra=st.integers(1, 30))
def test_a_flood_gets_exactly_the_burst_at_once_then_one_slot_per_interval(rate: Rate, extra: int) -> None:
    gcra, tat, waits = GCRA(rate), None, []
    for _ in range(rate.burst + extra):
        wait, tat = gcra.reserve(tat, 0.0, max_wait=math.inf)
        assert wait is not None
        waits.append(wait)
    assert waits[: rate.burst] == pytest.approx([0.0] * rate.burst, abs=EPSILON)  # see the max_wait=0 bug below
    spacing = [later - earlier for earlier, later in pairwise(waits[rate.burst - 1 :])]
    assert spacing == pytest.approx([rate.interval] * extra)


@given(rate=RATES, calls=st.integers(2, 40))
def test_a_caller_that_waits_as_told_settles_at_one_call_per_interval(rate: Rate, calls: int) -> None:
    gcra, tat, now, sent = GCRA(rate), None, 0.0, []
    for _ in range(rate.burst + calls):
        wait, tat = gcra.reserve(tat, now, max_wait=math.inf)
        assert wait is not None
        now += wait
        sent.append(now)
    steady = sent[rate.burst - 1 :]
    assert [b - a for a, b in pairwise(steady)] == pytest.approx([rate.interval] * calls)


def test_gcra_allows_the_burst_at_start_up_and_no_more() -> None:
    gcra, tat = GCRA(Rate(10, 1.0, burst=3)), None
    waits = []
    for _ in range(5):
        wait, tat = gcra.reserve(tat, 0.0, max_wait=10.0)
        waits.append(wait)
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_gcra_admits_the_whole_burst_without_queueing_whatever_the_float_rounding() -> None:
    gcra, tat = GCRA(Rate(3, 1.0, burst=11)), None
    for _ in range(11):
        wait, tat = gcra.reserve(tat, 0.0, max_wait=0.0)
        assert wait == 0.0


def test_gcra_refills_the_burst_after_idling() -> None:
    gcra, tat = GCRA(Rate(10, 1.0, burst=3)), None
    for _ in range(3):
        _, tat = gcra.reserve(tat, 0.0, max_wait=0.0)
    assert gcra.reserve(tat, 0.0, max_wait=0.0)[0] is None
    waits = []
    for _ in range(4):
        wait, tat = gcra.reserve(tat, 10.0, max_wait=1.0)
        waits.append(wait)
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1])


# --- read_rate_limit_headers ---------------------------------------------------------------------------


def read(status: int, headers: dict[str, str]) -> RateLimitSignal:
    return read_rate_limit_headers(status, httpx2.Headers(headers), now=NOW)


@pytest.mark.parametrize(
    ("reset", "pause"),
    [
        (str(int(NOW) + 42), 42.0),  # epoch seconds (GitHub)
        (str(int(NOW) - 42), 0.0),  # an epoch already passed
        ("30", 30.0),  # delta seconds
        ("12ms", 0.012),  # durations
        ("1m30s", 90.0),
        ("6m0s", 360.0),
    ],
)
def test_x_ratelimit_remaining_zero_pauses_until_the_reset(reset: str, pause: float) -> None:
    signal = read(200, {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    assert signal.pause == pytest.approx(pause)
    assert (signal.limit, signal.remaining, signal.window) == (5000.0, 0.0, None)


def test_x_ratelimit_with_requests_left_does_not_pause() -> None:
    reset = str(int(NOW) + 42)
    signal = read(200, {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "17", "X-RateLimit-Reset": reset})
    assert signal == RateLimitSignal(pause=0.0, limit=5000.0, remaining=17.0)


def test_remaining_zero_without_a_reset_does_not_pause() -> None:
    assert read(200, {"X-RateLimit-Remaining": "0"}).pause == 0.0


def test_openai_request_headers_pause_until_their_duration_reset() -> None:
    signal = read(
        200,
        {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6ms",
        },
    )
    assert signal == RateLimitSignal(pause=360.0, limit=10000.0, remaining=0.0, tokens_remaining=149984.0)


def test_openai_remaining_tokens_are_reported_without_pausing() -> None:
    signal = read(200, {"x-ratelimit-remaining-requests": "9999", "x-ratelimit-remaining-tokens": "42"})
    assert (signal.pause, signal.remaining, signal.tokens_remaining) == (0.0, 9999.0, 42.0)


def test_ietf_combined_ratelimit_header_pauses_until_its_reset() -> None:
    signal = read(200, {"RateLimit": "limit=100, remaining=0, reset=30"})
    assert signal == RateLimitSignal(pause=30.0, limit=100.0, remaining=0.0)


def test_ietf_combined_ratelimit_header_with_requests_left_does_not_pause() -> None:
    assert read(200, {"RateLimit": "limit=100, remaining=5, reset=30"}) == RateLimitSignal(limit=100.0, remaining=5.0)


def test_ietf_structured_ratelimit_header_reads_r_and_t() -> None:
    signal = read(200, {"RateLimit": '"default";r=0;t=30'})
    assert (signal.pause, signal.remaining) == (30.0, 0.0)


def test_ietf_separate_ratelimit_headers_pause_until_the_reset() -> None:
    signal = read(200, {"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "12"})
    assert signal == RateLimitSignal(pause=12.0, limit=100.0, remaining=0.0)


def test_ietf_ratelimit_policy_gives_the_limit_and_its_window() -> None:
    signal = read(200, {"RateLimit-Policy": "100;w=60"})
    assert (signal.limit, signal.window, signal.pause) == (100.0, 60.0, 0.0)


def test_ietf_ratelimit_policy_does_not_override_an_explicit_limit() -> None:
    signal = read(200, {"RateLimit-Limit": "10", "RateLimit-Policy": "100;w=60"})
    assert (signal.limit, signal.window) == (10.0, 60.0)


def test_ietf_structured_ratelimit_policy_gives_the_quota() -> None:
    signal = read(200, {"RateLimit-Policy": '"default";q=100;w=60'})
    assert (signal.limit, signal.window) == (100.0, 60.0)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_on_429_and_503_is_the_pause(status: int) -> None:
    assert read(status, {"Retry-After": "5"}).pause == 5.0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_http_date_on_429_and_503_is_the_pause(status: int) -> None:
    when = formatdate(NOW + 120, usegmt=True)
    assert read(status, {"Retry-After": when}).pause == pytest.approx(120.0)


def test_retry_after_wins_over_the_reset_on_a_429() -> None:
    assert read(429, {"Retry-After": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "60"}).pause == 5.0


def test_a_429_without_retry_after_pauses_until_the_reset() -> None:
    assert read(429, {"X-RateLimit-Reset": "8"}).pause == 8.0


def test_a_429_without_any_header_pauses_one_second() -> None:
    assert read(429, {}).pause == 1.0


def test_a_503_without_any_header_does_not_pause() -> None:
    assert read(503, {}).pause == 0.0


def test_a_429_with_retry_after_zero_does_not_pause() -> None:
    assert read(429, {"Retry-After": "0"}).pause == 0.0


@pytest.mark.parametrize("status", [200, 404, 500])
def test_retry_after_on_other_statuses_is_not_a_pause(status: int) -> None:
    assert read(status, {"Retry-After": "5"}).pause == 0.0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "soon"},
        {"X-RateLimit-Limit": "", "X-RateLimit-Remaining": "nan", "X-RateLimit-Reset": "-5"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "whenever"},
        {"RateLimit": "garbage, =, remaining=, reset=later"},
        {"RateLimit-Policy": "w=soon"},
    ],
)
def test_malformed_values_are_ignored(headers: dict[str, str]) -> None:
    signal = read(200, headers)
    assert signal.pause == 0.0
    assert signal.limit is None
    assert signal.window is None
    assert signal.remaining in (None, 0.0)


def test_a_malformed_retry_after_on_a_429_falls_back_to_one_second() -> None:
    assert read(429, {"Retry-After": "whenever"}).pause == 1.0


HEADER_NAMES = [
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-remaining-tokens",
    "ratelimit",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
]
HEADER_VALUES = st.one_of(
    st.text(),
    st.from_regex(r"-?\d{1,12}(\.\d{1,3})?", fullmatch=True),
    st.from_regex(r"(\d{1,3}(ms|s|m|h|d)){1,3}", fullmatch=True),
    st.from_regex(r"(limit|remaining|reset|r|t|q|w)=[^,;]{0,6}([,;] ?(limit|remaining|reset|r|t|w)=\d{0,4}){0,3}"),
)


@given(
    status=st.sampled_from([200, 404, 429, 500, 503]),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), HEADER_VALUES),
)
def test_reading_the_headers_never_raises_and_never_asks_for_a_negative_pause(
    status: int, headers: dict[str, str]
) -> None:
    signal = read_rate_limit_headers(status, headers, now=NOW)
    assert math.isfinite(signal.pause)
    assert signal.pause >= 0.0
    for value in (signal.limit, signal.window, signal.remaining, signal.tokens_remaining):
        assert value is None or value >= 0.0


# --- MemoryState: the budgets every client of an integration shares --------------------------------------


def memory() -> tuple[MemoryState, ManualClock]:
    clock = ManualClock()
    return MemoryState(clock=clock), clock


def test_memory_state_without_limits_lets_every_call_go() -> None:
    state, _ = memory()
    assert [state.admit("acme", Limits(), max_wait=0.0) for _ in range(100)] == [GO] * 100


def test_memory_state_spaces_calls_by_the_rate_interval() -> None:
    state, clock = memory()
    limits = Limits(rate=Rate(10, 1.0))
    waits = [state.admit("acme", limits, max_wait=10.0).wait for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])  # every admission reserves the next slot
    clock.advance(0.5)
    assert state.admit("acme", limits, max_wait=10.0) == GO


def test_memory_state_lets_the_burst_through_at_once() -> None:
    state, _ = memory()
    limits = Limits(rate=Rate(10, 1.0, burst=3))
    waits = [state.admit("acme", limits, max_wait=10.0).wait for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_memory_state_keeps_one_budget_per_integration() -> None:
    state, _ = memory()
    limits = Limits(rate=Rate(1, 10.0))
    assert state.admit("acme", limits, max_wait=0.0) == GO
    assert state.admit("globex", limits, max_wait=0.0) == GO
    assert state.admit("acme", limits, max_wait=0.0).rejected == "rate_limit"


def test_a_pause_from_a_signal_delays_every_caller() -> None:
    state, clock = memory()
    state.report("acme", Limits(), failure=None, signal=RateLimitSignal(pause=5.0))
    assert [state.admit("acme", Limits(), max_wait=30.0).wait for _ in range(3)] == [5.0, 5.0, 5.0]
    clock.advance(2.0)
    assert state.admit("acme", Limits(), max_wait=30.0).wait == 3.0
    assert state.admit("globex", Limits(), max_wait=30.0) == GO
    clock.advance(3.0)
    assert state.admit("acme", Limits(), max_wait=30.0) == GO


def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    state, _ = memory()
    state.report("acme", Limits(), failure=None, signal=RateLimitSignal(pause=10.0))
    state.report("acme", Limits(), failure=None, signal=RateLimitSignal(pause=2.0))
    assert state.admit("acme", Limits(), max_wait=30.0).wait == 10.0


def test_rate_slots_start_after_the_pause() -> None:
    state, _ = memory()
    limits = Limits(rate=Rate(10, 1.0))
    state.report("acme", limits, failure=None, signal=RateLimitSignal(pause=5.0))
    waits = [state.admit("acme", limits, max_wait=30.0).wait for _ in range(3)]
    assert waits == pytest.approx([5.0, 5.1, 5.2])


def test_a_pause_longer_than_max_wait_is_rejected_as_paused() -> None:
    state, _ = memory()
    limits = Limits(rate=Rate(10, 1.0))
    state.report("acme", limits, failure=None, signal=RateLimitSignal(pause=5.0))
    admission = state.admit("acme", limits, max_wait=2.0)
    assert (admission.rejected, admission.retry_in) == ("paused", 5.0)
    assert state.admit("acme", limits, max_wait=5.0).wait == 5.0  # the rejection reserved no slot


def test_a_slot_further_than_max_wait_is_rejected_as_rate_limit_and_reserves_nothing() -> None:
    state, clock = memory()
    limits = Limits(rate=Rate(1, 10.0))
    assert state.admit("acme", limits, max_wait=1.0) == GO
    for _ in range(3):
        admission = state.admit("acme", limits, max_wait=1.0)
        assert (admission.rejected, admission.retry_in) == ("rate_limit", 10.0)
    clock.advance(9.5)
    assert state.admit("acme", limits, max_wait=1.0).wait == pytest.approx(0.5)


def test_rate_limit_rejection_retry_in_is_when_a_slot_frees_with_a_burst() -> None:
    state, clock = memory()
    limits = Limits(rate=Rate(1, 10.0, burst=2))
    assert [state.admit("acme", limits, max_wait=0.0) for _ in range(2)] == [GO, GO]
    admission = state.admit("acme", limits, max_wait=0.0)
    assert admission.rejected == "rate_limit"
    clock.advance(10.0)
    assert state.admit("acme", limits, max_wait=0.0) == GO  # a slot does free up after 10 s…
    assert admission.retry_in == pytest.approx(10.0)  # …but retry_in says 20 s


def test_a_learned_smaller_rate_wins_over_the_configured_one() -> None:
    state, _ = memory()
    limits = Limits(rate=Rate(10, 1.0))
    state.report("acme", limits, failure=None, signal=RateLimitSignal(limit=60.0, window=60.0))
    waits = [state.admit("acme", limits, max_wait=30.0).wait for _ in range(3)]
    assert waits == pytest.approx([0.0, 1.0, 2.0])


def test_a_learned_larger_rate_does_not_raise_the_configured_one() -> None:
    state, _ = memory()
    limits = Limits(rate=Rate(10, 1.0))
    state.report("acme", limits, failure=None, signal=RateLimitSignal(limit=1000.0, window=1.0))
    waits = [state.admit("acme", limits, max_wait=30.0).wait for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.1, 0.2])


def test_a_learned_rate_applies_without_a_configured_one() -> None:
    state, _ = memory()
    state.report("acme", Limits(), failure=None, signal=RateLimitSignal(limit=2.0, window=1.0))
    waits = [state.admit("acme", Limits(), max_wait=30.0).wait for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.5, 1.0])


def test_a_limit_without_a_window_teaches_no_rate() -> None:
    state, _ = memory()
    state.report("acme", Limits(), failure=None, signal=RateLimitSignal(limit=2.0, remaining=1.0))
    assert [state.admit("acme", Limits(), max_wait=30.0) for _ in range(3)] == [GO] * 3


async def test_async_admit_and_report_share_the_sync_state() -> None:
    state, _ = memory()
    limits = Limits(rate=Rate(10, 1.0))
    await state.areport("acme", limits, failure=None, signal=RateLimitSignal(pause=1.0))
    assert (await state.aadmit("acme", limits, max_wait=5.0)).wait == 1.0
    assert state.admit("acme", limits, max_wait=5.0).wait == pytest.approx(1.1)


def test_a_spent_token_budget_pauses_until_the_tokens_reset() -> None:
    """OpenAI-style: x-ratelimit-remaining-tokens 0 with x-ratelimit-reset-tokens '6m0s' pauses for 360 s."""
    signal = read_rate_limit_headers(
        200,
        {
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "6m0s",
            "x-ratelimit-remaining-requests": "9",
        },
        now=1_700_000_000.0,
    )
    assert signal.tokens_remaining == 0
    assert signal.pause == 360.0


# --- what a 429 without a word and an AI API's usage say ----------------------------------------------------


def test_a_bare_429_asks_to_slow_down_and_an_explained_one_does_not() -> None:
    def signal(status: int, headers: dict[str, str] | None = None) -> RateLimitSignal:
        return read_rate_limit_headers(status, httpx2.Headers(headers), now=NOW)

    assert signal(429).slow_down
    assert not signal(429, {"Retry-After": "3"}).slow_down
    assert not signal(429, {"X-RateLimit-Limit": "100"}).slow_down
    assert not signal(503).slow_down


@pytest.mark.parametrize(
    ("document", "tokens"),
    [
        ({"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}, 15.0),
        ({"usage": {"input_tokens": 10, "output_tokens": 5}}, 15.0),
        ({"usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 9}}, 9.0),
        ({"usage": {"total_tokens": "15"}}, 0.0),
        ({"usage": {"total_tokens": True}}, 0.0),
        ({"usage": {"input_tokens": 10}}, 0.0),
        ({"usage": {"total_tokens": -4}}, 0.0),
        ({"usage": None}, 0.0),
        ([{"usage": {"total_tokens": 1}}], 0.0),
        ("usage", 0.0),
    ],
)
def test_tokens_used_reads_openai_anthropic_and_gemini_usage(document: object, tokens: float) -> None:
    assert tokens_used(document) == tokens


def test_endpoint_templates_match_one_segment_and_globs_any_run() -> None:
    rules = EndpointRules({"GET /v1/users/{id}": "user", "/v1/users/{id}/*": "below", "/v1/*": "any"})
    assert rules.lookup("GET", "/v1/users/7") == "user"
    assert rules.lookup("GET", "/v1/users/7/repos/1") == "below"
    assert rules.lookup("POST", "/v1/users/7") == "any"
    assert rules.lookup("GET", "/v1/users/") == "any"  # a template needs a segment
    assert rules.lookup("GET", "/v2/x") is None

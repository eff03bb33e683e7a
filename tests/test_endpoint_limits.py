"""Endpoint groups, token budgets and slowing down after a bare 429, through real sync and async tether clients.

Same harness as test_limits_transport: fake upstreams behind ``httpx2.MockTransport`` and a manual clock that the
fake sleeps advance.
"""

from __future__ import annotations

import httpx2
import pytest

import tether
from test_limits_transport import Outcome, Tether, Upstream, ok, status
from tether.config import parse_config
from tether.errors import ConfigError


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def usage(**counts: int) -> Outcome:
    """An outcome whose JSON body reports token usage, as AI APIs do."""
    return lambda request: httpx2.Response(200, json={"id": "x", "usage": counts})


async def call(t: Tether, upstream: Upstream, method: str, path: str) -> tether.TetherResponse:
    network = httpx2.MockTransport(upstream)
    if t.mode == "sync":
        with t.hub.client("acme", network=network) as client:
            response = client.request(method, path)
    else:
        async with t.hub.async_client("acme", network=network) as client:
            response = await client.request(method, path)
    assert isinstance(response, tether.TetherResponse)
    return response


# --- endpoint groups ---------------------------------------------------------------------------------------

SEARCH = """
rate_limit = "100/s"
[integrations.acme.endpoints."GET /search/*"]
rate_limit = "1/s"
"""


async def test_an_endpoint_groups_rate_limit_spaces_only_its_own_calls(mode: str) -> None:
    t = Tether(mode, SEARCH)
    upstream = t.upstream(ok())
    for path in ("/search/a", "/v1/things", "/search/b", "/v1/things"):
        assert (await t.get(upstream, path)).status_code == 200
    # The second search waits for the group's next slot; the integration's budget counts every call.
    assert upstream.started == pytest.approx([0.0, 0.01, 1.0, 1.01])


async def test_calls_queued_for_a_scarce_group_do_not_hold_up_the_rest() -> None:
    t = Tether("async", SEARCH)
    upstream = t.upstream(ok())
    network = httpx2.MockTransport(upstream)
    async with t.hub.async_client("acme", network=network) as client:
        for _ in range(3):
            await client.get("/search/q")  # the group's slots: 0, 1, 2 s
        assert t.clock.monotonic() == pytest.approx(2.0)
        await client.get("/v1/things")
    assert upstream.started == pytest.approx([0.0, 1.0, 2.0, 2.01])


async def test_a_path_template_matches_one_segment(mode: str) -> None:
    t = Tether(mode, '[integrations.acme.endpoints."GET /v1/users/{id}"]\nrate_limit = "1/s"')
    upstream = t.upstream(ok())
    for path in ("/v1/users/7", "/v1/users/7/repos", "/v1/users/8"):
        await t.get(upstream, path)
    assert upstream.started == pytest.approx([0.0, 0.0, 1.0])


ISOLATED = """
retry = false
breaker = { min_calls = 4, open_for = "30s" }
[integrations.acme.endpoints."POST /v1/reports"]
breaker = { min_calls = 2, open_for = "10s" }
"""


async def test_an_endpoint_with_its_own_breaker_opens_alone(mode: str) -> None:
    t = Tether(mode, ISOLATED)
    reports = t.upstream(status(503))
    for _ in range(2):
        assert (await call(t, reports, "POST", "/v1/reports")).status_code == 503
    with pytest.raises(tether.CircuitOpenError) as caught:
        await call(t, reports, "POST", "/v1/reports")
    assert caught.value.retry_in == pytest.approx(10.0)
    assert reports.calls == 2
    things = t.upstream(ok())
    assert (await t.get(things)).status_code == 200  # the rest of the API is not cut off


async def test_an_outage_elsewhere_does_not_cut_off_an_isolated_endpoint(mode: str) -> None:
    t = Tether(mode, ISOLATED)
    await t.trip()  # the integration's breaker: four 503s on /v1/things
    with pytest.raises(tether.CircuitOpenError):
        await t.get(t.upstream(ok()))
    assert (await call(t, t.upstream(ok()), "POST", "/v1/reports")).status_code == 200


async def test_breaker_false_on_an_endpoint_exempts_it(mode: str) -> None:
    t = Tether(mode, ISOLATED.replace('breaker = { min_calls = 2, open_for = "10s" }', "breaker = false"))
    await t.trip()
    assert (await call(t, t.upstream(ok()), "POST", "/v1/reports")).status_code == 200


# --- token budgets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts", [{"total_tokens": 1200}, {"input_tokens": 1000, "output_tokens": 200}], ids=["openai", "anthropic"]
)
async def test_the_tokens_a_response_used_hold_the_next_call(mode: str, counts: dict[str, int]) -> None:
    t = Tether(mode, "tokens_per_minute = 1000")
    upstream = t.upstream(usage(**counts), ok())
    await t.get(upstream)
    await t.get(upstream)
    # 1,200 tokens of a 1,000-a-minute budget: the next call waits until one token is back (0.06 s each).
    assert upstream.started == pytest.approx([0.0, 1200 * 0.06 - 999 * 0.06])


async def test_a_spent_token_budget_beyond_the_wait_raises_throttled(mode: str) -> None:
    t = Tether(mode, 'tokens_per_minute = 1000\nrate_limit = { requests = 100, per = "1s", max_wait = "1s" }')
    upstream = t.upstream(usage(total_tokens=5000))
    await t.get(upstream)
    with pytest.raises(tether.ThrottledError):
        await t.get(upstream)
    assert upstream.calls == 1


async def test_the_apis_remaining_tokens_header_corrects_the_budget(mode: str) -> None:
    t = Tether(mode, "tokens_per_minute = 100000")
    upstream = t.upstream(ok({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-limit-tokens": "100000"}), ok())
    await t.get(upstream)
    await t.get(upstream)
    assert upstream.started == pytest.approx([0.0, 0.0006])  # nothing left: one token's time (60 s / 100,000)


async def test_token_usage_is_not_read_without_a_token_budget(mode: str) -> None:
    t = Tether(mode, "")
    upstream = t.upstream(usage(total_tokens=10**9), ok())
    await t.get(upstream)
    await t.get(upstream)
    assert upstream.started == [0.0, 0.0]


# --- a 429 that says nothing -------------------------------------------------------------------------------


async def test_a_bare_429_pauses_then_lowers_the_configured_rate(mode: str) -> None:
    t = Tether(mode, 'rate_limit = "10/s"\nretry = false')
    upstream = t.upstream(status(429), ok())
    assert (await t.get(upstream)).status_code == 429
    for _ in range(3):
        await t.get(upstream)
    interval = 0.1 / 0.9
    assert upstream.started == pytest.approx([0.0, 1.0, 1.0 + interval, 1.0 + 2 * interval])


# --- configuration -------------------------------------------------------------------------------------------


def _problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[integrations.acme]\nbase_url = "https://api.acme.test"\n{body}', env={})
    return [str(problem) for problem in caught.value.problems]


def test_an_endpoint_key_must_be_a_pattern() -> None:
    problems = _problems('[integrations.acme.endpoints."search"]\nrate_limit = "1/s"')
    assert problems[0].startswith("integrations.acme.endpoints: 'search' is not an endpoint pattern")


def test_an_endpoint_table_must_set_a_limit() -> None:
    assert _problems('[integrations.acme.endpoints."GET /search"]') == [
        "integrations.acme.endpoints.GET /search: set at least one of rate_limit, tokens_per_minute, breaker"
    ]


def test_endpoint_errors_name_their_key_path() -> None:
    assert _problems('[integrations.acme.endpoints."GET /search"]\nrate_limit = "fast"')[0].startswith(
        "integrations.acme.endpoints.GET /search.rate_limit: "
    )
    assert _problems("tokens_per_minute = 0")[0].startswith("integrations.acme.tokens_per_minute: ")

"""Fallbacks: the last good response (stale) or a configured static one, served when the API is down.

Each client test runs through ``hub.client`` and ``hub.async_client`` (the fakes and the ``Tether`` driver are
those of ``test_cache``); one test runs end to end against the real sandbox over loopback HTTP.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

import tether
from test_cache import TOML, MakeTether, Outcome, Tether, Upstream, counting, respond
from tether.config import parse_config
from tether.sandbox import SANDBOX_API_KEY, SandboxServer

STALE = 'fallback = "stale"'


@pytest.fixture(params=["sync", "async"])
def make_tether(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeTether]:
    made: list[Tether] = []

    def make(extra: str = "", *, config: str | None = None) -> Tether:
        t = Tether(request.param, config or TOML.format(extra=extra), tmp_path)
        made.append(t)
        return t

    yield make
    for t in made:
        t.hub.close()


def raises(exc_type: type[httpx2.TransportError]) -> Outcome:
    def outcome(request: httpx2.Request) -> httpx2.Response:
        raise exc_type("boom", request=request)

    return outcome


def tls_refused(request: httpx2.Request) -> httpx2.Response:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
    cause.verify_message, cause.verify_code = "self-signed certificate", 18  # as the ssl module sets them
    raise httpx2.ConnectError("TLS handshake failed", request=request) from cause


def fallback_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "tether", {}).get("event") == "fallback"]


def down() -> Outcome:
    return respond(503, {"error": {"message": "upstream overloaded"}})


# --- stale: the last good response ---------------------------------------------------------------------


@pytest.mark.parametrize("raise_for_status", [False, True])
async def test_a_503_is_answered_with_the_last_good_response_marked_stale(
    make_tether: MakeTether, caplog: pytest.LogCaptureFixture, raise_for_status: bool
) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"EUR": 1.08}, age=300), down())
    await t.get(api, "/v1/rates")
    with caplog.at_level(logging.WARNING, logger="tether"):
        stale = await t.get(api, "/v1/rates", raise_for_status=raise_for_status)
    assert api.calls == 3  # the good call, then the failed call's two attempts
    assert stale.status_code == 200
    assert stale.json() == {"EUR": 1.08}
    assert stale.extensions["tether.stale"] is True
    assert stale.extensions["tether.from_cache"] is True
    assert stale.extensions["tether.fallback"] == "stale"
    assert stale.headers["X-Tether-Stale"] == "1"
    assert 299 <= int(stale.headers["X-Tether-Stale-Age"]) <= 310
    assert stale.headers["Age"] == stale.headers["X-Tether-Stale-Age"]
    assert [attempt.status for attempt in stale.extensions["tether.attempts"]] == [503, 503]
    assert stale.raise_for_status() is stale  # a stale answer is a good answer
    [record] = fallback_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.tether["integration"] == "shop"  # type: ignore[attr-defined]
    assert record.tether["fallback"] == "stale"  # type: ignore[attr-defined]
    assert record.tether["reason"] == ("ServerError" if raise_for_status else "HTTP 503")  # type: ignore[attr-defined]
    assert record.tether["path"] == "/v1/rates"  # type: ignore[attr-defined]
    assert "stale" in record.getMessage()


async def test_a_timeout_is_answered_with_the_last_good_response(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"ok": 1}), raises(httpx2.ReadTimeout))
    await t.get(api, "/v1/rates")
    stale = await t.get(api, "/v1/rates")
    assert stale.json() == {"ok": 1}
    assert stale.extensions["tether.stale"] is True
    assert isinstance(stale.extensions["tether.fallback_error"], tether.RequestTimeoutError)


async def test_a_connection_error_is_answered_with_the_last_good_response(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"ok": 1}), raises(httpx2.ConnectError))
    await t.get(api, "/v1/rates")
    stale = await t.get(api, "/v1/rates")
    assert stale.extensions["tether.stale"] is True
    assert isinstance(stale.extensions["tether.fallback_error"], tether.ConnectionFailedError)


async def test_an_open_breaker_is_answered_with_the_last_good_response_without_calling_the_api(
    make_tether: MakeTether,
) -> None:
    config = """
store = "sqlite:///tether.db"
[integrations.shop]
base_url = "https://api.shop.test"
retry = false
breaker = { min_calls = 2, failure_ratio = 0.5, window = "30s", open_for = "30s" }
fallback = "stale"
"""
    t = make_tether(config=config)
    api = Upstream(respond(payload={"ok": 1}), down())
    await t.get(api, "/v1/rates")
    await t.get(api, "/v1/rates")  # a failure: one of two calls, the breaker opens
    stale = await t.get(api, "/v1/rates")
    assert api.calls == 2
    assert stale.json() == {"ok": 1}
    assert isinstance(stale.extensions["tether.fallback_error"], tether.CircuitOpenError)
    assert stale.extensions["tether.attempts"] == ()


async def test_a_failed_revalidation_falls_back_to_the_stored_response(make_tether: MakeTether) -> None:
    t = make_tether(f"cache = true\n{STALE}")
    api = Upstream(respond(payload={"v": 1}, age=120, headers={"Cache-Control": "max-age=60", "ETag": '"v1"'}), down())
    await t.get(api, "/v1/catalog")
    stale = await t.get(api, "/v1/catalog")
    assert api.headers[1]["If-None-Match"] == '"v1"'
    assert stale.json() == {"v": 1}
    assert stale.extensions["tether.stale"] is True
    assert 119 <= int(stale.headers["X-Tether-Stale-Age"]) <= 130


async def test_a_stale_fallback_alone_keeps_responses_but_never_answers_from_them_while_the_api_is_up(
    make_tether: MakeTether,
) -> None:
    t = make_tether(STALE)
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/rates")
    second = await t.get(api, "/v1/rates")
    assert api.calls == 2
    assert second.extensions["tether.from_cache"] is False
    assert t.hub.stats("shop")["cache_stored"] == 2


async def test_a_newer_good_response_replaces_the_one_kept_for_fallback(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"v": 1}), respond(payload={"v": 2}), down())
    await t.get(api, "/v1/rates")
    await t.get(api, "/v1/rates")
    stale = await t.get(api, "/v1/rates")
    assert stale.json() == {"v": 2}


async def test_a_response_older_than_max_stale_is_not_served(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"ok": 1}, age=25 * 3600), down())
    await t.get(api, "/v1/rates")
    failed = await t.get(api, "/v1/rates")
    assert failed.status_code == 503
    assert failed.extensions["tether.fallback"] is None


async def test_max_stale_widens_the_window(make_tether: MakeTether) -> None:
    t = make_tether('fallback = { stale = true, max_stale = "48h" }')
    api = Upstream(respond(payload={"ok": 1}, age=25 * 3600), down())
    await t.get(api, "/v1/rates")
    stale = await t.get(api, "/v1/rates")
    assert stale.extensions["tether.stale"] is True


async def test_max_stale_counts_from_the_end_of_freshness(make_tether: MakeTether) -> None:
    t = make_tether('fallback = { stale = true, max_stale = "1m" }')
    api = Upstream(respond(payload={"ok": 1}, age=3000, headers={"Cache-Control": "max-age=3600"}), down())
    await t.get(api, "/v1/rates")
    stale = await t.get(api, "/v1/rates")
    assert stale.extensions["tether.stale"] is True


async def test_must_revalidate_responses_are_never_served_stale(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"balance": 10}, headers={"Cache-Control": "must-revalidate"}), down())
    await t.get(api, "/v1/balance")
    failed = await t.get(api, "/v1/balance")
    assert failed.status_code == 503


async def test_stale_can_be_limited_to_some_endpoints(make_tether: MakeTether) -> None:
    t = make_tether('fallback = { stale = ["GET /v1/rates*"] }')
    for path, expected in [("/v1/rates/eur", 200), ("/v1/balance", 503)]:
        api = Upstream(respond(payload={"ok": 1}), down())
        await t.get(api, path)
        assert (await t.get(api, path)).status_code == expected


async def test_a_4xx_is_not_an_outage_and_gets_no_fallback(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"ok": 1}), respond(404, {"error": {"message": "gone"}}))
    await t.get(api, "/v1/rates")
    missing = await t.get(api, "/v1/rates")
    assert missing.status_code == 404
    assert missing.extensions["tether.fallback"] is None


async def test_a_refused_certificate_is_not_an_outage_and_gets_no_fallback(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"ok": 1}), tls_refused)
    await t.get(api, "/v1/rates")
    with pytest.raises(tether.SelfSignedCertificateError):
        await t.get(api, "/v1/rates")


async def test_the_tether_fallback_extension_false_lets_the_error_through(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"ok": 1}), raises(httpx2.ConnectError))
    await t.get(api, "/v1/rates")
    with pytest.raises(tether.ConnectionFailedError):
        await t.get(api, "/v1/rates", extensions={"tether.fallback": False})


# --- static --------------------------------------------------------------------------------------------

STATIC = """
[integrations.shop.fallback]
static = { "GET /v1/rates*" = { json = { EUR = 1.0 }, headers = { "X-Source" = "defaults" } } }
"""


async def test_a_static_fallback_answers_when_nothing_was_cached(
    make_tether: MakeTether, caplog: pytest.LogCaptureFixture
) -> None:
    t = make_tether(STATIC)
    api = Upstream(down())
    with caplog.at_level(logging.WARNING, logger="tether"):
        static = await t.get(api, "/v1/rates/latest", raise_for_status=True)
    assert static.status_code == 200
    assert static.json() == {"EUR": 1.0}
    assert static.headers["Content-Type"] == "application/json"
    assert static.headers["X-Source"] == "defaults"
    assert static.headers["X-Tether-Fallback"] == "static"
    assert "X-Tether-Stale" not in static.headers
    assert static.extensions["tether.fallback"] == "static"
    assert static.extensions["tether.from_cache"] is False
    assert static.extensions["tether.stale"] is False
    assert [record.tether["fallback"] for record in fallback_records(caplog)] == ["static"]  # type: ignore[attr-defined]


async def test_a_static_fallback_applies_only_to_its_endpoints(make_tether: MakeTether) -> None:
    t = make_tether(STATIC)
    with pytest.raises(tether.ServerError):
        await t.get(Upstream(down()), "/v1/orders", raise_for_status=True)


async def test_stale_wins_over_static_and_static_covers_what_was_never_cached(make_tether: MakeTether) -> None:
    t = make_tether(STATIC + "stale = true\n")
    api = Upstream(respond(payload={"EUR": 1.09}), down())
    await t.get(api, "/v1/rates/latest")
    assert (await t.get(api, "/v1/rates/latest")).json() == {"EUR": 1.09}
    assert (await t.get(api, "/v1/rates/other")).json() == {"EUR": 1.0}
    stats = t.hub.stats("shop")
    assert (stats["fallbacks"], stats["fallbacks_stale"], stats["fallbacks_static"]) == (2, 1, 1)


async def test_a_static_fallback_can_answer_a_post(make_tether: MakeTether) -> None:
    t = make_tether('[integrations.shop.fallback]\nstatic = { "POST /v1/quotes" = { status = 202, text = "queued" } }')
    accepted = await t.request(Upstream(raises(httpx2.ConnectError)), "POST", "/v1/quotes", json={"sku": "a"})
    assert (accepted.status_code, accepted.text) == (202, "queued")
    assert accepted.headers["Content-Type"] == "text/plain; charset=utf-8"


async def test_a_static_fallback_needs_no_store(make_tether: MakeTether, tmp_path: Path) -> None:
    t = make_tether(STATIC)
    await t.get(Upstream(down()), "/v1/rates")
    assert t.store_files() == []


# --- nothing configured, nothing available ---------------------------------------------------------------


async def test_without_a_fallback_the_original_error_is_raised(make_tether: MakeTether) -> None:
    t = make_tether()
    with pytest.raises(tether.ServerError):
        await t.get(Upstream(down()), "/v1/rates", raise_for_status=True)
    with pytest.raises(tether.ReadTimeoutError):
        await t.get(Upstream(raises(httpx2.ReadTimeout)), "/v1/rates")
    failed = await t.get(Upstream(down()), "/v1/rates")
    assert failed.status_code == 503


async def test_a_stale_fallback_with_nothing_kept_raises_the_original_error(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    with pytest.raises(tether.ReadTimeoutError):
        await t.get(Upstream(raises(httpx2.ReadTimeout)), "/v1/rates")
    with pytest.raises(tether.ServerError):
        await t.get(Upstream(down()), "/v1/rates", raise_for_status=True)
    assert t.hub.stats("shop")["fallbacks"] == 0


async def test_every_fallback_is_counted(make_tether: MakeTether) -> None:
    t = make_tether(STALE)
    api = Upstream(respond(payload={"ok": 1}), down())
    await t.get(api, "/v1/rates")
    for _ in range(3):
        await t.get(api, "/v1/rates")
    stats = t.hub.stats("shop")
    assert (stats["fallbacks"], stats["fallbacks_stale"], stats["fallbacks_static"]) == (3, 3, 0)


# --- configuration -------------------------------------------------------------------------------------


def _problems(body: str) -> list[str]:
    with pytest.raises(tether.ConfigError) as caught:
        parse_config(f'[integrations.shop]\nbase_url = "https://api.shop.test"\n{body}', env={})
    return [str(problem) for problem in caught.value.problems]


def test_fallback_shorthands() -> None:
    def fallback(body: str) -> Any:
        config = parse_config(f'[integrations.shop]\nbase_url = "https://api.shop.test"\n{body}', env={})
        return config.integrations["shop"].fallback

    assert fallback("").configured is False
    assert fallback('fallback = "raise"').configured is False
    assert fallback('fallback = "stale"').stale is True
    assert fallback('fallback = "stale"').max_stale == 86400.0
    assert fallback('fallback = { stale = true, max_stale = "2h" }').max_stale == 7200.0


def test_fallback_errors_name_their_key_path() -> None:
    assert _problems('fallback = "stail"') == [
        'integrations.shop.fallback: expected "stale", "raise" or a table, got \'stail\''
    ]
    assert _problems('fallback = { max_stale = "1h" }') == [
        "integrations.shop.fallback: 'max_stale' is set but 'stale' is not; add stale = true to serve stale responses"
    ]
    assert _problems('fallback = { static = { "GET /v1/x" = { status = 503 } } }') == [
        "integrations.shop.fallback.static.GET /v1/x.status: a fallback stands in for a good response: "
        "use a 2xx or 3xx status, not 503"
    ]
    assert _problems('fallback = { static = { "GET /v1/x" = { json = 1, text = "a" } } }') == [
        "integrations.shop.fallback.static.GET /v1/x: give 'json' or 'text', not both"
    ]
    assert _problems('fallback = { static = { "GET /v1/x" = { jsn = 1 } } }') == [
        "integrations.shop.fallback.static.GET /v1/x.jsn: unknown key; did you mean 'json'?"
    ]
    assert _problems('fallback = { stale = ["v1/rates"] }')[0].startswith(
        "integrations.shop.fallback.stale: 'v1/rates' is not an endpoint pattern"
    )


# --- end to end, against the sandbox over loopback -------------------------------------------------------


def test_cache_and_stale_fallback_against_the_sandbox(
    sandbox: SandboxServer, sandbox_key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = f"""
store = "sqlite:///tether.db"
[integrations.sandbox]
base_url = "{sandbox.url}"
auth = {{ type = "api_key", key = "${{SANDBOX_KEY}}" }}
retry = {{ attempts = 2, backoff = "10ms" }}
cache = {{ "GET /v1/customers" = "1h" }}
fallback = "stale"
"""
    recorded = {"X-Sandbox-Key": sandbox_key}
    with (
        tether.Hub(parse_config(config, env={"SANDBOX_KEY": SANDBOX_API_KEY}), base_dir=tmp_path) as hub,
        hub.client("sandbox") as client,
    ):
        listed = client.get("/v1/customers", params={"limit": 2}, headers=recorded)
        again = client.get("/v1/customers", params={"limit": 2}, headers=recorded)
        customer = client.get("/v1/customers/cus_0001", headers=recorded)
        with caplog.at_level(logging.WARNING, logger="tether"):
            stale = client.get("/v1/customers/cus_0001", headers={**recorded, "X-Sandbox-Fault": "status:503"})
        seen = client.get("/v1/requests", params={"key": sandbox_key}, extensions={"tether.cache": False}).json()
    assert again.json() == listed.json()
    assert again.extensions["tether.from_cache"] is True
    assert stale.json() == customer.json()
    assert stale.headers["X-Tether-Stale"] == "1"
    assert [r.tether["reason"] for r in fallback_records(caplog)] == ["HTTP 503"]  # type: ignore[attr-defined]
    # The list once (the second came from the cache), the customer once, then two failed attempts.
    assert [request["path"] for request in seen["requests"]] == ["/v1/customers"] + ["/v1/customers/cus_0001"] * 3
    assert SANDBOX_API_KEY.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("tether.db*"))

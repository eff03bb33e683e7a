"""HTTP caching (RFC 9111, through hishel's state machine) in a real SQLite store, through real tether clients.

Each client test runs twice, through ``hub.client`` and ``hub.async_client``. Upstreams are small fakes behind
``httpx2.MockTransport``. Freshness is wall-clock time, as HTTP dates are: instead of waiting, a test makes a
response old by having the fake API date it in the past.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx2
import pytest

import tether
from fakes import Timeline
from tether.config import parse_config
from tether.errors import ConfigError
from tether.policies.endpoints import EndpointRules
from tether.store.http_cache import SqliteCacheStorage

TOML = """
store = "sqlite:///tether.db"

[integrations.shop]
base_url = "https://api.shop.test"
retry = {{ attempts = 2, backoff = "1s" }}
breaker = false
{extra}
"""

Outcome = Callable[[httpx2.Request], httpx2.Response]


# --- fakes ---------------------------------------------------------------------------------------------


def http_date(seconds_ago: float = 0.0) -> str:
    return formatdate(time.time() - seconds_ago, usegmt=True)


class Upstream:
    """A fake API that plays its outcomes in order, repeating the last, and keeps what it was sent."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = outcomes
        self.requests: list[httpx2.Request] = []
        self.headers: list[httpx2.Headers] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        self.headers.append(httpx2.Headers(request.headers))
        return self.outcomes[min(len(self.requests), len(self.outcomes)) - 1](request)

    @property
    def calls(self) -> int:
        return len(self.requests)


def respond(
    status: int = 200, payload: Any = None, *, age: float = 0.0, headers: dict[str, str] | None = None
) -> Outcome:
    """A JSON response dated ``age`` seconds ago; the body counts the API's calls so far unless given."""

    def outcome(request: httpx2.Request) -> httpx2.Response:
        body = payload if payload is not None else {"path": request.url.path}
        return httpx2.Response(status, headers={"Date": http_date(age), **(headers or {})}, json=body)

    return outcome


def counting(headers: dict[str, str] | None = None, *, age: float = 0.0) -> Upstream:
    """An API whose every answer says which call it was, so a cached answer shows an old number."""
    upstream = Upstream()
    upstream.outcomes = (
        lambda request: httpx2.Response(
            200, headers={"Date": http_date(age), **(headers or {})}, json={"call": upstream.calls}
        ),
    )
    return upstream


class Tether:
    """A hub on a store in ``folder`` whose calls go through its sync or its async client."""

    def __init__(self, mode: str, config: str, folder: Path, env: dict[str, str] | None = None) -> None:
        self.mode, self.folder = mode, folder
        self.timeline = Timeline()
        self.hub = tether.Hub(
            parse_config(config, env=env or {}),
            base_dir=folder,
            clock=self.timeline.clock,
            sleep=self.timeline.sleep,
            async_sleep=self.timeline.async_sleep,
        )

    async def request(
        self,
        upstream: Upstream,
        method: str,
        url: str,
        *,
        mode: str | None = None,
        raise_for_status: bool = False,
        name: str = "shop",
        **kwargs: Any,
    ) -> tether.TetherResponse:
        network = httpx2.MockTransport(upstream)
        if (mode or self.mode) == "sync":
            with self.hub.client(name, network=network, raise_for_status=raise_for_status) as client:
                response = client.request(method, url, **kwargs)
        else:
            async with self.hub.async_client(name, network=network, raise_for_status=raise_for_status) as client:
                response = await client.request(method, url, **kwargs)
        assert isinstance(response, tether.TetherResponse)
        return response

    async def get(self, upstream: Upstream, url: str, **kwargs: Any) -> tether.TetherResponse:
        return await self.request(upstream, "GET", url, **kwargs)

    def store_files(self) -> list[Path]:
        """The store's files: the database, and its write-ahead log while it is open."""
        return sorted(self.folder.glob("tether.db*"))

    def store_bytes(self) -> bytes:
        """Every byte of the store's files."""
        return b"".join(path.read_bytes() for path in self.store_files())


MakeTether = Callable[..., Tether]


@pytest.fixture(params=["sync", "async"])
def make_tether(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    made: list[Tether] = []

    def make(extra: str = "", *, config: str | None = None, env: dict[str, str] | None = None) -> Tether:
        t = Tether(request.param, config or TOML.format(extra=extra), tmp_path, env)
        made.append(t)
        return t

    yield make
    for t in made:
        t.hub.close()


CACHE = "cache = true"


# --- RFC 9111: what is stored and served ---------------------------------------------------------------


async def test_a_fresh_response_is_served_from_the_cache_without_calling_the_api(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    first = await t.get(api, "/v1/products/1")
    second = await t.get(api, "/v1/products/1")
    assert api.calls == 1
    assert first.json() == second.json() == {"call": 1}
    assert first.extensions["tether.from_cache"] is False
    assert second.extensions["tether.from_cache"] is True
    assert second.extensions["tether.revalidated"] is False
    assert second.extensions["tether.stale"] is False
    assert second.extensions["tether.attempts"] == ()
    assert second.extensions["tether.integration"] == "shop"


async def test_a_cached_response_keeps_the_api_headers_and_reports_its_age(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=600", "X-Custom": "kept"}, age=30)
    await t.get(api, "/v1/products/1")
    cached = await t.get(api, "/v1/products/1")
    assert cached.extensions["tether.from_cache"] is True
    assert cached.headers["X-Custom"] == "kept"
    assert cached.headers["Content-Type"] == "application/json"
    assert 29 <= int(cached.headers["Age"]) <= 35


async def test_different_urls_are_cached_apart(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/products/1")
    other = await t.get(api, "/v1/products/2")
    query = await t.get(api, "/v1/products/1", params={"expand": "price"})
    assert api.calls == 3
    assert not other.extensions["tether.from_cache"]
    assert not query.extensions["tether.from_cache"]


async def test_post_is_never_cached(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    await t.request(api, "POST", "/v1/orders", json={"sku": "a"})
    second = await t.request(api, "POST", "/v1/orders", json={"sku": "a"})
    assert api.calls == 2
    assert second.extensions["tether.from_cache"] is False


async def test_a_successful_post_invalidates_the_cached_get_of_its_url(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/cart")
    await t.request(api, "POST", "/v1/cart", json={"sku": "a"})
    after = await t.get(api, "/v1/cart")
    assert api.calls == 3
    assert after.json() == {"call": 3}


async def test_no_store_is_never_stored(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "no-store, max-age=60"})
    await t.get(api, "/v1/me")
    await t.get(api, "/v1/me")
    assert api.calls == 2
    assert t.hub.stats("shop")["cache_stored"] == 0


async def test_private_is_cached_because_an_api_client_is_a_private_cache(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "private, max-age=60"})
    await t.get(api, "/v1/me")
    second = await t.get(api, "/v1/me")
    assert api.calls == 1
    assert second.extensions["tether.from_cache"] is True


async def test_a_response_past_its_max_age_is_fetched_again(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"}, age=61)  # already a second past its freshness
    await t.get(api, "/v1/products")
    again = await t.get(api, "/v1/products")
    assert api.calls == 2
    assert again.json() == {"call": 2}
    assert again.extensions["tether.from_cache"] is False


async def test_expires_in_the_future_is_fresh_and_in_the_past_is_not(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    future = Upstream(respond(headers={"Expires": formatdate(time.time() + 600, usegmt=True)}))
    past = Upstream(respond(headers={"Expires": formatdate(time.time() - 600, usegmt=True)}))
    for _ in range(2):
        await t.get(future, "/v1/future")
        await t.get(past, "/v1/past")
    assert (future.calls, past.calls) == (1, 2)


async def test_no_cache_response_is_stored_but_revalidated_every_time(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = Upstream(
        respond(headers={"Cache-Control": "no-cache", "ETag": '"v1"'}),
        lambda request: httpx2.Response(304, headers={"ETag": '"v1"', "Date": http_date()}),
    )
    await t.get(api, "/v1/products")
    second = await t.get(api, "/v1/products")
    assert api.calls == 2
    assert api.headers[1]["If-None-Match"] == '"v1"'
    assert second.extensions["tether.revalidated"] is True


async def test_request_no_cache_forces_a_revalidation(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/products")
    forced = await t.get(api, "/v1/products", headers={"Cache-Control": "no-cache"})
    assert api.calls == 2
    assert forced.json() == {"call": 2}


# --- revalidation ----------------------------------------------------------------------------------------


async def test_etag_revalidation_304_serves_the_stored_body_and_says_revalidated(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = Upstream(
        respond(payload={"price": 10}, age=120, headers={"Cache-Control": "max-age=60", "ETag": '"v1"'}),
        lambda request: httpx2.Response(304, headers={"ETag": '"v1"', "Cache-Control": "max-age=60"}),
    )
    await t.get(api, "/v1/products/1")
    revalidated = await t.get(api, "/v1/products/1")
    assert api.calls == 2
    assert api.headers[1]["If-None-Match"] == '"v1"'
    assert revalidated.status_code == 200
    assert revalidated.json() == {"price": 10}
    assert revalidated.extensions["tether.from_cache"] is True
    assert revalidated.extensions["tether.revalidated"] is True
    assert [attempt.status for attempt in revalidated.extensions["tether.attempts"]] == [304]
    assert t.hub.stats("shop")["cache_revalidated"] == 1


async def test_the_conditional_headers_do_not_stay_on_the_callers_request(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = Upstream(
        respond(age=120, headers={"Cache-Control": "max-age=60", "ETag": '"v1"'}),
        lambda request: httpx2.Response(304, headers={"ETag": '"v1"'}),
    )
    await t.get(api, "/v1/products/1")
    revalidated = await t.get(api, "/v1/products/1")
    assert "If-None-Match" not in revalidated.request.headers


async def test_last_modified_revalidation_sends_if_modified_since(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    modified = formatdate(time.time() - 86400, usegmt=True)
    api = Upstream(
        respond(payload={"v": 1}, age=120, headers={"Cache-Control": "max-age=60", "Last-Modified": modified}),
        lambda request: httpx2.Response(304, headers={"Last-Modified": modified}),
    )
    await t.get(api, "/v1/catalog")
    revalidated = await t.get(api, "/v1/catalog")
    assert api.headers[1]["If-Modified-Since"] == modified
    assert revalidated.json() == {"v": 1}
    assert revalidated.extensions["tether.revalidated"] is True


async def test_a_changed_resource_replaces_the_stored_one(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = Upstream(
        respond(payload={"v": 1}, age=120, headers={"Cache-Control": "max-age=60", "ETag": '"v1"'}),
        respond(payload={"v": 2}, headers={"Cache-Control": "max-age=60", "ETag": '"v2"'}),
    )
    await t.get(api, "/v1/catalog")
    changed = await t.get(api, "/v1/catalog")
    cached = await t.get(api, "/v1/catalog")
    assert api.calls == 2
    assert changed.json() == cached.json() == {"v": 2}
    assert cached.extensions["tether.from_cache"] is True


# --- TTL overrides ---------------------------------------------------------------------------------------


async def test_ttl_override_caches_an_endpoint_that_sends_no_cache_headers(make_tether: MakeTether) -> None:
    t = make_tether('cache = { "GET /v1/products*" = "1h" }')
    api = counting()
    await t.get(api, "/v1/products/1")
    second = await t.get(api, "/v1/products/1")
    assert api.calls == 1
    assert second.extensions["tether.from_cache"] is True
    assert second.headers["Cache-Control"] == "max-age=3600"


async def test_ttl_override_applies_only_to_matching_endpoints(make_tether: MakeTether) -> None:
    t = make_tether('cache = { "GET /v1/products*" = "1h" }')
    api = counting()
    for _ in range(2):
        await t.get(api, "/v1/orders")
    assert api.calls == 2


async def test_ttl_override_wins_over_no_store(make_tether: MakeTether) -> None:
    t = make_tether('[integrations.shop.cache]\nttl = { "/v1/products*" = "10m" }')
    api = counting({"Cache-Control": "no-cache, no-store"})
    await t.get(api, "/v1/products")
    second = await t.get(api, "/v1/products")
    assert api.calls == 1
    assert second.extensions["tether.from_cache"] is True


async def test_ttl_override_expires_after_its_ttl(make_tether: MakeTether) -> None:
    t = make_tether('cache = { "GET /v1/products*" = "1h" }')
    api = counting(age=3601)  # produced an hour and a second ago
    await t.get(api, "/v1/products")
    again = await t.get(api, "/v1/products")
    assert api.calls == 2
    assert again.extensions["tether.from_cache"] is False


async def test_ttl_patterns_are_relative_to_the_base_url_path(make_tether: MakeTether, tmp_path: Path) -> None:
    config = """
store = "sqlite:///tether.db"
[integrations.shop]
base_url = "https://api.shop.test/api/v2/"
cache = { "GET /products*" = "1h" }
"""
    t = make_tether(config=config)
    api = counting()
    await t.get(api, "products/1")
    await t.get(api, "products/1")
    assert api.calls == 1
    assert api.requests[0].url.path == "/api/v2/products/1"


def test_the_longest_matching_pattern_wins_whatever_the_order() -> None:
    rules = EndpointRules({"/v1/*": 1.0, "GET /v1/products/*": 2.0, "POST /v1/products/*": 3.0})
    assert rules.lookup("GET", "/v1/products/9") == 2.0
    assert rules.lookup("POST", "/v1/products/9") == 3.0
    assert rules.lookup("DELETE", "/v1/products/9") == 1.0
    assert rules.lookup("GET", "/v2/products/9") is None


def test_only_star_is_special_in_a_pattern() -> None:
    rules = EndpointRules({"GET /v1/items?[a]": True})
    assert rules.lookup("GET", "/v1/items?[a]") is True
    assert rules.lookup("GET", "/v1/itemsx[a]") is None


# --- sharing, persistence, and what a hit costs ----------------------------------------------------------


async def test_the_cache_is_shared_by_the_sync_and_async_clients_of_a_hub(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/products", mode="sync")
    from_async = await t.get(api, "/v1/products", mode="async")
    assert api.calls == 1
    assert from_async.extensions["tether.from_cache"] is True


async def test_the_cache_persists_across_hubs_on_the_same_sqlite_file(make_tether: MakeTether) -> None:
    first = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    await first.get(api, "/v1/products")
    first.hub.close()
    second = make_tether(CACHE)
    cached = await second.get(api, "/v1/products")
    assert api.calls == 1
    assert cached.extensions["tether.from_cache"] is True
    assert cached.json() == {"call": 1}


async def test_cached_hits_spend_no_attempt_and_never_wait_for_the_rate_limit(make_tether: MakeTether) -> None:
    t = make_tether(f'{CACHE}\nrate_limit = "1/s"')
    api = counting({"Cache-Control": "max-age=60"})
    responses = [await t.get(api, "/v1/products") for _ in range(5)]
    assert api.calls == 1
    assert t.timeline.waits == []  # a second call to the API within the second would have waited
    assert all(r.extensions["tether.attempts"] == () for r in responses[1:])
    await t.get(counting(), "/v1/uncached")
    assert t.timeline.waits == [pytest.approx(1.0)]  # the limiter still guards what goes to the API


async def test_an_integration_without_cache_or_fallback_neither_caches_nor_creates_the_store(
    make_tether: MakeTether,
) -> None:
    t = make_tether()
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/products")
    second = await t.get(api, "/v1/products")
    assert api.calls == 2
    assert "tether.from_cache" not in second.extensions
    assert t.store_files() == []


async def test_the_tether_cache_extension_false_leaves_the_cache_alone(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/products")
    bypassed = await t.get(api, "/v1/products", extensions={"tether.cache": False})
    assert api.calls == 2
    assert bypassed.extensions["tether.from_cache"] is False


async def test_stats_count_hits_misses_and_stores(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    for _ in range(3):
        await t.get(api, "/v1/products")
    stats = t.hub.stats("shop")
    assert (stats["cache_misses"], stats["cache_stored"], stats["cache_hits"]) == (1, 1, 2)


# --- credentials ---------------------------------------------------------------------------------------

TOKEN = "tok_live_4f9a1c2e8b7d6a5f"


async def test_bearer_tokens_are_never_written_to_the_store(make_tether: MakeTether, tmp_path: Path) -> None:
    t = make_tether(f'{CACHE}\nauth = {{ type = "bearer", token = "${{SHOP_TOKEN}}" }}', env={"SHOP_TOKEN": TOKEN})
    api = counting({"Cache-Control": "max-age=60", "Vary": "Authorization"})
    await t.get(api, "/v1/products")
    cached = await t.get(api, "/v1/products")
    assert cached.extensions["tether.from_cache"] is True
    assert api.headers[0]["Authorization"] == f"Bearer {TOKEN}"
    t.hub.close()
    stored = t.store_bytes()
    assert b"/v1/products" in stored  # the entry is there...
    assert TOKEN.encode() not in stored  # ...without the token, in the database or its log


async def test_api_keys_in_the_query_string_are_never_written_to_the_store(make_tether: MakeTether) -> None:
    t = make_tether(
        f'{CACHE}\nauth = {{ type = "api_key", key = "${{SHOP_KEY}}", in = "query", name = "api_key" }}',
        env={"SHOP_KEY": TOKEN},
    )
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/products")
    cached = await t.get(api, "/v1/products")
    assert cached.extensions["tether.from_cache"] is True
    assert api.requests[0].url.params["api_key"] == TOKEN
    t.hub.close()
    assert TOKEN.encode() not in t.store_bytes()


async def test_different_credentials_never_share_a_cached_response(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    alice = await t.get(api, "/v1/me", headers={"Authorization": "Bearer alice-token"})
    bob = await t.get(api, "/v1/me", headers={"Authorization": "Bearer bob-token"})
    alice_again = await t.get(api, "/v1/me", headers={"Authorization": "Bearer alice-token"})
    assert api.calls == 2
    assert (alice.json(), bob.json(), alice_again.json()) == ({"call": 1}, {"call": 2}, {"call": 1})
    t.hub.close()
    assert b"alice-token" not in t.store_bytes()


async def test_set_cookie_is_not_stored(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60", "Set-Cookie": "session=s3cr3t-session"})
    await t.get(api, "/v1/products")
    cached = await t.get(api, "/v1/products")
    assert "Set-Cookie" not in cached.headers
    t.hub.close()
    assert b"s3cr3t-session" not in t.store_bytes()


# --- the store -------------------------------------------------------------------------------------------


async def test_a_broken_store_file_degrades_to_no_cache_with_a_warning(
    make_tether: MakeTether, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "tether.db").write_bytes(b"this is not a database, it is a text file" * 100)
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    with caplog.at_level(logging.WARNING, logger="tether"):
        first = await t.get(api, "/v1/products")
        second = await t.get(api, "/v1/products")
    assert (first.status_code, second.status_code, api.calls) == (200, 200, 2)
    assert any("HTTP cache" in record.getMessage() for record in caplog.records)


async def test_a_broken_store_warns_once_not_on_every_call(
    make_tether: MakeTether, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.client import _cache_flow

    monkeypatch.setattr(_cache_flow, "_warned", [float("-inf")])  # no warning from an earlier test counts
    (tmp_path / "tether.db").write_bytes(b"not a database" * 100)
    # With credentials, the first store step reads the salt for their fingerprint: that is what fails here.
    t = make_tether(f'{CACHE}\nauth = {{ type = "bearer", token = "${{SHOP_TOKEN}}" }}', env={"SHOP_TOKEN": TOKEN})
    api = counting({"Cache-Control": "max-age=60"})
    with caplog.at_level(logging.DEBUG, logger="tether"):
        for _ in range(3):
            assert (await t.get(api, "/v1/products")).status_code == 200
    unavailable = [r for r in caplog.records if "HTTP cache unavailable" in r.getMessage()]
    assert [r.levelno for r in unavailable][:2] == [logging.WARNING, logging.DEBUG]
    assert api.calls == 3


class Chunks(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A body that arrives as a stream, as from the network (MockTransport bodies are read up front)."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"line 1\n"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"line 1\n"


async def test_a_streamed_response_is_passed_through_and_not_stored(make_tether: MakeTether) -> None:
    t = make_tether(CACHE)
    api = Upstream(lambda request: httpx2.Response(200, headers={"Cache-Control": "max-age=60"}, stream=Chunks()))
    for _ in range(2):
        streamed = await t.get(api, "/v1/export", extensions={"tether.stream": True})
        assert streamed.extensions["tether.from_cache"] is False
        assert streamed.text == "line 1\n"
    assert api.calls == 2
    assert t.hub.stats("shop")["cache_stored"] == 0


async def test_the_async_client_never_touches_sqlite_on_the_event_loop(
    make_tether: MakeTether, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    original = SqliteCacheStorage.get_entries

    def recording(self: SqliteCacheStorage, key: str) -> list[Any]:
        threads.append(threading.get_ident())
        return original(self, key)

    monkeypatch.setattr(SqliteCacheStorage, "get_entries", recording)
    t = make_tether(CACHE)
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/products", mode="async")
    await t.get(api, "/v1/products", mode="async")
    assert len(threads) == 2
    assert threading.get_ident() not in threads


async def test_the_store_file_is_readable_by_its_owner_only(make_tether: MakeTether, tmp_path: Path) -> None:
    t = make_tether(CACHE)
    await t.get(counting({"Cache-Control": "max-age=60"}), "/v1/products")
    assert (tmp_path / "tether.db").stat().st_mode & 0o077 == 0


def test_unused_entries_are_dropped_after_their_tti(tmp_path: Path) -> None:
    from hishel import Headers, Request, Response

    from tether.store.sqlite import SqliteStore

    now = [1_000_000.0]
    store = SqliteStore(tmp_path / "tether.db")
    storage = SqliteCacheStorage(store, wall=lambda: now[0])
    try:
        request = Request("GET", "https://api.test/x", Headers({}))
        storage.create_entry(request, Response(200, Headers({}), iter((b"body",))), "k", tti=100.0)
        assert len(storage.get_entries("k")) == 1
        now[0] += 99.0
        assert [b"".join(e.response.stream) for e in storage.get_entries("k")] == [b"body"]  # type: ignore[arg-type]
        now[0] += 101.0
        assert storage.get_entries("k") == []
    finally:
        store.close()


def test_the_least_recently_used_entries_go_when_the_cache_outgrows_its_size(tmp_path: Path) -> None:
    from hishel import Headers, Request, Response

    from tether.store.sqlite import SqliteStore

    now = [1_000_000.0]
    store = SqliteStore(tmp_path / "tether.db")
    storage = SqliteCacheStorage(store, max_bytes=10, wall=lambda: now[0])
    try:
        for number in range(32):  # the size is checked every 32 stores
            now[0] += 1.0
            request = Request("GET", f"https://api.test/{number}", Headers({}))
            storage.create_entry(request, Response(200, Headers({}), iter((b"four",))), f"k{number}")
        kept = [number for number in range(32) if storage.get_entries(f"k{number}")]
        assert kept == [30, 31]
    finally:
        store.close()


def test_a_newer_response_replaces_the_older_one_of_the_same_variant(tmp_path: Path) -> None:
    from hishel import Headers, Request, Response

    from tether.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "tether.db")
    storage = SqliteCacheStorage(store)
    try:
        vary = Headers({"vary": "Accept-Language"})
        for language, body in [("en", b"hello"), ("fr", b"bonjour"), ("en", b"hi")]:
            request = Request("GET", "https://api.test/x", Headers({"accept-language": language}))
            storage.create_entry(request, Response(200, vary, iter((body,))), "k")
        bodies = sorted(b"".join(e.response.stream) for e in storage.get_entries("k"))  # type: ignore[arg-type]
        assert bodies == [b"bonjour", b"hi"]
    finally:
        store.close()


def test_the_cache_table_lives_beside_the_rest_of_the_store(make_tether: MakeTether, tmp_path: Path) -> None:
    store = tether.Hub(parse_config(TOML.format(extra=CACHE), env={}), base_dir=tmp_path).store
    try:
        store.cache_storage().get_entries("nothing")
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "tether.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    connection.close()
    assert "http_cache" in tables
    assert not tables & {"entries", "streams"}  # hishel's generic names stay out of tether's file


# --- configuration ---------------------------------------------------------------------------------------


def _config(body: str) -> tether.config.models.IntegrationConfig:
    return parse_config(f'[integrations.shop]\nbase_url = "https://api.shop.test"\n{body}', env={}).integrations["shop"]


def _problems(body: str, top: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'{top}\n[integrations.shop]\nbase_url = "https://api.shop.test"\n{body}', env={})
    return [str(problem) for problem in caught.value.problems]


def test_cache_is_off_unless_written() -> None:
    assert _config("").cache.enabled is False
    assert _config("cache = true").cache.enabled is True
    assert _config("cache = false").cache.enabled is False


def test_cache_shorthand_is_a_table_of_endpoint_ttls() -> None:
    cache = _config('cache = { "GET /v1/products*" = "1h", "/v1/rates" = 30 }').cache
    assert cache.enabled is True
    assert cache.ttl == {"GET /v1/products*": 3600.0, "/v1/rates": 30.0}


def test_cache_errors_name_their_key_path() -> None:
    assert _problems('cache = { "GET v1/products" = "1h" }') == [
        "integrations.shop.cache.ttl: 'GET v1/products' is not an endpoint pattern; write \"METHOD /path\" or "
        '"/path", with * for any run of characters and {name} for one path segment, e.g. "GET /v1/products*" '
        'or "GET /v1/users/{id}"'
    ]
    assert _problems('cache = { "GET /v1/p" = "soon" }')[0].startswith("integrations.shop.cache.ttl.GET /v1/p: ")
    assert _problems("cache = { enabld = true }") == [
        "integrations.shop.cache.enabld: unknown key; did you mean 'enabled'?"
    ]


def test_store_must_be_a_sqlite_or_postgresql_url() -> None:
    assert _problems("", top='store = "/var/lib/tether.db"') == [
        'store: expected "sqlite:///PATH" (e.g. "sqlite:///tether.db" next to this file) or a postgresql:// URL'
    ]
    assert _problems("", top='store = "mysql://db/tether"')[0].startswith("store: expected ")


def test_a_relative_store_path_is_next_to_the_config_and_an_absolute_one_is_kept(tmp_path: Path) -> None:
    from tether.store import sqlite_path

    assert sqlite_path("sqlite:///tether.db", tmp_path) == str(tmp_path / "tether.db")
    assert sqlite_path("sqlite:///data/cache.db", tmp_path) == str(tmp_path / "data" / "cache.db")
    assert sqlite_path(f"sqlite:///{tmp_path}/abs.db", Path("/elsewhere")) == str(tmp_path / "abs.db")
    assert sqlite_path("sqlite:///:memory:", tmp_path) == ":memory:"


async def test_a_memory_store_caches_for_the_life_of_the_hub(make_tether: MakeTether) -> None:
    t = make_tether(config=TOML.format(extra=CACHE).replace("sqlite:///tether.db", "sqlite:///:memory:"))
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/products")
    await t.get(api, "/v1/products")
    assert api.calls == 1


def test_stats_of_an_unknown_integration_name_the_configured_ones(tmp_path: Path) -> None:
    with tether.Hub(parse_config(TOML.format(extra=""), env={}), base_dir=tmp_path) as hub:
        with pytest.raises(KeyError, match="configured: shop"):
            hub.stats("nope")
        assert hub.stats("shop")["fallbacks"] == 0


def test_stored_rows_hold_no_credential_header(make_tether: MakeTether, tmp_path: Path) -> None:
    """The request kept with an entry has its sensitive headers removed, not masked: nothing to leak."""
    from hishel import Headers, Request

    from tether.client._cache_keys import Keyring, scrub

    request = httpx2.Request(
        "GET", "https://user:pw@api.test/v1/x?api_key=k1&page=2", headers={"Authorization": "Bearer t", "X-A": "b"}
    )
    stored, key = scrub(request, "shop", Keyring(lambda: b"salt"))
    assert isinstance(stored, Request)
    assert stored.headers == Headers({"host": "api.test", "x-a": "b"})
    assert "k1" not in stored.url
    assert "pw" not in stored.url
    assert "page=2" in stored.url
    other, other_key = scrub(
        httpx2.Request("GET", "https://user:pw@api.test/v1/x?api_key=k2&page=2"), "shop", Keyring(lambda: b"salt")
    )
    assert other.url == stored.url
    assert other_key.digest() != key.digest()
    assert json.dumps(key.digest()).isascii()

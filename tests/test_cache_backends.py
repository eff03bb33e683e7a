"""The HTTP cache behaves the same in SQLite, PostgreSQL and Redis, through real clients and real servers.

Client tests run for each backend through ``hub.client`` and ``hub.async_client`` (the fakes and the driver are
``test_cache``'s). The backend comes from ``tether.toml`` as a user writes it: ``store = "sqlite:///…"``,
``store = "postgresql://…"`` (a schema of the test's own), or ``cache_store = "redis://…"`` (a redis-server of
the test's own, so the default key prefix is safe to use). Storage tests call each backend's storage directly.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import hishel
import httpx2
import pytest
import redis

from store_fixtures import PostgresSpace
from test_cache import TOML, Tether, Upstream, counting, http_date, respond
from test_state_redis import RedisServer
from tether.config import parse_config
from tether.errors import ConfigError
from tether.store import CacheStorage, open_cache_storage, open_store
from tether.store._health import Health, Unavailable
from tether.store.postgres import PostgresStore
from tether.store.redis_cache import RedisCacheStorage
from tether.store.sqlite import SqliteStore

CACHE = "cache = true"
STALE = 'fallback = "stale"'
TOKEN = "tok_live_backend_7c1e9a"


@dataclass
class Backend:
    """Where a test's cache lives, as ``tether.toml`` says it, and a way to read everything kept there."""

    name: str
    top: str
    stored: Callable[[], bytes]

    def config(self, extra: str) -> str:
        return TOML.format(extra=extra).replace('store = "sqlite:///tether.db"', self.top)


def _redis_bytes(url: str) -> bytes:
    client = redis.Redis.from_url(url)
    try:
        chunks: list[bytes] = []
        for key in client.scan_iter():
            chunks.append(key)
            if client.type(key) == b"hash":
                chunks.extend(b"".join(pair) for pair in client.hgetall(key).items())
            else:
                chunks.append(client.get(key) or b"")
        return b"".join(chunks)
    finally:
        client.close()


def _postgres_bytes(space: PostgresSpace) -> bytes:
    rows = space.rows("SELECT key, request, headers, body FROM http_cache")
    return b"".join(value if isinstance(value, bytes) else str(value).encode() for row in rows for value in row)


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "postgresql":
        space: PostgresSpace = request.getfixturevalue("postgres")
        return Backend("postgresql", f'store = "{space.url}"', lambda: _postgres_bytes(space))
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("private_redis")
        top = f'store = "sqlite:///tether.db"\ncache_store = "{server.url}"'
        return Backend("redis", top, lambda: _redis_bytes(server.url))
    files = lambda: b"".join(path.read_bytes() for path in sorted(tmp_path.glob("tether.db*")))  # noqa: E731
    return Backend("sqlite", 'store = "sqlite:///tether.db"', files)


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest, backend: Backend, tmp_path: Path) -> Iterator[Callable[..., Tether]]:
    made: list[Tether] = []

    def make(extra: str = CACHE, *, env: dict[str, str] | None = None) -> Tether:
        t = Tether(request.param, backend.config(extra), tmp_path, env)
        made.append(t)
        return t

    yield make
    for t in made:
        t.hub.close()


Make = Callable[..., Tether]


# --- the same behaviour in every backend -------------------------------------------------------------------


async def test_a_fresh_response_is_served_from_the_cache(make: Make) -> None:
    t = make()
    api = counting({"Cache-Control": "max-age=60"})
    first = await t.get(api, "/v1/products/1")
    second = await t.get(api, "/v1/products/1")
    assert api.calls == 1
    assert first.json() == second.json() == {"call": 1}
    assert second.extensions["tether.from_cache"] is True


async def test_etag_revalidation_serves_the_stored_body_on_304(make: Make) -> None:
    t = make()
    api = Upstream(
        respond(payload={"price": 10}, age=120, headers={"Cache-Control": "max-age=60", "ETag": '"v1"'}),
        not_modified,
    )
    await t.get(api, "/v1/products/1")
    revalidated = await t.get(api, "/v1/products/1")
    again = await t.get(api, "/v1/products/1")
    assert api.headers[1]["If-None-Match"] == '"v1"'
    assert revalidated.json() == again.json() == {"price": 10}
    assert revalidated.extensions["tether.revalidated"] is True
    assert again.extensions["tether.from_cache"] is True  # the 304's freshness was stored with the entry
    assert api.calls == 2


def not_modified(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(304, headers={"ETag": '"v1"', "Cache-Control": "max-age=60", "Date": http_date()})


async def test_a_changed_resource_replaces_the_stored_one(make: Make) -> None:
    t = make()
    api = Upstream(
        respond(payload={"v": 1}, age=120, headers={"Cache-Control": "max-age=60", "ETag": '"v1"'}),
        respond(payload={"v": 2}, headers={"Cache-Control": "max-age=60", "ETag": '"v2"'}),
    )
    await t.get(api, "/v1/catalog")
    changed = await t.get(api, "/v1/catalog")
    cached = await t.get(api, "/v1/catalog")
    assert changed.json() == cached.json() == {"v": 2}
    assert cached.extensions["tether.from_cache"] is True
    assert api.calls == 2


async def test_variants_named_by_vary_are_cached_apart(make: Make) -> None:
    t = make()
    api = counting({"Cache-Control": "max-age=60", "Vary": "Accept-Language"})
    english = await t.get(api, "/v1/greeting", headers={"Accept-Language": "en"})
    french = await t.get(api, "/v1/greeting", headers={"Accept-Language": "fr"})
    english_again = await t.get(api, "/v1/greeting", headers={"Accept-Language": "en"})
    assert (english.json(), french.json(), english_again.json()) == ({"call": 1}, {"call": 2}, {"call": 1})


async def test_a_successful_post_invalidates_the_cached_get(make: Make) -> None:
    t = make()
    api = counting({"Cache-Control": "max-age=60"})
    await t.get(api, "/v1/cart")
    await t.request(api, "POST", "/v1/cart", json={"sku": "a"})
    after = await t.get(api, "/v1/cart")
    assert after.json() == {"call": 3}


async def test_a_503_is_answered_with_the_last_good_response(make: Make) -> None:
    t = make(STALE)
    api = Upstream(respond(payload={"EUR": 1.08}, age=300), respond(503, {"error": "overloaded"}))
    await t.get(api, "/v1/rates")
    stale = await t.get(api, "/v1/rates")
    assert stale.status_code == 200
    assert stale.json() == {"EUR": 1.08}
    assert stale.extensions["tether.stale"] is True
    assert 299 <= int(stale.headers["X-Tether-Stale-Age"]) <= 310


async def test_the_cache_outlives_the_hub_that_filled_it(make: Make) -> None:
    """A second hub on the same config is another process: it finds what the first one stored."""
    first = make()
    api = counting({"Cache-Control": "max-age=60"})
    await first.get(api, "/v1/products")
    first.hub.close()
    cached = await make().get(api, "/v1/products")
    assert api.calls == 1
    assert cached.json() == {"call": 1}


async def test_credentials_are_never_written_and_never_shared(make: Make, backend: Backend) -> None:
    t = make(f'{CACHE}\nauth = {{ type = "api_key", key = "${{SHOP_KEY}}" }}', env={"SHOP_KEY": TOKEN})
    api = counting({"Cache-Control": "max-age=60"})
    alice = await t.get(api, "/v1/me", headers={"Authorization": "Bearer alice-token-51f0"})
    bob = await t.get(api, "/v1/me", headers={"Authorization": "Bearer bob-token-9d2c"})
    alice_again = await t.get(api, "/v1/me", headers={"Authorization": "Bearer alice-token-51f0"})
    assert (alice.json(), bob.json(), alice_again.json()) == ({"call": 1}, {"call": 2}, {"call": 1})
    assert api.headers[0]["X-API-Key"] == TOKEN
    t.hub.close()
    stored = backend.stored()
    assert b"/v1/me" in stored  # the entries are there...
    for secret in (TOKEN, "alice-token-51f0", "bob-token-9d2c"):
        assert secret.encode() not in stored  # ...without a credential


# --- storages, called directly ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def storages(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], CacheStorage]]:
    """Makes storages on one backend, each as another process would have it."""
    closers: list[Callable[[], None]] = []

    def make() -> CacheStorage:
        if request.param == "redis":
            prefix = request.getfixturevalue("redis_prefix")
            redis_storage = RedisCacheStorage(request.getfixturevalue("shared_redis_url"), prefix=prefix)
            closers.append(redis_storage.close)
            return redis_storage
        if request.param == "postgresql":
            store: PostgresStore | SqliteStore = PostgresStore(request.getfixturevalue("postgres").url)
        else:
            store = SqliteStore(tmp_path / "tether.db")
        closers.append(store.close)
        return store.cache_storage()

    yield make
    for close in closers:
        close()


def _response(body: bytes, headers: dict[str, str] | None = None) -> hishel.Response:
    return hishel.Response(200, hishel.Headers(headers or {}), iter((body,)))


def _request(url: str = "https://api.test/x", headers: dict[str, str] | None = None) -> hishel.Request:
    return hishel.Request("GET", url, hishel.Headers(headers or {}))


def _body(entry: hishel.Entry) -> bytes:
    stream = entry.response.stream
    assert isinstance(stream, Iterator)
    return b"".join(stream)


def test_every_process_gets_the_same_salt_whoever_asks_first(storages: Callable[[], CacheStorage]) -> None:
    racers = [storages() for _ in range(6)]
    salts: list[bytes] = []
    start = threading.Barrier(len(racers))

    def ask(storage: CacheStorage) -> None:
        start.wait()
        salts.append(storage.salt())

    threads = [threading.Thread(target=ask, args=(storage,)) for storage in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(salts) == 6
    assert len(set(salts)) == 1
    assert len(salts[0]) >= 16
    assert storages().salt() == salts[0]


def test_an_entry_reads_back_as_stored(storages: Callable[[], CacheStorage]) -> None:
    storage = storages()
    headers = {"content-type": "application/json", "set-something": "a"}
    entry = storage.create_entry(_request(headers={"accept": "x"}), _response(b'{"a": 1}', headers), "k", tti=60)
    assert _body(entry) == b'{"a": 1}'  # hishel reads the body it handed over
    [found] = storages().get_entries("k")
    assert found.id == entry.id
    assert _body(found) == b'{"a": 1}'
    assert found.response.headers.get("content-type") == "application/json"
    assert found.request.url == "https://api.test/x"
    assert found.request.headers.get("accept") == "x"


def test_a_newer_response_replaces_the_older_one_of_the_same_variant(storages: Callable[[], CacheStorage]) -> None:
    storage = storages()
    vary = {"vary": "Accept-Language"}
    for language, body in [("en", b"hello"), ("fr", b"bonjour"), ("en", b"hi")]:
        storage.create_entry(_request(headers={"accept-language": language}), _response(body, vary), "k", tti=60)
    assert sorted(_body(entry) for entry in storage.get_entries("k")) == [b"bonjour", b"hi"]


def test_headers_are_updated_and_entries_removed_and_both_ignore_a_missing_entry(
    storages: Callable[[], CacheStorage],
) -> None:
    storage = storages()
    entry = storage.create_entry(_request(), _response(b"body", {"etag": '"1"'}), "k", tti=60)
    storage.update_headers(entry.id, hishel.Headers({"etag": '"2"'}))
    [found] = storage.get_entries("k")
    assert found.response.headers.get("etag") == '"2"'
    storage.remove_entry(entry.id)
    assert storage.get_entries("k") == []
    storage.update_headers(entry.id, hishel.Headers({"etag": '"3"'}))  # gone: nothing comes back
    storage.remove_entry(uuid.uuid4())
    assert storage.get_entries("k") == []


# --- configuration -----------------------------------------------------------------------------------------


def _problems(top: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(top, env={})
    return [str(problem) for problem in caught.value.problems]


def test_store_may_be_a_postgresql_url() -> None:
    for url in ["postgresql://app@db.internal:5432/app?sslmode=require", "postgres://app@db/app"]:
        config = parse_config(f'store = "{url}"', env={})
        assert config.store == url
        assert config.cache_store is None


def test_cache_store_accepts_redis_postgresql_and_sqlite_urls() -> None:
    for url in ["redis://cache:6379/2", "rediss://:pw@cache:6380/0", "postgresql://app@db/app", "sqlite:///c.db"]:
        assert parse_config(f'cache_store = "{url}"', env={}).cache_store == url


def test_a_bad_cache_store_names_the_key_and_what_it_expects() -> None:
    assert _problems('cache_store = "memcached://cache:11211"') == [
        'cache_store: expected a redis:// URL, a postgresql:// URL or "sqlite:///PATH"; '
        "leave cache_store out to keep the cache in store"
    ]


def test_open_store_picks_the_backend_by_scheme_and_connects_to_nothing(tmp_path: Path) -> None:
    # Port 1 refuses connections: opening must not try it.
    postgres = open_store("postgresql://app:hunter2@127.0.0.1:1/app", tmp_path)
    sqlite = open_store("sqlite:///tether.db", tmp_path)
    try:
        assert isinstance(postgres, PostgresStore)
        assert isinstance(sqlite, SqliteStore)
        assert postgres.url == "postgresql://app:***@127.0.0.1:1/app"
        assert "hunter2" not in repr(postgres)
        postgres.cache_storage()
        assert not (tmp_path / "tether.db").exists()
    finally:
        postgres.close()
        sqlite.close()
    with pytest.raises(ValueError, match="not a sqlite:/// URL"):
        open_store("mysql://db/app", tmp_path)


def test_open_cache_storage_gives_redis_a_cache_of_its_own(tmp_path: Path) -> None:
    storage, close = open_cache_storage("redis://:hunter2@127.0.0.1:1/0", tmp_path)
    try:
        assert isinstance(storage, RedisCacheStorage)
        assert storage.url == "redis://:***@127.0.0.1:1/0"
        assert storage.prefix == "tether:cache:"
    finally:
        close()


# --- failing quietly ---------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_backend_is_left_alone_for_its_retry_interval_then_tried_by_one_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, calls = Clock(), []

    def down() -> None:
        calls.append(clock.now)
        raise OSError("connection refused")

    health = Health("redis://cache:6379/0", (OSError,), retry_interval=3.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="tether.store"):
        assert health.attempt("read", down) is None
        assert health.attempt("read", down) is None  # within the interval: not even tried
        with pytest.raises(Unavailable):
            health.require("salt read", down)
        clock.now = 3.0
        assert health.attempt("read", down) is None  # tried again, once
        assert health.attempt("read", down) is None
        clock.now = 6.5
        assert health.attempt("read", lambda: "back") == "back"
    assert calls == [0.0, 3.0]
    levels = [(r.levelno, r.tether["event"]) for r in caplog.records]  # type: ignore[attr-defined]
    assert levels == [
        (logging.WARNING, "store_error"),
        (logging.DEBUG, "store_error"),
        (logging.INFO, "store_recovered"),
    ]


def test_errors_that_are_not_the_backends_are_bugs_and_propagate() -> None:
    health = Health("sqlite:///x.db", (OSError,))
    with pytest.raises(KeyError):
        health.attempt("read", lambda: {}["missing"])

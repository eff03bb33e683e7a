"""The HTTP cache in Redis, against a real server: keys that expire by themselves, a salt set once, and an
outage that reads as misses.

Tests on the shared Redis use a key prefix of their own; tests that need the default prefix, or kill the
server, run a redis-server of their own.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import hishel
import httpx2
import pytest
import redis

import tether
from test_cache import TOML, counting
from test_state_redis import RedisServer
from tether.config import parse_config
from tether.store._health import Unavailable
from tether.store.redis_cache import RedisCacheStorage


@pytest.fixture
def client(shared_redis_url: str) -> Iterator[redis.Redis]:
    raw = redis.Redis.from_url(shared_redis_url)
    yield raw
    raw.close()


@pytest.fixture
def storage(shared_redis_url: str, redis_prefix: str) -> Iterator[RedisCacheStorage]:
    opened = RedisCacheStorage(shared_redis_url, prefix=redis_prefix)
    yield opened
    opened.close()


def _request(number: int = 0) -> hishel.Request:
    return hishel.Request("GET", f"https://api.test/{number}", hishel.Headers({}))


def _response(body: bytes = b"body") -> hishel.Response:
    return hishel.Response(200, hishel.Headers({}), iter((body,)))


def store_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "tether", {}).get("event") == "store_error"]


# --- keys and their lifetimes ------------------------------------------------------------------------------


def test_an_entry_expires_in_redis_after_its_tti_and_so_does_its_index(
    storage: RedisCacheStorage, client: redis.Redis, redis_prefix: str
) -> None:
    entry = storage.create_entry(_request(), _response(), "k", tti=100.0)
    with client.pipeline(transaction=True) as pipe:  # both read at the same instant
        pipe.pttl(f"{redis_prefix}entry:{entry.id.hex}")
        pipe.pttl(f"{redis_prefix}index:k")
        entry_ttl, index_ttl = pipe.execute()
    assert 99_000 <= entry_ttl <= 100_000
    assert entry_ttl <= index_ttl <= 100_000


def test_a_lookup_restarts_the_tti(storage: RedisCacheStorage, client: redis.Redis, redis_prefix: str) -> None:
    entry = storage.create_entry(_request(), _response(), "k", tti=100.0)
    key = f"{redis_prefix}entry:{entry.id.hex}"
    client.pexpire(key, 5_000)  # as if 95 seconds had passed unused
    assert len(storage.get_entries("k")) == 1
    assert client.pttl(key) > 99_000


def test_a_ttl_deadline_bounds_the_tti(shared_redis_url: str, redis_prefix: str, client: redis.Redis) -> None:
    now = [1_000_000.0]
    storage = RedisCacheStorage(shared_redis_url, prefix=redis_prefix, wall=lambda: now[0])
    try:
        entry = storage.create_entry(_request(), _response(), "k", ttl=50.0, tti=100.0)
        assert 49_000 <= client.pttl(f"{redis_prefix}entry:{entry.id.hex}") <= 50_000
        now[0] += 49.0
        assert len(storage.get_entries("k")) == 1
        now[0] += 2.0
        assert storage.get_entries("k") == []  # past its deadline, even if Redis has not dropped it yet
    finally:
        storage.close()


def test_an_entry_without_limits_never_expires(
    storage: RedisCacheStorage, client: redis.Redis, redis_prefix: str
) -> None:
    entry = storage.create_entry(_request(), _response(), "k")
    assert client.pttl(f"{redis_prefix}entry:{entry.id.hex}") == -1
    assert client.pttl(f"{redis_prefix}index:k") == -1
    assert len(storage.get_entries("k")) == 1


def test_an_entry_redis_dropped_is_a_miss(storage: RedisCacheStorage, client: redis.Redis, redis_prefix: str) -> None:
    entry = storage.create_entry(_request(), _response(), "k", tti=60.0)
    client.delete(f"{redis_prefix}entry:{entry.id.hex}")  # as maxmemory eviction does
    assert storage.get_entries("k") == []


def test_updating_the_headers_of_an_expired_entry_does_not_bring_it_back(
    storage: RedisCacheStorage, client: redis.Redis, redis_prefix: str
) -> None:
    entry = storage.create_entry(_request(), _response(), "k", tti=60.0)
    key = f"{redis_prefix}entry:{entry.id.hex}"
    client.delete(key)
    storage.update_headers(entry.id, hishel.Headers({"etag": '"2"'}))
    assert client.exists(key) == 0


def test_a_replaced_variant_deletes_the_older_entry(
    storage: RedisCacheStorage, client: redis.Redis, redis_prefix: str
) -> None:
    first = storage.create_entry(_request(), _response(b"old"), "k", tti=60.0)
    storage.create_entry(_request(), _response(b"new"), "k", tti=60.0)
    assert client.exists(f"{redis_prefix}entry:{first.id.hex}") == 0


def test_the_salt_is_whatever_the_first_process_set(
    storage: RedisCacheStorage, client: redis.Redis, redis_prefix: str
) -> None:
    client.set(f"{redis_prefix}salt", b"set by another process")
    assert storage.salt() == b"set by another process"


# --- through the hub ---------------------------------------------------------------------------------------


def test_a_redis_cache_store_holds_the_cache_under_its_prefix_and_closes_with_the_hub(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    # Call records off: they would go to the store, and this test shows the cache alone never needs it.
    config = TOML.format(extra="cache = true").replace(
        'store = "sqlite:///tether.db"', f'cache_store = "{private_redis.url}"\nmonitoring = {{ record = false }}'
    )
    hub = tether.Hub(parse_config(config, env={}), base_dir=tmp_path)
    api = counting({"Cache-Control": "max-age=60"})
    with hub.client("shop", network=httpx2.MockTransport(api)) as client:
        client.get("/v1/products")
        assert client.get("/v1/products").extensions["tether.from_cache"] is True
    admin = redis.Redis.from_url(private_redis.url)
    try:
        kinds = sorted({key.decode().rsplit(":", 1)[0] for key in admin.scan_iter()})
        assert kinds == ["tether:cache:entry", "tether:cache:index"]
        assert len(admin.client_list()) == 2  # this one and the hub's
        hub.close()
        deadline = time.monotonic() + 5
        while len(admin.client_list()) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the server sees the hub's socket close a moment later
        assert len(admin.client_list()) == 1
    finally:
        admin.close()
    assert not (tmp_path / "tether.db").exists()  # the cache went to Redis: the store was never needed


# --- Redis going away ------------------------------------------------------------------------------------


def test_a_killed_connection_costs_no_miss(private_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    storage = RedisCacheStorage(private_redis.url)
    admin = redis.Redis.from_url(private_redis.url)
    try:
        storage.create_entry(_request(), _response(), "k", tti=60.0)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1  # as a Redis restart or failover does
        with caplog.at_level(logging.WARNING, logger="tether"):
            assert len(storage.get_entries("k")) == 1
        assert store_errors(caplog) == []
    finally:
        admin.close()
        storage.close()


def test_redis_down_reads_as_a_miss_with_one_warning_then_recovers(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    storage = RedisCacheStorage(private_redis.url.replace("redis://", "redis://:hunter2@"), retry_interval=0.0)
    admin = redis.Redis.from_url(private_redis.url)
    admin.config_set("requirepass", "hunter2")
    admin.close()
    try:
        storage.create_entry(_request(), _response(b"kept"), "k", tti=60.0)
        private_redis.stop()
        with caplog.at_level(logging.DEBUG, logger="tether"):
            assert storage.get_entries("k") == []
            storage.create_entry(_request(), _response(), "k", tti=60.0)
            storage.update_headers(uuid.uuid4(), hishel.Headers({}))
            storage.remove_entry(uuid.uuid4())
            with pytest.raises(redis.ConnectionError):
                storage.salt()
        errors = store_errors(caplog)
        assert [r.levelno for r in errors] == [logging.WARNING] + [logging.DEBUG] * 3
        message = errors[0].getMessage()
        assert message.startswith(f"HTTP cache read failed in redis://:***@127.0.0.1:{private_redis.port}/0: ")
        assert "hunter2" not in message
        private_redis.start()  # empty: it kept nothing on disk
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tether"):
            assert storage.get_entries("k") == []
        assert [r.getMessage() for r in caplog.records] == [f"HTTP cache in {storage.url} answers again"]
        storage.create_entry(_request(), _response(b"again"), "k", tti=60.0)
        assert len(storage.get_entries("k")) == 1
    finally:
        storage.close()


def test_during_an_outage_redis_is_left_alone_until_the_retry_interval_has_passed(
    private_redis: RedisServer,
) -> None:
    storage = RedisCacheStorage(private_redis.url, retry_interval=3600.0)
    try:
        private_redis.stop()
        assert storage.get_entries("k") == []
        private_redis.start()
        assert storage.get_entries("k") == []  # not tried: the interval has not passed
        with pytest.raises(Unavailable):
            storage.salt()
    finally:
        storage.close()


def test_redis_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RedisCacheStorage("redis://127.0.0.1:1/0", timeout=0)

"""Prometheus metrics from call records: ``enable_metrics`` after real calls, the exposition checked by the
real ``promtool``, ``/metrics`` of a real ``tether serve`` counting another process's calls through the shared
store, and :class:`LogFollower` reading PostgreSQL ids committed out of order each exactly once."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx2
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tether
from fakes import Timeline
from store_fixtures import PostgresSpace
from test_call_records import Api, Reply, serving_api
from tether.config.loader import parse_config
from tether.errors import CallError, CircuitOpenError
from tether.observe.calllog import CallLog
from tether.observe.metrics import CallMetrics, LogFollower, enable_metrics
from tether.observe.records import LATENCY_BUCKETS, CallRecord
from tether.server import create_app
from tether.server.running import serving
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SqliteStore

SUNSET = "Wed, 11 Nov 2026 23:59:59 GMT"


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with serving_api() as server:
        yield server


def config(api: Api, store: str) -> str:
    return f"""
store = "{store}"
[monitoring]
otel = false
[integrations.acme]
base_url = "{api.url}/v1"
retry = {{ attempts = 3, backoff = "1s" }}
breaker = false
[integrations.fragile]
base_url = "{api.url}/v1"
retry = false
breaker = {{ min_calls = 2, failure_ratio = 0.5, open_for = "1m" }}
[integrations.cached]
base_url = "{api.url}/v1"
retry = false
breaker = false
cache = true
fallback = "stale"
"""


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture
def hub(api: Api, tmp_path: Path, timeline: Timeline) -> Iterator[tether.Hub]:
    made = tether.Hub(
        parse_config(config(api, f"sqlite:///{tmp_path / 'tether.db'}"), env={}),
        base_dir=tmp_path,
        clock=timeline.clock,
        sleep=timeline.sleep,
    )
    yield made
    made.close()


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs promtool on PATH")
        pytest.skip("promtool is not installed")
    return found


def assert_promtool_accepts(exposition: bytes) -> None:
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=exposition, capture_output=True, timeout=30, check=False
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")


def make_calls(hub: tether.Hub, api: Api) -> list[tether.TetherResponse]:
    """Two plain calls, one retried once, a 401, one with AI usage, one with rate-limit and sunset headers,
    and two 503s that open ``fragile``'s breaker, then a refused call."""
    api.script("/v1/metrics-flaky", Reply(503), Reply(200))
    api.script("/v1/metrics-denied", Reply(401, {"error": {"message": "Invalid API key provided"}}))
    api.script("/v1/metrics-chat", Reply(body={"usage": {"total_tokens": 21}}))
    limited = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "25", "Deprecation": "true", "Sunset": SUNSET}
    api.script("/v1/metrics-limited", Reply(headers=limited))
    api.script("/v1/metrics-down", Reply(503))
    responses = []
    with hub.client("acme") as client:
        for path in ("/customers", "/customers", "/metrics-flaky", "/metrics-denied", "/metrics-limited"):
            responses.append(client.get(path))
        responses.append(client.post("/metrics-chat", json={"messages": []}))
    with hub.client("fragile") as client:
        responses += [client.get("/metrics-down"), client.get("/metrics-down")]
        with pytest.raises(CircuitOpenError):
            client.get("/metrics-down")
    return responses  # type: ignore[return-value]


# --- enable_metrics --------------------------------------------------------------------------------------------


def test_enable_metrics_counts_real_calls_on_a_private_registry(hub: tether.Hub, api: Api, timeline: Timeline) -> None:
    registry = CollectorRegistry()
    enable_metrics(hub, registry)
    responses = make_calls(hub, api)
    assert hub.recorder is not None
    assert generate_latest(registry).count(b"tether_requests_total{") == 0  # nothing until the batch is flushed
    hub.recorder.flush()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    def requests(integration: str, method: str, endpoint: str, code: str, error: str) -> float | None:
        labels = {"integration": integration, "method": method, "endpoint": endpoint, "code": code, "error": error}
        return value("tether_requests_total", **labels)

    assert requests("acme", "GET", "/customers", "200", "false") == 2
    assert requests("acme", "GET", "/metrics-flaky", "200", "false") == 1
    assert requests("acme", "GET", "/metrics-denied", "401", "true") == 1
    assert requests("acme", "POST", "/metrics-chat", "200", "false") == 1
    assert requests("fragile", "GET", "/metrics-down", "503", "true") == 2
    assert requests("fragile", "GET", "/metrics-down", "none", "true") == 1  # refused: no status
    assert value("tether_request_attempts_total", integration="acme") == 7  # six calls, one retried once
    assert value("tether_request_attempts_total", integration="fragile") == 2  # the refused call made none
    assert value("tether_ai_tokens_total", integration="acme") == 21
    received = sum(len(response.content) for response in responses[:6])  # acme's six responses
    assert value("tether_response_bytes_total", integration="acme") == received

    flaky = {"integration": "acme", "method": "GET", "endpoint": "/metrics-flaky"}
    (wait,) = timeline.waits  # the manual clock moved only by the one backoff wait
    assert value("tether_request_duration_seconds_count", **flaky) == 1
    assert value("tether_request_duration_seconds_sum", **flaky) == pytest.approx(wait)
    for bound in LATENCY_BUCKETS:
        expected = 1.0 if wait <= bound else 0.0
        assert value("tether_request_duration_seconds_bucket", **flaky, le=str(bound)) == expected
    assert value("tether_request_duration_seconds_bucket", **flaky, le="+Inf") == 1

    assert value("tether_rate_limit_usage_ratio", integration="acme") == 0.75
    assert value("tether_api_deprecated", integration="acme") == 1
    assert value("tether_api_sunset_timestamp_seconds", integration="acme") == parsedate_to_datetime(SUNSET).timestamp()
    assert value("tether_api_deprecated", integration="fragile") == 0
    assert value("tether_circuit_open", integration="fragile") == 1
    assert value("tether_circuit_open", integration="acme") == 0
    assert value("tether_call_records_dropped_total") == 0
    timeline.clock.advance(61)  # a refusal more than a minute old no longer counts as open
    assert value("tether_circuit_open", integration="fragile") == 0


def test_the_exposition_passes_promtool_check_metrics(hub: tether.Hub, api: Api) -> None:
    registry = CollectorRegistry()
    enable_metrics(hub, registry)
    make_calls(hub, api)
    assert hub.recorder is not None
    hub.recorder.flush()
    exposition = generate_latest(registry)
    assert b"tether_api_sunset_timestamp_seconds" in exposition
    assert_promtool_accepts(exposition)


def test_enable_metrics_exports_the_cache_and_fallback_counters(hub: tether.Hub, api: Api) -> None:
    registry = CollectorRegistry()
    enable_metrics(hub, registry)
    api.script("/v1/cached-rates", Reply(headers={"Cache-Control": "max-age=60"}))
    api.script("/v1/cached-quotes", Reply(headers={"Cache-Control": "max-age=0"}), Reply(503))
    with hub.client("cached") as client:
        assert client.get("/cached-rates").extensions["tether.from_cache"] is False
        assert client.get("/cached-rates").extensions["tether.from_cache"] is True
        client.get("/cached-quotes")  # stored, stale at once
        # The API answers 503 when asked again: the last good response stands in.
        assert client.get("/cached-quotes").extensions["tether.fallback"] == "stale"

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"integration": "cached", **labels})

    assert value("tether_cache_lookups_total", result="hit") == 1
    assert value("tether_cache_stored_total") == 2
    assert value("tether_fallbacks_total", kind="stale") == 1
    assert value("tether_fallbacks_total", kind="static") == 0
    stats = hub.stats("cached")
    exported = {
        "cache_hits": value("tether_cache_lookups_total", result="hit"),
        "cache_revalidated": value("tether_cache_lookups_total", result="revalidated"),
        "cache_misses": value("tether_cache_lookups_total", result="miss"),
        "cache_stored": value("tether_cache_stored_total"),
        "fallbacks_stale": value("tether_fallbacks_total", kind="stale"),
        "fallbacks_static": value("tether_fallbacks_total", kind="static"),
    }
    assert exported == {name: stats[name] for name in exported}
    assert registry.get_sample_value("tether_cache_lookups_total", {"integration": "acme", "result": "hit"}) == 0
    assert hub.recorder is not None
    hub.recorder.flush()  # no record for the hit; the stale fallback's call is recorded as the 503 it stood in for
    calls = sorted((each.record.endpoint, each.record.status) for each in hub.call_log.calls(since=0))
    assert calls == [("/cached-quotes", 200), ("/cached-quotes", 503), ("/cached-rates", 200)]


def test_enable_metrics_needs_call_records(api: Api, tmp_path: Path) -> None:
    text = config(api, f"sqlite:///{tmp_path / 'tether.db'}").replace("otel = false", "record = false\notel = false")
    with tether.Hub(parse_config(text, env={}), base_dir=tmp_path) as hub, pytest.raises(ValueError, match="record"):
        enable_metrics(hub, CollectorRegistry())


def test_a_store_outage_does_not_inflate_the_counters(api: Api, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")  # a store under a regular file cannot be opened: every write fails
    text = config(api, f"sqlite:///{tmp_path / 'a-file' / 'tether.db'}")
    with tether.Hub(parse_config(text, env={}), base_dir=tmp_path) as hub:
        registry = CollectorRegistry()
        enable_metrics(hub, registry)
        with hub.client("acme") as client:
            client.get("/customers")
        assert hub.recorder is not None
        for _ in range(3):
            hub.recorder.flush()
        labels = {"integration": "acme", "method": "GET", "endpoint": "/customers", "code": "200", "error": "false"}
        assert registry.get_sample_value("tether_requests_total", labels) == 1


# --- /metrics of tether serve -------------------------------------------------------------------------------------


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx2.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert_promtool_accepts(answer.content)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_metrics_of_tether_serve_count_the_calls_another_process_wrote_to_the_store(api: Api, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    other = tether.Hub(parse_config(config(api, store), env={}), base_dir=tmp_path)  # another "process"
    server_hub = tether.Hub(parse_config(config(api, store), env={}), base_dir=tmp_path)
    api.script("/v1/serve-flaky", Reply(503), Reply(200))
    api.script("/v1/missing-route", Reply(404, {"error": {"message": "No such route"}}))
    try:
        with other.client("acme") as client:
            client.get("/customers")  # before the server starts: not counted
        assert other.recorder is not None
        other.recorder.flush()
        with serving(create_app(server_hub)) as url:
            with other.client("acme") as client:
                for path in ("/customers", "/customers", "/customers"):
                    client.get(path)
                with pytest.raises(CallError):
                    client.get("/missing-route", params={"x": "1"}).raise_for_status()
            other.recorder.flush()
            samples = scrape(url)
            key = (("code", "200"), ("endpoint", "/customers"), ("error", "false"))
            ok = ("tether_requests_total", (*key, ("integration", "acme"), ("method", "GET")))
            missing = (
                "tether_requests_total",
                (
                    ("code", "404"),
                    ("endpoint", "/missing-route"),
                    ("error", "true"),
                    ("integration", "acme"),
                    ("method", "GET"),
                ),
            )
            assert samples[ok] == 3
            assert samples[missing] == 1
            assert samples[("tether_request_attempts_total", (("integration", "acme"),))] == 4
            again = scrape(url)  # a second scrape counts nothing twice
            assert again[ok] == 3
            with other.client("acme") as client:
                client.get("/serve-flaky")
            other.recorder.flush()
            third = scrape(url)
            flaky = (*[("code", "200"), ("endpoint", "/serve-flaky")], ("error", "false"))
            assert third[("tether_requests_total", (*flaky, ("integration", "acme"), ("method", "GET")))] == 1
            assert third[("tether_request_attempts_total", (("integration", "acme"),))] == 6
    finally:
        other.close()
        server_hub.close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(registry: CollectorRegistry, family_name: str | None = None) -> Samples:
    """Every sample of ``registry`` (or of one family) by name and labels, without the ``_created`` ones."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        if family_name is None or family.name == family_name
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def assert_same_samples(got: Samples, expected: Samples) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@settings(max_examples=50)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["stripe", "openai"]),
                st.sampled_from(["/v1/a", "/v1/b"]),
                st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(min_value=0, max_value=100, allow_nan=False)),
            ),
            max_size=20,
        ),
        max_size=4,
    )
)
def test_the_latency_histogram_equals_prometheus_clients_own(batches: list[list[tuple[str, str, float]]]) -> None:
    """tether keeps its own histogram (cheaper per observation); the exposition must be the one
    prometheus-client's Histogram would give for the same observations, bound for bound."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    metrics = CallMetrics(ours)
    reference = Histogram(
        "tether_request_duration_seconds",
        "Call latency, retries and waits included.",
        ["integration", "method", "endpoint"],
        buckets=LATENCY_BUCKETS,
        registry=theirs,
    )
    for batch in batches:
        metrics.observe([CallRecord(1.7e9, name, "GET", path, 200, "success", latency=t) for name, path, t in batch])
        for name, path, latency in batch:
            reference.labels(name, "GET", path).observe(latency)

    durations = "tether_request_duration_seconds"
    assert_same_samples(samples(ours, durations), samples(theirs, durations))


# --- LogFollower --------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


INSERT = (
    "INSERT INTO tether_calls (at, integration, method, endpoint, status, outcome, failed, latency, attempts, "
    "bytes_sent, bytes_received, request_id) VALUES (%s, 'stripe', 'GET', '/v1/customers', 200, 'success', 0, "
    "0.1, 1, 0, 0, %s) RETURNING id"
)

INSERT_WITH_ID = INSERT.replace("(at,", "(id, at,", 1).replace("VALUES (", "VALUES (%s, ", 1)


def ids_of(records: list[CallRecord]) -> list[str | None]:
    return [each.request_id for each in records]


def test_log_follower_starts_at_the_end_and_reads_each_record_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "tether.db")
    try:
        log = CallLog(store)
        log.write([CallRecord(1.7e9, "stripe", "GET", "/", 200, "success", request_id="before")])
        follower = LogFollower(log)
        assert follower.read() == []  # following starts now
        log.write([CallRecord(1.7e9 + n, "stripe", "GET", "/", 200, "success", request_id=str(n)) for n in range(3)])
        assert ids_of(follower.read()) == ["0", "1", "2"]
        assert follower.read() == []
        # Failures are rows of their own, read ``limit`` at a time; plain successes come a batch at a time.
        log.write(
            [CallRecord(1.7e9 + n, "stripe", "GET", "/", 500, "not retryable", request_id=str(n)) for n in range(5)]
        )
        assert ids_of(follower.read(limit=2)) == ["0", "1"]
        assert ids_of(follower.read(limit=10)) == ["2", "3", "4"]
        log.write([CallRecord(1.7e9 + n, "openai", "GET", "/", 200, "success", request_id=f"b{n}") for n in range(3)])
        log.write([CallRecord(1.7e9 + 60, "stripe", "GET", "/", 503, "attempts exhausted", request_id="row")])
        assert ids_of(follower.read(limit=1)) == ["row", "b0", "b1", "b2"]
        assert follower.read() == []
    finally:
        store.close()


class Followed:
    """A call log on PostgreSQL and a follower of it that has started (settle 30 s, on ``clock``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store = PostgresStore(url)
        self.clock = Clock()
        self.log = CallLog(self.store)
        self.log.ensure_schema()
        self.follower = LogFollower(self.log, settle=30.0, wall=self.clock)
        assert self.follower.read() == []  # following starts now


@pytest.fixture
def followed(postgres: PostgresSpace) -> Iterator[Followed]:
    followed = Followed(postgres.url)
    yield followed
    followed.store.close()


def test_log_follower_reads_postgresql_ids_committed_out_of_order_exactly_once(followed: Followed) -> None:
    follower, clock = followed.follower, followed.clock
    with psycopg.connect(followed.url) as first, psycopg.connect(followed.url) as second:
        low = first.execute(INSERT, (1.7e9, "low")).fetchone()
        high = second.execute(INSERT, (1.7e9, "high")).fetchone()
        assert low is not None
        assert high is not None
        assert low[0] < high[0]
        second.commit()  # the higher id is visible first
        assert ids_of(follower.read()) == ["high"]
        clock.now += 5
        assert follower.read() == []  # still waiting for the lower id
        first.commit()
        clock.now += 5
        assert ids_of(follower.read()) == ["low"]
        assert follower.read() == []
        clock.now += 60
        assert follower.read() == []
    followed.log.write([CallRecord(1.7e9, "stripe", "GET", "/", 200, "success", request_id="later")])
    assert ids_of(follower.read()) == ["later"]


def test_log_follower_stops_waiting_for_a_rolled_back_id_after_settle(followed: Followed) -> None:
    """The skipped id is looked for while ``settle`` lasts; a row that appears with it later is no longer read
    (here inserted with that id explicitly, which a rolled-back transaction never does)."""
    follower, clock = followed.follower, followed.clock
    with psycopg.connect(followed.url) as first, psycopg.connect(followed.url) as second:
        gone = first.execute(INSERT, (1.7e9, "gone")).fetchone()
        kept = second.execute(INSERT, (1.7e9, "kept")).fetchone()
        assert gone is not None
        assert kept is not None
        second.commit()
        first.rollback()
    assert ids_of(follower.read()) == ["kept"]
    clock.now += 29
    assert follower.read() == []  # within settle: still looked for
    clock.now += 2
    assert follower.read() == []  # past settle: given up
    with psycopg.connect(followed.url) as late:
        late.execute(INSERT_WITH_ID, (gone[0], 1.7e9, "gone"))
    assert follower.read() == []  # the given-up id is not read any more
    followed.log.write([CallRecord(1.7e9, "stripe", "GET", "/", 200, "success", request_id="next")])
    assert ids_of(follower.read()) == ["next"]


def test_log_follower_still_reads_a_skipped_id_that_appears_within_settle(followed: Followed) -> None:
    follower = followed.follower
    with psycopg.connect(followed.url) as first, psycopg.connect(followed.url) as second:
        slow = first.execute(INSERT, (1.7e9, "slow")).fetchone()
        second.execute(INSERT, (1.7e9, "fast"))
        assert slow is not None
        second.commit()
        assert ids_of(follower.read()) == ["fast"]
        followed.clock.now += 29.5
        first.commit()
    assert ids_of(follower.read()) == ["slow"]


metric_records = st.builds(
    lambda at, name, path, status, outcome, latency, attempts, tokens, limit, left, sunset: CallRecord(
        at,
        name,
        "GET",
        path,
        status,
        outcome,
        latency=latency,
        attempts=attempts,
        bytes_received=attempts * 100,
        tokens=tokens,
        limit=limit,
        limit_remaining=left,
        sunset=sunset,
    ),
    st.floats(1.7e9, 1.7e9 + 600),
    st.sampled_from(["stripe", "openai"]),
    st.sampled_from(["/v1/a", "/v1/b"]),
    st.sampled_from([200, 201, 401, 429, 503, None]),
    st.sampled_from(["success", "circuit open", "retries exhausted"]),
    st.floats(0, 40, allow_nan=False),
    st.integers(0, 4),
    st.none() | st.integers(0, 5000),
    st.none() | st.sampled_from([0.0, 100.0]),
    st.none() | st.floats(0, 120, allow_nan=False),
    st.none() | st.just("Wed, 11 Nov 2026 23:59:59 GMT"),
)


@settings(max_examples=60)
@given(st.lists(metric_records, max_size=30))
def test_a_batch_counts_as_its_records_one_at_a_time(records: list[CallRecord]) -> None:
    """observe() reads a batch a column at a time; what it exports is what the records give one by one."""
    batched, single = CollectorRegistry(), CollectorRegistry()
    CallMetrics(batched, wall=lambda: 1.7e9 + 700).observe(records)
    one_by_one = CallMetrics(single, wall=lambda: 1.7e9 + 700)
    for record in records:
        one_by_one.observe([record])

    got = samples(batched)
    assert_same_samples(got, samples(single))
    for name in {record.integration for record in records}:  # and the counters are the records' sums
        mine = [record for record in records if record.integration == name]
        labels = (("integration", name),)
        assert got[("tether_request_attempts_total", labels)] == sum(record.attempts for record in mine)
        assert got.get(("tether_ai_tokens_total", labels), 0) == sum(record.tokens or 0 for record in mine)
        assert got.get(("tether_response_bytes_total", labels), 0) == sum(record.bytes_received for record in mine)
        calls = sum(
            value for (metric, found), value in got.items() if metric == "tether_requests_total" and labels[0] in found
        )
        assert calls == len(mine)

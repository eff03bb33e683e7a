"""The call log against the real SQLite and PostgreSQL stores: records read back as written, the per-minute
summaries always equal a recount of the records, concurrent writers lose nothing, and the latency quantiles
the dashboard and the alerts read are exact on bucket bounds."""

from __future__ import annotations

import itertools
import os
import socket
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store_fixtures import PostgresSpace
from tether.observe.calllog import CallLog
from tether.observe.columns import Calls
from tether.observe.packed import split
from tether.observe.records import LATENCY_BUCKETS, CallRecord, Try
from tether.observe.summary import Minute
from tether.store import Store
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SqliteStore

T0 = 1_700_000_040.0  # the start of a minute
STATUSES = [None, 200, 201, 204, 400, 401, 403, 404, 429, 500, 503]
OUTCOMES = ["success", "circuit open", "attempts exhausted", "not retryable"]
FOREVER = 1e12  # later than any record


def open_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if kind == "sqlite":
        return SqliteStore(tmp_path / "tether.db")
    space: PostgresSpace = request.getfixturevalue("postgres")
    return PostgresStore(space.url, max_connections=4)


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(kind, request, tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def log(store: Store) -> CallLog:
    return CallLog(store)


def record(at: float = T0, **fields: object) -> CallRecord:
    values: dict[str, object] = {
        "at": at,
        "integration": "stripe",
        "method": "GET",
        "endpoint": "/v1/customers",
        "status": 200,
        "outcome": "success",
    }
    values.update(fields)
    return CallRecord(**values)  # type: ignore[arg-type]


def recount(records: list[CallRecord]) -> dict[str, list[Minute]]:
    """The summaries, by the definition: every record added to its integration's minute, in order."""
    minutes: dict[tuple[str, int], Minute] = {}
    for each in records:
        key = (each.integration, int(each.at // 60))
        minutes.setdefault(key, Minute(minute=key[1])).add(each)
    result: dict[str, list[Minute]] = {}
    for (integration, _), minute in sorted(minutes.items(), key=lambda item: (item[0][1], item[0][0])):
        result.setdefault(integration, []).append(minute)
    return result


def assert_same(read: Minute, expected: Minute, *, key: bool = True) -> None:
    """Equal sums; ``key=False`` for totals, whose ``minute`` is the latest piece's (a minute or an hour)."""
    counts = ("minute",) * key + (
        "calls",
        "failures",
        "auth_failures",
        "rejected",
        "attempts",
        "tokens",
        "bytes_received",
    )
    assert {name: getattr(read, name) for name in counts} == {name: getattr(expected, name) for name in counts}
    assert read.buckets == expected.buckets
    assert read.latency_sum == pytest.approx(expected.latency_sum, rel=1e-9, abs=1e-9)
    if expected.max_usage is None:
        assert read.max_usage is None
    else:
        assert read.max_usage == pytest.approx(expected.max_usage, rel=1e-12)
    assert (read.version, read.deprecation, read.sunset) == (expected.version, expected.deprecation, expected.sunset)


# --- writing and reading back -------------------------------------------------------------------------------------


def test_a_record_reads_back_exactly_as_written(log: CallLog) -> None:
    full = record(
        integration="openai",
        method="POST",
        endpoint="/v1/chat/completions",
        status=503,
        outcome="attempts exhausted",
        error="ServerError",
        hint="the provider failed after 2 retries; check its status page, or try again later",
        latency=1.25,
        attempts=3,
        peer="10.0.0.7",
        bytes_sent=321,
        bytes_received=54,
        limit=500.0,
        limit_remaining=12.0,
        tokens=4321,
        version="2024-06-20",
        deprecation="@1735689600",
        sunset="Wed, 11 Nov 2026 23:59:59 GMT",
        request_id="req_9f8e7d",
        tries=(Try(503, None, "10.0.0.7", 0.5), Try(None, "ReadTimeout", None, 0.25), Try(503, None, "10.0.0.8", 0.1)),
    )
    bare = record(T0 + 1.5, status=None, outcome="circuit open", error="CircuitOpenError", attempts=0)
    plain = record(
        T0 + 0.5,
        method="POST",
        status=201,
        latency=0.123456789,
        peer="::1",
        bytes_sent=12,
        bytes_received=3456,
        limit=100.0,
        limit_remaining=99.5,
        tokens=77,
        version="2024-06-20",
        request_id="req_plain",
    )
    log.write([full, plain, bare])
    stored = log.calls(since=0)
    assert [each.record for each in stored] == [full, plain, bare]
    assert stored[1].id is None  # a plain success is stored packed
    assert stored[0].id is not None
    assert stored[2].id is not None
    assert stored[0].id < stored[2].id
    assert {each.process for each in stored} == {f"{socket.gethostname()}:{os.getpid()}"}
    rows = [stored[0], stored[2]]
    assert log.last_id() == stored[2].id
    assert log.by_ids([stored[2].id, stored[0].id, 10**9]) == rows
    assert log.after(stored[0].id) == rows[1:]
    ((batch_id, packed),) = log.batches_after(0)
    assert packed == [plain]
    assert log.last_batch_id() == batch_id
    assert log.batches_by_ids([batch_id, 10**9]) == [(batch_id, [plain])]
    assert log.batches_after(batch_id) == []


def test_plain_successes_are_packed_one_row_per_integration_and_minute(log: CallLog) -> None:
    written = [record(T0 + step * 7.5, integration=("stripe", "openai")[step % 2]) for step in range(24)]  # 3 min
    log.write(written)
    assert log.last_id() == 0  # no row of its own
    batches = log.batches_after(0)
    assert len(batches) == 6
    assert sorted(each for _, records in batches for each in records) == sorted(written)
    assert [each.record for each in log.calls(since=0)] == written
    assert log.purge(records_before=T0 + 60, summaries_before=0) == 8  # the first minute's, both integrations
    assert [each.record for each in log.calls(since=0)] == written[8:]


def test_an_empty_log_reads_empty(log: CallLog) -> None:
    log.write([])
    assert log.last_id() == 0
    assert log.calls(since=0) == []
    assert log.minutes(since=0) == {}
    assert log.total("stripe", since=0) == Minute()
    assert log.failures("stripe") == []
    assert log.by_ids([]) == []


latencies = st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(min_value=0, max_value=60, allow_nan=False))
texts = st.none() | st.sampled_from(["2024-06-20", "2025-01-01", "true", "Wed, 11 Nov 2026 23:59:59 GMT"])


def _record(**fields: Any) -> CallRecord:
    """CallRecord with only what the strategy draws (st.builds would draw every field of a named tuple)."""
    return CallRecord(**fields)


records = st.builds(
    _record,
    at=st.floats(min_value=T0, max_value=T0 + 240, allow_nan=False),
    integration=st.sampled_from(["stripe", "openai"]),
    method=st.sampled_from(["GET", "POST"]),
    endpoint=st.sampled_from(["/v1/customers", "/v1/customers/{id}"]),
    status=st.sampled_from(STATUSES),
    outcome=st.sampled_from(OUTCOMES),
    latency=latencies,
    attempts=st.integers(0, 5),
    bytes_received=st.integers(0, 10**9),
    limit=st.none() | st.sampled_from([0.0, 1.0, 100.0, 5000.0]),
    limit_remaining=st.none() | st.floats(min_value=0, max_value=6000, allow_nan=False),
    tokens=st.none() | st.integers(0, 10**7),
    version=texts,
    deprecation=texts,
    sunset=texts,
)


@given(st.lists(records, max_size=40))
def test_add_all_counts_as_add_on_each_does(drawn: list[CallRecord]) -> None:
    one_by_one, all_at_once = Minute(), Minute()
    for each in drawn:
        one_by_one.add(each)
    all_at_once.add_all(drawn)
    assert_same(all_at_once, one_by_one)


def _replaced(record: CallRecord, changes: dict[str, Any]) -> CallRecord:
    return record._replace(**changes)


# Records with the fields a plain success must not have, now and then.
any_records = st.builds(
    _replaced,
    records,
    st.fixed_dictionaries(
        {},
        optional={
            "error": st.sampled_from(["ServerError", ""]),
            "hint": st.sampled_from(["retry later", ""]),
            "tries": st.just((Try(503, None, "127.0.0.1", 0.25),)),
            "status": st.sampled_from([200, 399, 400]),
            "outcome": st.just("success"),
            "attempts": st.just(1),
        },
    ),
)


def plain_success(record: CallRecord) -> bool:
    """A plain success, the calls stored packed (docs/monitoring.md): nothing a packed call cannot hold."""
    return (
        record.status is not None
        and record.status < 400
        and record.outcome == "success"
        and record.attempts == 1
        and record.error is None
        and record.hint is None
        and record.deprecation is None
        and record.sunset is None
        and record.tries == ()
    )


@given(st.lists(any_records, max_size=40))
def test_a_batch_of_calls_reads_back_its_records_by_column_and_by_group(drawn: list[CallRecord]) -> None:
    calls = Calls.of(drawn)
    assert (len(calls), list(calls), calls.rows()) == (len(drawn), drawn, drawn)
    assert calls.column("status") == [each.status for each in drawn]
    assert list(calls.usages()) == [each.usage for each in drawn]
    by_labels: dict[tuple[str, str, str], list[CallRecord]] = {}
    by_minute: dict[tuple[str, int], list[CallRecord]] = {}
    for each in drawn:
        by_labels.setdefault((each.integration, each.method, each.endpoint), []).append(each)
        by_minute.setdefault((each.integration, int(each.at // 60)), []).append(each)
    assert {key: list(group) for key, group in calls.by_labels().items()} == by_labels
    assert {key: list(group) for key, group in calls.by_minute().items()} == by_minute


@given(st.lists(any_records, max_size=40))
def test_split_packs_exactly_the_plain_successes_and_keeps_the_order(drawn: list[CallRecord]) -> None:
    plain, others = split(Calls.of(drawn))
    assert list(plain) == [each for each in drawn if plain_success(each)]
    assert others == [each for each in drawn if not plain_success(each)]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(records, max_size=25), min_size=1, max_size=3))
def test_summaries_equal_a_recount_of_the_records(log: CallLog, batches: list[list[CallRecord]]) -> None:
    log.purge(records_before=FOREVER, summaries_before=FOREVER)  # each example starts empty
    for batch in batches:
        log.write(batch)
    written = [each for batch in batches for each in batch]
    read, expected = log.minutes(since=0), recount(written)
    assert sorted(read) == sorted(expected)
    for integration, minutes in expected.items():
        assert len(read[integration]) == len(minutes)
        for got, want in zip(read[integration], minutes, strict=True):
            assert_same(got, want)
        total = Minute()
        for minute in minutes:
            total.merge(minute)
        assert_same(log.total(integration, since=0), total, key=False)
    assert Counter(each.record for each in log.calls(since=0)) == Counter(written)


plain_records = st.builds(
    _record,
    at=st.floats(min_value=T0, max_value=T0 + 240, allow_nan=False),
    integration=st.sampled_from(["stripe", "openai"]),
    method=st.sampled_from(["GET", "POST"]),
    endpoint=st.sampled_from(["/v1/customers", "/v1/customers/{id}"]),
    status=st.sampled_from([200, 201, 204, 302]),
    outcome=st.just("success"),
    latency=latencies,
    peer=st.none() | st.sampled_from(["10.0.0.7", "::1"]),
    bytes_sent=st.integers(0, 10**6),
    bytes_received=st.integers(0, 10**9),
    limit=st.none() | st.sampled_from([1.0, 5000.0]),
    limit_remaining=st.none() | st.floats(min_value=0, max_value=6000, allow_nan=False),
    tokens=st.none() | st.integers(0, 10**7),
    version=texts,
    request_id=st.none() | st.text("abcdef_0123456789", max_size=12),
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(plain_records | records, max_size=30), min_size=1, max_size=3),
    since=st.floats(min_value=T0 - 10, max_value=T0 + 250),
    span=st.none() | st.floats(min_value=0, max_value=250),
    integration=st.none() | st.sampled_from(["stripe", "openai"]),
    limit=st.none() | st.integers(1, 40),
)
def test_calls_read_back_every_record_of_the_window_oldest_first(
    log: CallLog,
    batches: list[list[CallRecord]],
    since: float,
    span: float | None,
    integration: str | None,
    limit: int | None,
) -> None:
    log.purge(records_before=FOREVER, summaries_before=FOREVER)  # each example starts empty
    for batch in batches:
        log.write(batch)
    until = None if span is None else since + span
    wanted = [
        each
        for batch in batches
        for each in batch
        if each.at >= since and (until is None or each.at < until) and integration in (None, each.integration)
    ]
    got = [each.record for each in log.calls(since=since, until=until, integration=integration, limit=limit)]
    assert [each.at for each in got] == sorted(each.at for each in wanted)[:limit]
    assert not Counter(got) - Counter(wanted)


def test_minutes_and_total_read_the_window_asked_for(log: CallLog) -> None:
    log.write([record(T0 + 60 * step, latency=0.1 * step) for step in range(5)])
    minutes = log.minutes(since=T0 + 60, until=T0 + 60 * 3 + 59)["stripe"]
    assert [minute.minute for minute in minutes] == [int(T0 // 60) + step for step in (1, 2, 3)]
    assert log.total("stripe", since=T0 + 120).calls == 3
    assert log.total("stripe", since=T0, until=T0 + 60).calls == 2
    assert log.total("other", since=0).calls == 0


def test_the_latest_version_and_deprecation_headers_win_and_a_missing_one_keeps_the_last(log: CallLog) -> None:
    log.write([record(version="2023-10-16"), record(T0 + 1, deprecation="true")])
    log.write([record(T0 + 2, version="2024-06-20"), record(T0 + 3)])
    minute = log.total("stripe", since=0)
    assert (minute.version, minute.deprecation, minute.sunset) == ("2024-06-20", "true", None)


# --- several writers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("separate", [False, True], ids=["one-log", "two-logs"])
def test_concurrent_writers_lose_no_count(
    kind: str, separate: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Threads write batches to the same minutes at once, through one call log or through two, each with a
    store of its own (a connection pool of its own on PostgreSQL, a connection of its own on SQLite: two
    processes); every summary adds up exactly."""
    stores = [open_store(kind, request, tmp_path) for _ in range(2 if separate else 1)]
    logs = [CallLog(each) for each in stores]
    threads_per_log, batches, per_batch = 4 // len(logs), 8, 15
    barrier = threading.Barrier(threads_per_log * len(logs))
    errors: list[BaseException] = []

    def write(log: CallLog, number: int) -> None:
        try:
            barrier.wait(timeout=10)
            for batch in range(batches):
                log.write(
                    [
                        record(
                            T0 + (index % 3) * 60,
                            integration=("stripe", "openai")[(number + index) % 2],
                            status=503 if index % 5 == 0 else 200,
                            latency=LATENCY_BUCKETS[(batch + index) % len(LATENCY_BUCKETS)],
                            tokens=7,
                        )
                        for index in range(per_batch)
                    ]
                )
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [
            threading.Thread(target=write, args=(log, number)) for log in logs for number in range(threads_per_log)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        total_records = len(threads) * batches * per_batch
        summaries = logs[0].minutes(since=0)
        calls = sum(minute.calls for minutes in summaries.values() for minute in minutes)
        assert calls == total_records
        assert sum(minute.failures for minutes in summaries.values() for minute in minutes) == total_records // 5
        assert sum(minute.tokens for minutes in summaries.values() for minute in minutes) == 7 * total_records
        assert sum(sum(minute.buckets) for minutes in summaries.values() for minute in minutes) == total_records
        assert len(logs[-1].calls(since=0)) == total_records
        assert [len(minutes) for _, minutes in sorted(summaries.items())] == [3, 3]
    finally:
        for each in stores:
            each.close()


# --- purging and the readers of records ---------------------------------------------------------------------------


def test_purge_deletes_old_records_and_old_summaries_separately(log: CallLog) -> None:
    log.write([record(T0 + 60 * step) for step in range(6)])
    deleted = log.purge(records_before=T0 + 60 * 4, summaries_before=T0 + 60 * 2)
    assert deleted == 4
    assert [each.record.at for each in log.calls(since=0)] == [T0 + 240, T0 + 300]
    assert [minute.minute for minute in log.minutes(since=0)["stripe"]] == [
        int(T0 // 60) + step for step in (2, 3, 4, 5)
    ]
    assert log.purge(records_before=T0, summaries_before=T0) == 0


def test_failures_are_the_integrations_failed_calls_newest_first(log: CallLog) -> None:
    log.write(
        [
            record(T0, status=503, request_id="first"),
            record(T0 + 1, status=200),
            record(T0 + 2, status=None, error="ConnectionFailedError", request_id="second"),
            record(T0 + 3, status=401, integration="openai"),
        ]
    )
    log.write([record(T0 + 4, status=404, request_id="third"), record(T0 + 5, status=302)])
    assert [each.record.request_id for each in log.failures("stripe")] == ["third", "second", "first"]
    assert [each.record.request_id for each in log.failures("stripe", limit=2)] == ["third", "second"]
    assert [each.record.status for each in log.failures("openai")] == [401]
    assert log.failures("absent") == []


def test_calls_filter_by_time_and_integration_oldest_first(log: CallLog) -> None:
    log.write(
        [record(T0 + step, integration=("stripe", "openai")[step % 2], request_id=str(step)) for step in range(8)]
    )

    def ids(**filters: object) -> list[str | None]:
        return [each.record.request_id for each in log.calls(**filters)]  # type: ignore[arg-type]

    assert ids(since=T0 + 5) == ["5", "6", "7"]
    assert ids(since=T0 + 2, until=T0 + 5) == ["2", "3", "4"]  # until is exclusive
    assert ids(since=0, integration="openai") == ["1", "3", "5", "7"]
    assert ids(since=T0 + 2, integration="stripe", limit=2) == ["2", "4"]
    assert ids(since=T0 + 100) == []


def test_after_reads_in_id_order_from_a_position(log: CallLog) -> None:
    log.write([record(T0 + step, status=500, error="ServerError", request_id=str(step)) for step in range(5)])
    first = log.calls(since=0)[1].id
    assert [each.record.request_id for each in log.after(first)] == ["2", "3", "4"]
    assert [each.record.request_id for each in log.after(first, limit=2)] == ["2", "3"]
    assert log.after(log.last_id()) == []


# --- quantiles and slower_than --------------------------------------------------------------------------------------


def minute_of(latencies: list[float]) -> Minute:
    minute = Minute()
    for latency in latencies:
        minute.add(record(latency=latency))
    return minute


def test_quantile_interpolates_inside_the_bucket_as_prometheus_does() -> None:
    minute = minute_of([0.2] * 10)  # all in (0.1, 0.25]
    assert minute.quantile(0.5) == pytest.approx(0.175)
    assert minute.quantile(1.0) == pytest.approx(0.25)
    assert minute_of([0.001] * 4).quantile(0.5) == pytest.approx(0.0025)  # the first bucket starts at 0
    assert minute_of([0.05] * 3 + [2.0]).quantile(0.75) == pytest.approx(0.05)  # on the bound, exactly
    assert minute_of([45.0]).quantile(0.99) == LATENCY_BUCKETS[-1]  # past the last bound: that bound
    assert Minute().quantile(0.95) is None


def test_slower_than_is_exact_on_a_bound_and_interpolated_between() -> None:
    minute = minute_of([3.0] * 5 + [3.1] * 5)  # half on the 3 s bound, half in (3, 5]
    assert minute.slower_than(3.0) == 0.5
    assert minute.slower_than(4.0) == pytest.approx(0.25)
    assert minute.slower_than(5.0) == 0.0
    assert minute_of([50.0]).slower_than(30.0) == 1.0
    assert Minute().slower_than(3.0) == 0.0


def test_error_rate_is_failures_over_calls() -> None:
    minute = minute_of([0.1] * 3)
    minute.add(record(status=500))
    assert minute.error_rate == 0.25
    assert Minute().error_rate == 0.0


@given(st.lists(latencies, min_size=1, max_size=60), st.sampled_from(LATENCY_BUCKETS))
def test_slower_than_a_bound_is_the_exact_fraction_above_it(samples: list[float], bound: float) -> None:
    assert minute_of(samples).slower_than(bound) == sum(latency > bound for latency in samples) / len(samples)


@given(
    st.lists(latencies, min_size=1, max_size=60),
    st.floats(min_value=0.01, max_value=1.0),
    st.sampled_from(LATENCY_BUCKETS),
)
def test_quantile_is_below_a_bound_exactly_when_enough_calls_are(samples: list[float], q: float, bound: float) -> None:
    minute = minute_of(samples)
    quantile = minute.quantile(q)
    assert quantile is not None
    assert 0.0 <= quantile <= LATENCY_BUCKETS[-1]
    if sum(latency <= bound for latency in samples) >= q * len(samples):
        assert quantile <= bound + 1e-12
    else:
        assert quantile >= bound - 1e-12


@given(st.lists(latencies, min_size=1, max_size=60), st.lists(st.floats(0.01, 1.0), min_size=2, max_size=5))
def test_quantile_never_decreases_with_q_and_slower_than_never_increases_with_time(
    samples: list[float], qs: list[float]
) -> None:
    minute = minute_of(samples)
    quantiles = [minute.quantile(q) for q in sorted(qs)]
    assert quantiles == sorted(quantiles)  # type: ignore[type-var]
    fractions = [minute.slower_than(seconds) for seconds in sorted(q * 40 for q in qs)]
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(fractions))


@given(st.lists(records, max_size=30), st.integers(0, 30))
def test_merging_two_minutes_counts_as_adding_every_record_to_one(items: list[CallRecord], split: int) -> None:
    first, second, whole = Minute(minute=1), Minute(minute=2), Minute(minute=2)
    for index, each in enumerate(items):
        (first if index < split else second).add(each)
        whole.add(each)
    first.merge(second)
    assert_same(first, whole)


# --- the hourly table: long windows read hours and stay exact ------------------------------------------------------

HOUR0 = 1_699_999_200.0  # the start of an hour, shortly before T0


spread = st.builds(
    _record,
    at=st.floats(min_value=HOUR0, max_value=HOUR0 + 5 * 3600, allow_nan=False),
    integration=st.sampled_from(["stripe", "openai"]),
    method=st.just("GET"),
    endpoint=st.just("/v1/customers"),
    status=st.sampled_from(STATUSES),
    outcome=st.sampled_from(OUTCOMES),
    latency=latencies,
    tokens=st.none() | st.integers(0, 10**6),
    version=texts,
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(spread, max_size=30), min_size=1, max_size=3),
    since=st.floats(min_value=HOUR0 - 600, max_value=HOUR0 + 5 * 3600, allow_nan=False),
    length=st.floats(min_value=0, max_value=6 * 3600, allow_nan=False),
)
def test_totals_over_any_window_equal_a_recount_of_its_minutes(
    log: CallLog, batches: list[list[CallRecord]], since: float, length: float
) -> None:
    """Whole hours come from the hourly table, the edges from minutes: the sum is the minutes' sum exactly."""
    log.purge(records_before=FOREVER, summaries_before=FOREVER)
    for batch in batches:
        log.write(batch)
    until = since + length
    first, last = int(since // 60), int(until // 60)
    inside = [each for batch in batches for each in batch if first <= int(each.at // 60) <= last]
    expected = recount(inside)
    totals = log.totals(since, until)
    assert sorted(totals) == sorted(expected)
    for integration, minutes in expected.items():
        want = Minute()
        for minute in sorted(minutes, key=lambda m: m.minute):
            want.merge(minute)
        got = totals[integration]
        assert_same(got, want, key=False)


@pytest.mark.parametrize("step", [1, 5, 15, 60, 120])
def test_series_slots_add_up_to_the_minutes_they_cover(log: CallLog, step: int) -> None:
    written = [
        record(HOUR0 + 97 * index, latency=0.01 * (index % 9), status=500 if index % 7 else 200) for index in range(200)
    ]
    log.write(written)
    until = HOUR0 + 97 * 199
    series = log.series(HOUR0, until, step)["stripe"]
    first_slot = int(HOUR0 // 60) // step * step
    assert [slot.minute for slot in series] == sorted({int(each.at // 60) // step * step for each in written})
    assert series[0].minute == first_slot
    for slot in series:
        covered = [each for each in written if slot.minute <= int(each.at // 60) < slot.minute + step]
        want = Minute()
        for minute in recount(covered)["stripe"]:
            want.merge(minute)
        assert_same(slot, want, key=False)


def test_a_step_read_from_hours_must_be_whole_hours(log: CallLog) -> None:
    with pytest.raises(ValueError, match="multiple of 60"):
        log.series(HOUR0, HOUR0 + 86400, 90)


def test_the_hourly_table_is_filled_once_from_a_store_written_before_it_existed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = CallLog(SqliteStore(path))
    written = [record(HOUR0 + 300 * index) for index in range(30)]  # 2.5 hours
    first.write(written)
    with sqlite3.connect(path) as connection:  # as a store from before the hourly table
        connection.execute("DROP TABLE tether_call_hours")
    first.store.close()
    upgraded = CallLog(SqliteStore(path))
    assert upgraded.totals(HOUR0, HOUR0 + 3 * 3600)["stripe"].calls == 30
    upgraded.write([record(HOUR0 + 3 * 3600 + 5)])
    upgraded.store.close()
    again = CallLog(SqliteStore(path))  # a later start does not fill it a second time
    assert again.totals(HOUR0, HOUR0 + 4 * 3600)["stripe"].calls == 31
    with sqlite3.connect(path) as connection:
        hours = connection.execute("SELECT hour, calls FROM tether_call_hours ORDER BY hour").fetchall()
    assert hours == [
        (int(HOUR0 // 3600), 12),
        (int(HOUR0 // 3600) + 1, 12),
        (int(HOUR0 // 3600) + 2, 6),
        (int(HOUR0 // 3600) + 3, 1),
    ]
    again.store.close()


def test_purge_drops_minutes_and_whole_hours_before_the_cutoff(log: CallLog) -> None:
    log.write([record(HOUR0 + 1800 * index) for index in range(6)])  # 3 hours, two calls in each
    log.purge(records_before=FOREVER, summaries_before=HOUR0 + 3600 + 1800)
    assert sum(m.calls for m in log.minutes(0)["stripe"]) == 3
    assert log.totals(HOUR0 + 7200, HOUR0 + 3 * 3600)["stripe"].calls == 2
    assert [slot.calls for slot in log.series(0, HOUR0 + 3 * 3600, 60)["stripe"]] == [2, 2]


@pytest.mark.parametrize("limit", [999, 100, 46])
def test_a_batch_fits_an_sqlite_built_with_a_lower_parameter_limit(tmp_path: Path, limit: int) -> None:
    """Older SQLite builds allow 999 parameters per statement: the multi-row INSERT sizes its chunks to fit."""
    store = SqliteStore(tmp_path / "tether.db")
    with store.connection() as connection:
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    log = CallLog(store)
    written = [record(T0 + index * 0.5, request_id=f"req_{index}") for index in range(450)]
    log.write(written)
    stored = log.calls(since=0)
    assert [each.record.request_id for each in stored] == [each.request_id for each in written]
    store.close()


def test_the_latest_headers_of_many_integrations_are_all_found(log: CallLog) -> None:
    log.write([record(HOUR0 + 60, integration=f"api{index:03d}", version=f"v{index}") for index in range(95)])
    totals = log.totals(HOUR0 - 3 * 3600, HOUR0 + 3 * 3600)
    assert len(totals) == 95
    assert all(totals[f"api{index:03d}"].version == f"v{index}" for index in range(95))

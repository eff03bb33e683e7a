"""The PostgreSQL store and its HTTP cache, against a real server.

Each test works in a schema of its own (see ``store_fixtures``); the outage tests get a database of their own,
which they stop accepting connections, as a server going away does.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import hishel
import psycopg
import pytest
from typer.testing import CliRunner

from store_fixtures import PostgresDatabase, PostgresSpace, terminate
from test_cache import TOML, Tether, counting
from tether.cli import app as cli
from tether.observe.calllog import CallLog
from tether.observe.incidents import Alerter
from tether.observe.records import CallRecord
from tether.store.pg_cache import PostgresCacheStorage
from tether.store.postgres import PostgresStore
from tether.webhooks.inbox import Inbox, Incoming


@pytest.fixture
def store(postgres: PostgresSpace) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres.url)
    yield opened
    opened.close()


def _request(number: int = 0) -> hishel.Request:
    return hishel.Request("GET", f"https://api.test/{number}", hishel.Headers({}))


def _response(body: bytes = b"four") -> hishel.Response:
    return hishel.Response(200, hishel.Headers({}), iter((body,)))


def store_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "tether", {}).get("event") == "store_error"]


# --- the store -------------------------------------------------------------------------------------------


def test_the_url_never_shows_the_password() -> None:
    store = PostgresStore("postgresql://app:hunter2@127.0.0.1:1/app?sslmode=require")
    try:
        assert store.url == "postgresql://app:***@127.0.0.1:1/app?sslmode=require"
        assert "hunter2" not in repr(store)
    finally:
        store.close()


def test_a_connection_is_one_transaction_committed_at_the_end_and_rolled_back_on_error(
    store: PostgresStore, postgres: PostgresSpace
) -> None:
    with store.connection() as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.execute("INSERT INTO notes VALUES ('kept')")

    def fail() -> None:
        with store.connection() as connection:
            connection.execute("INSERT INTO notes VALUES ('dropped')")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail()
    assert postgres.rows("SELECT text FROM notes") == [("kept",)]


def test_ensure_schema_runs_once_per_process_for_each_name(store: PostgresStore, postgres: PostgresSpace) -> None:
    statements = ["CREATE TABLE IF NOT EXISTS runs (n INTEGER)", "INSERT INTO runs VALUES (1)"]
    store.ensure_schema("runs", statements)
    store.ensure_schema("runs", statements)
    assert postgres.rows("SELECT count(*) FROM runs") == [(1,)]


def test_meta_keeps_the_first_value_any_process_wrote(postgres: PostgresSpace) -> None:
    stores = [PostgresStore(postgres.url) for _ in range(6)]
    values: list[bytes] = []
    start = threading.Barrier(len(stores))

    def ask(store: PostgresStore, number: int) -> None:
        start.wait()
        values.append(store.meta("greeting", lambda: f"hello from {number}".encode()))

    threads = [threading.Thread(target=ask, args=(store, n)) for n, store in enumerate(stores)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(values) == 6
        assert len(set(values)) == 1
        assert stores[0].meta("greeting", lambda: b"too late") == values[0]
    finally:
        for store in stores:
            store.close()
    assert postgres.rows("SELECT count(*) FROM tether_meta") == [(1,)]


def test_a_closed_store_refuses_connections_and_its_cache_reads_as_a_miss(store: PostgresStore) -> None:
    storage = store.cache_storage()
    storage.create_entry(_request(), _response(), "k", tti=60)
    store.close()
    with pytest.raises(RuntimeError, match="closed"), store.connection():
        pass
    assert storage.get_entries("k") == []


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "tether.store.postgres")
    with pytest.raises(ImportError, match=r"pip install 'tether\[postgresql\]'"):
        importlib.import_module("tether.store.postgres")


# --- the cache table -------------------------------------------------------------------------------------


def test_unused_entries_are_dropped_after_their_tti(store: PostgresStore) -> None:
    now = [1_000_000.0]
    storage = PostgresCacheStorage(store, wall=lambda: now[0])
    storage.create_entry(_request(), _response(b"body"), "k", tti=100.0)
    now[0] += 99.0
    assert len(storage.get_entries("k")) == 1  # and, past half its TTI, the lookup restarts it
    now[0] += 99.0
    assert len(storage.get_entries("k")) == 1
    now[0] += 101.0
    assert storage.get_entries("k") == []


def test_expired_rows_are_deleted_by_later_writes(store: PostgresStore, postgres: PostgresSpace) -> None:
    now = [1_000_000.0]
    storage = PostgresCacheStorage(store, wall=lambda: now[0])
    storage.create_entry(_request(1), _response(), "old", tti=10.0)
    now[0] += 11.0
    storage.create_entry(_request(2), _response(), "new", tti=10.0)
    assert postgres.rows("SELECT key FROM http_cache") == [("new",)]


def test_the_least_recently_used_entries_go_when_the_cache_outgrows_its_size(store: PostgresStore) -> None:
    now = [1_000_000.0]
    storage = PostgresCacheStorage(store, max_bytes=10, wall=lambda: now[0])
    for number in range(32):  # the size is checked every 32 stores
        now[0] += 1.0
        storage.create_entry(_request(number), _response(b"four"), f"k{number}")
    assert [number for number in range(32) if storage.get_entries(f"k{number}")] == [30, 31]


def test_two_processes_storing_the_same_variant_at_once_leave_one_row(postgres: PostgresSpace) -> None:
    stores = [PostgresStore(postgres.url) for _ in range(4)]
    start = threading.Barrier(len(stores))

    def put(store: PostgresStore) -> None:
        start.wait()
        for _ in range(5):
            store.cache_storage().create_entry(_request(), _response(), "same", tti=60)

    threads = [threading.Thread(target=put, args=(store,)) for store in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(stores[0].cache_storage().get_entries("same")) == 1
    finally:
        for store in stores:
            store.close()
    assert postgres.rows("SELECT count(*) FROM http_cache") == [(1,)]


# --- the server going away -------------------------------------------------------------------------------


def test_a_server_restart_costs_no_miss(
    store: PostgresStore, postgres: PostgresSpace, caplog: pytest.LogCaptureFixture
) -> None:
    storage = store.cache_storage()
    storage.create_entry(_request(), _response(), "k", tti=60)
    assert terminate(postgres.application_name) >= 1  # every pooled connection is now dead
    with caplog.at_level(logging.WARNING, logger="tether"):
        assert len(storage.get_entries("k")) == 1
    assert store_errors(caplog) == []


@pytest.mark.slow
def test_an_unreachable_server_reads_as_a_miss_with_one_warning_then_recovers(
    postgres_database: PostgresDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(postgres_database.url, timeout=0.2)
    storage = PostgresCacheStorage(store, retry_interval=0.0)  # tried on every call, to count the warnings
    try:
        storage.create_entry(_request(), _response(b"kept"), "k", tti=60)
        salt = storage.salt()
        postgres_database.refuse_connections()
        with caplog.at_level(logging.DEBUG, logger="tether"):
            assert storage.get_entries("k") == []
            storage.create_entry(_request(), _response(), "k", tti=60)
            storage.remove_entry(uuid.uuid4())
            assert storage.get_entries("k") == []
            with pytest.raises(psycopg.OperationalError):
                storage.salt()
        errors = store_errors(caplog)
        assert [r.levelno for r in errors] == [logging.WARNING] + [logging.DEBUG] * 3
        assert "HTTP cache read failed in postgresql://" in errors[0].getMessage()
        postgres_database.accept_connections()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tether"):
            [entry] = storage.get_entries("k")
        assert b"".join(entry.response.stream) == b"kept"  # type: ignore[arg-type]
        assert storage.salt() == salt
        assert [r.getMessage() for r in caplog.records] == [f"HTTP cache in {store.url} answers again"]
    finally:
        store.close()


@pytest.mark.slow
async def test_calls_go_on_without_the_cache_when_postgresql_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1: every connection is refused.
    config = TOML.format(extra="cache = true").replace(
        'store = "sqlite:///tether.db"', 'store = "postgresql://app@127.0.0.1:1/app"'
    )
    t = Tether("sync", config, tmp_path)
    api = counting({"Cache-Control": "max-age=60"})
    try:
        with caplog.at_level(logging.WARNING, logger="tether"):
            responses = [await t.get(api, "/v1/products") for _ in range(3)]
    finally:
        t.hub.close()
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert api.calls == 3
    assert len(store_errors(caplog)) == 1


def test_statements_have_a_timeout_unless_the_url_sets_one(postgres: PostgresSpace) -> None:
    store = PostgresStore(postgres.url)
    try:
        with store.connection() as connection:
            shown = connection.execute("SHOW statement_timeout").fetchone()
            path = connection.execute("SHOW search_path").fetchone()
        assert shown == ("30s",)
        assert path is not None
        assert postgres.schema in str(path[0])  # the URL's own options still apply
    finally:
        store.close()
    own = PostgresStore(postgres.url.replace("-csearch_path", "-cstatement_timeout%3D5s%20-csearch_path"))
    try:
        with own.connection() as connection:
            assert connection.execute("SHOW statement_timeout").fetchone() == ("5s",)
    finally:
        own.close()


# --- a role that may only read -----------------------------------------------------------------------------------


@pytest.fixture
def reader(postgres: PostgresSpace) -> Iterator[str]:
    """The URL of a role that may read this test's schema (once the test grants it) and create nothing."""
    role = f"reader_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN")
        connection.execute(f"GRANT USAGE ON SCHEMA {postgres.schema} TO {role}")
    parts = urlsplit(postgres.url)
    yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
    terminate(postgres.application_name)
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f"DROP OWNED BY {role}")
        connection.execute(f"DROP ROLE {role}")


def test_a_role_that_may_only_read_reads_the_call_log_and_the_inbox_and_writes_nothing(
    postgres: PostgresSpace, reader: str, tmp_path: Path
) -> None:
    """``tether status``, the dashboard and ``tether webhooks list`` run with such a role: the tables are there, so
    creating them is skipped instead of failing on "permission denied for schema"."""
    owner = PostgresStore(postgres.url)
    record = CallRecord(time.time() - 60, "stripe", "GET", "/v1/customers", 200, "success", request_id="req_1")
    try:
        CallLog(owner).write([record])
        Inbox(owner).add([Incoming("stripe", "evt_1", "invoice.paid", {}, b"{}", 1_800_000_000.0)])
        Alerter(owner, [], resolve_after=0).ensure_schema()  # as `tether serve` does when it starts
    finally:
        owner.close()
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {postgres.schema} TO {urlsplit(reader).username}")
    store = PostgresStore(reader)
    try:
        assert [stored.record for stored in CallLog(store).calls(since=0)] == [record]
        assert CallLog(store).total("stripe", since=0).calls == 1
        assert Inbox(store).counts() == {"stripe": {"pending": 1, "processing": 0, "done": 0, "dead": 0}}
        assert [event.event_id for event in Inbox(store).events()] == ["evt_1"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table"):
            CallLog(store).write([record])
    finally:
        store.close()
    config = tmp_path / "tether.toml"
    config.write_text(f'store = "{reader}"\n[integrations.stripe]\nbase_url = "https://api.stripe.test"\n')
    status = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
    assert status.exit_code == 0, status.output
    (stripe,) = json.loads(status.output)["integrations"]
    assert stripe["requests"] == 1
    listed = CliRunner().invoke(cli, ["--config", str(config), "webhooks", "list"])
    assert listed.exit_code == 0, listed.output
    assert "evt_1" in listed.output


def test_a_role_that_may_only_read_gets_the_permission_error_when_the_tables_are_missing(reader: str) -> None:
    store = PostgresStore(reader)
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema"):
            CallLog(store).calls(since=0)
    finally:
        store.close()

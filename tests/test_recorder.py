"""The recorder: records queued on the hot path and written by its thread to a real call log (SQLite, and
PostgreSQL for the outages), kept within the buffer while the store is down, flushed at close and at exit,
and left behind by a forked child."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from store_fixtures import PostgresDatabase
from tether.observe.calllog import CallLog
from tether.observe.recorder import Recorder
from tether.observe.records import CallRecord
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SqliteStore

T0 = float(int(time.time()) // 60 * 60)  # recent: the recorder's thread purges records past retention
PASSWORD = "hunter2-Zq8vX3"


def record(number: int, **fields: object) -> CallRecord:
    values: dict[str, object] = {
        "at": T0 + number,
        "integration": "stripe",
        "method": "GET",
        "endpoint": "/v1/customers",
        "status": 200,
        "outcome": "success",
        "request_id": f"req_{number}",
    }
    values.update(fields)
    return CallRecord(**values)  # type: ignore[arg-type]


class Logs:
    """Opens call logs on SQLite files of this test's folder, and closes them all afterwards."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stores: list[SqliteStore] = []

    def __call__(self, name: str = "tether.db") -> CallLog:
        store = SqliteStore(self.folder / name)
        self.stores.append(store)
        return CallLog(store)

    def request_ids(self, name: str = "tether.db") -> list[str | None]:
        return [stored.record.request_id for stored in self(name).calls(since=0)]


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Logs]:
    made = Logs(tmp_path)
    yield made
    for store in made.stores:
        store.close()


@pytest.fixture
def recorders() -> Iterator[Callable[..., Recorder]]:
    """Recorders that wake only when told to (a one-hour interval), closed after the test."""
    made: list[Recorder] = []

    def make(call_log: Callable[[], CallLog] | None, **options: object) -> Recorder:
        options.setdefault("flush_interval", 3600.0)
        made.append(Recorder(call_log, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for each in made:
        each.close()


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- writing -----------------------------------------------------------------------------------------------------


def test_records_wait_in_memory_and_are_written_at_close(logs: Logs, recorders: Callable[..., Recorder]) -> None:
    recorder = recorders(logs)
    for number in range(3):
        recorder.record(record(number))
    assert recorder.pending == 3
    assert logs.request_ids() == []  # nothing written before the interval or a flush
    recorder.close()
    assert logs.request_ids() == ["req_0", "req_1", "req_2"]
    assert (recorder.pending, recorder.written, recorder.dropped) == (0, 3, 0)


def test_the_thread_writes_every_flush_interval(logs: Logs, recorders: Callable[..., Recorder]) -> None:
    recorder = recorders(logs, flush_interval=0.02)
    recorder.record(record(0))
    wait_for(lambda: recorder.written == 1)
    recorder.record(record(1))
    wait_for(lambda: recorder.written == 2)
    assert logs.request_ids() == ["req_0", "req_1"]


def test_a_full_buffer_drops_its_oldest_tenth_and_counts_it(logs: Logs, recorders: Callable[..., Recorder]) -> None:
    recorder = recorders(logs, buffer=10)
    for number in range(11):
        recorder.record(record(number))
    assert (recorder.pending, recorder.dropped) == (9, 2)  # the one over, and a tenth of the buffer
    assert recorder.flush() == 9
    assert logs.request_ids() == [f"req_{number}" for number in range(2, 11)]


@pytest.mark.parametrize("buffer", [1, 3, 10, 25])
def test_a_full_buffer_keeps_the_newest_records_in_order_and_counts_every_one_dropped(
    logs: Logs, recorders: Callable[..., Recorder], buffer: int
) -> None:
    recorder = recorders(logs, buffer=buffer)
    for number in range(100):
        recorder.record(record(number))
        assert recorder.pending <= buffer
    kept = recorder.pending
    assert kept + recorder.dropped == 100
    assert recorder.flush() == kept
    assert logs.request_ids() == [f"req_{number}" for number in range(recorder.dropped, 100)]


def test_a_record_of_the_wrong_width_is_refused_and_the_queue_stays_aligned(
    logs: Logs, recorders: Callable[..., Recorder]
) -> None:
    recorder = recorders(logs)
    recorder.record(record(0))
    with pytest.raises(ValueError, match="fields"):
        recorder.record(tuple(record(1))[:-1])  # type: ignore[arg-type]
    recorder.record(record(2))
    assert recorder.flush() == 2
    assert logs.request_ids() == ["req_0", "req_2"]


def test_the_thread_purges_records_past_retention(logs: Logs, recorders: Callable[..., Recorder]) -> None:
    day = 86400.0
    logs().write([record(0), record(1)])  # written 10 days before "now"
    now = T0 + 10 * day
    recorder = recorders(logs, flush_interval=0.02, retention=7 * day, summary_retention=30 * day, wall=lambda: now)
    recorder.record(record(0, at=now, request_id="recent"))
    wait_for(lambda: logs.request_ids() == ["recent"])
    assert logs().total("stripe", since=0).calls == 3  # the summaries are kept longer


# --- the store is down ---------------------------------------------------------------------------------------------


class FailsThenWorks:
    """A call-log factory whose store cannot be opened ``failures`` times (a SQLite file under a regular file,
    a real error), then opens the real one."""

    def __init__(self, logs: Logs, failures: int) -> None:
        self.logs, self.failures, self.calls = logs, failures, 0
        (logs.folder / "not-a-folder").write_text("")

    def __call__(self) -> CallLog:
        self.calls += 1
        log = self.logs("not-a-folder/tether.db" if self.calls <= self.failures else "tether.db")
        log.ensure_schema()
        return log


def test_records_wait_for_a_store_that_is_down_and_are_written_once_it_works(
    logs: Logs, recorders: Callable[..., Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    factory = FailsThenWorks(logs, failures=2)
    recorder = recorders(factory, buffer=100)
    recorder.record(record(0))
    recorder.record(record(1))
    with caplog.at_level(logging.WARNING, logger="tether"):
        assert recorder.flush() == 0
        recorder.record(record(2))
        assert recorder.flush() == 0
    assert (recorder.pending, recorder.dropped, recorder.written) == (3, 0, 0)
    warnings_logged = [r for r in caplog.records if "cannot write call records" in r.getMessage()]
    assert len(warnings_logged) == 1  # once a minute, not once a flush
    assert recorder.flush() == 3
    assert logs.request_ids() == ["req_0", "req_1", "req_2"]  # in the order they were made
    assert (recorder.pending, recorder.dropped, recorder.written, factory.calls) == (0, 0, 3, 3)


def test_a_store_that_stays_down_keeps_at_most_the_buffer_newest_first_kept(
    logs: Logs, recorders: Callable[..., Recorder]
) -> None:
    factory = FailsThenWorks(logs, failures=3)
    recorder = recorders(factory, buffer=4)
    for number in range(3):
        recorder.record(record(number))
    assert recorder.flush() == 0
    for number in range(3, 6):
        recorder.record(record(number))
    assert recorder.flush() == 0
    assert (recorder.pending, recorder.dropped) == (4, 2)
    recorder.record(record(6))
    assert recorder.flush() == 0
    assert (recorder.pending, recorder.dropped) == (4, 3)
    assert recorder.flush() == 4
    assert logs.request_ids() == ["req_3", "req_4", "req_5", "req_6"]


def test_a_postgresql_store_on_a_closed_port_keeps_the_records_and_the_warning_shows_no_password(
    unused_port: int, recorders: Callable[..., Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(f"postgresql://app:{PASSWORD}@127.0.0.1:{unused_port}/app", timeout=0.2)
    try:
        recorder = recorders(lambda: CallLog(store), buffer=100)
        for number in range(3):
            recorder.record(record(number))
        with caplog.at_level(logging.WARNING, logger="tether"):
            assert recorder.flush() == 0
        assert (recorder.pending, recorder.dropped) == (3, 0)
        (warning,) = [r for r in caplog.records if "cannot write call records" in r.getMessage()]
        assert "3 waiting" in warning.getMessage()
        assert PASSWORD not in caplog.text
        assert PASSWORD not in warning.getMessage()
    finally:
        store.close()


def test_records_wait_for_a_postgresql_database_that_refuses_connections(
    postgres_database: PostgresDatabase, recorders: Callable[..., Recorder]
) -> None:
    store = PostgresStore(postgres_database.url, timeout=0.5)
    try:
        log = CallLog(store)
        recorder = recorders(lambda: log)
        recorder.record(record(0))
        assert recorder.flush() == 1
        postgres_database.refuse_connections()
        recorder.record(record(1))
        recorder.record(record(2))
        assert recorder.flush() == 0
        assert recorder.pending == 2
        postgres_database.accept_connections()
        assert recorder.flush() == 2
        assert [stored.record.request_id for stored in log.calls(since=0)] == ["req_0", "req_1", "req_2"]
        assert log.total("stripe", since=0).calls == 3
    finally:
        store.close()


# --- listeners and hooks -----------------------------------------------------------------------------------------


def test_listeners_get_each_batch_before_it_is_written(logs: Logs, recorders: Callable[..., Recorder]) -> None:
    recorder = recorders(logs)
    batches: list[tuple[list[str | None], list[str | None]]] = []

    def listener(batch: Sequence[CallRecord]) -> None:
        batches.append(([each.request_id for each in batch], logs.request_ids()))

    recorder.add_listener(listener)
    for number in range(3):
        recorder.record(record(number))
    recorder.flush()
    assert batches == [(["req_0", "req_1", "req_2"], [])]  # the whole batch, before the store has it
    recorder.remove_listener(listener)
    recorder.record(record(3))
    recorder.flush()
    assert len(batches) == 1


def test_a_failing_listener_is_logged_and_the_batch_is_still_written(
    logs: Logs, recorders: Callable[..., Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = recorders(logs)
    seen: list[int] = []

    def broken(batch: Sequence[CallRecord]) -> None:
        raise RuntimeError("listener bug")

    recorder.add_listener(broken)
    recorder.add_listener(lambda batch: seen.append(len(batch)))
    recorder.record(record(0))
    with caplog.at_level(logging.ERROR, logger="tether"):
        assert recorder.flush() == 1
    assert seen == [1]
    assert "a call-record listener failed" in caplog.text
    assert logs.request_ids() == ["req_0"]


def test_listeners_see_each_record_once_even_while_the_store_is_down(
    logs: Logs, recorders: Callable[..., Recorder]
) -> None:
    recorder = recorders(FailsThenWorks(logs, failures=2))
    seen: list[str | None] = []
    recorder.add_listener(lambda batch: seen.extend(each.request_id for each in batch))
    recorder.record(record(0))
    for _ in range(3):
        recorder.flush()
    assert logs.request_ids() == ["req_0"]
    assert seen == ["req_0"]


def test_hooks_run_inline_on_the_callers_thread_and_a_failing_one_is_logged(
    recorders: Callable[..., Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = recorders(None)
    calls: list[tuple[str | None, int, int]] = []

    def broken(each: CallRecord) -> None:
        raise RuntimeError("hook bug")

    recorder.add_hook(lambda each: calls.append((each.request_id, threading.get_ident(), recorder.pending)))
    recorder.add_hook(broken)
    with caplog.at_level(logging.ERROR, logger="tether"):
        recorder.record(record(0))
    assert calls == [("req_0", threading.get_ident(), 1)]  # already queued, and before record() returned
    assert "a call-record hook failed" in caplog.text
    assert recorder.pending == 1


def test_without_a_call_log_batches_still_reach_the_listeners(recorders: Callable[..., Recorder]) -> None:
    recorder = recorders(None)
    seen: list[int] = []
    recorder.add_listener(lambda batch: seen.append(len(batch)))
    recorder.record(record(0))
    assert recorder.flush() == 1
    assert (seen, recorder.pending) == ([1], 0)


# --- processes -----------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_a_forked_child_starts_with_an_empty_buffer_and_the_parent_keeps_its_records(
    tmp_path: Path, recorders: Callable[..., Recorder]
) -> None:
    """Each process writes to a file named after its pid, so the test sees who wrote what."""

    def per_process_log() -> CallLog:
        return CallLog(SqliteStore(tmp_path / f"{os.getpid()}.db"))

    recorder = recorders(per_process_log)
    for number in range(3):
        recorder.record(record(number))
    reading, writing = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork in a multi-threaded process
        pid = os.fork()
    if pid == 0:  # the child: report through the pipe, and never return into pytest
        code = 1
        try:
            report = {"pending": recorder.pending}
            recorder.record(record(10, request_id="from_child"))
            report["written"] = recorder.flush()
            os.write(writing, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        report = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == {"pending": 0, "written": 1}
    assert recorder.pending == 3
    assert recorder.flush() == 3
    child = CallLog(SqliteStore(tmp_path / f"{pid}.db"))
    parent = CallLog(SqliteStore(tmp_path / f"{os.getpid()}.db"))
    try:
        assert [stored.record.request_id for stored in child.calls(since=0)] == ["from_child"]
        assert child.calls(since=0)[0].process is not None
        assert child.calls(since=0)[0].process.endswith(f":{pid}")  # type: ignore[union-attr]
        assert [stored.record.request_id for stored in parent.calls(since=0)] == ["req_0", "req_1", "req_2"]
    finally:
        child.store.close()
        parent.store.close()


def test_records_still_queued_are_written_when_the_interpreter_exits(tmp_path: Path, logs: Logs) -> None:
    script = f"""
from tether.observe.calllog import CallLog
from tether.observe.recorder import Recorder
from tether.observe.records import CallRecord
from tether.store.sqlite import SqliteStore

recorder = Recorder(lambda: CallLog(SqliteStore({str(tmp_path / "tether.db")!r})), flush_interval=3600)
for number in range(2):
    made = CallRecord({T0} + number, "stripe", "GET", "/v1/customers", 200, "success", request_id=f"req_{{number}}")
    recorder.record(made)
# no close(): the interpreter exits with the records queued
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert logs.request_ids() == ["req_0", "req_1"]

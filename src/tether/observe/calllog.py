"""The call log: call records in the store, and the per-minute summaries every view reads.

``tether_calls`` holds each call (kept for ``monitoring.retention``): ``tether doctor --from-log``, the
dashboard's last errors and ``/metrics`` read it. Plain successes are not kept there but packed, many to a
row of ``tether_call_batches`` (see :mod:`tether.observe.packed`); they read back like any other record.
``tether_call_minutes`` holds one row per integration and minute — calls, failures, 401/403s, a latency
histogram, tokens, the highest rate-limit usage, the last version and deprecation headers — updated in the
same transaction as the records it summarises. The dashboard's numbers and charts and the alert rules read
only summaries, so they cost the same with a million records as with ten. Several processes may write at
once: a summary row is incremented, never overwritten.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tether.observe.columns import Calls, as_calls
from tether.observe.packed import batch_schema, pack, split, unpack
from tether.observe.records import CallRecord, Row, Try
from tether.observe.rollup import Summaries, summary_schema
from tether.observe.summary import Minute
from tether.store import SqlConnection, SqlCursor, Store

__all__ = ["CallLog", "Minute", "StoredCall"]

_CALL_COLUMNS = (
    "at, integration, method, endpoint, status, outcome, failed, error, hint, latency, attempts, peer, "
    "bytes_sent, bytes_received, rl_limit, rl_remaining, tokens, version, deprecation, sunset, request_id, "
    "tries, process"
)
_CALL_FIELDS = len(_CALL_COLUMNS.split(", "))


def _schema(serial: str, real: str, big: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS tether_calls (
            id {serial} PRIMARY KEY,
            at {real} NOT NULL,
            integration TEXT NOT NULL,
            method TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            status INTEGER,
            outcome TEXT NOT NULL,
            failed SMALLINT NOT NULL,
            error TEXT,
            hint TEXT,
            latency {real} NOT NULL,
            attempts INTEGER NOT NULL,
            peer TEXT,
            bytes_sent {big} NOT NULL,
            bytes_received {big} NOT NULL,
            rl_limit {real},
            rl_remaining {real},
            tokens {big},
            version TEXT,
            deprecation TEXT,
            sunset TEXT,
            request_id TEXT,
            tries TEXT,
            process TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS tether_calls_at ON tether_calls (at)",
        "CREATE INDEX IF NOT EXISTS tether_calls_failures ON tether_calls (integration, id) WHERE failed = 1",
        *batch_schema(serial, real),
        *summary_schema(real, big),
    ]


_SCHEMAS = {
    "sqlite": _schema("INTEGER", "REAL", "INTEGER"),
    "postgresql": _schema("BIGSERIAL", "DOUBLE PRECISION", "BIGINT"),
}


@dataclass(frozen=True)
class StoredCall:
    """A call record read back, with its row id (``None`` for a plain success, stored packed)."""

    id: int | None
    record: CallRecord
    process: str | None


class CallLog:
    """Call records and summaries in ``store``.

    Args:
        store: Where they live (``store`` in the config).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.summaries = Summaries(store)
        self._process = f"{socket.gethostname()}:{os.getpid()}"

    def ensure_schema(self) -> None:
        """Create the tables (once per process)."""
        self.store.ensure_schema("calls", _SCHEMAS[self.store.dialect])

    def write(self, records: Calls | Sequence[Row]) -> None:
        """Store ``records`` and fold them into the summaries, in one transaction.

        Raises:
            sqlite3.Error | psycopg.Error: nothing was written.
        """
        calls = as_calls(records)
        if not calls:
            return
        self.ensure_schema()
        process = self._process
        plain, others = split(calls)
        rows = [_row(record, process) for record in others]
        with self.store.transaction() as connection:
            if rows and self.store.dialect == "sqlite":
                _insert_in_chunks(connection, rows)
            elif rows:
                _executemany(connection, self.store.sql(_insert(1)), rows)
            if plain:
                batches = [(*batch, process) for batch in pack(plain)]
                _executemany(connection, self.store.sql(_INSERT_BATCH), batches)
            self.summaries.fold(connection, calls)

    def purge(self, *, records_before: float, summaries_before: float) -> int:
        """Delete records older than ``records_before`` and summaries older than ``summaries_before``."""
        self.ensure_schema()
        with self.store.transaction() as connection:
            deleted = connection.execute(self.store.sql("DELETE FROM tether_calls WHERE at < ?"), (records_before,))
            # A batch goes when its last call is old enough (at most a flush interval after its first).
            packed = connection.execute(
                self.store.sql("SELECT COALESCE(SUM(calls), 0) FROM tether_call_batches WHERE at_last < ?"),
                (records_before,),
            ).fetchone()
            connection.execute(self.store.sql("DELETE FROM tether_call_batches WHERE at_last < ?"), (records_before,))
            self.summaries.purge(connection, summaries_before)
            return int(deleted.rowcount) + int(packed[0] if packed else 0)

    # -- reading -----------------------------------------------------------------------------------------------

    def minutes(self, since: float, until: float | None = None) -> dict[str, list[Minute]]:
        """Each integration's summaries from the minute holding ``since`` on, oldest first."""
        self.ensure_schema()
        return self.summaries.minutes(since, until)

    def totals(self, since: float, until: float | None = None) -> dict[str, Minute]:
        """Each integration's summaries from ``since`` to ``until``, added up (whole hours read as hours)."""
        self.ensure_schema()
        return self.summaries.totals(since, until)

    def series(self, since: float, until: float, step: int) -> dict[str, list[Minute]]:
        """Each integration's summaries in slots of ``step`` minutes (see :meth:`Summaries.series`)."""
        self.ensure_schema()
        return self.summaries.series(since, until, step)

    def total(self, integration: str, since: float, until: float | None = None) -> Minute:
        """One integration's summaries from ``since`` on, added up."""
        self.ensure_schema()
        return self.summaries.totals(since, until).get(integration, Minute())

    def failures(self, integration: str, *, limit: int = 10) -> list[StoredCall]:
        """``integration``'s most recent failed calls, newest first."""
        return self._select("WHERE integration = ? AND failed = 1 ORDER BY id DESC LIMIT ?", (integration, limit))

    def calls(
        self, *, since: float, until: float | None = None, integration: str | None = None, limit: int | None = None
    ) -> list[StoredCall]:
        """Records from ``since`` (to ``until``), optionally of one integration, oldest first."""
        where, params = _window("at", "at", since, until, integration)
        tail = f"{where} ORDER BY at, id"  # by id would walk the whole table
        if limit is not None:
            tail += f" LIMIT {int(limit)}"
        rows = self._select(tail, params)
        packed = self._packed(since, until, integration, limit)
        merged = heapq.merge(rows, packed, key=lambda each: each.record.at)
        return list(itertools.islice(merged, limit))

    def _packed(
        self, since: float, until: float | None, integration: str | None, limit: int | None
    ) -> list[StoredCall]:
        """The plain successes of the window, oldest first, at most ``limit``."""
        where, params = _window("at_last", "at_first", since, until, integration)  # the batches that overlap it
        statement = self.store.sql(
            f"SELECT at_first, integration, body, process FROM tether_call_batches {where} ORDER BY at_first, id"  # noqa: S608
        )
        found: list[StoredCall] = []
        latest = float("-inf")
        with self.store.reading() as connection:
            for at_first, name, body, process in _fetched(connection.execute(statement, params)):
                # Batches come by their first call: once ``limit`` calls are in hand and the next batch starts
                # after all of them, no later batch can hold an earlier call.
                if limit is not None and len(found) >= limit and at_first > latest:
                    break
                for record in unpack(name, body):
                    if record.at >= since and (until is None or record.at < until):
                        found.append(StoredCall(None, record, process))
                        latest = max(latest, record.at)
        found.sort(key=lambda each: each.record.at)
        return found[:limit]

    def after(self, last_id: int, *, limit: int = 10_000) -> list[StoredCall]:
        """Records with an id above ``last_id``, in id order (how ``/metrics`` follows the log)."""
        return self._select("WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit))

    def by_ids(self, ids: Sequence[int]) -> list[StoredCall]:
        """The records with these ids that exist now."""
        if not ids:
            return []
        return self._select(f"WHERE id IN ({', '.join(['?'] * len(ids))}) ORDER BY id", tuple(ids))

    def last_id(self) -> int:
        """The highest record id so far (0 when there is none)."""
        return self._max_id("tether_calls")

    def batches_after(self, last_id: int, *, limit: int = 100) -> list[tuple[int, list[CallRecord]]]:
        """Batches of plain successes with an id above ``last_id``, in id order (``/metrics`` follows them too)."""
        return self._batches("WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit))

    def batches_by_ids(self, ids: Sequence[int]) -> list[tuple[int, list[CallRecord]]]:
        """The batches with these ids that exist now."""
        if not ids:
            return []
        return self._batches(f"WHERE id IN ({', '.join(['?'] * len(ids))}) ORDER BY id", tuple(ids))

    def last_batch_id(self) -> int:
        """The highest batch id so far (0 when there is none)."""
        return self._max_id("tether_call_batches")

    def _max_id(self, table: str) -> int:
        self.ensure_schema()
        with self.store.reading() as connection:
            row = connection.execute(f"SELECT MAX(id) FROM {table}").fetchone()  # noqa: S608 - fixed names
        return int(row[0] or 0)

    def _batches(self, tail: str, params: tuple[Any, ...]) -> list[tuple[int, list[CallRecord]]]:
        self.ensure_schema()
        statement = self.store.sql(f"SELECT id, integration, body FROM tether_call_batches {tail}")  # noqa: S608
        with self.store.reading() as connection:
            rows = connection.execute(statement, params).fetchall()
        return [(int(id_), unpack(name, body)) for id_, name, body in rows]

    def _select(self, tail: str, params: tuple[Any, ...]) -> list[StoredCall]:
        self.ensure_schema()
        statement = self.store.sql(f"SELECT id, {_CALL_COLUMNS} FROM tether_calls {tail}")  # noqa: S608 - fixed parts
        with self.store.reading() as connection:
            rows = connection.execute(statement, params).fetchall()
        return [_stored(row) for row in rows]


def _fetched(cursor: SqlCursor, size: int = 64) -> Iterator[Any]:
    """The rows of ``cursor``, ``size`` at a time: a busy day holds thousands of batches, and a read with a
    limit stops early."""
    while rows := cursor.fetchmany(size):
        yield from rows


def _window(
    ends: str, starts: str, since: float, until: float | None, integration: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of rows whose ``ends`` column is at or after ``since`` and ``starts`` before ``until``."""
    clauses: list[str] = [f"{ends} >= ?"]
    params: list[Any] = [since]
    if until is not None:
        clauses.append(f"{starts} < ?")
        params.append(until)
    if integration is not None:
        clauses.append("integration = ?")
        params.append(integration)
    return f"WHERE {' AND '.join(clauses)}", tuple(params)


_INSERT_BATCH = (
    "INSERT INTO tether_call_batches (at_first, at_last, integration, calls, body, process) VALUES (?, ?, ?, ?, ?, ?)"
)

# Rows per INSERT statement on SQLite, at most (23 columns: 4,600 parameters).
_CHUNK = 200


@functools.cache
def _insert(rows: int) -> str:
    values = ", ".join(["(" + ", ".join(["?"] * _CALL_FIELDS) + ")"] * rows)
    return f"INSERT INTO tether_calls ({_CALL_COLUMNS}) VALUES {values}"  # noqa: S608 - fixed column names


def _insert_in_chunks(connection: SqlConnection, rows: list[tuple[Any, ...]]) -> None:
    """Many rows per statement. sqlite3 lets go of the GIL around each statement it runs: one statement per row
    (``executemany``) hands the GIL to the application's threads and back thousands of times a batch, which
    measured 120 µs of wall time and 20 µs of CPU a record while a client called the API, against 7 µs alone."""
    size = _chunk_size(connection)
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        connection.execute(_insert(len(chunk)), [value for row in chunk for value in row])


def _chunk_size(connection: SqlConnection) -> int:
    """Rows per statement within this SQLite's limit on parameters (32,766 since 3.32; 999 before)."""
    getlimit = getattr(connection, "getlimit", None)
    limit = getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if getlimit is not None else 999
    return max(1, min(_CHUNK, int(limit) // _CALL_FIELDS))


def _executemany(connection: SqlConnection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    # sqlite3's connection has executemany; psycopg's is on the cursor (and pipelines the rows).
    executemany = getattr(connection, "executemany", None)
    if executemany is not None:
        executemany(statement, rows)
        return
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.executemany(statement, rows)


def _row(row: Row, process: str) -> tuple[Any, ...]:
    record = CallRecord(*row)  # the calls that are not plain successes: few
    tries = (
        json.dumps([[t.status, t.error, t.peer, round(t.elapsed, 6)] for t in record.tries], separators=(",", ":"))
        if record.tries
        else None
    )
    return (
        record.at,
        record.integration,
        record.method,
        record.endpoint,
        record.status,
        record.outcome,
        int(record.failed),
        record.error,
        record.hint,
        record.latency,
        record.attempts,
        record.peer,
        record.bytes_sent,
        record.bytes_received,
        record.limit,
        record.limit_remaining,
        record.tokens,
        record.version,
        record.deprecation,
        record.sunset,
        record.request_id,
        tries,
        process,
    )


def _stored(row: Sequence[Any]) -> StoredCall:
    (id_, at, integration, method, endpoint, status, outcome, _failed, error, hint, latency, attempts, peer) = row[:13]
    (sent, received, limit, remaining, tokens, version, deprecation, sunset, request_id, tries, process) = row[13:]
    record = CallRecord(
        at=at,
        integration=integration,
        method=method,
        endpoint=endpoint,
        status=status,
        outcome=outcome,
        error=error,
        hint=hint,
        latency=latency,
        attempts=attempts,
        peer=peer,
        bytes_sent=sent,
        bytes_received=received,
        limit=limit,
        limit_remaining=remaining,
        tokens=tokens,
        version=version,
        deprecation=deprecation,
        sunset=sunset,
        request_id=request_id,
        tries=tuple(Try(*item) for item in json.loads(tries)) if tries else (),
    )
    return StoredCall(int(id_), record, process)

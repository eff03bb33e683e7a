"""The call log: call records in the store, and the per-minute summaries every view reads.

Two tables. ``tether_calls`` holds each call (kept for ``monitoring.retention``): ``tether doctor --from-log``,
the dashboard's last errors and ``/metrics`` read it. ``tether_call_minutes`` holds one row per integration and
minute — calls, failures, 401/403s, a latency histogram, tokens, the highest rate-limit usage, the last
version and deprecation headers — updated in the same transaction as the records it summarises. The
dashboard's numbers and charts and the alert rules read only summaries, so they cost the same with a million
records as with ten. Several processes may write at once: a summary row is incremented, never overwritten.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether.observe.records import CallRecord, Try
from tether.observe.summary import BUCKETS as _BUCKETS
from tether.observe.summary import Minute
from tether.store import SqlConnection, Store

__all__ = ["CallLog", "Minute", "StoredCall"]

_BUCKET_COLUMNS = ", ".join(f"b{index}" for index in range(_BUCKETS))

_CALL_COLUMNS = (
    "at, integration, method, endpoint, status, outcome, failed, error, hint, latency, attempts, peer, "
    "bytes_sent, bytes_received, rl_limit, rl_remaining, tokens, version, deprecation, sunset, request_id, "
    "tries, process"
)
_CALL_FIELDS = len(_CALL_COLUMNS.split(", "))

_SUMMARY_SUMS = (
    "calls, failures, auth_failures, rejected, attempts, latency_sum, tokens, bytes_received, " + _BUCKET_COLUMNS
)


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
        f"""CREATE TABLE IF NOT EXISTS tether_call_minutes (
            integration TEXT NOT NULL,
            minute {big} NOT NULL,
            calls {big} NOT NULL,
            failures {big} NOT NULL,
            auth_failures {big} NOT NULL,
            rejected {big} NOT NULL,
            attempts {big} NOT NULL,
            latency_sum {real} NOT NULL,
            tokens {big} NOT NULL,
            bytes_received {big} NOT NULL,
            max_usage {real},
            version TEXT,
            deprecation TEXT,
            sunset TEXT,
            {", ".join(f"b{index} {big} NOT NULL" for index in range(_BUCKETS))},
            PRIMARY KEY (integration, minute)
        )""",
        # The dashboard asks for every integration's minutes since a time: without this, a full scan.
        "CREATE INDEX IF NOT EXISTS tether_call_minutes_minute ON tether_call_minutes (minute)",
    ]


_SCHEMAS = {
    "sqlite": _schema("INTEGER", "REAL", "INTEGER"),
    "postgresql": _schema("BIGSERIAL", "DOUBLE PRECISION", "BIGINT"),
}


@dataclass(frozen=True)
class StoredCall:
    """A call record read back, with its row id."""

    id: int
    record: CallRecord
    process: str | None


class CallLog:
    """Call records and summaries in ``store``.

    Args:
        store: Where they live (``store`` in the config).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._process = f"{socket.gethostname()}:{os.getpid()}"

    def ensure_schema(self) -> None:
        """Create the tables (once per process)."""
        self.store.ensure_schema("calls", _SCHEMAS[self.store.dialect])

    def write(self, records: Sequence[CallRecord]) -> None:
        """Store ``records`` and fold them into the summaries, in one transaction.

        Raises:
            sqlite3.Error | psycopg.Error: nothing was written.
        """
        if not records:
            return
        self.ensure_schema()
        minutes: dict[tuple[str, int], Minute] = {}
        rows = []
        process = self._process
        for record in records:
            rows.append(_row(record, process))
            key = (record.integration, int(record.at // 60))
            summary = minutes.get(key)
            if summary is None:
                summary = minutes[key] = Minute(minute=key[1])
            summary.add(record)
        placeholders = ", ".join(["?"] * _CALL_FIELDS)
        insert = self.store.sql(f"INSERT INTO tether_calls ({_CALL_COLUMNS}) VALUES ({placeholders})")  # noqa: S608 - fixed column names
        with self.store.transaction() as connection:
            _executemany(connection, insert, rows)
            upsert = self.store.sql(_UPSERT)
            for (integration, _), summary in sorted(minutes.items()):  # sorted: two writers lock rows alike
                connection.execute(upsert, _summary_params(integration, summary))

    def purge(self, *, records_before: float, summaries_before: float) -> int:
        """Delete records older than ``records_before`` and summaries older than ``summaries_before``."""
        self.ensure_schema()
        with self.store.transaction() as connection:
            deleted = connection.execute(self.store.sql("DELETE FROM tether_calls WHERE at < ?"), (records_before,))
            connection.execute(
                self.store.sql("DELETE FROM tether_call_minutes WHERE minute < ?"), (int(summaries_before // 60),)
            )
            return int(deleted.rowcount)

    # -- reading -----------------------------------------------------------------------------------------------

    def minutes(self, since: float, until: float | None = None) -> dict[str, list[Minute]]:
        """Each integration's summaries from the minute holding ``since`` on, oldest first."""
        self.ensure_schema()
        statement = (
            f"SELECT integration, minute, {_SUMMARY_SUMS}, max_usage, version, deprecation, sunset "  # noqa: S608 - fixed column names
            "FROM tether_call_minutes WHERE minute >= ?"
        )
        params: list[Any] = [int(since // 60)]
        if until is not None:
            statement += " AND minute <= ?"
            params.append(int(until // 60))
        with self.store.connection() as connection:
            rows = connection.execute(self.store.sql(statement + " ORDER BY minute"), params).fetchall()
        result: dict[str, list[Minute]] = {}
        for row in rows:
            result.setdefault(row[0], []).append(_minute(row))
        return result

    def total(self, integration: str, since: float, until: float | None = None) -> Minute:
        """One integration's summaries from ``since`` on, added up."""
        total = Minute()
        for minute in self.minutes(since, until).get(integration, []):
            total.merge(minute)
        return total

    def failures(self, integration: str, *, limit: int = 10) -> list[StoredCall]:
        """``integration``'s most recent failed calls, newest first."""
        return self._select("WHERE integration = ? AND failed = 1 ORDER BY id DESC LIMIT ?", (integration, limit))

    def calls(
        self, *, since: float, until: float | None = None, integration: str | None = None, limit: int | None = None
    ) -> list[StoredCall]:
        """Records from ``since`` (to ``until``), optionally of one integration, oldest first."""
        clauses: list[str] = ["at >= ?"]
        params: list[Any] = [since]
        if until is not None:
            clauses.append("at < ?")
            params.append(until)
        if integration is not None:
            clauses.append("integration = ?")
            params.append(integration)
        tail = f"WHERE {' AND '.join(clauses)} ORDER BY id"
        if limit is not None:
            tail += f" LIMIT {int(limit)}"
        return self._select(tail, tuple(params))

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
        self.ensure_schema()
        with self.store.connection() as connection:
            row = connection.execute("SELECT MAX(id) FROM tether_calls").fetchone()
        return int(row[0] or 0)

    def _select(self, tail: str, params: tuple[Any, ...]) -> list[StoredCall]:
        self.ensure_schema()
        statement = self.store.sql(f"SELECT id, {_CALL_COLUMNS} FROM tether_calls {tail}")  # noqa: S608 - fixed parts
        with self.store.connection() as connection:
            rows = connection.execute(statement, params).fetchall()
        return [_stored(row) for row in rows]


_UPSERT = (
    f"INSERT INTO tether_call_minutes (integration, minute, {_SUMMARY_SUMS}, max_usage, version, deprecation, "  # noqa: S608 - fixed column names
    f"sunset) VALUES ({', '.join(['?'] * (2 + 8 + _BUCKETS + 4))}) "
    "ON CONFLICT (integration, minute) DO UPDATE SET "
    + ", ".join(f"{name} = tether_call_minutes.{name} + excluded.{name}" for name in _SUMMARY_SUMS.split(", "))
    + ", max_usage = CASE WHEN tether_call_minutes.max_usage IS NULL OR excluded.max_usage > "
    "tether_call_minutes.max_usage THEN excluded.max_usage ELSE tether_call_minutes.max_usage END"
    + "".join(
        f", {name} = COALESCE(excluded.{name}, tether_call_minutes.{name})"
        for name in ("version", "deprecation", "sunset")
    )
)


def _executemany(connection: SqlConnection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    # sqlite3's connection has executemany; psycopg's is on the cursor (and pipelines the rows).
    executemany = getattr(connection, "executemany", None)
    if executemany is not None:
        executemany(statement, rows)
        return
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.executemany(statement, rows)


def _row(record: CallRecord, process: str) -> tuple[Any, ...]:
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


def _summary_params(integration: str, summary: Minute) -> tuple[Any, ...]:
    return (
        integration,
        summary.minute,
        summary.calls,
        summary.failures,
        summary.auth_failures,
        summary.rejected,
        summary.attempts,
        summary.latency_sum,
        summary.tokens,
        summary.bytes_received,
        *summary.buckets,
        summary.max_usage,
        summary.version,
        summary.deprecation,
        summary.sunset,
    )


def _minute(row: Sequence[Any]) -> Minute:
    (_, minute, calls, failures, auth_failures, rejected, attempts, latency_sum, tokens, received) = row[:10]
    buckets = [int(value) for value in row[10 : 10 + _BUCKETS]]
    max_usage, version, deprecation, sunset = row[10 + _BUCKETS :]
    return Minute(
        minute=int(minute),
        calls=int(calls),
        failures=int(failures),
        auth_failures=int(auth_failures),
        rejected=int(rejected),
        attempts=int(attempts),
        latency_sum=float(latency_sum),
        tokens=int(tokens),
        bytes_received=int(received),
        max_usage=max_usage,
        version=version,
        deprecation=deprecation,
        sunset=sunset,
        buckets=buckets,
    )

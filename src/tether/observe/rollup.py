"""The summary tables: each integration's calls per minute and per hour, kept beside the call records.

``tether_call_minutes`` and ``tether_call_hours`` hold the same sums (calls, failures, 401/403s, breaker
refusals, attempts, a latency histogram, tokens, bytes, the highest rate-limit usage, the last version and
deprecation headers) at two resolutions. Both are incremented in the transaction that stores the records they
summarise, so several writers may run at once and nothing is counted twice.

Views pick the resolution that keeps their cost flat: a window of a few hours reads minutes, a week reads
hours (168 rows per integration instead of 10,080), and a total over a long window is its whole hours plus
the minutes at either edge, so it stays exact to the minute.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tether.observe.columns import Calls
from tether.observe.summary import BUCKETS, Minute
from tether.store import SqlConnection, Store

__all__ = ["HOUR_STEP_FROM", "Summaries", "summary_schema"]

_BUCKET_COLUMNS = ", ".join(f"b{index}" for index in range(BUCKETS))
_SUMS = "calls, failures, auth_failures, rejected, attempts, latency_sum, tokens, bytes_received, " + _BUCKET_COLUMNS
_HEADERS = ("version", "deprecation", "sunset")
_LAST = {"minute": "max_usage, version, deprecation, sunset", "hour": "max_usage"}
_TABLES = {"minute": "tether_call_minutes", "hour": "tether_call_hours"}

# "No end": a minute far past any record, and still a 64-bit integer in both databases.
_LAST_MINUTE = 2**60

# Chart steps of this many minutes or more are read from the hourly table (and rounded to whole hours).
HOUR_STEP_FROM = 30


def summary_schema(real: str, big: str) -> list[str]:
    """The two tables, their indexes, and the one-time fill of the hourly table from the minutes."""
    statements = []
    for unit, table in _TABLES.items():
        headers = "version TEXT, deprecation TEXT, sunset TEXT," if unit == "minute" else ""
        statements.append(
            f"""CREATE TABLE IF NOT EXISTS {table} (
                integration TEXT NOT NULL,
                {unit} {big} NOT NULL,
                calls {big} NOT NULL,
                failures {big} NOT NULL,
                auth_failures {big} NOT NULL,
                rejected {big} NOT NULL,
                attempts {big} NOT NULL,
                latency_sum {real} NOT NULL,
                tokens {big} NOT NULL,
                bytes_received {big} NOT NULL,
                max_usage {real},
                {headers}
                {", ".join(f"b{index} {big} NOT NULL" for index in range(BUCKETS))},
                PRIMARY KEY (integration, {unit})
            )"""
        )
        # Views ask for every integration's rows since a time: without this, a full scan.
        statements.append(f"CREATE INDEX IF NOT EXISTS {table}_{unit} ON {table} ({unit})")
    # The latest minute that carried each header, found without reading the minutes that did not (most of
    # them, for Deprecation and Sunset). The hourly table keeps no headers: "latest" is a minute's matter.
    statements += [
        f"CREATE INDEX IF NOT EXISTS tether_call_minutes_{name} ON tether_call_minutes (integration, minute) "
        f"WHERE {name} IS NOT NULL"
        for name in _HEADERS
    ]
    # A store written before the hourly table existed: fill it once from the minutes it has. Writers add to
    # both tables from then on; a batch committed between the CREATE and this statement keeps its own hour
    # rows (DO NOTHING), so at worst that hour misses the minutes before the upgrade.
    statements.append(
        f"INSERT INTO tether_call_hours (integration, hour, {_SUMS}, max_usage) "  # noqa: S608 - fixed names
        f"SELECT integration, minute / 60, {', '.join(f'SUM({name})' for name in _SUMS.split(', '))}, "
        "MAX(max_usage) FROM tether_call_minutes "
        "WHERE NOT EXISTS (SELECT 1 FROM tether_call_hours) GROUP BY integration, minute / 60 "
        "ON CONFLICT (integration, hour) DO NOTHING"
    )
    return statements


def _upsert(table: str, unit: str) -> str:
    columns = f"integration, {unit}, {_SUMS}, {_LAST[unit]}"
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['?'] * len(columns.split(', ')))}) "  # noqa: S608
        f"ON CONFLICT (integration, {unit}) DO UPDATE SET "
        + ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in _SUMS.split(", "))
        + f", max_usage = CASE WHEN {table}.max_usage IS NULL OR excluded.max_usage > {table}.max_usage "
        f"THEN excluded.max_usage ELSE {table}.max_usage END"
        + "".join(f", {name} = COALESCE(excluded.{name}, {table}.{name})" for name in _HEADERS if unit == "minute")
    )


_UPSERTS = {unit: _upsert(table, unit) for unit, table in _TABLES.items()}


class Summaries:
    """Writing and reading the summary tables of ``store`` (whose schema the call log creates)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- writing -----------------------------------------------------------------------------------------------

    def fold(self, connection: SqlConnection, calls: Calls) -> None:
        """Add ``calls`` to both tables, inside the caller's transaction."""
        minutes: dict[tuple[str, int], Minute] = {}
        for key, group in calls.by_minute().items():
            minutes[key] = summary = Minute(minute=key[1])
            summary.add_all(group)
        hours: dict[tuple[str, int], Minute] = {}
        for (integration, minute), summary in sorted(minutes.items(), key=lambda item: item[0][1]):
            key = (integration, minute // 60)
            hour = hours.get(key)
            if hour is None:
                hour = hours[key] = Minute(minute=key[1])
            hour.merge(summary)
            hour.minute = key[1]  # merge keeps the later start; here the row's key is the hour
        for unit, rows in (("minute", minutes), ("hour", hours)):
            statement = self.store.sql(_UPSERTS[unit])
            width = 2 + 8 + BUCKETS + len(_LAST[unit].split(", "))
            for (integration, _), summary in sorted(rows.items()):  # sorted: two writers lock rows alike
                connection.execute(statement, _params(integration, summary)[:width])

    def purge(self, connection: SqlConnection, before: float) -> None:
        """Delete the summaries of the minutes and whole hours before ``before`` (Unix seconds)."""
        connection.execute(self.store.sql("DELETE FROM tether_call_minutes WHERE minute < ?"), (int(before // 60),))
        connection.execute(self.store.sql("DELETE FROM tether_call_hours WHERE hour < ?"), (int(before // 3600),))

    # -- reading -----------------------------------------------------------------------------------------------

    def minutes(self, since: float, until: float | None = None) -> dict[str, list[Minute]]:
        """Each integration's minutes from the one holding ``since`` on, oldest first."""
        last = None if until is None else int(until // 60)
        return _grouped(self._rows("minute", int(since // 60), last))

    def totals(self, since: float, until: float | None = None) -> dict[str, Minute]:
        """Each integration's calls in the minutes from ``since`` to ``until`` (or the end), added up.

        Whole hours come from the hourly table and the minutes before the first and after the last whole hour
        from the minutes, so a week costs a few hundred rows per integration and is exact to the minute.
        """
        first, last = int(since // 60), _LAST_MINUTE if until is None else int(until // 60)
        whole_from, whole_to = -(-first // 60), (last + 1) // 60  # hours entirely inside [first, last]
        if whole_to - whole_from < 2:
            return {name: _sum(rows) for name, rows in self.minutes(since, until).items()}
        pieces = self._rows("minute", first, whole_from * 60 - 1)
        pieces += [_as_minute(row) for row in self._rows("hour", whole_from, whole_to - 1)]
        pieces += self._rows("minute", whole_to * 60, last)
        totals = {name: _sum(rows) for name, rows in _grouped(pieces).items()}
        self._latest_headers(totals, first, last)
        return totals

    def series(self, since: float, until: float, step: int) -> dict[str, list[Minute]]:
        """Each integration's calls in slots of ``step`` minutes from the slot holding ``since`` to the one
        holding ``until``, oldest first; each :class:`Minute` is a slot (``minute`` is its first minute).

        A ``step`` of :data:`HOUR_STEP_FROM` minutes or more must be a whole number of hours: the slots are
        then made from the hourly table.
        """
        first, last = int(since // 60), int(until // 60)
        if step >= HOUR_STEP_FROM:
            if step % 60:
                raise ValueError(f"a step of {step} minutes is read from hours: it must be a multiple of 60")
            rows = [_as_minute(row) for row in self._rows("hour", first // 60, last // 60)]
        elif step > 1:
            rows = self._slots(first, last, step)  # summed by the database: a day is 1,440 rows a name
        else:
            rows = self._rows("minute", first, last)
        slots: dict[tuple[str, int], Minute] = {}
        for integration, minute in rows:
            key = (integration, minute.minute // step * step)
            slot = slots.get(key)
            if slot is None:
                slots[key] = minute
                minute.minute = key[1]
            else:
                slot.merge(minute)
                slot.minute = key[1]
        result: dict[str, list[Minute]] = {}
        for (integration, _), slot in sorted(slots.items(), key=lambda item: item[0][1]):
            result.setdefault(integration, []).append(slot)
        return result

    def _latest_headers(self, totals: dict[str, Minute], first: int, last: int) -> None:
        """Set each total's version, deprecation and sunset to the latest minute's in [first, last] that had
        one: one indexed look-up per integration and header, whatever the window's length."""
        if not totals:
            return
        lookups = ", ".join(
            f"(SELECT {name} FROM tether_call_minutes WHERE integration = ? AND minute >= ? AND minute <= ? "  # noqa: S608
            f"AND {name} IS NOT NULL ORDER BY minute DESC LIMIT 1)"
            for name in _HEADERS
        )
        names = sorted(totals)
        rows = []
        with self.store.reading() as connection:
            # 40 integrations a statement: 400 parameters, within any SQLite build's limit.
            for start in range(0, len(names), 40):
                chunk = names[start : start + 40]
                statement = self.store.sql(" UNION ALL ".join([f"SELECT CAST(? AS TEXT), {lookups}"] * len(chunk)))
                params = [value for name in chunk for value in (name, *(name, first, last) * len(_HEADERS))]
                rows += connection.execute(statement, params).fetchall()
        for name, version, deprecation, sunset in rows:
            total = totals[name]
            total.version, total.deprecation, total.sunset = version, deprecation, sunset

    def _slots(self, first: int, last: int, step: int) -> list[tuple[str, Minute]]:
        sums = ", ".join(f"SUM({name})" for name in _SUMS.split(", "))
        statement = (
            f"SELECT integration, minute / ? * ? AS slot, {sums}, MAX(max_usage), NULL, NULL, NULL "  # noqa: S608
            "FROM tether_call_minutes WHERE minute >= ? AND minute <= ? GROUP BY integration, slot ORDER BY slot"
        )
        with self.store.reading() as connection:
            rows = connection.execute(self.store.sql(statement), (step, step, first, last)).fetchall()
        return [(row[0], _minute(row)) for row in rows]

    def _rows(self, unit: str, first: int, last: int | None) -> list[tuple[str, Minute]]:
        if last is not None and last < first:
            return []
        statement = f"SELECT integration, {unit}, {_SUMS}, {_LAST[unit]} FROM {_TABLES[unit]} WHERE {unit} >= ?"  # noqa: S608
        params: list[Any] = [first]
        if last is not None:
            statement += f" AND {unit} <= ?"
            params.append(last)
        with self.store.reading() as connection:
            rows = connection.execute(self.store.sql(statement + f" ORDER BY {unit}"), params).fetchall()
        if unit == "hour":
            return [(row[0], _minute((*row, None, None, None))) for row in rows]
        return [(row[0], _minute(row)) for row in rows]


def _as_minute(row: tuple[str, Minute]) -> tuple[str, Minute]:
    """An hourly row with its key in minutes, so it sorts and merges among minute rows."""
    row[1].minute *= 60
    return row


def _grouped(rows: Iterable[tuple[str, Minute]]) -> dict[str, list[Minute]]:
    result: dict[str, list[Minute]] = {}
    for integration, minute in sorted(rows, key=lambda row: row[1].minute):
        result.setdefault(integration, []).append(minute)
    return result


def _sum(minutes: Iterable[Minute]) -> Minute:
    total = Minute()
    for minute in minutes:
        total.merge(minute)
    return total


def _params(integration: str, summary: Minute) -> tuple[Any, ...]:
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
    (_, key, calls, failures, auth_failures, rejected, attempts, latency_sum, tokens, received) = row[:10]
    buckets = [int(value) for value in row[10 : 10 + BUCKETS]]
    max_usage, version, deprecation, sunset = row[10 + BUCKETS :]
    return Minute(
        minute=int(key),
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

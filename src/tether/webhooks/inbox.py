"""The durable inbox: every accepted webhook event, its processing state, in the tether store.

One row per event in ``tether_webhook_events``, unique per ``(integration, event_id)`` so a provider's retry
of an event already accepted changes nothing. An event's life::

    pending ──claim──▶ processing ──complete──▶ done ──(retention)──▶ deleted
       ▲                  │ fail (attempts left): pending again at due_at = now + backoff
       └──── replay ──────┤ fail (no attempts left): dead
                          │ lease runs out (the worker died): claimable again

``due_at`` is when a pending event may be claimed, and when a processing event's lease runs out; one index
on ``(status, due_at)`` serves both. A claim counts as an attempt, so an event that crashes its worker every
time still reaches dead-letter instead of looping forever.

Writes from the receiver go through :class:`~tether.webhooks.writer.InboxWriter`, which commits many events in
one transaction; on SQLite that transaction runs with ``synchronous=FULL``, so an acknowledged event survives
the loss of the machine, not only of the process. On PostgreSQL, claims use ``FOR UPDATE SKIP LOCKED`` so
several ``tether serve`` instances share one inbox without taking the same event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tether.store import Store
from tether.webhooks import _inbox_sql as sql

__all__ = ["STATUSES", "Claimed", "Inbox", "Incoming", "Status", "StoredEvent"]

Status = Literal["pending", "processing", "done", "dead"]
STATUSES: tuple[Status, ...] = ("pending", "processing", "done", "dead")

_LAST_ERROR_LIMIT = 2000


@dataclass(frozen=True)
class Incoming:
    """An event the receiver verified, about to be committed.

    Attributes:
        headers: The request's headers, lower-cased, without the ones that carry credentials or signatures.
    """

    integration: str
    event_id: str
    event_type: str | None
    headers: dict[str, str]
    body: bytes
    received_at: float


@dataclass(frozen=True)
class StoredEvent:
    """An event as the inbox holds it (without its body; see :meth:`Inbox.get`)."""

    id: int
    integration: str
    event_id: str
    event_type: str | None
    status: Status
    attempts: int
    due_at: float | None
    received_at: float
    completed_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class Claimed:
    """An event a worker holds the lease on: what a handler needs."""

    id: int
    integration: str
    event_id: str
    event_type: str | None
    attempts: int
    received_at: float
    headers: dict[str, str]
    body: bytes


class Inbox:
    """The ``tether_webhook_events`` table of a store. Thread-safe; every method blocks on the store.

    Args:
        store: SQLite or PostgreSQL.
        wall: Wall-clock time (shared with other processes, so not monotonic).
    """

    def __init__(self, store: Store, *, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self._wall = wall
        self._postgres = store.dialect == "postgresql"

    def ensure_schema(self) -> None:
        self.store.ensure_schema("webhooks", sql.POSTGRES_SCHEMA if self._postgres else sql.SQLITE_SCHEMA)

    def ping(self) -> None:
        """Raise if the store does not answer."""
        with self.store.connection() as connection:
            connection.execute("SELECT 1").fetchone()

    # -- the receiver's side -----------------------------------------------------------------------------------

    def add(self, events: Sequence[Incoming]) -> list[bool]:
        """Commit ``events`` in one transaction; for each, whether it is new (``False``: a duplicate).

        Raises:
            sqlite3.Error | psycopg.Error: nothing was committed.
        """
        if not events:
            return []
        self.ensure_schema()
        # The first of each event id in the batch is the one that may be new; any later one is a duplicate.
        first: dict[tuple[str, str], Incoming] = {}
        for event in events:
            first.setdefault((event.integration, event.event_id), event)
        unique = list(first.values())
        stored = self._add_postgres(unique) if self._postgres else self._add_sqlite(unique)
        new: list[bool] = []
        for event in events:
            key = (event.integration, event.event_id)
            new.append(key in stored and first[key] is event)
        return new

    def _add_postgres(self, events: list[Incoming]) -> set[tuple[str, str]]:
        inserted: set[tuple[str, str]] = set()
        with self.store.transaction() as connection:
            for chunk in sql.chunks(events):
                statement = sql.insert(len(chunk)) + " RETURNING integration, event_id"
                rows = connection.execute(self.store.sql(statement), sql.params(chunk)).fetchall()
                inserted.update((row[0], row[1]) for row in rows)
        return inserted

    def _add_sqlite(self, events: list[Incoming]) -> set[tuple[str, str]]:
        """Insert with ``synchronous=FULL``: on disk when it returns.

        Few statements, because each one releases the GIL and takes it back, and taking it back waits for the
        event loop's thread when that is busy: one query for the events already stored, then the new ones in
        one INSERT, its own transaction (the connection is in autocommit mode), when they fit one statement.
        """
        # The SQLite store's lock is reentrant and its connection shared: no other thread's statement runs
        # between these, nor between the pragma and the insert.
        with self.store.connection() as connection:
            stored = sql.stored(connection, events)
            fresh = [event for event in events if (event.integration, event.event_id) not in stored]
            if not fresh:
                return set()
            connection.execute("PRAGMA synchronous=FULL")
            try:
                if len(fresh) <= sql.ROWS_PER_STATEMENT:
                    connection.execute(sql.insert(len(fresh)), sql.params(fresh))
                else:
                    with self.store.transaction() as same:
                        for chunk in sql.chunks(fresh):
                            same.execute(sql.insert(len(chunk)), sql.params(chunk))
            finally:
                connection.execute("PRAGMA synchronous=NORMAL")
        # Another process may have stored one of them between the query and the insert (a provider sending
        # the same event to two instances at once): it is stored once all the same, and both answer "accepted".
        return {(event.integration, event.event_id) for event in fresh}

    # -- the workers' side -------------------------------------------------------------------------------------

    def claim(self, holder: str, integrations: Iterable[str], *, limit: int, lease: float) -> list[Claimed]:
        """Take up to ``limit`` due events of ``integrations`` for ``lease`` seconds, oldest first."""
        names = sorted(set(integrations))
        if not names or limit <= 0:
            return []
        self.ensure_schema()
        now = self._wall()
        marks = ", ".join("?" * len(names))
        lock = " FOR UPDATE SKIP LOCKED" if self._postgres else ""
        statement = (
            "UPDATE tether_webhook_events SET status = 'processing', holder = ?, due_at = ?, attempts = attempts + 1 "  # noqa: S608 - placeholders and fixed column names only
            "WHERE id IN (SELECT id FROM tether_webhook_events "
            f"WHERE status IN ('pending', 'processing') AND due_at <= ? AND integration IN ({marks}) "
            f"ORDER BY due_at, id LIMIT ?{lock}) "
            "RETURNING id, integration, event_id, event_type, attempts, received_at, headers, body"
        )
        with self.store.transaction() as connection:
            rows = connection.execute(self.store.sql(statement), [holder, now + lease, now, *names, limit]).fetchall()
        claimed = [Claimed(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), bytes(r[7])) for r in rows]
        return sorted(claimed, key=lambda event: event.id)

    def complete(self, event_id: int, holder: str) -> bool:
        """Record that the event was processed; ``False`` if ``holder`` no longer held its lease."""
        return self._update(
            "UPDATE tether_webhook_events SET status = 'done', completed_at = ?, due_at = NULL, holder = NULL, "
            "last_error = NULL WHERE id = ? AND holder = ? AND status = 'processing'",
            (self._wall(), event_id, holder),
        )

    def fail(self, event_id: int, holder: str, error: str, *, retry_in: float | None) -> bool:
        """Record a failed attempt: pending again in ``retry_in`` seconds, or dead when it is ``None``."""
        status, due_at = ("dead", None) if retry_in is None else ("pending", self._wall() + retry_in)
        return self._update(
            "UPDATE tether_webhook_events SET status = ?, due_at = ?, holder = NULL, last_error = ? "
            "WHERE id = ? AND holder = ? AND status = 'processing'",
            (status, due_at, error[:_LAST_ERROR_LIMIT], event_id, holder),
        )

    def release(self, holder: str, ids: Iterable[int] | None = None) -> int:
        """Hand back leases without counting the attempt (a worker shutting down cleanly)."""
        chosen = list(ids) if ids is not None else None
        if chosen == []:
            return 0
        where = "" if chosen is None else f" AND id IN ({', '.join('?' * len(chosen))})"
        return self._count(
            "UPDATE tether_webhook_events SET status = 'pending', due_at = ?, holder = NULL, "  # noqa: S608 - placeholders and fixed column names only
            f"attempts = attempts - 1 WHERE holder = ? AND status = 'processing'{where}",
            (self._wall(), holder, *(chosen or [])),
        )

    # -- operations ---------------------------------------------------------------------------------------------

    def replay(
        self,
        *,
        ids: Iterable[int] = (),
        since: float | None = None,
        dead: bool = False,
        integration: str | None = None,
    ) -> list[int]:
        """Make events pending again with a fresh attempt count; the ids of those that were replayed.

        ``ids`` picks events by inbox id, ``since`` those received at or after that time, ``dead`` those in
        dead-letter; every filter given must hold. An event being processed right now is left alone.
        """
        clauses, params = self._selection(ids=ids, since=since, dead=dead)
        if not clauses:
            return []
        statement = (
            "UPDATE tether_webhook_events SET status = 'pending', due_at = ?, attempts = 0, holder = NULL, "  # noqa: S608 - placeholders and fixed column names only
            f"completed_at = NULL, last_error = NULL WHERE status <> 'processing' AND {' AND '.join(clauses)}"
        )
        if integration is not None:
            statement += " AND integration = ?"
        with self.store.transaction() as connection:
            rows = connection.execute(
                self.store.sql(statement + " RETURNING id"),
                [self._wall(), *params, *([integration] if integration is not None else [])],
            ).fetchall()
        return sorted(row[0] for row in rows)

    def events(
        self,
        *,
        status: Status | None = None,
        integration: str | None = None,
        since: float | None = None,
        limit: int | None = 50,
    ) -> list[StoredEvent]:
        """The newest events first, filtered; ``limit=None`` for all of them."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("status = ?", status), ("integration = ?", integration), ("received_at >= ?", since)):
            if value is not None:
                where.append(clause)
                params.append(value)
        statement = f"SELECT {sql.COLUMNS} FROM tether_webhook_events"  # noqa: S608 - placeholders and fixed column names only
        statement += f" WHERE {' AND '.join(where)}" if where else ""
        statement += " ORDER BY id DESC"
        if limit is not None:
            statement += " LIMIT ?"
            params.append(limit)
        self.ensure_schema()
        with self.store.reading() as connection:
            rows = connection.execute(self.store.sql(statement), params).fetchall()
        return [StoredEvent(*row) for row in rows]

    def get(self, id_: int) -> tuple[StoredEvent, dict[str, str], bytes] | None:
        """One event with its headers and raw body, or ``None``."""
        self.ensure_schema()
        with self.store.reading() as connection:
            row = connection.execute(
                self.store.sql(sql.SELECT_ONE),
                (id_,),
            ).fetchone()
        if row is None:
            return None
        return StoredEvent(*row[:10]), json.loads(row[10]), bytes(row[11])

    def counts(self) -> dict[str, dict[str, int]]:
        """``{integration: {status: count}}`` over the whole inbox."""
        self.ensure_schema()
        with self.store.reading() as connection:
            rows = connection.execute(
                "SELECT integration, status, COUNT(*) FROM tether_webhook_events GROUP BY integration, status"
            ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for integration, status, count in rows:
            counts.setdefault(integration, dict.fromkeys(STATUSES, 0))[status] = int(count)
        return counts

    def purge(self, integration: str, *, older_than: float) -> int:
        """Delete ``integration``'s processed events completed more than ``older_than`` seconds ago."""
        return self._count(
            "DELETE FROM tether_webhook_events WHERE integration = ? AND status = 'done' AND completed_at < ?",
            (integration, self._wall() - older_than),
        )

    # -- SQL on either backend ---------------------------------------------------------------------------------

    @staticmethod
    def _selection(*, ids: Iterable[int], since: float | None, dead: bool) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        chosen = list(ids)
        if chosen:
            clauses.append(f"id IN ({', '.join('?' * len(chosen))})")
            params += chosen
        if since is not None:
            clauses.append("received_at >= ?")
            params.append(since)
        if dead:
            clauses.append("status = 'dead'")
        return clauses, params

    def _update(self, statement: str, params: tuple[Any, ...]) -> bool:
        return self._count(statement, params) > 0

    def _count(self, statement: str, params: tuple[Any, ...]) -> int:
        self.ensure_schema()
        with self.store.transaction() as connection:
            return int(connection.execute(self.store.sql(statement), params).rowcount)

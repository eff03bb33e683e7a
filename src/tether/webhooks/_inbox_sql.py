"""The webhook inbox's tables, and the SQL its writes are made of (see :mod:`tether.webhooks.inbox`)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tether.store import SqlConnection

if TYPE_CHECKING:
    from tether.webhooks.inbox import Incoming

# The inbox counts (dashboard, /metrics) read this index alone, not every event's row with its body.
COUNTS_INDEX = "CREATE INDEX IF NOT EXISTS tether_webhook_events_counts ON tether_webhook_events (integration, status)"
SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tether_webhook_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        integration TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL,
        holder TEXT,
        received_at REAL NOT NULL,
        completed_at REAL,
        last_error TEXT,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        UNIQUE (integration, event_id))""",
    "CREATE INDEX IF NOT EXISTS tether_webhook_events_due ON tether_webhook_events (status, due_at)",
    "CREATE INDEX IF NOT EXISTS tether_webhook_events_received ON tether_webhook_events (received_at)",
    COUNTS_INDEX,
)
POSTGRES_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tether_webhook_events (
        id BIGSERIAL PRIMARY KEY,
        integration TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at DOUBLE PRECISION,
        holder TEXT,
        received_at DOUBLE PRECISION NOT NULL,
        completed_at DOUBLE PRECISION,
        last_error TEXT,
        headers TEXT NOT NULL,
        body BYTEA NOT NULL,
        UNIQUE (integration, event_id))""",
    "CREATE INDEX IF NOT EXISTS tether_webhook_events_due ON tether_webhook_events (status, due_at)",
    "CREATE INDEX IF NOT EXISTS tether_webhook_events_received ON tether_webhook_events (received_at)",
    COUNTS_INDEX,
)
COLUMNS = "id, integration, event_id, event_type, status, attempts, due_at, received_at, completed_at, last_error"
SELECT_ONE = f"SELECT {COLUMNS}, headers, body FROM tether_webhook_events WHERE id = ?"  # noqa: S608 - fixed
INSERT_COLUMNS = "(integration, event_id, event_type, status, attempts, due_at, received_at, headers, body)"
ROWS_PER_STATEMENT = 256  # 7 parameters a row: far below either backend's limit (SQLite 3.32+: 32,766)

_Item = TypeVar("_Item")


def insert(rows: int) -> str:
    """An INSERT of ``rows`` new pending events that skips those already in the inbox."""
    values = ", ".join(["(?, ?, ?, 'pending', 0, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO tether_webhook_events {INSERT_COLUMNS} VALUES {values} "  # noqa: S608 - placeholders and fixed column names only
        "ON CONFLICT (integration, event_id) DO NOTHING"
    )


def chunks(items: Sequence[_Item]) -> Iterator[Sequence[_Item]]:
    """``items`` in slices of at most :data:`ROWS_PER_STATEMENT`."""
    for start in range(0, len(items), ROWS_PER_STATEMENT):
        yield items[start : start + ROWS_PER_STATEMENT]


def params(events: Sequence[Incoming]) -> list[Any]:
    """:func:`insert`'s parameters for ``events``."""
    values: list[Any] = []
    for event in events:
        values += [
            event.integration,
            event.event_id,
            event.event_type,
            event.received_at,
            event.received_at,
            json.dumps(event.headers, separators=(",", ":")),
            event.body,
        ]
    return values


def stored(connection: SqlConnection, events: Sequence[Incoming]) -> set[tuple[str, str]]:
    """Which of ``events`` the inbox holds already (by integration and event id)."""
    ids: dict[str, list[str]] = {}
    for event in events:
        ids.setdefault(event.integration, []).append(event.event_id)
    found: set[tuple[str, str]] = set()
    for integration, names in ids.items():
        for chunk in chunks(names):
            marks = ", ".join("?" * len(chunk))
            rows = connection.execute(
                f"SELECT event_id FROM tether_webhook_events WHERE integration = ? AND event_id IN ({marks})",  # noqa: S608 - placeholders only
                [integration, *chunk],
            ).fetchall()
            found.update((integration, row[0]) for row in rows)
    return found

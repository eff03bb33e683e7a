"""Incidents: alert conditions turned into one notification when they fire and one when they resolve.

Every ``interval`` the server measures each rule of each integration into a :class:`Condition` and hands them
to :meth:`Alerter.evaluate`. An incident opens the first time a condition fires, follows the measurement
while it keeps firing, and resolves once the condition has stayed quiet for ``resolve_after`` seconds; a
condition that fires again in between keeps its incident, so a flapping metric notifies nobody twice.

Incidents live in the store's ``tether_alerts`` table. A partial unique index allows one open incident per
integration and rule, and every transition is a single conditional statement (insert-if-absent, update-if-
still-open), so when several ``tether serve`` instances share a PostgreSQL store and evaluate the same
conditions, exactly one of them changes the row and only that one notifies. The notification goes out after
its transition is committed: delivery is at most once per instance that won the transition, retried briefly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tether.config.monitoring import AlertsConfig
from tether.observe.notify import Notification, Notify, deliver, notifier_for
from tether.store import SqlConnection, Store

__all__ = ["Alerter", "Condition", "Incident"]

Measure = float | str | None


@dataclass(frozen=True)
class Condition:
    """One rule of one integration, as measured now.

    Attributes:
        integration: The integration's name in ``tether.toml``.
        rule: The rule's name, a field of :class:`~tether.config.monitoring.AlertRules` (``"error_rate"``…).
        firing: Whether the rule's threshold is crossed now.
        value: What was measured (a ratio, seconds, a count, a date), when there is a value.
        threshold: The threshold it was compared with.
        message: The measurement in plain words, e.g. ``"error rate 12.5% over 5m (40 of 320 calls), above 5%"``.
    """

    integration: str
    rule: str
    firing: bool
    value: Measure
    threshold: Measure
    message: str


@dataclass(frozen=True)
class Incident:
    """An incident: a condition that fired, from when it opened until it resolved.

    Attributes:
        id: Its id in the store.
        started_at: When it opened (Unix time).
        resolved_at: When it resolved, ``None`` while open.
        value: The latest firing measurement.
        threshold: The threshold of that measurement.
        message: The latest firing measurement in plain words.
        last_seen_at: When the condition was last seen firing.
    """

    id: int
    integration: str
    rule: str
    started_at: float
    resolved_at: float | None
    value: Measure
    threshold: Measure
    message: str
    last_seen_at: float


def _schema(serial: str, real: str) -> list[str]:
    # quiet_since: when the condition was first seen not firing since it last fired (NULL while firing);
    # the incident resolves once that is resolve_after ago.
    return [
        f"""CREATE TABLE IF NOT EXISTS tether_alerts (
            id {serial} PRIMARY KEY,
            integration TEXT NOT NULL,
            rule TEXT NOT NULL,
            started_at {real} NOT NULL,
            resolved_at {real},
            value TEXT,
            threshold TEXT,
            message TEXT NOT NULL,
            last_seen_at {real} NOT NULL,
            quiet_since {real}
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS tether_alerts_open ON tether_alerts (integration, rule) "
        "WHERE resolved_at IS NULL",
        "CREATE INDEX IF NOT EXISTS tether_alerts_resolved ON tether_alerts (resolved_at)",
    ]


_SCHEMAS = {"sqlite": _schema("INTEGER", "REAL"), "postgresql": _schema("BIGSERIAL", "DOUBLE PRECISION")}
_COLUMNS = "id, integration, rule, started_at, resolved_at, value, threshold, message, last_seen_at"
_INSERT = (
    "INSERT INTO tether_alerts (integration, rule, started_at, value, threshold, message, last_seen_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (integration, rule) WHERE resolved_at IS NULL DO NOTHING "
    "RETURNING id"
)
# Each of these touches the open incident of (integration, rule) only, so a second instance running the same
# statement after the first has committed changes nothing and learns that it lost.
_TOUCH = (
    "UPDATE tether_alerts SET value = ?, threshold = ?, message = ?, last_seen_at = ?, quiet_since = NULL "
    "WHERE integration = ? AND rule = ? AND resolved_at IS NULL"
)
_QUIET = (
    "UPDATE tether_alerts SET quiet_since = ? "
    "WHERE integration = ? AND rule = ? AND resolved_at IS NULL AND quiet_since IS NULL"
)
_RESOLVE = (
    "UPDATE tether_alerts SET resolved_at = ? "
    "WHERE integration = ? AND rule = ? AND resolved_at IS NULL AND quiet_since <= ? RETURNING id, started_at"
)


class Alerter:
    """Opens, follows and resolves incidents in ``store``, and sends their notifications.

    Args:
        store: Where incidents live (shared by every ``tether serve`` instance that points at it).
        notifiers: Who is told of each transition.
        resolve_after: Seconds a condition must stay quiet before its incident resolves.
        wall: The clock (Unix time).
        sleep: How retries of a failing notifier wait (tests pass a recorder).
    """

    def __init__(
        self,
        store: Store,
        notifiers: Sequence[Notify],
        *,
        resolve_after: float,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if resolve_after < 0:
            raise ValueError(f"resolve_after must be 0 or more seconds, got {resolve_after}")
        self.store = store
        self.notifiers = list(notifiers)
        self.resolve_after = resolve_after
        self._wall = wall
        self._sleep = sleep

    @classmethod
    def from_config(cls, store: Store, config: AlertsConfig, **kwargs: Any) -> Alerter:
        """An alerter with the ``[alerts]`` table's notifiers and ``resolve_after``."""
        notifiers = [notifier_for(each) for each in config.notify]
        return cls(store, notifiers, resolve_after=config.resolve_after, **kwargs)

    def ensure_schema(self) -> None:
        """Create the table (once per process)."""
        self.store.ensure_schema("alerts", _SCHEMAS[self.store.dialect])

    def evaluate(self, conditions: Iterable[Condition]) -> list[Notification]:
        """Apply one round of measurements; send and return the notifications this instance won.

        Incidents of rules or integrations absent from ``conditions`` are left as they are. Never raises for a
        notifier that fails (it is logged); a store failure raises and nothing is sent.

        Raises:
            sqlite3.Error | psycopg.Error: the store failed; no transition of this round took effect.
        """
        latest = {(each.integration, each.rule): each for each in conditions}
        if not latest:
            return []
        self.ensure_schema()
        now = self._wall()
        notifications: list[Notification] = []
        with self.store.transaction() as connection:
            # Sorted so that two instances lock the rows in the same order and never deadlock.
            for _, condition in sorted(latest.items()):
                changed = self._apply(connection, condition, now)
                if changed is not None:
                    notifications.append(changed)
        for notification in notifications:
            deliver(self.notifiers, notification, sleep=self._sleep)
        return notifications

    def active(self) -> list[Incident]:
        """The open incidents, oldest first."""
        return self._select("WHERE resolved_at IS NULL ORDER BY started_at, id", ())

    def history(self, limit: int = 50) -> list[Incident]:
        """The ``limit`` most recently resolved incidents, newest first."""
        return self._select("WHERE resolved_at IS NOT NULL ORDER BY resolved_at DESC, id DESC LIMIT ?", (limit,))

    def purge(self, resolved_before: float) -> int:
        """Delete the incidents that resolved before ``resolved_before``; how many there were."""
        self.ensure_schema()
        with self.store.transaction() as connection:
            cursor = connection.execute(
                self.store.sql("DELETE FROM tether_alerts WHERE resolved_at < ?"), (resolved_before,)
            )
            return int(cursor.rowcount)

    # -- internals ---------------------------------------------------------------------------------------------

    def _apply(self, connection: SqlConnection, condition: Condition, now: float) -> Notification | None:
        sql, key = self.store.sql, (condition.integration, condition.rule)
        value, threshold = _dump(condition.value), _dump(condition.threshold)
        if condition.firing:
            # fetchall, not fetchone: SQLite must finish the statement before the transaction commits.
            rows = connection.execute(sql(_INSERT), (*key, now, value, threshold, condition.message, now)).fetchall()
            if rows:
                return self._notification("firing", rows[0][0], condition, started_at=now)
            connection.execute(sql(_TOUCH), (value, threshold, condition.message, now, *key))
            return None
        connection.execute(sql(_QUIET), (now, *key))
        rows = connection.execute(sql(_RESOLVE), (now, *key, now - self.resolve_after)).fetchall()
        if not rows:
            return None
        return self._notification("resolved", rows[0][0], condition, started_at=rows[0][1], resolved_at=now)

    @staticmethod
    def _notification(
        state: Literal["firing", "resolved"],
        incident: int,
        condition: Condition,
        *,
        started_at: float,
        resolved_at: float | None = None,
    ) -> Notification:
        return Notification(
            state=state,
            incident=int(incident),
            integration=condition.integration,
            rule=condition.rule,
            message=condition.message,
            value=condition.value,
            threshold=condition.threshold,
            started_at=float(started_at),
            resolved_at=resolved_at,
        )

    def _select(self, tail: str, params: tuple[Any, ...]) -> list[Incident]:
        self.ensure_schema()
        statement = self.store.sql(f"SELECT {_COLUMNS} FROM tether_alerts {tail}")  # noqa: S608 - fixed parts
        with self.store.reading() as connection:
            rows = connection.execute(statement, params).fetchall()
        return [
            Incident(
                id=int(row[0]),
                integration=row[1],
                rule=row[2],
                started_at=float(row[3]),
                resolved_at=None if row[4] is None else float(row[4]),
                value=_load(row[5]),
                threshold=_load(row[6]),
                message=row[7],
                last_seen_at=float(row[8]),
            )
            for row in rows
        ]


def _dump(value: Measure) -> str | None:
    # JSON keeps a number a number and a string a string in one TEXT column on both backends.
    return None if value is None else json.dumps(value)


def _load(text: str | None) -> Measure:
    if text is None:
        return None
    value = json.loads(text)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)

"""The live part of the runbook: each integration's health as the store knows it, at one moment.

Read the way ``tether status`` reads it (:func:`tether.observe.health.overview`, open incidents from the
alerts table, recent webhook event types from the inbox). A store that is missing, empty, unreachable or broken
is a state to report, never a reason to fail: the runbook matters most when things are broken.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tether.config.models import TetherConfig
from tether.config.secrets import expand_references
from tether.observe.health import Health, overview
from tether.observe.redact import redact_text
from tether.store import MEMORY, POSTGRES_SCHEMES, public_url, sqlite_path

__all__ = ["WINDOW", "LiveState", "live_state", "skipped"]

logger = logging.getLogger("tether.docs")

WINDOW = 3600.0
"""How far back the numbers go: the last hour, as ``tether status`` shows by default."""

_EVENTS_SCANNED = 500  # the most recent events looked at for the types an integration receives
_TYPES_SHOWN = 8


@dataclass(frozen=True)
class LiveState:
    """What the store said, or why it could not be asked.

    Attributes:
        status: ``"ok"`` (read), ``"empty"`` (there is no store to read yet), ``"unavailable"`` (reading
            failed) or ``"skipped"`` (``--no-health``).
        store: The store's URL, password masked.
        reason: Why the state is not ``"ok"``, in plain words.
        taken_at: When it was read (Unix time); ``None`` unless ``"ok"``.
        window: Seconds of history behind the numbers.
        health: Per integration, what :func:`~tether.observe.health.overview` measured.
        event_types: Per integration with webhooks, the event types received lately, most frequent first.
    """

    status: str
    store: str
    reason: str = ""
    taken_at: float | None = None
    window: float = WINDOW
    health: dict[str, Health] = field(default_factory=dict)
    event_types: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        """Calls recorded in the window, over every integration."""
        return sum(health.requests for health in self.health.values())

    def alerts(self) -> list[dict[str, object]]:
        """Every open incident, each with its integration."""
        return [alert for health in self.health.values() for alert in health.alerts]

    def to_dict(self) -> dict[str, object]:
        """The state as plain data."""
        return asdict(self)


def skipped(config: TetherConfig) -> LiveState:
    """The state when live health was not asked for."""
    return LiveState("skipped", public_url(config.store), "generated with `--no-health`")


def live_state(config: TetherConfig, base_dir: Path, *, now: float) -> LiveState:
    """Read every integration's health from ``config``'s store as of ``now``; never raises for the store.

    A SQLite store that does not exist yet is reported as such, not created.
    """
    store = public_url(config.store)
    try:
        # Loaded without resolving secrets, the URL may still say ${PGPASSWORD}: only the store's are read here.
        config = config.model_copy(update={"store": expand_references(config.store, os.environ)})
    except ValueError as exc:
        return LiveState("unavailable", store, f"its URL needs a secret: {exc}")
    if not config.store.startswith(POSTGRES_SCHEMES):
        path = sqlite_path(config.store, base_dir)
        if path == MEMORY:
            return LiveState("empty", store, "it is in memory, so each process keeps its own records")
        if not Path(path).exists():
            return LiveState("empty", store, "it has not been created yet (no call has been recorded)")
    try:
        return _read(config, base_dir, store, now)
    except Exception as exc:  # whatever broke, the runbook is still written and says why
        logger.debug("tether docs: cannot read the store %s", store, exc_info=True)
        return LiveState("unavailable", store, _reason(exc))


def _read(config: TetherConfig, base_dir: Path, store: str, now: float) -> LiveState:
    from tether.hub import Hub
    from tether.observe.incidents import Alerter

    # No recording: this hub only reads, and must not add records of its own to what it reports.
    quiet = config.model_copy(update={"monitoring": config.monitoring.model_copy(update={"record": False})})
    with Hub(quiet, base_dir=base_dir) as hub:
        incidents = [asdict(incident) for incident in Alerter(hub.store, [], resolve_after=0).active()]
        result = overview(hub, window=WINDOW, now=now, alerts=incidents, errors=3)
        types: dict[str, list[tuple[str, int]]] = {}
        for name in sorted(hub.webhook_configs()):
            events = hub.inbox.events(integration=name, limit=_EVENTS_SCANNED)
            counts = Counter(event.event_type or "(no type)" for event in events)
            types[name] = counts.most_common(_TYPES_SHOWN)
    return LiveState(
        "ok",
        store,
        taken_at=now,
        window=WINDOW,
        health={health.name: health for health in result.integrations},
        event_types=types,
    )


def _reason(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or "no message"
    return redact_text(f"{type(exc).__name__}: {message}")

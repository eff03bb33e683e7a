"""What a webhook handler receives, and the registry behind ``hub.on``."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tether.webhooks._body import parse_body

__all__ = ["Handler", "Handlers", "WebhookEvent"]


@dataclass(frozen=True)
class WebhookEvent:
    """One event from the inbox, as handlers see it.

    Handlers may run more than once for one event (a worker that dies mid-way, a failure after a first handler
    succeeded, a replay): make them idempotent, e.g. keyed on :attr:`id`.

    Attributes:
        integration: The integration it arrived for.
        id: The provider's event id (Stripe ``evt_…``, GitHub's delivery id…), the inbox's dedup key.
        type: The event type (``invoice.paid``, ``issues.opened``…), when the scheme or config says where it is.
        body: The raw body, byte for byte as it was signed.
        headers: The request's headers, lower-cased, without credentials or signatures.
        attempt: 1 for the first try, 2 for the first retry…
        received_at: When tether accepted it (epoch seconds).
        inbox_id: The inbox row (``tether webhooks show ID``).
    """

    integration: str
    id: str
    type: str | None
    body: bytes
    headers: dict[str, str]
    attempt: int
    received_at: float
    inbox_id: int
    _payload: Any = field(default=None, repr=False, compare=False)

    @property
    def payload(self) -> Any:
        """The body parsed: JSON, or a form as a dict (Slack's ``payload`` field parsed as JSON)."""
        if self._payload is None:
            object.__setattr__(self, "_payload", parse_body(self.body, self.headers.get("content-type", "")))
        return self._payload


Handler = Callable[[WebhookEvent], Awaitable[None] | None]


@dataclass
class Handlers:
    """Handlers by integration, each with the event-type pattern it wants (``*`` globs; ``"*"`` is every event)."""

    _by_integration: dict[str, list[tuple[str, Handler]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, integration: str, pattern: str, handler: Handler) -> None:
        with self._lock:
            self._by_integration.setdefault(integration, []).append((pattern, handler))

    def integrations(self) -> set[str]:
        with self._lock:
            return set(self._by_integration)

    def matching(self, integration: str, event_type: str | None) -> list[Handler]:
        """The handlers for one event, in registration order."""
        with self._lock:
            registered = list(self._by_integration.get(integration, ()))
        return [
            handler
            for pattern, handler in registered
            if pattern == "*" or (event_type is not None and fnmatch.fnmatchcase(event_type, pattern))
        ]

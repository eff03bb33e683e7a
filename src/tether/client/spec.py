"""What a call needs to know about its integration: :class:`CallSpec`, built once per client, and :class:`Route`.

:mod:`tether.client.build` makes a spec from the integration's config; every :class:`~tether.client.call.Call`
reads its policies, limits and monitoring settings from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx2

from tether.client._errormap import CallInfo
from tether.observe.records import endpoint_template
from tether.policies.budget import RetryBudget
from tether.policies.bulkhead import Bulkhead
from tether.policies.clock import Clock, SystemClock
from tether.policies.endpoints import EndpointRules, relative_path
from tether.policies.retry import RetryPolicy
from tether.state.base import Limits, StateBackend
from tether.state.memory import MemoryState

if TYPE_CHECKING:
    from tether.observe.recorder import Recorder
    from tether.openapi.validate import ResponseValidator

__all__ = ["CallSpec", "Route"]

# Endpoints remembered per spec, by method and path (see CallSpec.endpoint_of).
_ENDPOINTS_KEPT = 1024


@dataclass
class CallSpec:
    """Everything about one integration that a call needs; built once by :mod:`tether.client.build`.

    Attributes:
        integration: The integration's name.
        policy: Retry rules.
        deadline: Seconds the whole call may take (``timeout.total``).
        limits: Per-attempt timeouts: connect, read, write, pool (``None``: bounded by the deadline only).
        budget: The integration's retry budget, shared by all its clients.
        idempotency_header: Header to carry a fresh key per logical call (POST/PATCH), if configured.
        raise_for_status: Raise typed errors for 4xx/5xx from the transport. Off by default, as in httpx2:
            the response's ``raise_for_status()`` raises the same typed error, and SDKs that call it
            (OpenAI's, Anthropic's) keep their own error handling.
        credential_source: Where the credential comes from, for the 401 hint.
        clock: Time source.
        state: Where rate-limit budgets, pauses and breakers live (shared by every client of the hub).
        rate_limits: The integration's rate limit, token budget and breaker settings.
        routes: The endpoint groups with limits of their own (``endpoints``), matched against the request's
            path relative to ``base_path``.
        base_path: ``base_url``'s path.
        max_wait: Longest a call queues for a rate-limit slot (``None``: its remaining deadline).
        bulkhead: The cap on the integration's attempts in flight (``concurrency``), if any.
        recorder: Where each call's record goes (``None``: calls are not recorded).
        version: The configured API version, recorded when the response does not say its own.
        version_header: The response header that carries the API's version, lower-case.
        validator: Checks JSON bodies against the OpenAPI document (``validate = true``), else ``None``.
    """

    integration: str
    policy: RetryPolicy
    deadline: float
    limits: dict[str, float | None]
    budget: RetryBudget | None = None
    idempotency_header: str | None = None
    raise_for_status: bool = False
    credential_source: str | None = None
    clock: Clock = field(default_factory=SystemClock)
    state: StateBackend = field(default_factory=MemoryState)
    rate_limits: Limits = field(default_factory=Limits)
    routes: EndpointRules[Route] = field(default_factory=EndpointRules)
    base_path: str = ""
    max_wait: float | None = None
    bulkhead: Bulkhead | None = None
    recorder: Recorder | None = None
    version: str | None = None
    version_header: str | None = None
    validator: ResponseValidator | None = None

    def __post_init__(self) -> None:
        self.info = CallInfo(
            self.integration, self.credential_source, self.limits.get("connect"), self.limits.get("read")
        )
        self.route = Route(self.rate_limits, self.max_wait)
        # Response headers a call record keeps, by lower-case name, and the record field each one fills.
        self.watched_headers = {b"deprecation": "deprecation", b"sunset": "sunset"}
        if self.version_header:
            self.watched_headers[self.version_header.lower().encode("latin-1")] = "version"
        self._endpoints: dict[tuple[str, str], str] = {}

    def endpoint_of(self, request: httpx2.Request) -> str:
        """The endpoint a record names: the matching ``endpoints`` pattern's path, else the path as a template."""
        # Remembered per method and path: a recorded call asks once, and most calls repeat a few paths. The key
        # is the path as httpx2 parsed it, still percent-encoded: URL.path decodes it each time it is read,
        # which cost more than the rest of the lookup.
        url = request.url
        try:
            raw = url._uri_reference.path
        except AttributeError:  # an httpx2 whose URL is laid out otherwise
            raw = url.path
        key = (request.method, raw)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= _ENDPOINTS_KEPT:
                self._endpoints.clear()  # ids in paths: start over rather than grow without bound
            endpoint = self._endpoints[key] = self._endpoint(request.method, url.path)
        return endpoint

    def _endpoint(self, method: str, path: str) -> str:
        path = relative_path(path, self.base_path)
        if self.routes:
            pattern = self.routes.pattern(method, path)
            if pattern is not None:
                return pattern.rpartition(" ")[2]
        return endpoint_template(path)

    def route_for(self, request: httpx2.Request) -> Route:
        """The limits a request answers to: its endpoint group's, else the integration's."""
        if not self.routes:
            return self.route
        path = relative_path(request.url.path, self.base_path)
        route = self.routes.lookup(request.method, path)
        if route is None:
            return self.route
        return route if route.max_wait is not None else Route(route.limits, self.max_wait)


@dataclass(frozen=True)
class Route:
    """The limits of one endpoint group, or of the whole integration.

    Attributes:
        limits: What the state backend admits the call against.
        max_wait: Longest a call queues for a rate-limit slot (``None``: its remaining deadline).
    """

    limits: Limits
    max_wait: float | None = None

    @property
    def counts_tokens(self) -> bool:
        """Whether a response's ``usage`` is debited from a token budget."""
        group = self.limits.group
        return self.limits.tokens is not None or (group is not None and group.tokens is not None)

"""The ``tether.toml`` schema (pydantic v2).

One ``[integrations.NAME]`` table per third-party API. Every field has the production-safe default; durations
accept seconds or strings such as ``"1m30s"``. See docs/configuration.md for every key with an example.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    AnyHttpUrl,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tether.config._types import Duration, _Model
from tether.config.auth import (
    ApiKeyAuthConfig,
    AuthConfig,
    BasicAuthConfig,
    BearerAuthConfig,
    JwtAuthConfig,
    JwtClaimsConfig,
    OAuth2AuthConfig,
)
from tether.config.caching import CacheConfig, FallbackConfig, StaticResponse, endpoint_patterns
from tether.config.monitoring import AlertsConfig, IntegrationAlerts, MonitoringConfig
from tether.config.secrets import expand_url
from tether.config.webhooks import ForwardConfig, HmacOptions, WebhookConfig

__all__ = [
    "AlertsConfig",
    "ApiKeyAuthConfig",
    "AuthConfig",
    "BasicAuthConfig",
    "BearerAuthConfig",
    "BreakerConfig",
    "CacheConfig",
    "EndpointConfig",
    "FallbackConfig",
    "ForwardConfig",
    "HealthCheck",
    "HmacOptions",
    "IntegrationAlerts",
    "IntegrationConfig",
    "JwtAuthConfig",
    "JwtClaimsConfig",
    "MonitoringConfig",
    "OAuth2AuthConfig",
    "ProxyConfig",
    "RateLimitConfig",
    "RetryConfig",
    "StaticResponse",
    "TetherConfig",
    "TimeoutConfig",
    "WebhookConfig",
]

_ORIGIN = re.compile(r"^https?://[^/?#\s]+$")
DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
MAX_ATTEMPTS = 20


class TimeoutConfig(_Model):
    """Time limits. ``total`` is one deadline across every attempt of a call; the others bound each attempt."""

    total: Duration = 30.0
    connect: Duration = 5.0
    read: Duration | None = None
    write: Duration | None = None
    pool: Duration = 5.0

    @model_validator(mode="before")
    @classmethod
    def _from_scalar(cls, value: Any) -> Any:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            return {"total": value}
        return value

    @field_validator("total", "connect", "read", "write", "pool")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be greater than 0: a zero timeout fails every call")
        return value


class RetryConfig(_Model):
    """Retries with exponential backoff and full jitter.

    ``attempts`` counts the first try: the default 4 is one call and up to 3 retries, waiting about 1, 2 and
    4 seconds (each wait is drawn uniformly from zero to ``backoff * 2**n``, capped at ``max_backoff``).
    """

    attempts: int = Field(4, ge=1, le=MAX_ATTEMPTS)
    backoff: Duration = 1.0
    max_backoff: Duration = 30.0
    statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    methods: frozenset[str] = IDEMPOTENT_METHODS
    budget: float = Field(0.2, ge=0.0, le=1.0)
    respect_retry_after: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        if value is False:
            return {"attempts": 1}
        if value is True:
            return {}
        return value

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, value: frozenset[int]) -> frozenset[int]:
        bad = sorted(code for code in value if not 100 <= code <= 599)
        if bad:
            raise ValueError(f"not HTTP status codes: {bad}")
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(str(method).upper() for method in value)
        return value


class RateLimitConfig(_Model):
    """A client-side rate limit: ``"100/s"``, ``"6000/1m"``, or ``{ requests = 100, per = "1m", burst = 10 }``.

    ``max_wait`` bounds how long a call queues for a slot before failing with ``ThrottledError``; by default
    it is the call's remaining deadline.
    """

    requests: float = Field(gt=0)
    per: Duration = 1.0
    burst: int = Field(1, ge=1)
    max_wait: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            from tether.policies.ratelimit import Rate

            rate = Rate.parse(value)
            return {"requests": rate.requests, "per": rate.per}
        return value

    @field_validator("per")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value


class BreakerConfig(_Model):
    """The circuit breaker: opens when ``failure_ratio`` of at least ``min_calls`` calls over ``window``
    failed (5xx, timeouts, connection errors, and calls slower than ``slow_call``); stays open ``open_for``;
    then lets ``probes`` calls through to test the API. ``breaker = false`` disables it."""

    failure_ratio: float = Field(0.5, gt=0.0, le=1.0)
    window: Duration = 30.0
    min_calls: int = Field(10, ge=1)
    open_for: Duration = 30.0
    probes: int = Field(1, ge=1)
    slow_call: Duration | None = None
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        return value


class EndpointConfig(_Model):
    """Limits of their own for a group of endpoints (``[integrations.NAME.endpoints."GET /search/*"]``).

    ``rate_limit`` and ``tokens_per_minute`` apply on top of the integration's: a call goes when both have
    room. A ``breaker`` here isolates the group: its calls neither count against nor wait for the
    integration's breaker. When the API's rate-limit headers or a 429 arrive on a call of a group with its own
    ``rate_limit``, they pause and adjust that group only.
    """

    rate_limit: RateLimitConfig | None = None
    tokens_per_minute: int | None = Field(None, ge=1)
    breaker: BreakerConfig | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> EndpointConfig:
        if self.rate_limit is None and self.tokens_per_minute is None and self.breaker is None:
            raise ValueError("set at least one of rate_limit, tokens_per_minute, breaker")
        return self


class HealthCheck(_Model):
    """A cheap request that proves the integration works, e.g. ``"GET /v1/balance"``."""

    method: str = "GET"
    path: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            method, _, path = value.strip().rpartition(" ")
            return {"method": (method or "GET").upper(), "path": path}
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("expected a path starting with '/', e.g. \"GET /v1/health\"")
        return value


class ProxyConfig(_Model):
    """What browsers may ask of this API through ``tether serve``'s backend proxy (``/proxy/NAME/PATH``).

    ``allow`` lists endpoint patterns in the ``endpoints`` syntax (``"GET /v1/models"``, ``"POST /v1/chat/*"``,
    ``"GET /v1/files/{id}"``); a pattern without a method allows GET only. Anything else answers 403. The
    proxy injects this integration's credentials on the server, so the browser holds only the proxy token
    (``TETHER_PROXY_TOKEN``), never the API key.
    """

    allow: list[str] = Field(min_length=1)
    enabled: bool = True

    @field_validator("allow")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        endpoint_patterns(dict.fromkeys(value))
        return value


class IntegrationConfig(_Model):
    """One third-party API.

    ``ca_bundle`` is a PEM file of extra CAs to trust for this API (a corporate proxy, a private CA); the
    system store is used otherwise. Relative paths are resolved against the config file's folder.

    ``openapi`` is the API's OpenAPI 3.x document (YAML or JSON, relative to the config file's folder);
    ``validate = true`` then checks each JSON response against the document's schema for that operation and
    status, and ``response.json()`` raises :class:`~tether.errors.SchemaMismatchError` at the first mismatch.

    ``tokens_per_minute`` is an AI API's token budget: each response's ``usage`` is debited from it, and
    ``x-ratelimit-remaining-tokens`` corrects it when the API counts more. ``endpoints`` gives groups of
    endpoints limits of their own (see :class:`EndpointConfig`).
    """

    base_url: AnyHttpUrl
    auth: AuthConfig | None = None
    timeout: TimeoutConfig = TimeoutConfig()
    retry: RetryConfig = RetryConfig()
    headers: dict[str, str] = Field(default_factory=dict)
    version: str | None = None
    version_header: str | None = None
    idempotency_header: str | None = None
    purpose: str | None = None
    owner: str | None = None
    docs_url: AnyHttpUrl | None = None
    notes: str | None = None
    health: HealthCheck | None = None
    ca_bundle: str | None = None
    rate_limit: RateLimitConfig | None = None
    tokens_per_minute: int | None = Field(None, ge=1)
    concurrency: int | None = Field(None, ge=1)
    breaker: BreakerConfig = BreakerConfig()
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    cache: CacheConfig = CacheConfig(enabled=False)
    fallback: FallbackConfig = FallbackConfig()
    webhooks: WebhookConfig | None = None
    alerts: IntegrationAlerts = IntegrationAlerts()
    cors_origins: list[str] = Field(default_factory=list)
    proxy: ProxyConfig | None = None
    openapi: str | None = None
    validate_responses: bool = Field(False, alias="validate")

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not a browser origin; expected scheme://host[:port], no path")
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoint_keys(cls, value: dict[str, EndpointConfig]) -> dict[str, EndpointConfig]:
        return endpoint_patterns(value)

    @model_validator(mode="after")
    def _validate_needs_openapi(self) -> IntegrationConfig:
        if self.validate_responses and self.openapi is None:
            raise ValueError(
                "'validate' is true but 'openapi' is not set; name the API's OpenAPI document "
                '(e.g. openapi = "openapi/stripe.yaml")'
            )
        return self

    @model_validator(mode="after")
    def _version_needs_header(self) -> IntegrationConfig:
        if self.version is not None and self.version_header is None:
            raise ValueError(
                "'version' is set but 'version_header' is not; name the header that carries it "
                '(e.g. version_header = "Stripe-Version")'
            )
        return self


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TetherConfig(_Model):
    """The whole file.

    ``state`` is where rate-limit budgets, 429 pauses and breakers live: ``"memory"`` (this process) or a
    ``redis://`` URL to share them between every process and machine.

    ``store`` is where tether keeps what must outlive a process (the HTTP cache and the responses kept for
    fallback): ``"sqlite:///PATH"``, relative to the config file's folder unless absolute
    (``"sqlite:////var/lib/app/tether.db"``), created only when something needs it; or a ``postgresql://``
    URL, shared by every process on every machine.

    ``state``, ``store`` and ``cache_store`` may hold ``${ENV}`` references, for a password
    (``"postgresql://app:${PGPASSWORD}@db/app"``) or the whole URL (``"${DATABASE_URL}"``).

    ``cache_store`` puts the HTTP cache somewhere other than ``store``: a ``redis://`` URL, a ``postgresql://``
    URL or ``"sqlite:///PATH"``. Unset (the default), the cache lives in ``store``.
    """

    state: str = "memory"
    store: str = "sqlite:///tether.db"
    cache_store: str | None = None
    monitoring: MonitoringConfig = MonitoringConfig()
    alerts: AlertsConfig = AlertsConfig()
    integrations: dict[str, IntegrationConfig] = Field(default_factory=dict)

    @field_validator("state")
    @classmethod
    def _state(cls, value: str, info: ValidationInfo) -> str:
        value = expand_url(value, info)
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError('expected "memory" or a redis:// URL')
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str, info: ValidationInfo) -> str:
        value = expand_url(value, info)
        if value.startswith(("postgresql://", "postgres://")):
            return value
        if not value.startswith("sqlite:///") or value == "sqlite:///":
            raise ValueError(
                'expected "sqlite:///PATH" (e.g. "sqlite:///tether.db" next to this file) or a postgresql:// URL'
            )
        return value

    @field_validator("cache_store")
    @classmethod
    def _cache_store(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = None if value is None else expand_url(value, info)
        if value is None or value.startswith(("redis://", "rediss://", "unix://", "postgresql://", "postgres://")):
            return value
        if not value.startswith("sqlite:///") or value == "sqlite:///":
            raise ValueError(
                'expected a redis:// URL, a postgresql:// URL or "sqlite:///PATH"; '
                "leave cache_store out to keep the cache in store"
            )
        return value

    @field_validator("integrations")
    @classmethod
    def _names(cls, value: dict[str, IntegrationConfig]) -> dict[str, IntegrationConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"integration name {name!r} must be letters, digits, '-', '_' or '.'")
        return value

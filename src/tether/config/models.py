"""The ``tether.toml`` schema (pydantic v2).

One ``[integrations.NAME]`` table per third-party API. Every field has the production-safe default; durations
accept seconds or strings such as ``"1m30s"``. See docs/configuration.md for every key with an example.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tether._durations import parse_duration
from tether.config.secrets import SecretField, TextOrSecretField

__all__ = [
    "ApiKeyAuthConfig",
    "AuthConfig",
    "BasicAuthConfig",
    "BearerAuthConfig",
    "BreakerConfig",
    "CacheConfig",
    "FallbackConfig",
    "HealthCheck",
    "IntegrationConfig",
    "RateLimitConfig",
    "RetryConfig",
    "StaticResponse",
    "TetherConfig",
    "TimeoutConfig",
]

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
MAX_ATTEMPTS = 20
DEFAULT_MAX_STALE = 86400.0  # a day: long enough to ride out an outage over a night


def _duration(value: Any) -> float:
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds, from a number or a string such as ``"500ms"`` or ``"1m30s"``."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ApiKeyAuthConfig(_Model):
    """An API key sent in a header (default ``X-API-Key``) or a query parameter."""

    type: Literal["api_key"]
    key: SecretField
    in_: Literal["header", "query"] = Field("header", alias="in")
    name: str = "X-API-Key"
    prefix: str = ""


class BearerAuthConfig(_Model):
    """A static token sent as ``Authorization: Bearer <token>``."""

    type: Literal["bearer"]
    token: SecretField


class BasicAuthConfig(_Model):
    """HTTP Basic. The username may be literal; write it as a reference when the API uses it as the key."""

    type: Literal["basic"]
    username: TextOrSecretField
    password: SecretField | None = None


AuthConfig = Annotated[
    ApiKeyAuthConfig | BearerAuthConfig | BasicAuthConfig,
    Field(discriminator="type"),
]


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


_ENDPOINT = re.compile(r"^(?:(?P<method>[A-Za-z]+|\*)\s+)?(?P<path>/\S*)$")


def _endpoint_patterns(value: dict[str, Any]) -> dict[str, Any]:
    """Check that every key is ``"METHOD /path-glob"`` or ``"/path-glob"``."""
    for key in value:
        if not _ENDPOINT.match(key.strip()):
            raise ValueError(
                f'{key!r} is not an endpoint pattern; write "METHOD /path" or "/path", '
                'with * for any run of characters, e.g. "GET /v1/products*"'
            )
    return value


class CacheConfig(_Model):
    """HTTP caching of GET and HEAD responses (RFC 9111), off unless written.

    ``cache = true`` honours what the API says (``Cache-Control``, ``Expires``, ``ETag``, ``Last-Modified``).
    ``ttl`` maps endpoint patterns to a freshness lifetime that replaces the API's own, for APIs that send no
    cache headers (or ``no-store`` on everything): ``ttl = { "GET /v1/products*" = "1h" }``. The shorthand
    ``cache = { "GET /v1/products*" = "1h" }`` means the same.
    """

    enabled: bool = True
    ttl: dict[str, Duration] = {}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        if isinstance(value, dict) and any("/" in str(key) for key in value):
            # Keys that look like endpoints are TTLs written directly in the table.
            options = {key: item for key, item in value.items() if "/" not in str(key)}
            patterns = {key: item for key, item in value.items() if "/" in str(key)}
            ttl = options.get("ttl")
            options["ttl"] = {**ttl, **patterns} if isinstance(ttl, dict) else patterns
            return options
        return value

    @field_validator("ttl")
    @classmethod
    def _patterns(cls, value: dict[str, float]) -> dict[str, float]:
        return _endpoint_patterns(value)


class StaticResponse(_Model):
    """A fixed response served when the API is down: ``{ status = 200, json = { rates = [] } }``.

    ``json`` is sent as ``application/json``, ``text`` as ``text/plain``; give at most one.
    """

    status: int = 200
    json_body: Any = Field(None, alias="json")
    text: str | None = None
    headers: dict[str, str] = {}

    @field_validator("status")
    @classmethod
    def _good_status(cls, value: int) -> int:
        if not 200 <= value <= 399:
            raise ValueError(f"a fallback stands in for a good response: use a 2xx or 3xx status, not {value}")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> StaticResponse:
        if self.json_body is not None and self.text is not None:
            raise ValueError("give 'json' or 'text', not both")
        return self


class FallbackConfig(_Model):
    """What to serve instead of an error when the API is down (open breaker, timeout, connection error, 5xx).

    ``stale`` serves the last good response from the cache, up to ``max_stale`` after it stopped being fresh;
    ``true`` for every GET, or a list of endpoint patterns. ``static`` maps endpoint patterns to a fixed
    response, used when no stale response is available. With neither, the error is raised (the default).
    ``fallback = "stale"`` is short for ``{ stale = true }``; ``fallback = "raise"`` for nothing.
    """

    stale: bool | list[str] = False
    max_stale: Duration = DEFAULT_MAX_STALE
    static: dict[str, StaticResponse] = {}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value == "stale" or value is True:
            return {"stale": True}
        if value in ("raise", "none") or value is False:
            return {}
        if isinstance(value, str):
            raise ValueError(f'expected "stale", "raise" or a table, got {value!r}')
        return value

    @field_validator("stale")
    @classmethod
    def _stale_patterns(cls, value: bool | list[str]) -> bool | list[str]:
        if isinstance(value, list):
            _endpoint_patterns(dict.fromkeys(value))
        return value

    @field_validator("static")
    @classmethod
    def _static_patterns(cls, value: dict[str, StaticResponse]) -> dict[str, StaticResponse]:
        return _endpoint_patterns(value)

    @model_validator(mode="after")
    def _max_stale_needs_stale(self) -> FallbackConfig:
        # A dump writes every field, so only a non-default window without stale is a mistake.
        if not self.stale and self.max_stale != DEFAULT_MAX_STALE:
            raise ValueError("'max_stale' is set but 'stale' is not; add stale = true to serve stale responses")
        return self

    @property
    def configured(self) -> bool:
        """Whether any fallback is configured."""
        return bool(self.stale) or bool(self.static)


class IntegrationConfig(_Model):
    """One third-party API.

    ``ca_bundle`` is a PEM file of extra CAs to trust for this API (a corporate proxy, a private CA); the
    system store is used otherwise. Relative paths are resolved against the config file's folder.
    """

    base_url: AnyHttpUrl
    auth: AuthConfig | None = None
    timeout: TimeoutConfig = TimeoutConfig()
    retry: RetryConfig = RetryConfig()
    headers: dict[str, str] = {}
    version: str | None = None
    version_header: str | None = None
    idempotency_header: str | None = None
    owner: str | None = None
    docs_url: AnyHttpUrl | None = None
    notes: str | None = None
    health: HealthCheck | None = None
    ca_bundle: str | None = None
    rate_limit: RateLimitConfig | None = None
    concurrency: int | None = Field(None, ge=1)
    breaker: BreakerConfig = BreakerConfig()
    cache: CacheConfig = CacheConfig(enabled=False)
    fallback: FallbackConfig = FallbackConfig()

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
    (``"sqlite:////var/lib/app/tether.db"``). The file is created only when something needs it.
    """

    state: str = "memory"
    store: str = "sqlite:///tether.db"
    integrations: dict[str, IntegrationConfig] = {}

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError('expected "memory" or a redis:// URL')
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            raise ValueError("PostgreSQL is not supported as a store yet; use sqlite:///PATH")
        if not value.startswith("sqlite:///") or value == "sqlite:///":
            raise ValueError('expected "sqlite:///PATH", e.g. "sqlite:///tether.db" next to this file')
        return value

    @field_validator("integrations")
    @classmethod
    def _names(cls, value: dict[str, IntegrationConfig]) -> dict[str, IntegrationConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"integration name {name!r} must be letters, digits, '-', '_' or '.'")
        return value

"""The ``cache`` and ``fallback`` tables of an integration (see docs/caching.md)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from tether.config._types import Duration, _Model

__all__ = ["DEFAULT_MAX_STALE", "CacheConfig", "FallbackConfig", "StaticResponse", "endpoint_patterns"]

DEFAULT_MAX_STALE = 86400.0  # a day: long enough to ride out an outage over a night


_ENDPOINT = re.compile(r"^(?:(?P<method>[A-Za-z]+|\*)\s+)?(?P<path>/\S*)$")


def endpoint_patterns(value: dict[str, Any]) -> dict[str, Any]:
    """Check that every key is ``"METHOD /path"`` or ``"/path"`` (with ``*`` globs and ``{name}`` segments)."""
    for key in value:
        if not _ENDPOINT.match(key.strip()):
            raise ValueError(
                f'{key!r} is not an endpoint pattern; write "METHOD /path" or "/path", with * for any run of '
                'characters and {name} for one path segment, e.g. "GET /v1/products*" or "GET /v1/users/{id}"'
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
    ttl: dict[str, Duration] = Field(default_factory=dict)

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
        return endpoint_patterns(value)


class StaticResponse(_Model):
    """A fixed response served when the API is down: ``{ status = 200, json = { rates = [] } }``.

    ``json`` is sent as ``application/json``, ``text`` as ``text/plain``; give at most one.
    """

    status: int = 200
    json_body: Any = Field(None, alias="json")
    text: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

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
    static: dict[str, StaticResponse] = Field(default_factory=dict)

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
            endpoint_patterns(dict.fromkeys(value))
        return value

    @field_validator("static")
    @classmethod
    def _static_patterns(cls, value: dict[str, StaticResponse]) -> dict[str, StaticResponse]:
        return endpoint_patterns(value)

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

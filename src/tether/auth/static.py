"""Static credentials as httpx2 ``Auth`` flows: an API key (header or query), a bearer token, HTTP Basic.

They are flows rather than transports so that renewing credentials (OAuth 2.0, JWT) slots in the same place:
a flow sees the response (``response = yield request``) and may renew and replay once on a 401.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx2

from tether.config.models import (
    ApiKeyAuthConfig,
    AuthConfig,
    BasicAuthConfig,
    BearerAuthConfig,
    JwtAuthConfig,
    OAuth2AuthConfig,
)
from tether.config.secrets import Secret
from tether.observe.redact import register_sensitive_name

__all__ = ["ApiKeyAuth", "BearerAuth", "auth_from_config", "credential_source"]


class ApiKeyAuth(httpx2.Auth):
    """Send an API key in a header (optionally prefixed, e.g. ``"Token "``) or a query parameter."""

    def __init__(self, key: str, *, name: str = "X-API-Key", in_: str = "header", prefix: str = "") -> None:
        if in_ not in ("header", "query"):
            raise ValueError(f"in_ must be 'header' or 'query', not {in_!r}")
        self._value, self._name, self._in = prefix + key, name, in_
        register_sensitive_name(name)

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        if self._in == "header":
            request.headers[self._name] = self._value
        else:
            request.url = request.url.copy_merge_params({self._name: self._value})
        yield request

    def __repr__(self) -> str:
        return f"ApiKeyAuth(name={self._name!r}, in_={self._in!r})"


class BearerAuth(httpx2.Auth):
    """Send ``Authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "BearerAuth()"


class _BasicAuth(httpx2.BasicAuth):
    def __repr__(self) -> str:
        return "BasicAuth()"


def _value(secret: str | Secret | None) -> str:
    if secret is None:
        return ""
    return secret.value if isinstance(secret, Secret) else secret


def auth_from_config(config: AuthConfig | None) -> httpx2.Auth | None:
    """The ``Auth`` flow for an integration's static ``auth`` table (``None`` when it has none).

    OAuth 2.0 and JWT flows need the hub (its store, TLS context and clock): see :func:`tether.auth.auth_for`.
    """
    if config is None:
        return None
    if isinstance(config, ApiKeyAuthConfig):
        return ApiKeyAuth(config.key.value, name=config.name, in_=config.in_, prefix=config.prefix)
    if isinstance(config, BearerAuthConfig):
        return BearerAuth(config.token.value)
    if isinstance(config, BasicAuthConfig):
        return _BasicAuth(_value(config.username), _value(config.password))
    raise TypeError(f"unsupported auth config: {type(config).__name__}")


def credential_source(config: AuthConfig | None) -> str | None:
    """Where the credential comes from (``env var STRIPE_API_KEY``), for hints; never the value."""
    if isinstance(config, OAuth2AuthConfig):
        return f"OAuth 2.0 tokens from {config.token_url}"
    if isinstance(config, JwtAuthConfig):
        return f"a JWT signed with {config.private_key.source}"
    if isinstance(config, ApiKeyAuthConfig):
        return config.key.source
    if isinstance(config, BearerAuthConfig):
        return config.token.source
    if isinstance(config, BasicAuthConfig):
        secret = config.password if config.password is not None else config.username
        return secret.source if isinstance(secret, Secret) else None
    return None

"""Where each credential is kept and how it is sent and renewed, from the references in ``tether.toml``.

A loaded config holds every credential's value, resolved while it was validated. Nothing here reads one:
a :class:`~tether.config.secrets.Secret` is described by its ``source`` alone (``env var NAME`` or
``file PATH``, from its reference), so no value can reach the runbook whatever is done to its text.
"""

from __future__ import annotations

from tether.config.auth import (
    ApiKeyAuthConfig,
    AuthConfig,
    BasicAuthConfig,
    BearerAuthConfig,
    JwtAuthConfig,
    JwtClaimsConfig,
    OAuth2AuthConfig,
)
from tether.config.secrets import Secret
from tether.docs._text import code, duration, item, text, url

__all__ = ["auth_lines", "stored_in"]

_GRANTS = {
    "client_credentials": "client credentials (RFC 6749 §4.4): tether asks the token endpoint itself",
    "refresh_token": "refresh token (RFC 6749 §6): seeded from the config once, then rotated in the store",
    "authorization_code": "authorization code with PKCE: a person logs in once with `tether auth login {name}`",
    "jwt_bearer": "JWT bearer (RFC 7523): a signed assertion instead of a client secret",
}


def stored_in(value: str | Secret | None) -> str:
    """A field that may be a literal or a reference, as Markdown: the literal, or where the secret is kept."""
    if value is None:
        return "not set"
    if isinstance(value, Secret):
        kind = "env var" if value.source.startswith("env var ") else "file"  # the variable or path as code
        return f"{kind} {code(value.source.removeprefix(kind + ' '))}"
    return code(value)


def auth_lines(name: str, auth: AuthConfig | None) -> list[str]:
    """The *Authentication* section of an integration, as Markdown list items."""
    if auth is None:
        return [item("Method", "none: tether sends no credentials (`auth` is not set)")]
    if isinstance(auth, ApiKeyAuthConfig):
        where = "query parameter" if auth.in_ == "query" else "header"
        sent = f"API key in {where} {code(auth.name)}" + (
            f", after the prefix {code(auth.prefix)}" if auth.prefix else ""
        )
        return [item("Method", sent), item("Key kept in", stored_in(auth.key)), _reload()]
    if isinstance(auth, BearerAuthConfig):
        return [
            item("Method", "static bearer token (`Authorization: Bearer …`)"),
            item("Token kept in", stored_in(auth.token)),
            _reload(),
        ]
    if isinstance(auth, BasicAuthConfig):
        lines = [
            item("Method", "HTTP Basic (`Authorization: Basic …`)"),
            item("Username", stored_in(auth.username)),
            item("Password kept in", stored_in(auth.password) if auth.password is not None else "none"),
        ]
        return [*lines, _reload()]
    if isinstance(auth, JwtAuthConfig):
        return [
            item("Method", f"self-signed JWT (`Authorization: Bearer <jwt>`), {code(auth.algorithm)}"),
            *_claims(auth),
            item("Renewal", f"re-signed before it expires (lifetime {duration(auth.lifetime)}) and once on a 401"),
            _reload(),
        ]
    return _oauth2(name, auth)


def _oauth2(name: str, auth: OAuth2AuthConfig) -> list[str]:
    grant = _GRANTS[auth.grant].format(name=text(name))
    lines = [
        item("Method", f"OAuth 2.0, {grant}"),
        item("Token endpoint", url(auth.token_url)),
    ]
    if auth.authorize_url is not None:
        lines.append(item("Login page", url(auth.authorize_url)))
    if auth.client_id is not None:
        lines.append(item("Client id", stored_in(auth.client_id)))
    if auth.grant != "jwt_bearer":
        how = {
            "client_secret_basic": "HTTP Basic at the token endpoint",
            "client_secret_post": "in the token request's form",
            "none": "none (a public client; PKCE instead)",
        }[auth.client_auth]
        secret = f", kept in {stored_in(auth.client_secret)}" if auth.client_secret is not None else ""
        lines.append(item("Client authentication", how + secret))
    if auth.refresh_token is not None:
        lines.append(item("First refresh token kept in", stored_in(auth.refresh_token)))
    if auth.assertion is not None:
        lines += _claims(auth.assertion, label="Assertion")
    if auth.scopes:
        lines.append(item("Scopes", ", ".join(code(scope) for scope in auth.scopes)))
    for label, value in (("Audience", auth.audience), ("Resource", auth.resource)):
        if value:
            lines.append(item(label, code(value)))
    renew = (
        f"{duration(auth.renew_before)} before expiry"
        if auth.renew_before is not None
        else "ahead of expiry (10% of the lifetime or 60 s before, at most half of it)"
    )
    lines += [
        item(
            "Renewal",
            f"{renew}, and once on a 401 (the request is replayed once); one renewal at a time across threads "
            "and processes sharing the store",
        ),
        item(
            "Tokens kept in",
            "the store (`tether_tokens`), encrypted when `TETHER_SECRET_KEY` is set; "
            "`tether auth status` shows their expiry, never the token",
        ),
    ]
    if auth.client_secret is not None or auth.refresh_token is not None or auth.assertion is not None:
        lines.append(_reload())
    return lines


def _claims(config: JwtClaimsConfig, *, label: str = "Signing key") -> list[str]:
    lines = [item(f"{label} kept in", stored_in(config.private_key))]
    claims = [
        f"{claim} {code(value)}"
        for claim, value in (("issuer", config.issuer), ("subject", config.subject), ("audience", config.audience))
        if value
    ]
    if config.key_id:
        claims.append(f"key id {code(config.key_id)}")
    if claims:
        lines.append(item(f"{label} claims", ", ".join(claims)))
    return lines


def _reload() -> str:
    return item(
        "Rotation",
        "tether reads the credential when it loads `tether.toml`: after rotating it, restart the processes "
        "that call this API (and `tether serve`)",
    )

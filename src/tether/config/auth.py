"""The ``auth`` table of an integration: static credentials, a self-signed JWT, or OAuth 2.0.

Credentials are only ever references (``${ENV}`` or ``file:PATH``); see docs/configuration.md for every key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, Field, field_validator, model_validator

from tether.config._types import Duration, _Model
from tether.config.secrets import SecretField, TextOrSecretField

__all__ = [
    "ApiKeyAuthConfig",
    "AuthConfig",
    "BasicAuthConfig",
    "BearerAuthConfig",
    "JwtAuthConfig",
    "JwtClaimsConfig",
    "OAuth2AuthConfig",
]


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


JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class JwtClaimsConfig(_Model):
    """How tether signs a JWT: the key, the algorithm and the claims.

    ``private_key`` is a PEM private key (RS*/ES*/PS*) or, for HS*, the shared secret, always as a reference
    (``"file:keys/service.pem"`` or ``"${SERVICE_KEY}"``). ``iat``, ``exp`` (``lifetime`` after ``iat``) and a
    fresh ``jti`` are added to every token; ``claims`` adds fixed ones.
    """

    private_key: SecretField
    algorithm: JwtAlgorithm = "RS256"
    key_id: str | None = None
    issuer: str | None = None
    subject: str | None = None
    audience: str | None = None
    lifetime: Duration = 300.0
    claims: dict[str, Any] = Field(default_factory=dict)

    @field_validator("lifetime")
    @classmethod
    def _lifetime(cls, value: float) -> float:
        if not 1 <= value <= 86400:
            raise ValueError("must be between 1s and 24h: a JWT is meant to be short-lived")
        return value


class JwtAuthConfig(JwtClaimsConfig):
    """A self-signed JWT sent as ``Authorization: Bearer <jwt>`` (service-to-service APIs), re-signed before it
    expires."""

    type: Literal["jwt"]


OAuthGrant = Literal["client_credentials", "refresh_token", "authorization_code", "jwt_bearer"]


class OAuth2AuthConfig(_Model):
    """OAuth 2.0 (RFC 6749): tokens from ``token_url``, renewed before they expire and once on a 401.

    ``grant`` picks how tokens are obtained: ``client_credentials`` (§4.4, the default), ``refresh_token``
    (§6; ``refresh_token`` seeds the store the first time, after which rotated tokens live in the store),
    ``authorization_code`` (a user authorizes once with ``tether auth login NAME``, PKCE always on; then
    refreshes) or ``jwt_bearer`` (RFC 7523: a signed ``assertion`` instead of a client secret).

    ``client_auth`` is how the client authenticates at the token endpoint: ``client_secret_basic`` (HTTP Basic
    with form-encoded id and secret, RFC 6749 §2.3.1), ``client_secret_post`` (in the form) or ``none``
    (public clients, e.g. authorization code with PKCE). ``renew_before`` overrides when a token is renewed
    (default: when 10% of its lifetime or 60 s remains, whichever comes first, but never before half of it).
    """

    type: Literal["oauth2"]
    grant: OAuthGrant = "client_credentials"
    token_url: AnyHttpUrl
    client_id: TextOrSecretField | None = None
    client_secret: SecretField | None = None
    client_auth: Literal["client_secret_basic", "client_secret_post", "none"] = "client_secret_basic"
    scopes: list[str] = Field(default_factory=list)
    audience: str | None = None
    resource: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    refresh_token: SecretField | None = None
    authorize_url: AnyHttpUrl | None = None
    redirect_uri: str | None = None
    assertion: JwtClaimsConfig | None = None
    renew_before: Duration | None = None

    @model_validator(mode="after")
    def _grant_needs(self) -> OAuth2AuthConfig:
        needs_secret = self.client_auth != "none" and self.grant != "jwt_bearer"
        if needs_secret and self.client_secret is None:
            raise ValueError(
                f"client_auth = {self.client_auth!r} needs 'client_secret' (or set client_auth = \"none\" for a "
                "public client)"
            )
        if self.grant != "jwt_bearer" and self.client_id is None:
            raise ValueError(f"grant {self.grant!r} needs 'client_id'")
        if self.grant == "authorization_code" and self.authorize_url is None:
            raise ValueError("grant 'authorization_code' needs 'authorize_url' (where the user is sent to log in)")
        if self.grant == "jwt_bearer" and self.assertion is None:
            raise ValueError("grant 'jwt_bearer' needs an 'assertion' table (private_key, issuer, subject, ...)")
        if self.grant == "client_credentials" and self.refresh_token is not None:
            raise ValueError("'refresh_token' is for grant = \"refresh_token\"; client_credentials needs none")
        if self.redirect_uri is not None and not self.redirect_uri.startswith(("http://127.0.0.1", "http://[::1]")):
            raise ValueError(
                "'redirect_uri' must be a loopback http URL (RFC 8252), e.g. http://127.0.0.1:8765/callback"
            )
        return self


AuthConfig = Annotated[
    ApiKeyAuthConfig | BearerAuthConfig | BasicAuthConfig | JwtAuthConfig | OAuth2AuthConfig,
    Field(discriminator="type"),
]

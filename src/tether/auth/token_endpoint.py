"""Talking to an OAuth 2.0 token endpoint (RFC 6749 §3.2): the grant requests, client authentication, retries.

Transient failures (connection errors, timeouts, 429, 5xx) are retried with full-jitter backoff, honouring a
``Retry-After`` up to the backoff's cap; an answer that will not change with retrying (``invalid_grant``,
``invalid_client``, a body that is not a token) is raised at once as the matching :class:`~tether.errors.AuthError`.
Nothing here logs or raises a credential: error messages carry the OAuth error code and description only.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus

import httpx2

from tether import __version__
from tether.auth.tokens import TokenSet
from tether.config.models import OAuth2AuthConfig
from tether.config.secrets import Secret
from tether.errors import GrantRevokedError, LoginRequiredError, TokenEndpointError
from tether.observe.redact import redact_text
from tether.policies.backoff import Backoff
from tether.policies.headers import parse_retry_after

__all__ = ["JWT_BEARER", "TokenEndpoint"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class TokenEndpoint:
    """Obtains token sets for one integration.

    Args:
        integration: The integration's name, for errors.
        config: Its ``auth`` table.
        verify: The TLS context (the integration's, so a ``ca_bundle`` applies to its token endpoint too).
        timeout: Seconds per token request.
        attempts: Tries per token request, the first included.
        backoff: Waits between them.
        wall: Wall-clock time (expiry times are wall-clock).
        sleep: How the sync path waits between tries; ``async_sleep`` the async one.
        transport: A custom httpx2 transport (tests); ``async_transport`` for the async path.
    """

    def __init__(
        self,
        integration: str,
        config: OAuth2AuthConfig,
        *,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: Backoff | None = None,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx2.BaseTransport | None = None,
        async_transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.integration, self.config = integration, config
        self.url = str(config.token_url)
        self.attempts = attempts
        self.backoff = backoff or Backoff(base=0.5, cap=5.0)
        self._wall, self._sleep, self._async_sleep = wall, sleep, async_sleep
        self._options: dict[str, Any] = {
            "verify": verify,
            "timeout": timeout,
            "headers": {"User-Agent": f"tether/{__version__}", "Accept": "application/json"},
        }
        self._transport, self._async_transport = transport, async_transport
        self._signer: Any = None
        if config.grant == "jwt_bearer" and config.assertion is not None:
            from tether.auth.jwt import JwtSigner

            issuer = _plain(config.client_id)
            self._signer = JwtSigner(config.assertion, wall=wall, default_issuer=issuer, default_audience=self.url)

    # -- what to ask for -------------------------------------------------------------------------------------

    def form(self, current: TokenSet | None) -> dict[str, str]:
        """The grant request to make now, given the stored token set (its refresh token, if any).

        Raises:
            LoginRequiredError: authorization code grant and no refresh token: someone must log in.
        """
        config = self.config
        refresh = current.refresh_token if current is not None and not current.revoked else None
        if refresh is None and config.grant == "refresh_token" and current is None and config.refresh_token:
            refresh = config.refresh_token.value  # the seed from tether.toml, used until the first rotation
        if refresh is not None and config.grant != "client_credentials":
            return {"grant_type": "refresh_token", "refresh_token": refresh}
        if config.grant in ("authorization_code", "refresh_token"):
            raise LoginRequiredError(
                self.integration,
                "no OAuth token is stored and none can be obtained without a user",
                hint=f"run `tether auth login {self.integration}`"
                if config.grant == "authorization_code"
                else "set a fresh refresh_token in tether.toml's environment variable, then retry",
            )
        form = {"grant_type": "client_credentials"}
        if config.grant == "jwt_bearer":
            assertion, _ = self._signer.sign()
            form = {"grant_type": JWT_BEARER, "assertion": assertion}
        return self._with_extras(form)

    def code_form(self, code: str, *, redirect_uri: str, verifier: str) -> dict[str, str]:
        """The authorization code grant's exchange (RFC 6749 §4.1.3, with the PKCE verifier of RFC 7636)."""
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }

    def _with_extras(self, form: dict[str, str]) -> dict[str, str]:
        config = self.config
        if config.scopes:
            form["scope"] = " ".join(config.scopes)
        if config.audience:
            form["audience"] = config.audience
        if config.resource:
            form["resource"] = config.resource
        return {**config.params, **form}

    # -- asking ------------------------------------------------------------------------------------------------

    def request(self, form: dict[str, str], *, current: TokenSet | None = None) -> TokenSet:
        """Make the grant request ``form``, retrying transient failures; the new token set."""
        data, headers = self._authenticated(form)
        with httpx2.Client(transport=self._transport, **self._options) as client:
            for attempt in range(1, self.attempts + 1):
                try:
                    response = client.post(self.url, data=data, headers=headers)
                except httpx2.TransportError as exc:
                    wait = self._after_failure(attempt, f"{type(exc).__name__}: {exc}", None)
                else:
                    wait, result = self._after_response(attempt, response, form, current)
                    if result is not None:
                        return result
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - _after_* raise on the last attempt

    async def arequest(self, form: dict[str, str], *, current: TokenSet | None = None) -> TokenSet:
        """:meth:`request` without blocking the event loop."""
        data, headers = self._authenticated(form)
        async with httpx2.AsyncClient(transport=self._async_transport, **self._options) as client:
            for attempt in range(1, self.attempts + 1):
                try:
                    response = await client.post(self.url, data=data, headers=headers)
                except httpx2.TransportError as exc:
                    wait = self._after_failure(attempt, f"{type(exc).__name__}: {exc}", None)
                else:
                    wait, result = self._after_response(attempt, response, form, current)
                    if result is not None:
                        return result
                await self._async_sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _authenticated(self, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """The form and headers with the client's authentication (RFC 6749 §2.3.1)."""
        config = self.config
        client_id, secret = _plain(config.client_id), config.client_secret
        if client_id is None or (config.grant == "jwt_bearer" and secret is None):
            return form, {}
        if config.client_auth == "client_secret_basic" and secret is not None:
            # Both parts form-encoded before Basic, as §2.3.1 requires (a ':' or '+' in a secret survives).
            pair = f"{quote_plus(client_id)}:{quote_plus(secret.value)}".encode()
            return form, {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        if config.client_auth == "client_secret_post" and secret is not None:
            return {**form, "client_id": client_id, "client_secret": secret.value}, {}
        return {**form, "client_id": client_id}, {}

    def _after_response(
        self, attempt: int, response: httpx2.Response, form: dict[str, str], current: TokenSet | None
    ) -> tuple[float, TokenSet | None]:
        status = response.status_code
        if status == 200:
            return 0.0, self._token_set(response, current)
        body = _json(response)
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        said = redact_text(f"{error}: {description}" if description else error or f"HTTP {status}")
        if error == "invalid_grant":
            what = "refresh token" if form.get("grant_type") == "refresh_token" else "grant"
            raise GrantRevokedError(
                self.integration,
                f"the token endpoint refused the {what} ({said}): it was revoked or has expired",
                hint=self._login_hint(),
                error=error,
            )
        if status in _TRANSIENT_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=self._wall())
            return self._after_failure(attempt, said, retry_after), None
        if error in ("invalid_client", "unauthorized_client"):
            source = self.config.client_secret.source if self.config.client_secret else "the config"
            hint = f"check client_id and the client secret in {source}; the token endpoint does not accept them"
        elif error == "invalid_scope":
            hint = f"the client may not ask for scopes {self.config.scopes}; fix 'scopes' or the client's grants"
        else:
            hint = f"the token endpoint {self.url} refused the request; read its error above"
        raise TokenEndpointError(
            self.integration, f"token request failed with {status} ({said})", hint=hint, error=error
        )

    def _after_failure(self, attempt: int, what: str, retry_after: float | None) -> float:
        if attempt >= self.attempts:
            raise TokenEndpointError(
                self.integration,
                f"the token endpoint {self.url} failed {attempt} times (last: {redact_text(what)})",
                hint="the token endpoint is down or unreachable; tether keeps using a still-valid token meanwhile",
            )
        delay = self.backoff.delay(attempt - 1)
        return min(max(delay, retry_after or 0.0), self.backoff.cap)

    def _token_set(self, response: httpx2.Response, current: TokenSet | None) -> TokenSet:
        body = _json(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenEndpointError(
                self.integration,
                "the token endpoint answered 200 without an access_token",
                hint=f"check token_url ({self.url}): it does not look like an OAuth 2.0 token endpoint",
            )
        assert isinstance(body, dict)
        now = self._wall()
        expires_in = body.get("expires_in")
        try:
            lifetime = float(expires_in) if expires_in is not None else None
        except (TypeError, ValueError):
            lifetime = None
        refresh = body.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            # No new one: the old refresh token stays valid (RFC 6749 §6), unless this was a fresh grant.
            refresh = current.refresh_token if current is not None and not current.revoked else None
        token_type = body.get("token_type")
        scope = body.get("scope")
        return TokenSet(
            access_token=token,
            token_type="Bearer" if not isinstance(token_type, str) or token_type.lower() == "bearer" else token_type,
            expires_at=now + lifetime if lifetime is not None and lifetime > 0 else None,
            obtained_at=now,
            refresh_token=refresh,
            scope=scope if isinstance(scope, str) else " ".join(self.config.scopes) or None,
        )

    def _login_hint(self) -> str:
        if self.config.grant == "authorization_code":
            return f"run `tether auth login {self.integration}` to authorize again"
        if self.config.grant == "refresh_token":
            source = self.config.refresh_token.source if self.config.refresh_token else "the config"
            return f"obtain a new refresh token, put it in {source}, and run `tether auth reset {self.integration}`"
        return "the client's grant was revoked at the provider; check the client's status there"


def _plain(value: str | Secret | None) -> str | None:
    if value is None:
        return None
    return value.value if isinstance(value, Secret) else value


def _json(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None

"""The sandbox's OAuth 2.0 token endpoint (client credentials), so a demo can watch a token renew.

- ``POST /oauth/token``: RFC 6749 §4.4. The client authenticates with HTTP Basic (form-encoded id and
  secret, §2.3.1) or with ``client_id``/``client_secret`` in the form. The answer is a bearer token whose
  lifetime is ``expires_in`` from the form when given (1-3600 s; a sandbox-only knob so a demo sees a renewal
  within seconds), else an hour. Errors are §5.2's JSON: ``invalid_client`` (401), ``unsupported_grant_type``,
  ``invalid_request``.
- ``GET /oauth/stats``: ``{"tokens_issued": N}``, what the demo shows to prove a renewal happened once.

Issued tokens are accepted by the API (``Authorization: Bearer``) until they expire; after that the API
answers 401 with ``WWW-Authenticate: Bearer error="invalid_token"``.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["SANDBOX_CLIENT_ID", "SANDBOX_CLIENT_SECRET", "TokenIssuer"]

SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - published, like the sandbox's API key

_DEFAULT_LIFETIME = 3600
_MAX_LIFETIME = 3600


class TokenIssuer:
    """Issues and checks the sandbox's access tokens (in memory, per app)."""

    def __init__(
        self,
        *,
        client_id: str = SANDBOX_CLIENT_ID,
        client_secret: str = SANDBOX_CLIENT_SECRET,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self.issued = 0

    def valid(self, token: str) -> bool:
        """Whether ``token`` was issued here and has not expired."""
        expires_at = self._expiry.get(token)
        return expires_at is not None and self._clock() < expires_at

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("latin-1"), keep_blank_values=True))
        client = self._client(request, form)
        if client is None:
            return _oauth_error(401, "invalid_client", "Unknown client or wrong secret.", basic=True)
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "This sandbox issues client_credentials tokens only.")
        lifetime_text = form.get("expires_in", str(_DEFAULT_LIFETIME))
        if not lifetime_text.isdigit() or not 1 <= int(lifetime_text) <= _MAX_LIFETIME:
            return _oauth_error(400, "invalid_request", f"expires_in must be 1-{_MAX_LIFETIME} seconds.")
        lifetime = int(lifetime_text)
        token = "sbx_at_" + secrets.token_urlsafe(18)
        self._expiry = {key: at for key, at in self._expiry.items() if at > self._clock()}
        self._expiry[token] = self._clock() + lifetime
        self.issued += 1
        body = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        if form.get("scope"):
            body["scope"] = form["scope"]
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"tokens_issued": self.issued})

    def _client(self, request: Request, form: dict[str, str]) -> str | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except ValueError:
                return None
            client_id, _, secret = decoded.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        matches = hmac.compare_digest(client_id.encode(), self.client_id.encode()) and hmac.compare_digest(
            secret.encode(), self.client_secret.encode()
        )
        return client_id if matches else None


def _oauth_error(status: int, error: str, description: str, *, basic: bool = False) -> Response:
    headers = {"Cache-Control": "no-store"}
    if basic:
        headers["WWW-Authenticate"] = 'Basic realm="sandbox"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)

"""A real OAuth 2.0 authorization server on loopback, built from Authlib's server grants, for the auth tests.

Authlib's Flask integration does the protocol (client authentication, grants, PKCE, RFC 7523 assertions, error
bodies); this module only supplies the in-memory storage Authlib asks for and the test controls around it. One
Flask app is served by werkzeug's threaded server on 127.0.0.1 and an ephemeral port:

- ``POST /oauth/token``: ``client_credentials`` (``client_secret_basic`` or ``client_secret_post``, extra
  ``audience`` and ``resource`` parameters recorded), ``authorization_code`` (PKCE S256 required for public clients),
  ``refresh_token`` (rotation: each refresh issues a new refresh token and revokes the old one; presenting a revoked
  one revokes the whole grant family), and ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (RS256/ES256 assertions
  against the client's public keys; ``iss``, ``sub``, ``aud``, ``exp`` and ``jti`` required, a replayed ``jti``
  rejected).
- ``GET /authorize``: approves at once as :attr:`OAuthServer.resource_owner` and redirects with ``code`` and
  ``state``; ``GET /callback`` (the default redirect URI) echoes its query as JSON.
- ``GET /api/me``: a protected resource answering the token's client, subject and scope; ``?scope=`` requires one.
- ``GET /_stats``: the counters and the token requests as JSON, for a test driving tether in another process.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import logging
import secrets
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import unquote_plus, urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask, Response, jsonify, request
from joserfc import jws, jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, RSAKey
from werkzeug.exceptions import HTTPException
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

__all__ = [
    "JWT_BEARER",
    "OAuthClient",
    "OAuthServer",
    "SigningKeys",
    "TokenRequest",
    "pkce_pair",
    "sign_assertion",
]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
RSA_KID = "test-rsa"
EC_KID = "test-ec"

logger = logging.getLogger("tests.oauth_server")

_SHUTDOWN_TIMEOUT = 5.0
_CODE_LIFETIME = 600.0
_AnyKey = RSAKey | ECKey


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The private keys (PKCS#8 PEM) a JWT-bearer client signs with; the server holds their public halves."""

    rsa_pem: str
    ec_pem: str

    @classmethod
    def generate(cls) -> SigningKeys:
        """Make a fresh RSA-2048 and P-256 key pair."""
        return cls(_pem(rsa.generate_private_key(65537, 2048)), _pem(ec.generate_private_key(ec.SECP256R1())))

    def public_keys(self) -> tuple[_AnyKey, ...]:
        """Both public keys as JWKs, with the key ids :data:`RSA_KID` and :data:`EC_KID`."""
        private = (RSAKey.import_key(self.rsa_pem, {"kid": RSA_KID}), ECKey.import_key(self.ec_pem, {"kid": EC_KID}))
        return tuple(type(key).import_key(key.as_dict(private=False)) for key in private)


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A registered client, shaped as Authlib's ``ClientMixin`` wants. ``client_secret`` is None for a public one."""

    client_id: str
    client_secret: str | None
    scope: str
    grant_types: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    auth_methods: tuple[str, ...]
    client_credentials_refresh: bool
    jwt_keys: tuple[_AnyKey, ...]
    jwt_subjects: frozenset[str]

    @property
    def public(self) -> bool:
        return self.client_secret is None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scope asked for, or the client's whole scope when none is; None (invalid_scope) past the client's."""
        if not scope:
            return self.scope
        asked = scope.split()
        return " ".join(asked) if set(asked) <= set(self.scope.split()) else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact match, except that a loopback ``http`` URI may use any port (RFC 8252 §7.3)."""
        return redirect_uri in self.redirect_uris or any(
            _same_loopback(redirect_uri, uri) for uri in self.redirect_uris
        )

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none" if self.public else method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request the token endpoint answered.

    Attributes:
        grant_type: The ``grant_type`` form field, None when absent.
        auth_method: How the client authenticated: ``client_secret_basic`` (an ``Authorization: Basic`` header),
            ``client_secret_post`` (``client_secret`` in the form), ``none`` (only ``client_id``), or None.
        client_id: From the Basic header, the form, or a JWT-bearer assertion's ``iss``.
        params: The form without ``client_secret``; a field sent more than once maps to a list.
        status: The HTTP status answered.
        started: ``time.monotonic()`` when it arrived.
        finished: ``time.monotonic()`` when it was answered.
    """

    grant_type: str | None
    auth_method: str | None
    client_id: str | None
    params: dict[str, str | list[str]]
    status: int
    started: float
    finished: float


@dataclass(slots=True)
class _AccessToken:
    token: str
    client_id: str
    subject: str
    scope: str
    grant_type: str
    family: str
    expires_at: float | None
    audience: str | None
    resource: list[str]
    revoked: bool = False

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at is not None and time.monotonic() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked


@dataclass(slots=True)
class _RefreshToken:
    token: str
    client_id: str
    subject: str
    scope: str
    family: str
    audience: str | None
    resource: list[str]
    revoked: bool = False

    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope


@dataclass(slots=True)
class _AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    subject: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float
    used: bool = False
    families: list[str] = field(default_factory=list)

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class OAuthServer:
    """The authorization server, its protected resource and the test controls; a context manager that serves it.

    The socket is bound on construction, so :attr:`url` and :meth:`register_client` work before :meth:`start`.
    Every control is thread-safe; :attr:`expires_in`, :attr:`token_delay`, :attr:`resource_owner` and
    :attr:`auto_approve` may be assigned at any time and apply to the next request.

    Args:
        keys: The JWT-bearer clients' signing keys; generated when omitted (RSA key generation costs ~50 ms).
        expires_in: Access-token lifetime in whole seconds; 0 issues tokens without ``expires_in`` that never expire.
        token_delay: Seconds the token endpoint waits before answering, so concurrent requests overlap.
    """

    def __init__(self, *, keys: SigningKeys | None = None, expires_in: int = 3600, token_delay: float = 0.0) -> None:
        self.keys = keys or SigningKeys.generate()
        self.expires_in = expires_in
        self.token_delay = token_delay
        self.resource_owner = "alice"
        self.auto_approve = True
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._ids = itertools.count(1)
        self._clients: dict[str, OAuthClient] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._codes: dict[str, _AuthorizationCode] = {}
        self._jtis: dict[tuple[str, str], float] = {}
        self._failures: list[tuple[int, float | None]] = []
        self._requests: list[TokenRequest] = []
        self._by_grant: Counter[str] = Counter()
        self._in_flight = self._max_in_flight = self._api_requests = self._reuse_detected = 0
        self._authz = _AuthServer(self)
        self._httpd = _WSGIServer("127.0.0.1", 0, self._make_app(), _QuietHandler)
        self._thread: threading.Thread | None = None
        self.url = f"http://127.0.0.1:{self._httpd.port}"
        self.token_url = f"{self.url}/oauth/token"
        self.authorize_url = f"{self.url}/authorize"
        self.api_url = f"{self.url}/api/me"
        self.stats_url = f"{self.url}/_stats"
        self.callback_url = f"{self.url}/callback"

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> OAuthServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=f"oauth-server-{self._httpd.port}"
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, cut the connections still open, and join every thread the server started."""
        self._closing.set()
        if self._thread is None:
            self._httpd.server_close()
            return
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._thread.join(_SHUTDOWN_TIMEOUT)
        if self._thread.is_alive():
            logger.warning("OAuth server on %s did not stop within %ss", self.url, _SHUTDOWN_TIMEOUT)

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def rsa_key(self) -> str:
        """The RSA private key (PEM) that registered JWT-bearer clients sign RS256 assertions with."""
        return self.keys.rsa_pem

    @property
    def ec_key(self) -> str:
        """The P-256 private key (PEM) that registered JWT-bearer clients sign ES256 assertions with."""
        return self.keys.ec_pem

    # -- clients ----------------------------------------------------------------------------------------------

    def register_client(
        self,
        *,
        public: bool = False,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str = "read write",
        grant_types: Iterable[str] | None = None,
        redirect_uris: Iterable[str] | None = None,
        auth_methods: Iterable[str] = ("client_secret_basic", "client_secret_post"),
        client_credentials_refresh: bool = False,
        jwt_subjects: Iterable[str] = (),
        jwt_public_keys: Iterable[str] | None = None,
    ) -> OAuthClient:
        """Register a client and return it, with its generated id and secret.

        Args:
            public: A public client: no secret, authenticates with ``none``, must use PKCE.
            client_id: Its id; generated when omitted.
            client_secret: Its secret; generated when omitted (never set for a public client).
            scope: Everything it may ask for, space-separated; also what it gets when it asks for nothing.
            grant_types: Allowed grant types. Default: authorization_code and refresh_token, plus
                client_credentials and jwt-bearer for a confidential client.
            redirect_uris: Allowed redirect URIs; default :attr:`callback_url`.
            auth_methods: Token-endpoint authentication methods a confidential client may use.
            client_credentials_refresh: Issue a refresh token with client_credentials (RFC 6749 says SHOULD NOT).
            jwt_subjects: ``sub`` values its assertions may carry besides its own client id.
            jwt_public_keys: PEM public keys its assertions are verified with; default the public halves of
                :attr:`rsa_key` (kid ``test-rsa``) and :attr:`ec_key` (kid ``test-ec``).
        """
        with self._lock:
            number = next(self._ids)
        client_id = client_id or f"client-{number}"
        if grant_types is None:
            grant_types = ("authorization_code", "refresh_token")
            if not public:
                grant_types += ("client_credentials", JWT_BEARER)
        keys = self.keys.public_keys() if jwt_public_keys is None else tuple(_import_public(p) for p in jwt_public_keys)
        client = OAuthClient(
            client_id=client_id,
            client_secret=None if public else client_secret or secrets.token_urlsafe(24),
            scope=scope,
            grant_types=tuple(grant_types),
            redirect_uris=tuple(redirect_uris or (self.callback_url,)),
            auth_methods=tuple(auth_methods),
            client_credentials_refresh=client_credentials_refresh,
            jwt_keys=keys,
            jwt_subjects=frozenset((client_id, *jwt_subjects)),
        )
        with self._lock:
            self._clients[client_id] = client
        return client

    # -- inspection -------------------------------------------------------------------------------------------

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Every answered token request, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def token_request_count(self, grant_type: str | None = None) -> int:
        """Token requests received so far (counted on arrival), all or of one grant type."""
        with self._lock:
            return sum(self._by_grant.values()) if grant_type is None else self._by_grant[grant_type]

    def stats(self) -> dict[str, Any]:
        """What ``GET /_stats`` answers: counters, the most concurrent token requests, and every token request."""
        with self._lock:
            return {
                "token_requests": sum(self._by_grant.values()),
                "token_requests_by_grant_type": dict(self._by_grant),
                "token_in_flight": self._in_flight,
                "token_max_in_flight": self._max_in_flight,
                "api_requests": self._api_requests,
                "refresh_reuse_detected": self._reuse_detected,
                "requests": [asdict(r) for r in self._requests],
            }

    def reset_stats(self) -> None:
        """Forget the counters and recorded requests (tokens, clients and injected failures stay)."""
        with self._lock:
            self._requests.clear()
            self._by_grant.clear()
            self._max_in_flight = self._in_flight
            self._api_requests = self._reuse_detected = 0

    # -- controls ---------------------------------------------------------------------------------------------

    def revoke_grant(self, token: str) -> None:
        """Revoke the grant family ``token`` (an access or refresh token) belongs to: every token issued from
        the same authorization, so the next refresh answers ``invalid_grant`` and ``/api/me`` 401.

        Raises:
            KeyError: The server never issued ``token``.
        """
        with self._lock:
            record = self._access.get(token) or self._refresh.get(token)
            if record is None:
                raise KeyError(token)
            self._revoke_family(record.family)

    def revoke_all(self) -> None:
        """Revoke every access and refresh token issued so far."""
        with self._lock:
            for record in itertools.chain(self._access.values(), self._refresh.values()):
                record.revoked = True

    def expire_all_access_tokens(self) -> None:
        """Make every access token issued so far expired; refresh tokens stay valid."""
        with self._lock:
            for record in self._access.values():
                record.expires_at = 0.0

    def fail_next(self, n: int = 1, status: int = 503, *, retry_after: float | None = None) -> None:
        """Answer the next ``n`` token requests with ``status`` and ``{"error": "temporarily_unavailable"}``
        (plus ``Retry-After`` when given) instead of processing them; they are still counted and recorded."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * n)

    # -- storage Authlib calls (under the lock) ---------------------------------------------------------------

    def _query_client(self, client_id: str) -> OAuthClient | None:
        with self._lock:
            return self._clients.get(client_id)

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        client: OAuthClient = req.client
        grant_type = req.payload.grant_type
        previous: _RefreshToken | None = getattr(req, "refresh_token", None)
        code: _AuthorizationCode | None = getattr(req, "authorization_code", None)
        audience = req.form.get("audience") or (previous.audience if previous else None)
        resource = req.form.getlist("resource") or (previous.resource if previous else [])
        subject = str(req.user or client.client_id)
        expires_in = token.get("expires_in")
        with self._lock:
            family = previous.family if previous else f"grant-{next(self._ids)}"
            if code is not None:
                code.families.append(family)
            self._access[token["access_token"]] = _AccessToken(
                token=token["access_token"],
                client_id=client.client_id,
                subject=subject,
                scope=token.get("scope", ""),
                grant_type=grant_type,
                family=family,
                expires_at=time.monotonic() + expires_in if expires_in else None,
                audience=audience,
                resource=resource,
            )
            if "refresh_token" in token:
                self._refresh[token["refresh_token"]] = _RefreshToken(
                    token=token["refresh_token"],
                    client_id=client.client_id,
                    subject=subject,
                    scope=previous.scope if previous else token.get("scope", ""),
                    family=family,
                    audience=audience,
                    resource=resource,
                )

    def _find_refresh_token(self, token: str) -> _RefreshToken | None:
        with self._lock:
            record = self._refresh.get(token)
            if record is not None and record.revoked:
                # Reuse of a rotated (or revoked) refresh token: it may have been stolen, so end the whole grant.
                self._reuse_detected += 1
                self._revoke_family(record.family)
                return None
            return record

    def _rotate_refresh_token(self, record: _RefreshToken) -> None:
        with self._lock:
            if record.revoked:
                # Another request rotated it between our lookup and now: that is reuse too.
                self._reuse_detected += 1
                self._revoke_family(record.family)
                raise InvalidGrantError("The refresh token was already used.")
            record.revoked = True

    def _save_code(self, code: str, req: Any) -> None:
        data = req.payload.data
        with self._lock:
            self._codes[code] = _AuthorizationCode(
                code=code,
                client_id=req.client.client_id,
                redirect_uri=req.payload.redirect_uri,
                scope=req.scope,
                subject=str(req.user),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                expires_at=time.monotonic() + _CODE_LIFETIME,
            )

    def _find_code(self, code: str, client: OAuthClient) -> _AuthorizationCode | None:
        with self._lock:
            record = self._codes.get(code)
            if record is None or record.client_id != client.client_id or time.monotonic() >= record.expires_at:
                return None
            if record.used:
                # RFC 6749 §4.1.2: a code used twice SHOULD revoke the tokens issued from it.
                for family in record.families:
                    self._revoke_family(family)
                return None
            return record

    def _consume_code(self, record: _AuthorizationCode) -> None:
        with self._lock:
            if record.used:
                for family in record.families:
                    self._revoke_family(family)
                raise InvalidGrantError("The authorization code was already used.")
            record.used = True

    def _find_access_token(self, token: str) -> _AccessToken | None:
        with self._lock:
            return self._access.get(token)

    def _use_jti(self, issuer: str, jti: str, expires_at: float) -> None:
        now = time.time()
        with self._lock:
            self._jtis = {key: exp for key, exp in self._jtis.items() if exp > now - 3600}
            if (issuer, jti) in self._jtis:
                raise InvalidGrantError(description="The assertion's 'jti' was already used.")
            self._jtis[(issuer, jti)] = expires_at

    def _revoke_family(self, family: str) -> None:
        for record in itertools.chain(self._access.values(), self._refresh.values()):
            if record.family == family:
                record.revoked = True

    # -- HTTP -------------------------------------------------------------------------------------------------

    def _make_app(self) -> Flask:
        app = Flask(__name__)
        protector = ResourceProtector()
        protector.register_token_validator(_BearerValidator(self._find_access_token))

        @app.post("/oauth/token")
        def token() -> Response:
            started = self._token_request_arrived()
            status = 500
            try:
                if self.token_delay > 0:
                    self._closing.wait(self.token_delay)
                response: Response | None = self._take_failure()
                if response is None:
                    response = self._authz.create_token_response()
                status = response.status_code
                return response
            finally:
                self._token_request_answered(started, status)

        @app.get("/authorize")
        def authorize() -> Response:
            try:
                grant = self._authz.get_consent_grant(end_user=self.resource_owner)
            except OAuth2Error as error:
                response: Response = self._authz.handle_error_response(None, error)
                return response
            user = self.resource_owner if self.auto_approve else None
            response = self._authz.create_authorization_response(grant_user=user, grant=grant)
            return response

        @app.get("/callback")
        def callback() -> Response:
            return jsonify(request.args.to_dict())

        @app.get("/api/me")
        def me() -> Response:
            with self._lock:
                self._api_requests += 1
            if not request.headers.get("Authorization"):
                # RFC 6750 §3.1: no error code when the request carried no credentials (Authlib invents one).
                challenge = {"WWW-Authenticate": 'Bearer realm="oauth-server"'}
                return Response(status=401, headers=challenge, content_type="text/plain")
            with protector.acquire(request.args.get("scope")) as access:
                return jsonify(
                    client_id=access.client_id,
                    sub=access.subject,
                    scope=access.scope,
                    grant_type=access.grant_type,
                    audience=access.audience,
                    resource=access.resource,
                )

        @app.get("/_stats")
        def stats() -> Response:
            return jsonify(self.stats())

        @app.errorhandler(Exception)
        def failed(error: Exception) -> Response | HTTPException:
            if isinstance(error, HTTPException):
                return error
            self.errors.append("".join(traceback.format_exception(error)))
            logger.error("OAuth server error", exc_info=error)
            return Response(json.dumps({"error": "server_error"}), status=500, content_type="application/json")

        return app

    def _token_request_arrived(self) -> float:
        with self._lock:
            self._by_grant[request.form.get("grant_type") or ""] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        return time.monotonic()

    def _token_request_answered(self, started: float, status: int) -> None:
        form = request.form
        params = {
            name: values[0] if len(values) == 1 else values for name, values in form.lists() if name != "client_secret"
        }
        basic_id = _basic_client_id(request.headers.get("Authorization", ""))
        if basic_id is not None:
            auth_method: str | None = "client_secret_basic"
        elif "client_secret" in form:
            auth_method = "client_secret_post"
        else:
            auth_method = "none" if "client_id" in form else None
        record = TokenRequest(
            grant_type=form.get("grant_type"),
            auth_method=auth_method,
            client_id=basic_id or form.get("client_id") or _assertion_issuer(form.get("assertion")),
            params=params,
            status=status,
            started=started,
            finished=time.monotonic(),
        )
        with self._lock:
            self._in_flight -= 1
            self._requests.append(record)

    def _take_failure(self) -> Response | None:
        with self._lock:
            if not self._failures:
                return None
            status, retry_after = self._failures.pop(0)
        body = {"error": "temporarily_unavailable", "error_description": "injected failure"}
        response = Response(json.dumps(body), status=status, content_type="application/json")
        if retry_after is not None:
            response.headers["Retry-After"] = f"{retry_after:g}"
        return response


# -- Authlib glue -------------------------------------------------------------------------------------------------


class _AuthServer(AuthorizationServer):
    """Authlib's Flask authorization server over :class:`OAuthServer`'s storage, with every grant registered."""

    def __init__(self, owner: OAuthServer) -> None:
        super().__init__(query_client=owner._query_client, save_token=owner._save_token)
        self.owner = owner
        # Authlib issues refresh tokens only when given a generator for them, and reads expires_in through a
        # callable, so a test can change the lifetime between requests.
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda **_: secrets.token_urlsafe(32),
                lambda **_: secrets.token_urlsafe(48),
                lambda client, grant_type: owner.expires_in,
            ),
        )
        self.register_grant(_ClientCredentialsGrant)
        self.register_grant(_AuthorizationCodeGrant, [_S256Challenge(required=True)])
        self.register_grant(_RefreshTokenGrant)
        self.register_grant(_JWTBearerGrant)


class _ClientCredentialsGrant(grants.ClientCredentialsGrant):
    # Authlib's default is Basic only; the refresh grant's too, and the code grant lacks "none" (public clients).
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post"]

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: OAuthClient = self.request.client
        token = self.generate_token(
            scope=self.request.payload.scope, include_refresh_token=client.client_credentials_refresh
        )
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post", "none"]
    server: _AuthServer

    def save_authorization_code(self, code: str, request: Any) -> None:
        self.server.owner._save_code(code, request)

    def query_authorization_code(self, code: str, client: OAuthClient) -> _AuthorizationCode | None:
        return self.server.owner._find_code(code, client)

    def delete_authorization_code(self, authorization_code: _AuthorizationCode) -> None:
        self.server.owner._consume_code(authorization_code)

    def authenticate_user(self, authorization_code: _AuthorizationCode) -> str:
        return authorization_code.subject


class _S256Challenge(CodeChallenge):
    """PKCE with S256 only, and required of public clients at the authorization endpoint already."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if grant.request.client.public and not data.get("code_challenge"):
            raise InvalidRequestError("A public client must send a PKCE 'code_challenge'.")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class _RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation
    server: _AuthServer

    def authenticate_refresh_token(self, refresh_token: str) -> _RefreshToken | None:
        return self.server.owner._find_refresh_token(refresh_token)

    def authenticate_user(self, refresh_token: _RefreshToken) -> str:
        return refresh_token.subject

    def revoke_old_credential(self, refresh_token: _RefreshToken) -> None:
        self.server.owner._rotate_refresh_token(refresh_token)


class _JWTBearerGrant(JWTBearerGrant):
    CLAIMS_OPTIONS: ClassVar[dict[str, dict[str, bool]]] = {
        name: {"essential": True} for name in ("iss", "sub", "aud", "exp", "jti")
    }
    server: _AuthServer

    def resolve_issuer_client(self, issuer: str) -> OAuthClient | None:
        return self.server.owner._query_client(issuer)

    def resolve_client_public_key(self, client: OAuthClient) -> Callable[[Any], _AnyKey]:
        # joserfc's KeySet insists on a kid; pick by kid when the assertion names one, else by the alg's key type.
        def pick(obj: Any) -> _AnyKey:
            headers = obj.headers()
            kid, alg = headers.get("kid"), str(headers.get("alg", ""))
            key_type = "EC" if alg.startswith("ES") else "RSA"
            for key in client.jwt_keys:
                if (key.kid == kid) if kid else (key.key_type == key_type):
                    return key
            raise InvalidKeyIdError(f"No key for kid {kid!r} and alg {alg!r}")

        return pick

    def get_audiences(self) -> list[str]:
        return [self.server.owner.token_url, self.server.owner.url]

    def authenticate_user(self, subject: str) -> str | None:
        return subject if subject in self.request.client.jwt_subjects else None

    def has_granted_permission(self, client: OAuthClient, user: str) -> bool:
        return True  # authenticate_user already checked the subject against the client

    def process_assertion_claims(self, assertion: str) -> Any:
        claims = super().process_assertion_claims(assertion)
        self.server.owner._use_jti(claims["iss"], str(claims["jti"]), float(claims["exp"]))
        return claims


class _BearerValidator(BearerTokenValidator):
    def __init__(self, find: Callable[[str], _AccessToken | None]) -> None:
        super().__init__()
        self._find = find

    def authenticate_token(self, token_string: str) -> _AccessToken | None:
        return self._find(token_string)


# -- serving ------------------------------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler, logging to ``tests.oauth_server`` instead of configuring the ``werkzeug`` logger."""

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug(message.rstrip(), *args)


class _WSGIServer(ThreadedWSGIServer):
    """Werkzeug's threaded server, able to cut the connections still open so shutdown can join every thread.

    Werkzeug answers every request with ``Connection: close``, so a handler thread lives for one request; what
    can still be open at shutdown is a request being delayed or a connection that never sent one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug(message.rstrip(), *args)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked reading its request


# -- helpers for tests --------------------------------------------------------------------------------------------


def sign_assertion(
    private_key_pem: str,
    *,
    issuer: str,
    audience: str,
    subject: str | None = None,
    alg: Literal["RS256", "ES256"] = "RS256",
    lifetime: float = 300,
    jti: str | None = None,
    kid: str | None = None,
    omit: Iterable[str] = (),
    **claims: Any,
) -> str:
    """Sign an RFC 7523 assertion with ``alg`` and a PEM private key.

    ``subject`` defaults to ``issuer`` and ``jti`` to a random value; ``claims`` add to or override the payload
    (``exp=...`` for an expired one) and ``omit`` drops claims by name.
    """
    now = int(time.time())
    payload = {
        "iss": issuer,
        "sub": subject or issuer,
        "aud": audience,
        "iat": now,
        "exp": now + int(lifetime),
        "jti": jti or secrets.token_hex(16),
        **claims,
    }
    for name in omit:
        payload.pop(name, None)
    header = {"alg": alg, **({"kid": kid} if kid else {})}
    key = ECKey.import_key(private_key_pem) if alg.startswith("ES") else RSAKey.import_key(private_key_pem)
    return jwt.encode(header, payload, key)


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` for the S256 method."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _import_public(pem: str) -> _AnyKey:
    is_ec = isinstance(serialization.load_pem_public_key(pem.encode("ascii")), ec.EllipticCurvePublicKey)
    return ECKey.import_key(pem) if is_ec else RSAKey.import_key(pem)


def _same_loopback(candidate: str, registered: str) -> bool:
    a, b = urlsplit(candidate), urlsplit(registered)
    return (
        a.scheme == b.scheme == "http"
        and a.hostname == b.hostname
        and b.hostname in ("127.0.0.1", "::1", "localhost")
        and a.path == b.path
    )


def _basic_client_id(authorization: str) -> str | None:
    """The client id in an ``Authorization: Basic`` header (form-encoded, RFC 6749 §2.3.1), else None."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return unquote_plus(decoded.partition(":")[0])


def _assertion_issuer(assertion: str | None) -> str | None:
    """The unverified ``iss`` of a JWT-bearer assertion, for the request log."""
    if not assertion:
        return None
    try:
        claims = json.loads(jws.extract_compact(assertion.encode("ascii")).payload)
    except (JoseError, ValueError, UnicodeError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None

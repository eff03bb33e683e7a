"""Signing JWTs (RFC 7519) with PyJWT: assertions for the JWT-bearer grant, and self-signed bearer tokens.

:class:`JwtSigner` turns a :class:`~tether.config.models.JwtClaimsConfig` into compact tokens. It loads and
checks the key once, at construction, so a key that does not fit the algorithm is a startup error rather than a
401 later. The RFC 7523 JWT-bearer grant uses it for its ``assertion`` (issuer defaulting to the client id,
audience to the token URL); :class:`SelfSignedJwtAuth` uses it for ``auth = { type = "jwt", ... }``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Generator
from typing import Any

import httpx2
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tether.auth.tokens import renew_margin
from tether.config.models import JwtClaimsConfig
from tether.config.secrets import Secret

__all__ = ["JwtSigner", "SelfSignedJwtAuth"]

# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# RFC 7518 §3.3 / §3.5: RSA keys of 2048 bits or more.
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256"})
_MIN_RSA_BITS = 2048
# RFC 7518 §3.4: each ES algorithm is bound to one curve.
_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}
_CURVE_NAMES = {"ES256": "P-256", "ES384": "P-384"}
# Computed for every token; a fixed value in ``claims`` would make tokens replayable or immortal.
_COMPUTED_CLAIMS = ("iat", "exp", "jti")
# Each has its own setting; allowing ``claims`` to set them too would leave two sources of truth.
_DEDICATED_CLAIMS = {"iss": "issuer", "sub": "subject", "aud": "audience"}

_Key = bytes | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class JwtSigner:
    """Signs JWTs from a :class:`~tether.config.models.JwtClaimsConfig`.

    Every token carries ``iss`` (``config.issuer`` or ``default_issuer``), ``sub`` (``config.subject``, else
    the issuer), ``aud`` (``config.audience`` or ``default_audience``), ``iat``, ``exp`` (``iat`` plus the
    lifetime), a fresh ``jti`` and ``config.claims``; claims without a value are left out. The header carries
    ``kid`` when ``config.key_id`` is set.

    Args:
        config: The key, algorithm and claims.
        wall: Wall clock in epoch seconds (injected by tests).
        default_issuer: ``iss`` when the config sets none (the client id for the JWT-bearer grant).
        default_audience: ``aud`` when the config sets none (the token URL for the JWT-bearer grant).

    Raises:
        ValueError: The key does not fit the algorithm (wrong type or curve, too short, malformed, encrypted),
            or ``claims`` sets a claim tether computes (``iat``, ``exp``, ``jti``) or has a setting for (``iss``,
            ``sub``, ``aud``). The message names where the key comes from, never the key.
    """

    __slots__ = ("_algorithm", "_claims", "_headers", "_key", "_key_ref", "_lifetime", "_wall")

    def __init__(
        self,
        config: JwtClaimsConfig,
        *,
        wall: Callable[[], float] = time.time,
        default_issuer: str | None = None,
        default_audience: str | None = None,
    ) -> None:
        self._algorithm = config.algorithm
        self._key_ref = config.private_key
        self._key: _Key = _load_key(config.algorithm, config.private_key)
        self._wall = wall
        # Whole seconds: many servers reject a fractional NumericDate, and rounding down never outlives the config.
        self._lifetime = max(1, int(config.lifetime))
        self._headers = {"kid": config.key_id} if config.key_id else None
        issuer = config.issuer or default_issuer
        fixed = {
            "iss": issuer,
            "sub": config.subject or issuer,
            "aud": config.audience or default_audience,
        }
        self._claims: dict[str, Any] = {name: value for name, value in fixed.items() if value is not None}
        self._claims.update(_checked_claims(config.claims))

    @property
    def algorithm(self) -> str:
        """The JWS algorithm, e.g. ``"RS256"``."""
        return self._algorithm

    @property
    def lifetime(self) -> int:
        """Seconds from ``iat`` to ``exp`` of every token."""
        return self._lifetime

    def now(self) -> float:
        """The signer's wall clock, so code caching its tokens judges expiry by the same clock."""
        return self._wall()

    def sign(self) -> tuple[str, float]:
        """A new compact JWT and its expiry (the ``exp`` claim, wall-clock epoch seconds)."""
        issued_at = int(self._wall())
        expires_at = issued_at + self._lifetime
        payload = {**self._claims, "iat": issued_at, "exp": expires_at, "jti": uuid.uuid4().hex}
        token = jwt.encode(payload, self._key, algorithm=self._algorithm, headers=self._headers)
        return token, float(expires_at)

    def __repr__(self) -> str:
        kid = self._headers["kid"] if self._headers else None
        return f"JwtSigner(algorithm={self._algorithm!r}, key={self._key_ref!r}, kid={kid!r})"


def _checked_claims(claims: dict[str, Any]) -> dict[str, Any]:
    computed = [name for name in _COMPUTED_CLAIMS if name in claims]
    if computed:
        raise ValueError(
            f"claims may not set {', '.join(computed)}: tether computes iat, exp and jti for every token "
            "(set 'lifetime' to change exp)"
        )
    dedicated = [name for name in _DEDICATED_CLAIMS if name in claims]
    if dedicated:
        settings = ", ".join(f"'{_DEDICATED_CLAIMS[name]}'" for name in dedicated)
        raise ValueError(f"claims may not set {', '.join(dedicated)}: use {settings} instead")
    try:
        # TOML allows dates and times, which JSON cannot carry; fail now rather than on the first call.
        json.dumps(claims)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"claims must be JSON values (strings, numbers, booleans, lists, tables): {exc}") from exc
    return dict(claims)


def _load_key(algorithm: str, secret: Secret) -> _Key:
    where = f"private_key ({secret.source})"
    text = secret.value
    looks_pem = "-----BEGIN" in text or text.startswith(("ssh-", "ecdsa-"))
    if algorithm in _HMAC_MIN_BYTES:
        if looks_pem:
            raise ValueError(
                f"{algorithm} signs with a shared secret, but {where} holds a PEM or SSH key; use RS256, PS256 "
                "or ES256 for a key pair, or point private_key at the shared secret"
            )
        raw = text.encode("utf-8")
        minimum = _HMAC_MIN_BYTES[algorithm]
        if len(raw) < minimum:
            raise ValueError(
                f"{algorithm} needs a shared secret of at least {minimum} bytes (RFC 7518 §3.2), but {where} is "
                f"{len(raw)} bytes; a shorter one can be brute-forced from a single token"
            )
        return raw
    if algorithm not in _RSA_ALGORITHMS and algorithm not in _EC_CURVES:
        raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
    key = _load_pem(text, where)
    if algorithm in _RSA_ALGORITHMS:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{algorithm} needs an RSA private key, but {where} is {_describe(key)}")
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(
                f"{algorithm} needs an RSA key of at least {_MIN_RSA_BITS} bits (RFC 7518 §3.3), but {where} "
                f"has {key.key_size}"
            )
        return key
    curve = _EC_CURVES[algorithm]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, curve):
        raise ValueError(
            f"{algorithm} needs an EC private key on curve {_CURVE_NAMES[algorithm]}, but {where} is {_describe(key)}"
        )
    return key


def _load_pem(text: str, where: str) -> PrivateKeyTypes:
    if "\n" not in text and "\\n" in text:
        # A PEM squeezed into one environment variable often arrives with literal "\n"; no PEM contains a backslash.
        text = text.replace("\\n", "\n")
    if "-----BEGIN" not in text:
        raise ValueError(f"{where} is not a PEM private key (expected a '-----BEGIN ... PRIVATE KEY-----' block)")
    if "PUBLIC KEY-----" in text or "CERTIFICATE-----" in text:
        raise ValueError(f"{where} holds a public key or certificate; signing needs the private key")
    # The parser's own message is dropped (``from None``): tether's message must stay free of the key's text.
    try:
        return load_pem_private_key(text.encode("utf-8"), password=None)
    except TypeError:
        raise ValueError(
            f"{where} is encrypted with a passphrase; tether needs an unencrypted key (protect the file itself)"
        ) from None
    except UnsupportedAlgorithm:
        raise ValueError(f"{where} is a PEM private key of a type this system's cryptography cannot load") from None
    except ValueError:
        raise ValueError(f"{where} cannot be parsed as a PEM private key (truncated or corrupted?)") from None


def _describe(key: PrivateKeyTypes) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA key ({key.key_size} bits)"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC key on curve {key.curve.name}"
    kind = type(key).__name__.removesuffix("PrivateKey")
    return f"an {kind} key" if kind[:1] in "AEIOU" else f"a {kind} key"


class SelfSignedJwtAuth(httpx2.Auth):
    """Send ``Authorization: Bearer <jwt>`` signed by a :class:`JwtSigner`, re-signed before it expires.

    One token is shared by every request until less than 10% of its lifetime or 60 s remains, whichever is
    longer, but never more than half the lifetime (a 30 s token is re-signed with 15 s left). On a 401 the
    flow signs a fresh token (new ``jti`` and ``iat``) and replays the request once; a second 401 is returned
    as it is.

    Tokens are not registered with the redactor (``register_secret``): each lives minutes, so registering
    them would grow its process-wide set, and its regular expression, without bound. They only travel in the
    ``Authorization`` header, which the redactor masks by name whatever its value.

    Args:
        signer: Signs the tokens; its clock decides when a cached token is due.
    """

    requires_request_body = False
    # Only the status decides the replay, so the 401's body need not be read.
    requires_response_body = False

    def __init__(self, signer: JwtSigner) -> None:
        self._signer = signer
        self._margin = renew_margin(signer.lifetime)
        # Signing is CPU-only (microseconds for HMAC, a few milliseconds at most for RSA), so the async flow may
        # hold this threading lock too without stalling its event loop; the lock keeps one signature per expiry.
        self._lock = threading.Lock()
        self._token: str | None = None
        self._issued_at = 0.0
        self._expires_at = 0.0

    @classmethod
    def from_config(cls, config: JwtClaimsConfig, *, wall: Callable[[], float] = time.time) -> SelfSignedJwtAuth:
        """The flow for an ``auth = { type = "jwt", ... }`` table."""
        return cls(JwtSigner(config, wall=wall))

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        token = self._current()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        request.headers["Authorization"] = f"Bearer {self._resign()}"
        yield request

    def _current(self) -> str:
        with self._lock:
            now, token = self._signer.now(), self._token
            # A clock set back past ``iat`` would make the cached token look issued in the future: re-sign too.
            if token is None or now < self._issued_at or self._expires_at - now < self._margin:
                return self._store()
            return token

    def _resign(self) -> str:
        # Always a new token, even if another request re-signed meanwhile: the server may have refused this
        # exact token (a seen jti, say), and one signature per 401 is bounded by the requests in flight.
        with self._lock:
            return self._store()

    def _store(self) -> str:
        token, expires_at = self._signer.sign()
        self._token, self._expires_at = token, expires_at
        self._issued_at = expires_at - self._signer.lifetime
        return token

    def __repr__(self) -> str:
        return f"SelfSignedJwtAuth({self._signer!r})"

"""Signing JWTs: every token verifies with the public key, bad keys fail at construction, and the bearer flow
re-signs on schedule and once on a 401.

Keys are generated here with ``cryptography`` and reach the signer the way they do in production: through
``file:`` and ``${ENV}`` references in a validated config.
"""

from __future__ import annotations

import base64
import re
import threading
from pathlib import Path
from typing import Any, cast

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from hypothesis import given
from hypothesis import strategies as st

from tether.auth.jwt import JwtSigner, SelfSignedJwtAuth
from tether.config import Secret, parse_config
from tether.config.models import JwtAuthConfig, JwtClaimsConfig
from tether.observe.redact import MASK, redact_headers, redact_text

T0 = 1_800_000_000  # a fixed, whole-second wall clock start
AUDIENCE = "https://api.example.com"
URL = "https://api.example.com/v1/things"
HS_SECRETS = {"HS256": "h" * 32, "HS384": "x" * 48, "HS512": "z" * 64}


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingSigner(JwtSigner):
    """A real signer that counts its signatures (thread-safe: ``sign`` runs under the flow's lock anyway)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signed = 0
        self._count_lock = threading.Lock()

    def sign(self) -> tuple[str, float]:
        with self._count_lock:
            self.signed += 1
        return super().sign()


def _pem(key: PrivateKeyTypes, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKeyTypes]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.fixture
def key_file(tmp_path: Path, keys: dict[str, PrivateKeyTypes]) -> dict[str, str]:
    """``file:`` references (relative to the config folder) for each generated key."""
    (tmp_path / "keys").mkdir()
    refs = {}
    for name, key in keys.items():
        (tmp_path / "keys" / f"{name}.pem").write_text(_pem(key))
        refs[name] = f"file:keys/{name}.pem"
    return refs


def _config(tmp_path: Path, env: dict[str, str] | None = None, **fields: Any) -> JwtClaimsConfig:
    return JwtClaimsConfig.model_validate(fields, context={"env": env or {}, "base_dir": tmp_path})


def _public(key: PrivateKeyTypes) -> PublicKeyTypes:
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key.public_key()


def _verify(token: str, key: Any, algorithm: str, audience: str, issuer: str) -> dict[str, Any]:
    # Expiry is checked by value against the injected clock, not against the real one.
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=[algorithm],
        audience=audience,
        issuer=issuer,
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"], "verify_exp": False, "verify_iat": False},
    )
    return claims


def _hs_signer(clock: Clock, tmp_path: Path, lifetime: float = 300, **kwargs: Any) -> CountingSigner:
    config = _config(
        tmp_path,
        {"JWT_SECRET": HS_SECRETS["HS256"]},
        private_key="${JWT_SECRET}",
        algorithm="HS256",
        issuer="svc",
        audience="api",
        lifetime=lifetime,
    )
    return CountingSigner(config, wall=clock, **kwargs)


# --- JwtSigner: what a token holds -------------------------------------------------------------------------------


def test_rs256_token_from_a_file_key_verifies_with_the_public_key(
    tmp_path: Path, keys: dict[str, PrivateKeyTypes], key_file: dict[str, str]
) -> None:
    config = _config(
        tmp_path,
        private_key=key_file["rsa"],
        key_id="key-2026",
        issuer="svc@example.com",
        subject="user-42",
        audience=AUDIENCE,
        lifetime="2m",
        claims={"scope": "read write", "tenant": 7},
    )
    token, expires_at = JwtSigner(config, wall=Clock(T0 + 0.75)).sign()

    claims = _verify(token, _public(keys["rsa"]), "RS256", AUDIENCE, "svc@example.com")
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": "key-2026"}
    assert claims["sub"] == "user-42"
    assert (claims["iat"], claims["exp"]) == (T0, T0 + 120)
    assert expires_at == T0 + 120
    assert len(claims["jti"]) == 32
    assert (claims["scope"], claims["tenant"]) == ("read write", 7)


@pytest.mark.parametrize(
    ("algorithm", "key_name"),
    [
        ("RS384", "rsa"),
        ("RS512", "rsa"),
        ("PS256", "rsa"),
        ("ES256", "p256"),
        ("ES384", "p384"),
        ("HS256", None),
        ("HS384", None),
        ("HS512", None),
    ],
)
def test_every_algorithm_signs_tokens_its_verification_key_accepts(
    tmp_path: Path, keys: dict[str, PrivateKeyTypes], key_file: dict[str, str], algorithm: str, key_name: str | None
) -> None:
    if key_name is None:
        secret = HS_SECRETS[algorithm]
        config = _config(tmp_path, {"HS": secret}, private_key="${HS}", algorithm=algorithm, issuer="i", audience="a")
        verification_key: Any = secret.encode()
    else:
        config = _config(tmp_path, private_key=key_file[key_name], algorithm=algorithm, issuer="i", audience="a")
        verification_key = _public(keys[key_name])
    token, _ = JwtSigner(config, wall=Clock()).sign()

    claims = _verify(token, verification_key, algorithm, "a", "i")
    assert jwt.get_unverified_header(token)["alg"] == algorithm == JwtSigner(config).algorithm
    assert "kid" not in jwt.get_unverified_header(token)
    assert claims["sub"] == "i"


def test_defaults_fill_issuer_subject_and_audience_for_the_jwt_bearer_grant(
    tmp_path: Path, keys: dict[str, PrivateKeyTypes], key_file: dict[str, str]
) -> None:
    config = _config(tmp_path, private_key=key_file["p256"], algorithm="ES256")
    signer = JwtSigner(config, wall=Clock(), default_issuer="client-1", default_audience="https://idp/token")

    claims = _verify(signer.sign()[0], _public(keys["p256"]), "ES256", "https://idp/token", "client-1")
    assert claims["sub"] == "client-1"


def test_configured_issuer_and_audience_win_over_the_defaults(tmp_path: Path) -> None:
    config = _config(
        tmp_path, {"S": HS_SECRETS["HS256"]}, private_key="${S}", algorithm="HS256", issuer="me", audience="them"
    )
    signer = JwtSigner(config, wall=Clock(), default_issuer="client-1", default_audience="https://idp/token")

    claims = _verify(signer.sign()[0], HS_SECRETS["HS256"].encode(), "HS256", "them", "me")
    assert claims["sub"] == "me"


def test_unset_claims_are_left_out_rather_than_sent_as_null(tmp_path: Path) -> None:
    config = _config(tmp_path, {"S": HS_SECRETS["HS256"]}, private_key="${S}", algorithm="HS256")
    token, _ = JwtSigner(config, wall=Clock()).sign()

    claims = jwt.decode(token, HS_SECRETS["HS256"].encode(), algorithms=["HS256"], options={"verify_iat": False})
    assert set(claims) == {"iat", "exp", "jti"}


def test_jti_is_unique_across_1000_signatures(tmp_path: Path) -> None:
    signer = _hs_signer(Clock(), tmp_path)
    jtis = {jwt.decode(signer.sign()[0], options={"verify_signature": False})["jti"] for _ in range(1000)}
    assert len(jtis) == 1000


def test_pem_in_an_env_var_with_escaped_newlines_is_accepted(tmp_path: Path, keys: dict[str, PrivateKeyTypes]) -> None:
    one_line = _pem(keys["rsa"]).strip().replace("\n", "\\n")
    config = _config(tmp_path, {"SERVICE_KEY": one_line}, private_key="${SERVICE_KEY}", issuer="i", audience="a")

    _verify(JwtSigner(config, wall=Clock()).sign()[0], _public(keys["rsa"]), "RS256", "a", "i")


# --- JwtSigner: keys and claims refused at construction -----------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "key_name", "expected"),
    [
        ("RS256", "p256", "RS256 needs an RSA private key, but private_key (file keys/p256.pem) is an EC key"),
        ("PS256", "ed25519", "PS256 needs an RSA private key, but private_key (file keys/ed25519.pem) is an Ed25519"),
        ("ES256", "rsa", "ES256 needs an EC private key on curve P-256, but private_key (file keys/rsa.pem) is an RSA"),
        (
            "ES256",
            "p384",
            "ES256 needs an EC private key on curve P-256, but private_key (file keys/p384.pem) is an EC",
        ),
        ("ES384", "p256", "ES384 needs an EC private key on curve P-384"),
    ],
)
def test_a_key_of_the_wrong_type_or_curve_is_refused(
    tmp_path: Path, key_file: dict[str, str], algorithm: str, key_name: str, expected: str
) -> None:
    config = _config(tmp_path, private_key=key_file[key_name], algorithm=algorithm)
    with pytest.raises(ValueError, match="^" + re.escape(expected)) as info:
        JwtSigner(config)
    assert "PRIVATE KEY" not in str(info.value)


def test_a_pem_key_for_an_hmac_algorithm_is_refused(tmp_path: Path, key_file: dict[str, str]) -> None:
    config = _config(tmp_path, private_key=key_file["rsa"], algorithm="HS256")
    with pytest.raises(ValueError, match=r"HS256 signs with a shared secret, but private_key \(file keys/rsa.pem\)"):
        JwtSigner(config)


@pytest.mark.parametrize(("algorithm", "length", "minimum"), [("HS256", 31, 32), ("HS384", 47, 48), ("HS512", 32, 64)])
def test_an_hmac_secret_shorter_than_the_hash_is_refused(
    tmp_path: Path, algorithm: str, length: int, minimum: int
) -> None:
    secret = "q" * length
    config = _config(tmp_path, {"HS_SECRET": secret}, private_key="${HS_SECRET}", algorithm=algorithm)
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"at least {minimum} bytes (RFC 7518 §3.2), but private_key (env var HS_SECRET) is {length} bytes"
        ),
    ) as info:
        JwtSigner(config)
    assert secret not in str(info.value)


def test_malformed_public_encrypted_and_small_keys_are_refused_without_showing_them(
    tmp_path: Path, keys: dict[str, PrivateKeyTypes]
) -> None:
    pem = _pem(keys["rsa"])
    body = pem.splitlines()[5]
    public = _public(keys["rsa"]).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The P-256 curve's OID with its last arc changed: a well-formed key on a curve cryptography does not know.
    p256_der = keys["p256"].private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    unknown_curve = p256_der.replace(bytes.fromhex("06082a8648ce3d030107"), bytes.fromhex("06082a8648ce3d030109"))
    unknown_pem = (
        "-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(unknown_curve).decode() + "-----END PRIVATE KEY-----"
    )
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - must be refused
    cases = {
        "truncated": (pem[: len(pem) // 2] + "\n-----END PRIVATE KEY-----", "cannot be parsed as a PEM private key"),
        "not-pem": ("just-a-shared-secret-that-is-long-enough", "is not a PEM private key"),
        "public": (public.decode(), "holds a public key or certificate"),
        "encrypted": (_pem(keys["rsa"], b"hunter22"), "is encrypted with a passphrase"),
        "unknown-curve": (unknown_pem, "a type this system's cryptography cannot load"),
        "small": (_pem(small), "at least 2048 bits .* has 1024"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / f"{name}.pem").write_text(text)
        config = _config(tmp_path, private_key=f"file:{name}.pem", algorithm="RS256")
        with pytest.raises(ValueError, match=expected) as info:
            JwtSigner(config)
        message = str(info.value)
        assert f"file {name}.pem" in message
        assert body not in message
        # The parser's own error is not chained: a traceback shows only tether's message.
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": 1}, "claims may not set exp: tether computes iat, exp and jti"),
        ({"iat": 1, "jti": "fixed"}, "claims may not set iat, jti"),
        ({"aud": ["a", "b"]}, "claims may not set aud: use 'audience' instead"),
        ({"iss": "x", "sub": "y"}, "claims may not set iss, sub: use 'issuer', 'subject' instead"),
    ],
)
def test_claims_may_not_override_computed_or_dedicated_claims(
    tmp_path: Path, claims: dict[str, Any], expected: str
) -> None:
    config = _config(tmp_path, {"S": HS_SECRETS["HS256"]}, private_key="${S}", algorithm="HS256", claims=claims)
    with pytest.raises(ValueError, match="^" + re.escape(expected)):
        JwtSigner(config)


def test_a_toml_datetime_claim_is_refused_at_construction(tmp_path: Path) -> None:
    config = parse_config(
        """
        [integrations.svc]
        base_url = "https://api.example.com"
        auth = { type = "jwt", private_key = "${S}", algorithm = "HS256", claims = { since = 2024-01-01 } }
        """,
        env={"S": HS_SECRETS["HS256"]},
        base_dir=tmp_path,
    )
    auth = config.integrations["svc"].auth
    assert isinstance(auth, JwtAuthConfig)
    with pytest.raises(ValueError, match="claims must be JSON values"):
        JwtSigner(auth)


def test_reprs_never_show_the_key_or_the_token(tmp_path: Path, keys: dict[str, PrivateKeyTypes]) -> None:
    pem = _pem(keys["rsa"])
    config = _config(tmp_path, {"SERVICE_KEY": pem}, private_key="${SERVICE_KEY}", key_id="k1")
    auth = SelfSignedJwtAuth(JwtSigner(config, wall=Clock()))
    request = next(auth.auth_flow(httpx2.Request("GET", URL)))
    token = request.headers["Authorization"].removeprefix("Bearer ")

    text = repr(auth)
    assert text == "SelfSignedJwtAuth(JwtSigner(algorithm='RS256', key=Secret('${SERVICE_KEY}'), kid='k1'))"
    assert token not in text
    assert pem.splitlines()[3] not in text


# --- SelfSignedJwtAuth: when tokens are re-signed ------------------------------------------------------------------


def _send(auth: SelfSignedJwtAuth) -> str:
    """The bearer token the flow puts on a request (no HTTP: the flow is a pure generator until a response)."""
    request = next(auth.auth_flow(httpx2.Request("GET", URL)))
    return request.headers["Authorization"].removeprefix("Bearer ")


@given(lifetime=st.integers(min_value=1, max_value=86400), elapsed=st.floats(min_value=-120, max_value=90000))
def test_a_cached_token_is_re_signed_exactly_when_the_rule_says(lifetime: int, elapsed: float) -> None:
    clock = Clock()
    config = JwtClaimsConfig.model_validate(
        {"private_key": "${S}", "algorithm": "HS256", "lifetime": lifetime}, context={"env": {"S": "s" * 32}}
    )
    signer = CountingSigner(config, wall=clock)
    auth = SelfSignedJwtAuth(signer)
    first = _send(auth)

    clock.now = T0 + elapsed
    second = _send(auth)

    margin = min(max(0.1 * lifetime, 60.0), lifetime / 2)
    due = clock.now < T0 or (T0 + lifetime) - clock.now < margin
    assert signer.signed == (2 if due else 1)
    assert (second != first) == due


def test_a_30s_token_is_re_signed_with_15s_left(tmp_path: Path) -> None:
    clock = Clock()
    signer = _hs_signer(clock, tmp_path, lifetime=30)
    auth = SelfSignedJwtAuth(signer)
    first = _send(auth)

    clock.now = T0 + 15
    assert _send(auth) == first
    clock.now = T0 + 15.001
    assert _send(auth) != first
    assert signer.signed == 2


def test_the_authorization_header_is_masked_by_name_and_tokens_are_not_registered(tmp_path: Path) -> None:
    auth = SelfSignedJwtAuth(_hs_signer(Clock(), tmp_path))
    request = next(auth.auth_flow(httpx2.Request("GET", URL)))
    token = request.headers["Authorization"].removeprefix("Bearer ")

    assert redact_headers(request.headers)["authorization"] == MASK
    assert redact_text(token) == token


# --- SelfSignedJwtAuth through a real client -----------------------------------------------------------------------


class Upstream:
    """A fake API that checks the bearer JWT and refuses the first ``refusals`` requests with a 401."""

    def __init__(self, key: Any, refusals: int = 0) -> None:
        self.key, self.refusals = key, refusals
        self.jtis: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        scheme, _, token = request.headers["Authorization"].partition(" ")
        assert scheme == "Bearer"
        claims = _verify(token, self.key, "RS256", AUDIENCE, "svc")
        with self._lock:
            self.jtis.append(claims["jti"])
            if self.refusals:
                self.refusals -= 1
                return httpx2.Response(401, json={"error": "invalid_token"})
        return httpx2.Response(200, json={"ok": True})


@pytest.fixture
def rs_signer(tmp_path: Path, key_file: dict[str, str]) -> CountingSigner:
    config = _config(tmp_path, private_key=key_file["rsa"], issuer="svc", audience=AUDIENCE)
    return CountingSigner(config, wall=Clock())


def test_a_401_re_signs_once_and_replays_once(rs_signer: CountingSigner, keys: dict[str, PrivateKeyTypes]) -> None:
    upstream = Upstream(_public(keys["rsa"]), refusals=1)
    with httpx2.Client(auth=SelfSignedJwtAuth(rs_signer), transport=httpx2.MockTransport(upstream)) as client:
        response = client.get(URL)
        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [401]
        assert client.get(URL).status_code == 200

    assert rs_signer.signed == 2
    assert len(upstream.jtis) == 3
    assert upstream.jtis[0] != upstream.jtis[1] == upstream.jtis[2]  # the replacement is cached for later calls


def test_a_second_401_is_returned_rather_than_retried(
    rs_signer: CountingSigner, keys: dict[str, PrivateKeyTypes]
) -> None:
    upstream = Upstream(_public(keys["rsa"]), refusals=5)
    with httpx2.Client(auth=SelfSignedJwtAuth(rs_signer), transport=httpx2.MockTransport(upstream)) as client:
        response = client.get(URL)

    assert response.status_code == 401
    assert len(upstream.jtis) == 2
    assert rs_signer.signed == 2


async def test_the_async_client_shares_the_flow(rs_signer: CountingSigner, keys: dict[str, PrivateKeyTypes]) -> None:
    upstream = Upstream(_public(keys["rsa"]), refusals=1)
    transport = httpx2.MockTransport(upstream)
    async with httpx2.AsyncClient(auth=SelfSignedJwtAuth(rs_signer), transport=transport) as client:
        first = await client.get(URL)
        second = await client.get(URL)

    assert (first.status_code, second.status_code) == (200, 200)
    assert rs_signer.signed == 2
    assert len(set(upstream.jtis)) == 2


def test_threads_at_the_expiry_boundary_sign_once(
    tmp_path: Path, key_file: dict[str, str], keys: dict[str, PrivateKeyTypes]
) -> None:
    clock = Clock()
    config = _config(tmp_path, private_key=key_file["rsa"], issuer="svc", audience=AUDIENCE)
    signer = CountingSigner(config, wall=clock)
    upstream = Upstream(_public(keys["rsa"]))
    client = httpx2.Client(auth=SelfSignedJwtAuth(signer), transport=httpx2.MockTransport(upstream))
    client.get(URL)
    clock.now = T0 + 300 - 60 + 0.001  # just inside the 60 s margin of a 5-minute token
    start = threading.Barrier(8)
    statuses: list[int] = []

    def worker() -> None:
        start.wait()
        mine = [client.get(URL).status_code for _ in range(100)]
        statuses.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()

    assert statuses == [200] * 800
    assert signer.signed == 2
    assert len(set(upstream.jtis)) == 2


def test_a_jwt_auth_table_builds_the_flow(tmp_path: Path, key_file: dict[str, str], keys: dict[str, Any]) -> None:
    config = parse_config(
        f"""
        [integrations.svc]
        base_url = "{AUDIENCE}"
        auth = {{ type = "jwt", private_key = "{key_file["rsa"]}", issuer = "svc", audience = "{AUDIENCE}" }}
        """,
        base_dir=tmp_path,
        env={},
    )
    auth_config = config.integrations["svc"].auth
    assert isinstance(auth_config, JwtAuthConfig)
    auth = SelfSignedJwtAuth.from_config(auth_config, wall=Clock())

    with httpx2.Client(auth=auth, transport=httpx2.MockTransport(Upstream(_public(keys["rsa"])))) as client:
        assert client.get(URL).status_code == 200


def test_an_algorithm_outside_the_schema_is_refused() -> None:
    """A config built without validation cannot smuggle in ``none``."""
    config = JwtClaimsConfig.model_construct(private_key=Secret("${S}", "s" * 32), algorithm=cast(Any, "none"))
    with pytest.raises(ValueError, match="unsupported JWT algorithm 'none'"):
        JwtSigner(config)

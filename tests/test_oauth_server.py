"""The loopback OAuth 2.0 authorization server (tests/oauth_server.py) behaves as the auth tests will rely on.

Plain httpx2 requests only: these tests prove the server, not tether.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from oauth_server import JWT_BEARER, OAuthClient, OAuthServer, SigningKeys, pkce_pair, sign_assertion


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=5.0) as client:
        yield client


def _token(http: httpx2.Client, server: OAuthServer, client: OAuthClient, **form: Any) -> httpx2.Response:
    """POST to the token endpoint, authenticating ``client`` with HTTP Basic."""
    assert client.client_secret is not None
    return http.post(server.token_url, data=form, auth=(client.client_id, client.client_secret))


def _me(http: httpx2.Client, server: OAuthServer, access_token: str, **params: str) -> httpx2.Response:
    return http.get(server.api_url, params=params, headers={"Authorization": f"Bearer {access_token}"})


def _authorize(http: httpx2.Client, server: OAuthServer, client: OAuthClient, **params: str) -> httpx2.Response:
    """The browser's leg: GET /authorize, which answers a redirect at once."""
    query = {"response_type": "code", "client_id": client.client_id, "state": "st-123", **params}
    return http.get(server.authorize_url, params=query)


def _code_flow(http: httpx2.Client, server: OAuthServer, client: OAuthClient) -> dict[str, Any]:
    """Run authorization code + PKCE for a public client and return the token response."""
    verifier, challenge = pkce_pair()
    redirect = _authorize(http, server, client, code_challenge=challenge, code_challenge_method="S256")
    code = parse_qs(urlsplit(redirect.headers["Location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "client_id": client.client_id, "code_verifier": verifier}
    response = http.post(server.token_url, data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _refresh(http: httpx2.Client, server: OAuthServer, client: OAuthClient, refresh_token: str) -> httpx2.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client.client_id}
    return http.post(server.token_url, data=form)


def test_client_credentials_with_basic_auth_issues_a_token_the_api_accepts(
    oauth_server: OAuthServer, http: httpx2.Client
) -> None:
    client = oauth_server.register_client(scope="read write")

    response = _token(http, oauth_server, client, grant_type="client_credentials", scope="read")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "read"
    assert token["expires_in"] == 3600
    assert "refresh_token" not in token
    me = _me(http, oauth_server, token["access_token"]).json()
    assert me["client_id"] == client.client_id
    assert me["scope"] == "read"
    assert me["grant_type"] == "client_credentials"
    [recorded] = oauth_server.token_requests
    assert (recorded.grant_type, recorded.auth_method, recorded.client_id) == (
        "client_credentials",
        "client_secret_basic",
        client.client_id,
    )
    assert recorded.status == 200


def test_client_credentials_with_post_auth_records_audience_and_resource_but_not_the_secret(
    oauth_server: OAuthServer, http: httpx2.Client
) -> None:
    client = oauth_server.register_client()
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "audience": "https://api.example.com",
        "resource": ["https://a.example.com", "https://b.example.com"],
    }

    response = http.post(oauth_server.token_url, data=form)

    assert response.status_code == 200, response.text
    [recorded] = oauth_server.token_requests
    assert recorded.auth_method == "client_secret_post"
    assert "client_secret" not in recorded.params
    assert recorded.params["audience"] == "https://api.example.com"
    assert recorded.params["resource"] == ["https://a.example.com", "https://b.example.com"]
    me = _me(http, oauth_server, response.json()["access_token"]).json()
    assert me["audience"] == "https://api.example.com"
    assert me["resource"] == ["https://a.example.com", "https://b.example.com"]


@pytest.mark.parametrize(
    ("form", "auth", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, ("client-x", "wrong"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "scope": "admin"}, "ok", 400, "invalid_scope"),
        ({"grant_type": "password", "username": "a", "password": "b"}, "ok", 400, "unsupported_grant_type"),
    ],
    ids=["wrong-secret", "no-credentials", "scope-beyond-client", "unsupported-grant"],
)
def test_token_endpoint_answers_spec_errors(
    oauth_server: OAuthServer, http: httpx2.Client, form: dict[str, str], auth: Any, status: int, error: str
) -> None:
    client = oauth_server.register_client(client_id="client-x", scope="read")
    if auth == "ok":
        auth = (client.client_id, client.client_secret)

    response = http.post(oauth_server.token_url, data=form, auth=auth)

    assert (response.status_code, response.json()["error"]) == (status, error)


def test_authorization_code_with_pkce_gives_a_public_client_access_and_refresh_tokens(
    oauth_server: OAuthServer, http: httpx2.Client
) -> None:
    client = oauth_server.register_client(public=True, scope="read")
    verifier, challenge = pkce_pair()

    redirect = _authorize(http, oauth_server, client, code_challenge=challenge, code_challenge_method="S256")
    assert redirect.status_code == 302
    callback = http.get(redirect.headers["Location"]).json()  # the browser following the redirect
    assert callback["state"] == "st-123"
    form = {
        "grant_type": "authorization_code",
        "code": callback["code"],
        "client_id": client.client_id,
        "code_verifier": verifier,
    }
    response = http.post(oauth_server.token_url, data=form)

    assert response.status_code == 200, response.text
    token = response.json()
    assert token["refresh_token"]
    me = _me(http, oauth_server, token["access_token"]).json()
    assert (me["client_id"], me["sub"], me["scope"]) == (client.client_id, "alice", "read")
    assert oauth_server.token_requests[0].auth_method == "none"


@pytest.mark.parametrize(
    "challenge_params",
    [{}, {"code_challenge": "x" * 43, "code_challenge_method": "plain"}],
    ids=["no-challenge", "plain-method"],
)
def test_a_public_client_must_use_pkce_s256(
    oauth_server: OAuthServer, http: httpx2.Client, challenge_params: dict[str, str]
) -> None:
    client = oauth_server.register_client(public=True)

    redirect = _authorize(http, oauth_server, client, **challenge_params)

    assert redirect.status_code == 302
    error = parse_qs(urlsplit(redirect.headers["Location"]).query)
    assert error["error"] == ["invalid_request"]
    assert error["state"] == ["st-123"]


def test_a_wrong_code_verifier_and_a_reused_code_are_invalid_grant(
    oauth_server: OAuthServer, http: httpx2.Client
) -> None:
    client = oauth_server.register_client(public=True)
    verifier, challenge = pkce_pair()
    redirect = _authorize(http, oauth_server, client, code_challenge=challenge, code_challenge_method="S256")
    code = parse_qs(urlsplit(redirect.headers["Location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "client_id": client.client_id}

    wrong = http.post(oauth_server.token_url, data={**form, "code_verifier": pkce_pair()[0]})
    first = http.post(oauth_server.token_url, data={**form, "code_verifier": verifier})
    again = http.post(oauth_server.token_url, data={**form, "code_verifier": verifier})

    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert first.status_code == 200
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    # RFC 6749 §4.1.2: replaying a code revokes what it issued.
    assert _me(http, oauth_server, first.json()["access_token"]).status_code == 401


def test_refresh_rotates_the_refresh_token_and_revokes_the_old_one(
    oauth_server: OAuthServer, http: httpx2.Client
) -> None:
    client = oauth_server.register_client(public=True)
    first = _code_flow(http, oauth_server, client)

    second = _refresh(http, oauth_server, client, first["refresh_token"]).json()
    third = _refresh(http, oauth_server, client, second["refresh_token"]).json()

    assert len({first["refresh_token"], second["refresh_token"], third["refresh_token"]}) == 3
    assert _me(http, oauth_server, third["access_token"]).status_code == 200
    assert oauth_server.token_request_count("refresh_token") == 2
    assert oauth_server.token_request_count() == 3


def test_reusing_a_rotated_refresh_token_revokes_the_whole_grant_family(
    oauth_server: OAuthServer, http: httpx2.Client
) -> None:
    client = oauth_server.register_client(public=True)
    first = _code_flow(http, oauth_server, client)
    second = _refresh(http, oauth_server, client, first["refresh_token"]).json()

    reuse = _refresh(http, oauth_server, client, first["refresh_token"])

    assert (reuse.status_code, reuse.json()["error"]) == (400, "invalid_grant")
    assert _refresh(http, oauth_server, client, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert _me(http, oauth_server, second["access_token"]).status_code == 401
    assert oauth_server.stats()["refresh_reuse_detected"] >= 1


def test_two_concurrent_refreshes_with_one_token_trip_reuse_detection(
    oauth_server: OAuthServer, http: httpx2.Client
) -> None:
    """What a client without single-flight renewal runs into: one refresh wins, then the family is revoked."""
    client = oauth_server.register_client(public=True)
    refresh_token = _code_flow(http, oauth_server, client)["refresh_token"]
    oauth_server.token_delay = 0.2

    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda _: _refresh(http, oauth_server, client, refresh_token), range(2)))

    assert sorted(r.status_code for r in responses) == [200, 400]
    assert oauth_server.stats()["token_max_in_flight"] == 2
    winner = next(r for r in responses if r.status_code == 200).json()
    oauth_server.token_delay = 0
    assert _refresh(http, oauth_server, client, winner["refresh_token"]).json()["error"] == "invalid_grant"


def test_client_credentials_issue_a_refresh_token_only_when_asked(
    oauth_server: OAuthServer, http: httpx2.Client
) -> None:
    plain = oauth_server.register_client()
    refreshing = oauth_server.register_client(client_credentials_refresh=True)

    without = _token(http, oauth_server, plain, grant_type="client_credentials").json()
    with_refresh = _token(http, oauth_server, refreshing, grant_type="client_credentials").json()
    refreshed = _token(
        http, oauth_server, refreshing, grant_type="refresh_token", refresh_token=with_refresh["refresh_token"]
    )

    assert "refresh_token" not in without
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] != with_refresh["refresh_token"]


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_jwt_bearer_grant_accepts_an_assertion_signed_with_the_registered_key(
    oauth_server: OAuthServer, http: httpx2.Client, alg: str
) -> None:
    client = oauth_server.register_client(jwt_subjects=["svc@example.com"])
    key = oauth_server.rsa_key if alg == "RS256" else oauth_server.ec_key
    assertion = sign_assertion(
        key, issuer=client.client_id, subject="svc@example.com", audience=oauth_server.token_url, alg=alg
    )

    response = http.post(oauth_server.token_url, data={"grant_type": JWT_BEARER, "assertion": assertion})

    assert response.status_code == 200, response.text
    me = _me(http, oauth_server, response.json()["access_token"]).json()
    assert (me["client_id"], me["sub"], me["grant_type"]) == (client.client_id, "svc@example.com", JWT_BEARER)
    assert oauth_server.token_requests[0].client_id == client.client_id


def _other_ec_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    "change",
    [
        {"audience": "https://someone-else.example.com/token"},
        {"exp": int(time.time()) - 3600},
        {"subject": "mallory@example.com"},
        {"issuer": "no-such-client"},
        {"omit": ["jti"]},
        {"key": "other"},
        {"kid": "no-such-kid"},
    ],
    ids=["wrong-aud", "expired", "unknown-sub", "unknown-iss", "no-jti", "wrong-key", "unknown-kid"],
)
def test_jwt_bearer_grant_rejects_a_bad_assertion(
    oauth_server: OAuthServer, http: httpx2.Client, change: dict[str, Any]
) -> None:
    client = oauth_server.register_client()
    key = _other_ec_key() if change.pop("key", None) == "other" else oauth_server.ec_key
    claims: dict[str, Any] = {"issuer": client.client_id, "audience": oauth_server.token_url, **change}

    assertion = sign_assertion(key, alg="ES256", **claims)
    response = http.post(oauth_server.token_url, data={"grant_type": JWT_BEARER, "assertion": assertion})

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_jwt_bearer_grant_rejects_a_replayed_jti(oauth_server: OAuthServer, http: httpx2.Client) -> None:
    client = oauth_server.register_client()
    assertion = sign_assertion(oauth_server.rsa_key, issuer=client.client_id, audience=oauth_server.url)
    form = {"grant_type": JWT_BEARER, "assertion": assertion}

    first, replay = http.post(oauth_server.token_url, data=form), http.post(oauth_server.token_url, data=form)

    assert first.status_code == 200
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")


def test_api_challenges_missing_invalid_and_under_scoped_tokens(oauth_server: OAuthServer, http: httpx2.Client) -> None:
    client = oauth_server.register_client(scope="read write")
    token = _token(http, oauth_server, client, grant_type="client_credentials", scope="read").json()

    missing = http.get(oauth_server.api_url)
    unknown = _me(http, oauth_server, "not-a-token")
    under_scoped = _me(http, oauth_server, token["access_token"], scope="write")

    assert (missing.status_code, missing.headers["WWW-Authenticate"]) == (401, 'Bearer realm="oauth-server"')
    assert unknown.status_code == 401
    assert unknown.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert (under_scoped.status_code, under_scoped.json()["error"]) == (403, "insufficient_scope")
    assert oauth_server.stats()["api_requests"] == 3


def test_expire_all_access_tokens_and_a_short_lifetime_both_expire_tokens(
    oauth_server: OAuthServer, http: httpx2.Client
) -> None:
    client = oauth_server.register_client(client_credentials_refresh=True)
    token = _token(http, oauth_server, client, grant_type="client_credentials").json()

    oauth_server.expire_all_access_tokens()
    expired = _me(http, oauth_server, token["access_token"])
    oauth_server.expires_in = 1
    short = _token(http, oauth_server, client, grant_type="refresh_token", refresh_token=token["refresh_token"])

    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert short.json()["expires_in"] == 1
    assert _me(http, oauth_server, short.json()["access_token"]).status_code == 200


@pytest.mark.slow
def test_a_token_with_a_one_second_lifetime_expires_on_its_own(oauth_server: OAuthServer, http: httpx2.Client) -> None:
    oauth_server.expires_in = 1
    client = oauth_server.register_client()
    token = _token(http, oauth_server, client, grant_type="client_credentials").json()["access_token"]

    deadline = time.monotonic() + 3
    while _me(http, oauth_server, token).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)

    assert _me(http, oauth_server, token).status_code == 401


@pytest.mark.parametrize("revoke", ["grant", "all"])
def test_revoked_grants_answer_invalid_grant_on_refresh(
    oauth_server: OAuthServer, http: httpx2.Client, revoke: str
) -> None:
    client = oauth_server.register_client(public=True)
    token = _code_flow(http, oauth_server, client)

    if revoke == "grant":
        oauth_server.revoke_grant(token["access_token"])
    else:
        oauth_server.revoke_all()

    assert _refresh(http, oauth_server, client, token["refresh_token"]).json()["error"] == "invalid_grant"
    assert _me(http, oauth_server, token["access_token"]).status_code == 401


def test_fail_next_answers_transient_errors_then_recovers(oauth_server: OAuthServer, http: httpx2.Client) -> None:
    client = oauth_server.register_client()
    oauth_server.fail_next(2, status=503, retry_after=1)

    statuses = [_token(http, oauth_server, client, grant_type="client_credentials") for _ in range(3)]

    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "1"
    assert statuses[0].json()["error"] == "temporarily_unavailable"
    assert [r.status for r in oauth_server.token_requests] == [503, 503, 200]
    assert oauth_server.token_request_count("client_credentials") == 3


def test_token_delay_makes_concurrent_requests_overlap(oauth_server: OAuthServer, http: httpx2.Client) -> None:
    client = oauth_server.register_client()
    oauth_server.token_delay = 0.2

    with ThreadPoolExecutor(3) as pool:
        responses = list(
            pool.map(lambda _: _token(http, oauth_server, client, grant_type="client_credentials"), range(3))
        )

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert oauth_server.stats()["token_max_in_flight"] == 3
    requests = oauth_server.token_requests
    assert max(r.started for r in requests) < min(r.finished for r in requests)


def test_stats_are_readable_from_another_process(oauth_server: OAuthServer) -> None:
    client = oauth_server.register_client()
    script = (
        "import json, sys, httpx2\n"
        "url, token_url, cid, secret = sys.argv[1:]\n"
        "httpx2.post(token_url, data={'grant_type': 'client_credentials'}, auth=(cid, secret))\n"
        "print(json.dumps(httpx2.get(url + '/_stats').json()))\n"
    )

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            oauth_server.url,
            oauth_server.token_url,
            client.client_id,
            client.client_secret,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    stats = json.loads(result.stdout)
    assert stats["token_requests_by_grant_type"] == {"client_credentials": 1}
    assert stats["requests"][0]["auth_method"] == "client_secret_basic"
    assert oauth_server.token_request_count() == 1


def test_server_starts_fast_and_stops_without_leaving_threads(oauth_signing_keys: SigningKeys) -> None:
    before = set(threading.enumerate())
    started = time.perf_counter()
    server = OAuthServer(keys=oauth_signing_keys, token_delay=5).start()
    startup = time.perf_counter() - started
    client = server.register_client()
    assert client.client_secret is not None
    auth = (client.client_id, client.client_secret)

    def stuck_request() -> None:
        with contextlib.suppress(httpx2.HTTPError):  # the server may cut it off
            httpx2.post(server.token_url, data={"grant_type": "client_credentials"}, auth=auth)

    # A request stuck in the token delay must not hold up shutdown.
    worker = threading.Thread(target=stuck_request)
    worker.start()
    deadline = time.monotonic() + 5
    while server.stats()["token_in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    stopping = time.perf_counter()
    server.close()
    worker.join(5)

    assert startup < 0.5
    assert time.perf_counter() - stopping < 1.0
    assert set(threading.enumerate()) <= before
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(server.url + "/_stats")

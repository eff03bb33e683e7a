"""OAuth 2.0 through real tether clients against a real authorization server (Authlib, tests/oauth_server.py).

Grants, rotation, renewal ahead of expiry and on a 401, revocation, transient token-endpoint failures, storage
at rest, and single flight across asyncio tasks, threads and processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.fernet import Fernet

import tether
from oauth_server import OAuthClient, OAuthServer
from store_fixtures import PostgresSpace
from tether.auth.tokens import Sealer, TokenSet, TokenStore, renew_margin
from tether.config import parse_config
from tether.policies import ManualClock
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SqliteStore


def make_hub(
    server: OAuthServer,
    client: OAuthClient,
    tmp_path: Path,
    *,
    auth: str = "",
    env: dict[str, str] | None = None,
    clock: ManualClock | None = None,
) -> tether.Hub:
    secret = {"CRM_SECRET": client.client_secret} if client.client_secret else {}
    text = f"""
[integrations.crm]
base_url = "{server.url}"
retry = {{ attempts = 1 }}
[integrations.crm.auth]
type = "oauth2"
token_url = "{server.token_url}"
client_id = "{client.client_id}"
{'client_secret = "${CRM_SECRET}"' if client.client_secret else 'client_auth = "none"'}
{auth}
"""
    config = parse_config(text, env={**secret, **(env or {})}, base_dir=tmp_path)
    return tether.Hub(config, base_dir=tmp_path, clock=clock, sleep=lambda _: None)


def me(hub: tether.Hub, **kwargs: Any) -> httpx2.Response:
    with hub.client("crm", **kwargs) as client:
        return client.get("/api/me")


def stored(hub: tether.Hub) -> TokenSet:
    tokens = hub.token_manager("crm").stored()
    assert tokens is not None
    return tokens


def refresh_token_for(server: OAuthServer, client: OAuthClient) -> str:
    """A refresh token from a client-credentials grant, obtained by hand (the seed a user would paste)."""
    assert client.client_secret is not None
    response = httpx2.post(
        server.token_url, data={"grant_type": "client_credentials"}, auth=(client.client_id, client.client_secret)
    )
    token: str = response.json()["refresh_token"]
    server.reset_stats()
    return token


# --- grants -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_gets_one_token_and_reuses_it(
    oauth_server: OAuthServer, tmp_path: Path, method: str
) -> None:
    client = oauth_server.register_client()
    with make_hub(oauth_server, client, tmp_path, auth=f'client_auth = "{method}"\nscopes = ["read"]') as hub:
        for _ in range(3):
            response = me(hub)
            assert response.status_code == 200
        assert response.json()["client_id"] == client.client_id
        assert response.json()["scope"] == "read"
    assert [(r.grant_type, r.auth_method) for r in oauth_server.token_requests] == [("client_credentials", method)]


def test_audience_resource_and_extra_params_reach_the_token_endpoint(oauth_server: OAuthServer, tmp_path: Path) -> None:
    client = oauth_server.register_client()
    auth = 'audience = "https://api.crm.test"\nresource = "https://api.crm.test/v2"\nparams = { tenant = "t1" }'
    with make_hub(oauth_server, client, tmp_path, auth=auth) as hub:
        body = me(hub).json()
    assert (body["audience"], body["resource"]) == ("https://api.crm.test", ["https://api.crm.test/v2"])
    assert oauth_server.token_requests[0].params["tenant"] == "t1"


def test_the_jwt_bearer_grant_signs_an_assertion_instead_of_a_secret(oauth_server: OAuthServer, tmp_path: Path) -> None:
    client = oauth_server.register_client(jwt_subjects=["svc@crm"])
    (tmp_path / "svc.pem").write_text(oauth_server.rsa_key)
    auth = f"""grant = "jwt_bearer"
assertion = {{ private_key = "file:svc.pem", key_id = "test-rsa", subject = "svc@crm", issuer = "{client.client_id}" }}
"""
    with make_hub(oauth_server, client, tmp_path, auth=auth) as hub:
        response = me(hub)
    assert response.status_code == 200
    assert response.json()["sub"] == "svc@crm"
    assert oauth_server.token_requests[0].grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer"


# --- refresh tokens: rotation, the seed, revocation ------------------------------------------------------------


def test_a_rotated_refresh_token_replaces_the_seed_in_the_store(oauth_server: OAuthServer, tmp_path: Path) -> None:
    client = oauth_server.register_client(client_credentials_refresh=True)
    seed = refresh_token_for(oauth_server, client)
    auth = 'grant = "refresh_token"\nrefresh_token = "${CRM_REFRESH}"'
    with make_hub(oauth_server, client, tmp_path, auth=auth, env={"CRM_REFRESH": seed}) as hub:
        assert me(hub).status_code == 200
        first = stored(hub).refresh_token
        assert first not in (None, seed)
        oauth_server.expire_all_access_tokens()
        assert me(hub).status_code == 200  # 401 → refresh with the rotated token → replay
        assert stored(hub).refresh_token not in (None, first)
    # The seed was used once; every later refresh used the token the previous one rotated in.
    assert oauth_server.token_request_count("refresh_token") == 2
    assert oauth_server.stats()["refresh_reuse_detected"] == 0


def test_a_revoked_grant_raises_grant_revoked_with_what_to_do(
    oauth_server: OAuthServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = oauth_server.register_client(client_credentials_refresh=True)
    seed = refresh_token_for(oauth_server, client)
    auth = 'grant = "refresh_token"\nrefresh_token = "${CRM_REFRESH}"'
    with make_hub(oauth_server, client, tmp_path, auth=auth, env={"CRM_REFRESH": seed}) as hub:
        assert me(hub).status_code == 200
        oauth_server.revoke_all()
        with caplog.at_level(logging.ERROR, logger="tether"), pytest.raises(tether.GrantRevokedError) as caught:
            me(hub)
        assert stored(hub).revoked
        with pytest.raises(tether.LoginRequiredError):  # no second refresh with the revoked token
            me(hub)
    assert "revoked" in str(caught.value)
    assert "CRM_REFRESH" in caught.value.hint
    assert [getattr(r, "tether", {}).get("state") for r in caplog.records] == ["grant_revoked"]
    assert oauth_server.token_request_count("refresh_token") == 2


# --- renewal ---------------------------------------------------------------------------------------------------


def test_a_401_from_the_api_renews_once_and_replays_once(oauth_server: OAuthServer, tmp_path: Path) -> None:
    client = oauth_server.register_client()
    with make_hub(oauth_server, client, tmp_path) as hub:
        assert me(hub).status_code == 200
        oauth_server.expire_all_access_tokens()
        assert me(hub).status_code == 200
    assert oauth_server.token_request_count() == 2
    assert oauth_server.stats()["api_requests"] == 3


@pytest.mark.parametrize("raising", [False, True])
def test_a_client_that_raises_for_errors_still_replays_after_a_401(
    oauth_server: OAuthServer, tmp_path: Path, raising: bool
) -> None:
    client = oauth_server.register_client()
    with make_hub(oauth_server, client, tmp_path) as hub:
        assert me(hub, raise_for_status=raising).status_code == 200
        oauth_server.expire_all_access_tokens()
        assert me(hub, raise_for_status=raising).status_code == 200
    assert oauth_server.token_request_count() == 2


async def test_an_async_client_that_raises_for_errors_replays_after_a_401(
    oauth_server: OAuthServer, tmp_path: Path
) -> None:
    client = oauth_server.register_client()
    with make_hub(oauth_server, client, tmp_path) as hub:
        async with hub.async_client("crm", raise_for_status=True) as http:
            assert (await http.get("/api/me")).status_code == 200
            oauth_server.expire_all_access_tokens()
            assert (await http.get("/api/me")).status_code == 200
    assert oauth_server.token_request_count() == 2


def test_a_raising_client_raises_when_the_replay_is_refused_too(oauth_server: OAuthServer, tmp_path: Path) -> None:
    client = oauth_server.register_client()
    with make_hub(oauth_server, client, tmp_path) as hub, pytest.raises(tether.AuthenticationError):
        me(hub, raise_for_status=True, network=httpx2.MockTransport(lambda request: httpx2.Response(401)))
    assert oauth_server.token_request_count() == 2


def test_an_api_that_keeps_answering_401_gets_one_replay_not_a_loop(oauth_server: OAuthServer, tmp_path: Path) -> None:
    client = oauth_server.register_client()
    calls = []

    def always_401(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.headers["Authorization"])
        return httpx2.Response(401)

    with make_hub(oauth_server, client, tmp_path) as hub:
        assert me(hub, network=httpx2.MockTransport(always_401)).status_code == 401
    assert len(calls) == 2
    assert calls[0] != calls[1]
    assert oauth_server.token_request_count() == 2


def test_a_token_is_renewed_ahead_of_expiry(oauth_server: OAuthServer, tmp_path: Path) -> None:
    oauth_server.expires_in = 600
    clock = ManualClock()
    client = oauth_server.register_client()
    with make_hub(oauth_server, client, tmp_path, clock=clock) as hub:
        me(hub)
        clock.advance(600 - renew_margin(600) - 1)
        me(hub)
        assert oauth_server.token_request_count() == 1
        clock.advance(2)  # inside the margin: renewed before the API could refuse it
        me(hub)
    assert oauth_server.token_request_count() == 2
    assert oauth_server.stats()["api_requests"] == 3


def test_renew_before_overrides_the_margin(oauth_server: OAuthServer, tmp_path: Path) -> None:
    clock = ManualClock()
    client = oauth_server.register_client()
    with make_hub(oauth_server, client, tmp_path, auth='renew_before = "59m"', clock=clock) as hub:
        me(hub)
        clock.advance(61)
        me(hub)
    assert oauth_server.token_request_count() == 2


def test_a_transient_token_endpoint_failure_is_retried(oauth_server: OAuthServer, tmp_path: Path) -> None:
    client = oauth_server.register_client()
    oauth_server.fail_next(2, status=503)
    with make_hub(oauth_server, client, tmp_path) as hub:
        assert me(hub).status_code == 200
    assert [r.status for r in oauth_server.token_requests] == [503, 503, 200]


def test_a_token_endpoint_down_keeps_a_still_valid_token_and_the_refresh_token(
    oauth_server: OAuthServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    client = oauth_server.register_client(client_credentials_refresh=True)
    seed = refresh_token_for(oauth_server, client)
    auth = 'grant = "refresh_token"\nrefresh_token = "${CRM_REFRESH}"'
    with make_hub(oauth_server, client, tmp_path, auth=auth, env={"CRM_REFRESH": seed}, clock=clock) as hub:
        me(hub)
        before = stored(hub)
        clock.advance(3600 - 100)  # inside the renewal margin, not expired
        oauth_server.fail_next(3, status=503)
        with caplog.at_level(logging.WARNING, logger="tether"):
            assert me(hub).status_code == 200  # the current token, still valid
        assert stored(hub) == before  # the refresh token was not discarded
        assert any(getattr(r, "tether", {}).get("state") == "renew_failed" for r in caplog.records)
        clock.advance(200)  # expired now, and the endpoint answers again
        assert me(hub).status_code == 200
    assert oauth_server.stats()["refresh_reuse_detected"] == 0


def test_a_token_endpoint_down_with_no_valid_token_raises(oauth_server: OAuthServer, tmp_path: Path) -> None:
    client = oauth_server.register_client()
    oauth_server.fail_next(3, status=500)
    with make_hub(oauth_server, client, tmp_path) as hub, pytest.raises(tether.TokenEndpointError) as caught:
        me(hub)
    assert "failed 3 times" in str(caught.value)


def test_a_wrong_client_secret_names_where_it_comes_from(oauth_server: OAuthServer, tmp_path: Path) -> None:
    client = dataclasses.replace(oauth_server.register_client(), client_secret="not-the-secret")
    with make_hub(oauth_server, client, tmp_path) as hub, pytest.raises(tether.TokenEndpointError) as caught:
        me(hub)
    assert caught.value.error == "invalid_client"
    assert "env var CRM_SECRET" in caught.value.hint
    assert "not-the-secret" not in str(caught.value)


# --- single flight -----------------------------------------------------------------------------------------------


def expire_stored_token(hub: tether.Hub) -> None:
    """Leave an expired token set in the store, as a process that ran an hour ago would."""
    manager = hub.token_manager("crm")
    manager.store_tokens(TokenSet("expired", expires_at=1.0, obtained_at=0.0))
    manager._cached = None


async def test_fifty_concurrent_async_calls_on_an_expired_token_make_one_token_request(
    oauth_server: OAuthServer, tmp_path: Path
) -> None:
    oauth_server.token_delay = 0.2
    client = oauth_server.register_client()
    with make_hub(oauth_server, client, tmp_path) as hub:
        expire_stored_token(hub)
        async with hub.async_client("crm") as http:
            responses = await asyncio.gather(*(http.get("/api/me") for _ in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert oauth_server.token_request_count() == 1


def test_eight_threads_on_an_expired_token_make_one_token_request(oauth_server: OAuthServer, tmp_path: Path) -> None:
    oauth_server.token_delay = 0.2
    client = oauth_server.register_client()
    statuses: list[int] = []
    with make_hub(oauth_server, client, tmp_path) as hub:
        expire_stored_token(hub)
        barrier = threading.Barrier(8)

        def work() -> None:
            barrier.wait()
            statuses.append(me(hub).status_code)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [200] * 8
    assert oauth_server.token_request_count() == 1


PROCESS = textwrap.dedent(
    """
    import asyncio, sys, time
    import tether
    start = float(sys.argv[1])
    hub = tether.Hub.from_config(sys.argv[2])
    time.sleep(max(0.0, start - time.time()))
    with hub, hub.client("crm") as client:
        print(client.get("/api/me").status_code)
    """
)


@pytest.mark.slow
def test_four_processes_on_an_expired_token_make_one_token_request(oauth_server: OAuthServer, tmp_path: Path) -> None:
    oauth_server.token_delay = 0.5
    client = oauth_server.register_client()
    config = tmp_path / "tether.toml"
    config.write_text(
        f"""
[integrations.crm]
base_url = "{oauth_server.url}"
[integrations.crm.auth]
type = "oauth2"
token_url = "{oauth_server.token_url}"
client_id = "{client.client_id}"
client_secret = "${{CRM_SECRET}}"
"""
    )
    env = {"CRM_SECRET": client.client_secret or "", "PATH": "/usr/bin:/bin"}
    with tether.Hub(parse_config(config.read_text(), env=env), base_dir=tmp_path) as hub:
        expire_stored_token(hub)
    import time

    start = time.time() + 2.0  # every process has imported tether by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, str(start), str(config)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60)[0].strip() for process in processes]
    assert outputs == ["200"] * 4
    assert oauth_server.token_request_count() == 1


# --- at rest --------------------------------------------------------------------------------------------------


def test_tokens_are_encrypted_at_rest_with_tether_secret_key(
    oauth_server: OAuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_SECRET_KEY", Fernet.generate_key().decode())
    client = oauth_server.register_client()
    with make_hub(oauth_server, client, tmp_path) as hub:
        me(hub)
        token = stored(hub).access_token
    raw = sqlite3.connect(tmp_path / "tether.db").execute("SELECT data FROM tether_tokens").fetchone()[0]
    assert token.encode() not in raw
    assert raw.startswith(b"fernet:")
    monkeypatch.setenv("TETHER_SECRET_KEY", Fernet.generate_key().decode())
    with make_hub(oauth_server, client, tmp_path) as hub, pytest.raises(tether.AuthError) as caught:
        me(hub)
    assert "another TETHER_SECRET_KEY" in str(caught.value)


def test_no_token_or_secret_reaches_the_logs_or_reprs(
    oauth_server: OAuthServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = oauth_server.register_client()
    with caplog.at_level(logging.DEBUG), make_hub(oauth_server, client, tmp_path) as hub:
        me(hub)
        oauth_server.expire_all_access_tokens()
        me(hub)
        tokens = stored(hub)
        logs = [
            r.getMessage() + str(getattr(r, "tether", ""))
            for r in caplog.records
            if r.name.startswith(("tether", "httpx"))
        ]
        texts = [*logs, repr(hub.auth("crm")), repr(tokens), repr(hub.token_manager("crm").endpoint.config)]
    for text in texts:
        assert tokens.access_token not in text
        assert str(client.client_secret) not in text


def test_the_store_lease_is_exclusive_and_released(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    tokens = TokenStore(store)
    assert tokens.try_lease("token:x", "a", ttl=30)
    assert not tokens.try_lease("token:x", "b", ttl=30)
    tokens.release("token:x", "a")
    assert tokens.try_lease("token:x", "b", ttl=30)
    assert tokens.try_lease("token:y", "c", ttl=-1)  # an expired lease is taken over
    assert tokens.try_lease("token:y", "d", ttl=30)
    store.close()


# --- PostgreSQL: the store several machines share --------------------------------------------------------------


def test_a_postgresql_store_keeps_tokens_and_leases(postgres: PostgresSpace) -> None:
    first, second = PostgresStore(postgres.url), PostgresStore(postgres.url)  # two processes, in effect
    try:
        a, b = TokenStore(first, sealer=Sealer(None)), TokenStore(second, sealer=Sealer(None))
        a.save("crm", TokenSet("t1", refresh_token="r1", expires_at=2e9, obtained_at=1e9))
        a.save("crm", TokenSet("t2", refresh_token="r2", expires_at=2e9, obtained_at=1e9))  # a rotation
        loaded = b.load("crm")
        assert loaded is not None
        assert (loaded.access_token, loaded.refresh_token) == ("t2", "r2")
        assert a.try_lease("token:crm", "a", ttl=30)
        assert not b.try_lease("token:crm", "b", ttl=30)
        a.release("token:crm", "a")
        assert b.try_lease("token:crm", "b", ttl=30)
        b.delete("crm")
        assert a.load("crm") is None
    finally:
        first.close()
        second.close()


def test_oauth_through_a_hub_on_a_postgresql_store(
    oauth_server: OAuthServer, tmp_path: Path, postgres: PostgresSpace
) -> None:
    client = oauth_server.register_client()
    config = make_hub(oauth_server, client, tmp_path).config.model_copy(update={"store": postgres.url})
    with tether.Hub(config, base_dir=tmp_path) as hub:
        assert me(hub).status_code == 200
    with tether.Hub(config, base_dir=tmp_path) as hub:  # a new process finds the token in PostgreSQL
        assert me(hub).status_code == 200
    assert oauth_server.token_request_count() == 1
    assert postgres.rows("SELECT count(*) FROM tether_tokens") == [(1,)]

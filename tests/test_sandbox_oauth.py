"""The sandbox's OAuth 2.0 token endpoint, and a tether integration renewing its tokens against it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import pytest

import tether
from tether.config.loader import parse_config
from tether.sandbox import SandboxServer
from tether.sandbox.oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

CLIENT = (SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET)


def issued(sandbox: SandboxServer) -> int:
    count: int = httpx2.get(f"{sandbox.url}/oauth/stats").json()["tokens_issued"]
    return count


def test_client_credentials_token_is_accepted_by_the_api_until_it_expires(sandbox: SandboxServer) -> None:
    answer = httpx2.post(
        f"{sandbox.url}/oauth/token", data={"grant_type": "client_credentials", "expires_in": "1"}, auth=CLIENT
    )
    assert answer.status_code == 200
    body = answer.json()
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 1)
    assert answer.headers["Cache-Control"] == "no-store"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx2.get(f"{sandbox.url}/v1/customers", headers=bearer).status_code == 200
    time.sleep(1.1)
    expired = httpx2.get(f"{sandbox.url}/v1/customers", headers=bearer)
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]


def test_client_secret_post_is_accepted_too(sandbox: SandboxServer) -> None:
    form = {"grant_type": "client_credentials", "client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET}
    assert httpx2.post(f"{sandbox.url}/oauth/token", data=form).status_code == 200


@pytest.mark.parametrize(
    ("form", "auth", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, (SANDBOX_CLIENT_ID, "wrong"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "password"}, CLIENT, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "expires_in": "0"}, CLIENT, 400, "invalid_request"),
        ({"grant_type": "client_credentials", "expires_in": "x"}, CLIENT, 400, "invalid_request"),
    ],
)
def test_token_errors_follow_rfc_6749(
    sandbox: SandboxServer, form: dict[str, str], auth: tuple[str, str] | None, status: int, error: str
) -> None:
    before = issued(sandbox)
    answer = httpx2.post(f"{sandbox.url}/oauth/token", data=form, auth=auth)
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    assert issued(sandbox) == before


def test_a_tether_integration_renews_ahead_of_expiry_against_the_sandbox(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    text = f"""
store = "sqlite:///:memory:"
[integrations.sbx]
base_url = "{sandbox.url}"
[integrations.sbx.auth]
type = "oauth2"
token_url = "{sandbox.url}/oauth/token"
client_id = "{SANDBOX_CLIENT_ID}"
client_secret = "${{SECRET}}"
params = {{ expires_in = "2" }}
"""
    config = parse_config(text, env={"SECRET": SANDBOX_CLIENT_SECRET}, base_dir=tmp_path)
    before = issued(sandbox)
    with tether.Hub(config, base_dir=tmp_path) as hub, hub.client("sbx", raise_for_status=True) as client:
        client.get("/v1/customers")
        client.get("/v1/customers")
        assert issued(sandbox) - before == 1, "the second call reuses the token"
        time.sleep(1.2)  # under half of the 2 s lifetime remains: renewed before the API could refuse it
        client.get("/v1/customers")
        assert issued(sandbox) - before == 2

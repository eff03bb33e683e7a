"""``tether auth login|status|reset`` against the real loopback authorization server (tests/oauth_server.py).

``login`` runs as the installed console script; the test plays the browser with plain httpx2: it reads the
printed authorization URL, lets the server auto-approve, and follows the redirect to tether's loopback listener.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from typer.testing import CliRunner, Result

import tether
from oauth_server import OAuthClient, OAuthServer
from tether.auth.tokens import TokenSet
from tether.cli import app
from tether.cli._loopback import pkce_pair

TETHER = Path(sys.executable).parent / "tether"
STATIC_TOKEN = "tok_static_auth_9Qm2Lx"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    monkeypatch.delenv("TETHER_SECRET_KEY", raising=False)
    monkeypatch.setenv("TETHER_AUTH_TEST_TOKEN", STATIC_TOKEN)


def write_config(tmp_path: Path, server: OAuthServer, client: OAuthClient, auth: str = "") -> Path:
    """A tether.toml with the OAuth integration ``crm`` (a confidential client reads $CRM_SECRET) and ``static``."""
    credentials = 'client_secret = "${CRM_SECRET}"' if client.client_secret else 'client_auth = "none"'
    path = tmp_path / "tether.toml"
    path.write_text(
        f"""
[integrations.crm]
base_url = "{server.url}"
retry = {{ attempts = 1 }}
[integrations.crm.auth]
type = "oauth2"
token_url = "{server.token_url}"
client_id = "{client.client_id}"
{credentials}
{auth}

[integrations.static]
base_url = "{server.url}"
auth = {{ type = "bearer", token = "${{TETHER_AUTH_TEST_TOKEN}}" }}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def code_config(oauth_server: OAuthServer, tmp_path: Path) -> Path:
    """An authorization code integration with a public client (PKCE, no secret)."""
    client = oauth_server.register_client(public=True)
    auth = f'grant = "authorization_code"\nauthorize_url = "{oauth_server.authorize_url}"\nscopes = ["read"]'
    return write_config(tmp_path, oauth_server, client, auth)


def run(*args: str | Path) -> Result:
    runner = CliRunner(env={"COLUMNS": "200", "FORCE_COLOR": None, "NO_COLOR": "1"})
    return runner.invoke(app, [str(arg) for arg in args])


def status_json(config: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    result = run("--config", config, "auth", "status", *args, "--json")
    return result, json.loads(result.stdout)


class Login:
    """``tether auth login`` running as a subprocess, up to the point where it printed the authorization URL."""

    def __init__(self, config: Path, server: OAuthServer, *args: str) -> None:
        env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        command: list[str | Path] = [TETHER, "--config", config, "auth", "login", "crm", "--no-browser"]
        command += ["--timeout", "30", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.printed: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.printed.append(line)
            if line.startswith(server.authorize_url):
                self.url = line.strip()
                break
        else:
            self.process.wait(10)
            raise AssertionError(f"no authorization URL printed: {self.printed} {self.process.stderr}")
        self.query = {key: values[0] for key, values in parse_qs(urlsplit(self.url).query).items()}

    def finish(self) -> tuple[int, str, str]:
        stdout, stderr = self.process.communicate(timeout=30)
        return self.process.returncode, "".join(self.printed) + stdout, stderr


def browse(url: str) -> httpx2.Response:
    """The browser: follow the authorization server's redirect to tether's loopback listener."""
    return httpx2.get(url, follow_redirects=True, timeout=10)


@pytest.fixture
def logged_in(code_config: Path, oauth_server: OAuthServer) -> str:
    """A completed ``tether auth login crm``; yields what it printed."""
    login = Login(code_config, oauth_server)
    page = browse(login.url)
    code, out, err = login.finish()
    assert (page.status_code, code) == (200, 0), err
    return out


def stored(config: Path) -> TokenSet | None:
    with tether.Hub.from_config(config) as hub:
        return hub.token_manager("crm").stored()


# --- login ------------------------------------------------------------------------------------------------------


def test_pkce_pair_is_a_32_byte_verifier_and_its_s256_challenge() -> None:
    verifier, challenge = pkce_pair()

    assert len(verifier) == 43  # 32 bytes, base64url without padding (RFC 7636 §4.1)
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == digest
    assert pkce_pair()[0] != verifier


def test_login_prints_an_authorization_url_with_pkce_state_and_a_loopback_redirect(
    code_config: Path, oauth_server: OAuthServer
) -> None:
    login = Login(code_config, oauth_server)
    query = login.query
    browse(login.url)
    login.finish()

    assert query["response_type"] == "code"
    assert query["client_id"].startswith("client-")
    assert query["scope"] == "read"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32
    redirect = urlsplit(query["redirect_uri"])
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert redirect.port


def test_login_stores_tokens_that_later_calls_use_without_a_new_code_grant(
    logged_in: str, code_config: Path, oauth_server: OAuthServer
) -> None:
    tokens = stored(code_config)

    assert tokens is not None
    assert tokens.refresh_token is not None
    assert "logged in: expires in" in logged_in
    assert "scopes read" in logged_in
    assert tokens.access_token not in logged_in
    assert tokens.refresh_token not in logged_in
    with tether.Hub.from_config(code_config) as hub, hub.client("crm") as client:
        response = client.get("/api/me")
    assert response.status_code == 200
    assert response.json()["grant_type"] == "authorization_code"
    assert oauth_server.token_request_count() == 1
    [exchange] = oauth_server.token_requests
    assert exchange.grant_type == "authorization_code"


def test_login_listens_on_the_configured_redirect_uri(
    oauth_server: OAuthServer, tmp_path: Path, unused_port: int
) -> None:
    client = oauth_server.register_client(public=True)
    redirect = f"http://127.0.0.1:{unused_port}/callback"
    auth = (
        f'grant = "authorization_code"\nauthorize_url = "{oauth_server.authorize_url}"\nredirect_uri = "{redirect}"\n'
        'audience = "https://api.crm.test"\nresource = "https://api.crm.test/v2"'
    )
    config = write_config(tmp_path, oauth_server, client, auth)
    login = Login(config, oauth_server)
    page = browse(login.url)
    code, _, err = login.finish()

    assert (page.status_code, code) == (200, 0), err
    assert login.query["redirect_uri"] == redirect
    assert (login.query["audience"], login.query["resource"]) == ("https://api.crm.test", "https://api.crm.test/v2")
    assert "scope" not in login.query


def test_login_rejects_a_redirect_whose_state_does_not_match(code_config: Path, oauth_server: OAuthServer) -> None:
    login = Login(code_config, oauth_server)
    forged = httpx2.get(login.query["redirect_uri"], params={"code": "stolen", "state": "forged"}, timeout=10)
    code, _out, err = login.finish()

    assert forged.status_code == 400
    assert "state" in forged.text
    assert code == 1
    assert "state does not match" in err
    assert oauth_server.token_request_count() == 0
    assert stored(code_config) is None


def test_login_reports_access_denied(code_config: Path, oauth_server: OAuthServer) -> None:
    oauth_server.auto_approve = False
    login = Login(code_config, oauth_server)
    page = browse(login.url)
    code, _, err = login.finish()

    assert page.status_code == 400
    assert code == 1
    assert "authorization was denied at the provider (access_denied)" in err
    assert "Traceback" not in err
    assert stored(code_config) is None


def test_login_ignores_stray_requests_until_the_redirect_arrives(code_config: Path, oauth_server: OAuthServer) -> None:
    login = Login(code_config, oauth_server)
    redirect = urlsplit(login.query["redirect_uri"])
    favicon = httpx2.get(f"http://{redirect.netloc}/favicon.ico", timeout=10)
    page = browse(login.url)
    code, _, err = login.finish()

    assert favicon.status_code == 404
    assert (page.status_code, code) == (200, 0), err


def test_login_gives_up_after_the_timeout(code_config: Path) -> None:
    result = run("--config", code_config, "auth", "login", "crm", "--no-browser", "--timeout", "200ms")

    assert result.exit_code == 1
    assert "no redirect arrived within 0.2s" in result.stderr


def test_login_with_client_credentials_obtains_a_token_right_away(
    oauth_server: OAuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = oauth_server.register_client()
    assert client.client_secret is not None
    monkeypatch.setenv("CRM_SECRET", client.client_secret)
    config = write_config(tmp_path, oauth_server, client, 'scopes = ["read"]')

    first = run("--config", config, "auth", "login", "crm")
    second = run("--config", config, "auth", "login", "crm")

    assert (first.exit_code, second.exit_code) == (0, 0), first.stderr
    assert "grant 'client_credentials', which needs no browser" in first.stdout
    assert "logged in: expires in" in first.stdout
    assert oauth_server.token_request_count("client_credentials") == 2  # a check, not a read of the store
    tokens = stored(config)
    assert tokens is not None
    assert tokens.access_token not in first.stdout + second.stdout


def test_login_refuses_an_integration_without_oauth(code_config: Path) -> None:
    result = run("--config", code_config, "auth", "login", "static")

    assert result.exit_code == 1
    assert "does not use OAuth 2.0 (auth type: bearer)" in result.stderr


def test_login_names_an_unknown_integration(code_config: Path) -> None:
    result = run("--config", code_config, "auth", "login", "nope")

    assert result.exit_code == 1
    assert "no integration named 'nope'" in result.stderr


# --- status -----------------------------------------------------------------------------------------------------


def test_status_json_shows_expiry_and_scopes_but_never_a_token(logged_in: str, code_config: Path) -> None:
    tokens = stored(code_config)
    assert tokens is not None
    assert tokens.refresh_token is not None

    result, report = status_json(code_config)

    assert result.exit_code == 0
    crm, static = report["integrations"]
    assert crm["grant"] == "authorization_code"
    assert crm["token_stored"] is True
    assert crm["expires"] in ("in 59m", "in 1h")
    assert crm["scopes"] == ["read"]
    assert crm["refresh_token"] is True
    assert (crm["revoked"], crm["needs_login"], crm["problem"]) == (False, False, None)
    assert report["encrypted"] is False
    assert crm["encrypted"] is False
    assert static == {"name": "static", "type": "bearer", "credentials": "static credentials (bearer)"}
    for secret in (tokens.access_token, tokens.refresh_token, STATIC_TOKEN):
        assert secret not in result.stdout


def test_status_table_says_when_tokens_are_not_encrypted(logged_in: str, code_config: Path) -> None:
    result = run("--config", code_config, "auth", "status")

    assert result.exit_code == 0
    assert "authorization_code" in result.stdout
    assert "static credentials (bearer)" in result.stdout
    assert "set TETHER_SECRET_KEY to encrypt them" in result.stdout


def test_status_reports_an_expired_token_in_words(logged_in: str, code_config: Path) -> None:
    with tether.Hub.from_config(code_config) as hub:
        manager = hub.token_manager("crm")
        tokens = manager.stored()
        assert tokens is not None
        manager.store_tokens(dataclasses.replace(tokens, expires_at=time.time() - 185))

    result, report = status_json(code_config, "crm")

    assert result.exit_code == 0  # the refresh token renews it on the next call
    assert [row["expires"] for row in report["integrations"]] == ["expired 3m ago"]


def test_status_reports_a_revoked_grant_and_exits_non_zero(
    logged_in: str, code_config: Path, oauth_server: OAuthServer
) -> None:
    with tether.Hub.from_config(code_config) as hub:
        manager = hub.token_manager("crm")
        tokens = manager.stored()
        assert tokens is not None
        manager.store_tokens(dataclasses.replace(tokens, expires_at=time.time() - 60))
        oauth_server.revoke_all()
        with hub.client("crm") as client, pytest.raises(tether.GrantRevokedError):
            client.get("/api/me")

    result, report = status_json(code_config, "crm")
    table = run("--config", code_config, "auth", "status", "crm")

    assert result.exit_code == 1
    [crm] = report["integrations"]
    assert (crm["revoked"], crm["token_stored"]) == (True, False)
    assert crm["action"] == "run `tether auth login crm`"
    assert table.exit_code == 1
    assert "revoked" in table.stdout
    assert "tether auth login crm" in table.stdout


def test_status_before_any_login_says_one_is_needed(code_config: Path) -> None:
    result, report = status_json(code_config, "crm")

    assert result.exit_code == 1
    [crm] = report["integrations"]
    assert (crm["token_stored"], crm["needs_login"]) == (False, True)
    assert crm["action"] == "run `tether auth login crm`"


def test_status_says_the_store_encrypts_when_a_key_is_set(
    code_config: Path, oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_SECRET_KEY", "a passphrase long enough for a key")
    login = Login(code_config, oauth_server)
    browse(login.url)
    assert login.finish()[0] == 0

    result, report = status_json(code_config, "crm")

    assert result.exit_code == 0
    assert report["encrypted"] is True
    assert report["integrations"][0]["token_stored"] is True


# --- reset ------------------------------------------------------------------------------------------------------


def test_reset_deletes_the_stored_tokens(logged_in: str, code_config: Path) -> None:
    result = run("--config", code_config, "auth", "reset", "crm")

    assert result.exit_code == 0
    assert "deleted the stored tokens of crm; log in again with `tether auth login crm`" in result.stdout
    assert stored(code_config) is None
    assert status_json(code_config, "crm")[1]["integrations"][0]["needs_login"] is True


def test_reset_refuses_an_integration_without_oauth(code_config: Path) -> None:
    result = run("--config", code_config, "auth", "reset", "static")

    assert result.exit_code == 1
    assert "does not use OAuth 2.0" in result.stderr

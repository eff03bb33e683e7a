"""The fault lab: ``tether doctor`` against real loopback servers, one per way an integration breaks.

Each server is real: the sandbox (uvicorn) over TLS with an expired, self-signed or wrong-host certificate, or
over plain HTTP with a fault (401, 403, 429, latency, HTML); a small ``http.server`` API for what the sandbox
does not do (a skewed ``Date``, ``Deprecation``/``Sunset``, a CORS preflight answered properly). Each test
asserts the check that failed and the words of its cause and fix.
"""

from __future__ import annotations

import email.utils
import json
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fakes import in_thread
from tether.cli.doctor import doctor
from tether.doctor import Diagnosis, diagnose
from tether.doctor.network import check_dns, check_proxy, check_tcp
from tether.hub import Hub
from tether.sandbox import SANDBOX_API_KEY, CertificateSet, SandboxServer, TLSMode, running_sandbox

WRONG_KEY = "sk_test_lab_wrong_8f3a9c"  # the secret that must never be printed


@pytest.fixture(scope="module")
def tls_servers(sandbox_certs: CertificateSet) -> Iterator[dict[TLSMode, SandboxServer]]:
    modes: tuple[TLSMode, ...] = ("valid", "expired", "self_signed", "wrong_host")
    running = {mode: running_sandbox(tls=mode, certs=sandbox_certs) for mode in modes}
    started = {mode: context.__enter__() for mode, context in running.items()}
    yield started
    for context in running.values():
        context.__exit__(None, None, None)


class _LabAPI(BaseHTTPRequestHandler):
    """``/skewed``: a ``Date`` ten minutes behind; ``/deprecated``: Deprecation, Sunset in 30 days and a successor
    link; ``/retired``: a Sunset in the past; anything else: JSON. ``OPTIONS`` answers a preflight that allows
    ``GET`` with ``X-API-Key`` from any origin."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        skew = -600 if self.path.startswith("/skewed") else 0
        return email.utils.formatdate(time.time() + skew, usegmt=True)

    def do_GET(self) -> None:
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        if self.path.startswith("/deprecated"):
            self.send_header("Deprecation", "@1700000000")
            self.send_header("Sunset", email.utils.formatdate(time.time() + 30 * 86400, usegmt=True))
            self.send_header("Link", '<https://docs.example.com/v2>; rel="successor-version"')
        if self.path.startswith("/retired"):
            self.send_header("Sunset", email.utils.formatdate(time.time() - 86400, usegmt=True))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin", "*"))
        self.send_header("Access-Control-Allow-Methods", "GET, POST")
        self.send_header("Access-Control-Allow-Headers", "x-api-key, content-type")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def lab_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LabAPI)
    server.daemon_threads = True
    with in_thread(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


def _config(tmp_path: Path, url: str, health: str, *, extra: str = "") -> Path:
    path = tmp_path / "tether.toml"
    path.write_text(
        f"""
[monitoring]
record = false

[integrations.lab]
base_url = "{url}"
health = "{health}"
auth = {{ type = "api_key", key = "${{LAB_KEY}}" }}
{extra}
"""
    )
    return path


def _diagnose(path: Path, origins: tuple[str, ...] = ()) -> Diagnosis:
    with Hub.from_config(path) as hub:
        return diagnose(hub, "lab", origins=origins)


def _run(path: Path, *args: str) -> tuple[int, str]:
    app = typer.Typer()
    app.command()(doctor)
    result = CliRunner().invoke(app, ["lab", *args], obj={"config": str(path)})
    return result.exit_code, result.output


@pytest.fixture
def good_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_KEY", SANDBOX_API_KEY)


# -- TLS ------------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("good_key")
def test_a_healthy_integration_passes_every_check(
    tmp_path: Path, tls_servers: dict[TLSMode, SandboxServer], sandbox_certs: CertificateSet
) -> None:
    path = _config(
        tmp_path, tls_servers["valid"].url, "GET /v1/customers?limit=1", extra=f'ca_bundle = "{sandbox_certs.ca_cert}"'
    )
    result = _diagnose(path)
    statuses = {check.name: check.status for check in result.checks}
    assert result.ok, result.to_dict()
    assert statuses == {
        "dns": "ok",
        "tcp": "ok",
        "tls": "ok",
        "proxy": "ok",
        "clock": "ok",
        "health": "ok",
        "content": "ok",
        "latency": "ok",
        "version": "ok",
        "cors": "skip",
    }
    assert "days left" in result.check("tls").summary
    assert [c.name for c in result.checks][:4] == ["dns", "tcp", "tls", "proxy"], "checks run from the network up"


@pytest.mark.usefixtures("good_key")
def test_expired_certificate_names_the_date_and_who_must_renew_it(
    tmp_path: Path, tls_servers: dict[TLSMode, SandboxServer], sandbox_certs: CertificateSet
) -> None:
    path = _config(
        tmp_path, tls_servers["expired"].url, "GET /v1/customers", extra=f'ca_bundle = "{sandbox_certs.ca_cert}"'
    )
    result = _diagnose(path)
    tls = result.check("tls")
    assert tls.status == "fail"
    assert "expired on" in tls.summary
    assert tls.details["days_left"] < 0
    assert tls.fix is not None
    assert "provider must renew" in tls.fix
    assert result.check("health").status == "skip", "the first ✘ is the cause; what depends on it is skipped"
    assert not result.ok


@pytest.mark.usefixtures("good_key")
def test_self_signed_certificate_says_self_signed_and_offers_ca_bundle(
    tmp_path: Path, tls_servers: dict[TLSMode, SandboxServer], sandbox_certs: CertificateSet
) -> None:
    path = _config(
        tmp_path, tls_servers["self_signed"].url, "GET /v1/customers", extra=f'ca_bundle = "{sandbox_certs.ca_cert}"'
    )
    tls = _diagnose(path).check("tls")
    assert tls.status == "fail"
    assert "self-signed" in tls.summary
    assert tls.fix is not None
    assert "ca_bundle" in tls.fix
    assert "never turn verification off" in tls.fix


@pytest.mark.usefixtures("good_key")
def test_wrong_host_certificate_names_the_host_it_is_for(
    tmp_path: Path, tls_servers: dict[TLSMode, SandboxServer], sandbox_certs: CertificateSet
) -> None:
    path = _config(
        tmp_path, tls_servers["wrong_host"].url, "GET /v1/customers", extra=f'ca_bundle = "{sandbox_certs.ca_cert}"'
    )
    tls = _diagnose(path).check("tls")
    assert tls.status == "fail"
    assert tls.summary == "certificate is for wrong.example, not 127.0.0.1"
    assert tls.cause is not None
    assert "hostname mismatch" in tls.cause


# -- the health request ---------------------------------------------------------------------------------------


def test_401_names_the_env_var_holding_the_key_and_never_prints_the_key(
    tmp_path: Path, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_KEY", WRONG_KEY)
    path = _config(tmp_path, sandbox.url, "GET /v1/customers")
    health = _diagnose(path).check("health")
    assert health.status == "fail"
    assert health.cause is not None
    assert "env var LAB_KEY" in health.cause
    assert "401" in health.cause
    assert health.fix is not None
    assert "the key in env var LAB_KEY is wrong or expired" in health.fix
    code, text = _run(path)
    assert code == 1
    assert "env var LAB_KEY" in text
    code, output = _run(path, "--json")
    assert code == 1
    assert json.loads(output)["integrations"][0]["checks"][5]["name"] == "health"
    assert WRONG_KEY not in text
    assert WRONG_KEY not in output


@pytest.mark.usefixtures("good_key")
def test_403_is_a_missing_permission_not_a_bad_key(tmp_path: Path, sandbox: SandboxServer) -> None:
    health = _diagnose(_config(tmp_path, sandbox.url, "GET /v1/customers?fault=status:403")).check("health")
    assert health.status == "fail"
    assert health.cause is not None
    assert "lack the permission" in health.cause
    assert health.fix is not None
    assert "grant the key the permission or scope" in health.fix


@pytest.mark.usefixtures("good_key")
def test_429_says_the_limit_and_when_it_resets(tmp_path: Path, sandbox: SandboxServer) -> None:
    health = _diagnose(_config(tmp_path, sandbox.url, "GET /v1/customers?fault=429")).check("health")
    assert health.status == "fail"
    assert health.cause is not None
    assert health.cause.startswith("rate limited: limit ")
    assert "resets in" in health.cause
    assert health.details["limit"] is not None
    assert health.details["remaining"] == 0
    assert health.fix is not None
    assert "rate_limit" in health.fix


@pytest.mark.usefixtures("good_key")
def test_timeout_is_reported_against_the_configured_timeout(tmp_path: Path, sandbox: SandboxServer) -> None:
    path = _config(tmp_path, sandbox.url, "GET /v1/customers?fault=latency:1.5", extra="timeout = 0.3")
    health = _diagnose(path).check("health")
    assert health.status == "fail"
    assert health.summary.startswith("GET /v1/customers?fault=latency:1.5 timed out after 0.")
    assert health.cause == "no answer within the configured timeout.total = 0.3s"
    assert health.fix is not None
    assert "raise timeout.total" in health.fix


@pytest.mark.usefixtures("good_key")
def test_5xx_points_at_the_provider(tmp_path: Path, sandbox: SandboxServer) -> None:
    health = _diagnose(_config(tmp_path, sandbox.url, "GET /v1/customers?fault=status:503")).check("health")
    assert health.status == "fail"
    assert health.cause is not None
    assert health.cause.startswith("the provider failed: HTTP 503")
    assert health.fix is not None
    assert "status page" in health.fix


@pytest.mark.usefixtures("good_key")
def test_html_instead_of_json_is_a_content_failure_naming_the_page(tmp_path: Path, sandbox: SandboxServer) -> None:
    result = _diagnose(_config(tmp_path, sandbox.url, "GET /v1/customers?fault=wrong_content_type"))
    content = result.check("content")
    assert result.check("health").status == "ok", "a 200 whose body is a web page"
    assert content.status == "fail"
    assert content.summary == "an HTML page ('Service temporarily unavailable') instead of JSON"
    assert content.fix is not None
    assert "proxy, load balancer" in content.fix
    assert "base_url" in content.fix


@pytest.mark.usefixtures("good_key")
def test_broken_json_with_a_json_content_type_is_named(tmp_path: Path, sandbox: SandboxServer) -> None:
    content = _diagnose(_config(tmp_path, sandbox.url, "GET /v1/customers?fault=truncated_json")).check("content")
    assert content.status == "fail"
    assert "truncated" in content.summary


# -- CORS -----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("good_key")
def test_missing_cors_header_blocks_the_browser_and_says_to_use_the_backend(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    path = _config(tmp_path, sandbox.url, "GET /v1/customers")
    cors = _diagnose(path, origins=("https://app.example.com",)).check("cors")
    assert cors.status == "fail"
    assert cors.cause is not None
    assert "no Access-Control-Allow-Origin header" in cors.cause
    assert cors.fix is not None
    assert "call the API from your backend" in cors.fix
    code, text = _run(path, "--origin", "https://app.example.com")
    assert code == 1
    assert "Access-Control-Allow-Origin" in text


@pytest.mark.usefixtures("good_key")
def test_a_preflight_that_allows_the_origin_method_and_key_header_passes(tmp_path: Path, lab_api: str) -> None:
    cors = _diagnose(_config(tmp_path, lab_api, "GET /ok"), origins=("https://app.example.com",)).check("cors")
    assert cors.status == "ok", cors
    assert cors.details["request_headers"] == ["x-api-key"]


@pytest.mark.usefixtures("good_key")
def test_a_preflight_missing_an_allowed_header_is_named(tmp_path: Path, lab_api: str) -> None:
    path = _config(tmp_path, lab_api, "GET /ok", extra='version = "2024-06-20"\nversion_header = "Api-Version"')
    cors = _diagnose(path, origins=("https://app.example.com",)).check("cors")
    assert cors.status == "fail"
    assert cors.cause is not None
    assert "does not include api-version" in cors.cause


# -- clock, version -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("good_key")
def test_clock_skew_against_the_server_date_is_measured(tmp_path: Path, lab_api: str) -> None:
    clock = _diagnose(_config(tmp_path, lab_api, "GET /skewed")).check("clock")
    assert clock.status == "fail"
    assert clock.summary == "this machine's clock is 10 min ahead of the server's"
    assert clock.fix is not None
    assert "NTP" in clock.fix


@pytest.mark.usefixtures("good_key")
def test_deprecation_and_sunset_headers_are_a_warning_with_the_successor(tmp_path: Path, lab_api: str) -> None:
    result = _diagnose(_config(tmp_path, lab_api, "GET /deprecated"))
    version = result.check("version")
    assert version.status == "warn"
    assert version.summary.startswith("the API says this version is deprecated since 2023-11-14, sunset ")
    assert version.fix is not None
    assert "https://docs.example.com/v2" in version.fix
    assert result.ok, "a warning does not fail the doctor"


@pytest.mark.usefixtures("good_key")
def test_a_sunset_in_the_past_fails(tmp_path: Path, lab_api: str) -> None:
    version = _diagnose(_config(tmp_path, lab_api, "GET /retired")).check("version")
    assert version.status == "fail"
    assert "retired this version" in version.summary


@pytest.mark.usefixtures("good_key")
def test_latency_over_the_alert_threshold_is_a_warning_with_the_breakdown(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    path = _config(tmp_path, sandbox.url, "GET /v1/customers?fault=latency:0.3", extra="alerts = { latency_p95 = 0.1 }")
    latency = _diagnose(path).check("latency")
    assert latency.status == "warn"
    assert "over the 0.1s alert threshold" in latency.summary
    assert latency.cause is not None
    assert "connecting took" in latency.cause


# -- the network ----------------------------------------------------------------------------------------------


def test_two_backends_of_which_one_refuses_are_told_apart(lab_api: str) -> None:
    """A name with two addresses (a resolver that answers as DNS would), only one of which has a server."""
    port = int(lab_api.rsplit(":", 1)[1])
    dns = check_dns("api.lab.test", port, resolve=lambda host, port: ["127.0.0.1", "127.0.0.2"])
    assert dns.summary.startswith("api.lab.test → 127.0.0.1, 127.0.0.2")
    tcp = check_tcp(dns.details["addresses"], port, timeout=2.0)
    assert tcp.status == "fail"
    assert tcp.summary == f"1 of 2 addresses accept connections on port {port}"
    assert tcp.cause == f"127.0.0.2:{port}: connection refused"
    assert tcp.fix is not None
    assert "one backend behind the name is down" in tcp.fix


def test_the_whole_diagnosis_names_the_backend_that_is_down(tmp_path: Path, lab_api: str, good_key: None) -> None:
    """Through diagnose(): a name whose two addresses are a live server and a dead one fails on the dead one."""
    port = int(lab_api.rsplit(":", 1)[1])
    path = _config(tmp_path, f"http://api.lab.test:{port}", "GET /v1/customers")
    with Hub.from_config(path) as hub:
        result = diagnose(hub, "lab", resolve=lambda host, port: ["127.0.0.1", "127.0.0.2"])
    assert not result.ok
    tcp = result.check("tcp")
    assert tcp.status == "fail"
    assert tcp.cause == f"127.0.0.2:{port}: connection refused"
    assert result.check("dns").status == "ok"


def test_a_name_that_does_not_resolve_fails_dns_and_skips_the_rest(tmp_path: Path, good_key: None) -> None:
    result = _diagnose(_config(tmp_path, "https://api.doctor-lab.invalid", "GET /v1/x"))
    dns = result.check("dns")
    assert dns.status == "fail"
    assert dns.cause is not None
    assert "does not resolve" in dns.cause
    assert [c.status for c in result.checks[1:3]] == ["skip", "skip"]


def test_a_proxy_that_does_not_answer_fails_and_its_password_is_masked(
    monkeypatch: pytest.MonkeyPatch, unused_port: int
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://ops:hunter2-proxy@127.0.0.1:{unused_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxy = check_proxy("https://api.example.com/v1", timeout=1.0)
    assert proxy.status == "fail"
    assert proxy.cause is not None
    assert "every call through tether will fail" in proxy.cause
    assert "hunter2" not in json.dumps(proxy.to_dict())


def test_loopback_port_with_nothing_listening_is_refused(unused_port: int) -> None:
    tcp = check_tcp(["127.0.0.1"], unused_port, timeout=1.0)
    assert tcp.status == "fail"
    assert tcp.fix is not None
    assert "nothing listens there" in tcp.fix


def test_unused_socket_helper_is_loopback() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        assert probe.getsockname()[0] == "127.0.0.2"

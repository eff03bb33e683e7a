"""The sandbox over real loopback sockets: auth, resources, faults on demand, and TLS failure modes."""

from __future__ import annotations

import email.utils
import json
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import openai
import pytest

from tether.sandbox import (
    SANDBOX_API_KEY,
    SANDBOX_BEARER_TOKEN,
    CertificateSet,
    SandboxServer,
    TLSMode,
    create_app,
    running_sandbox,
)

# --- auth and request ids -------------------------------------------------------------------------


def test_health_needs_no_credentials(sandbox: SandboxServer) -> None:
    response = httpx2.get(f"{sandbox.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"X-API-Key": SANDBOX_API_KEY}, {}),
        ({}, {"api_key": SANDBOX_API_KEY}),
        ({"Authorization": f"Bearer {SANDBOX_BEARER_TOKEN}"}, {}),
    ],
    ids=["x-api-key", "query", "bearer"],
)
def test_each_credential_style_is_accepted(
    sandbox: SandboxServer, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = httpx2.get(f"{sandbox.url}/v1/customers/cus_0001", headers=headers, params=params)
    assert response.status_code == 200
    assert response.json()["id"] == "cus_0001"


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"X-API-Key": "sk_wrong"}, {}),
        ({}, {"api_key": "sk_wrong"}),
        ({"Authorization": f"Bearer {SANDBOX_API_KEY}"}, {}),
        ({"Authorization": f"Basic {SANDBOX_BEARER_TOKEN}"}, {}),
    ],
    ids=["none", "wrong-header", "wrong-query", "api-key-as-bearer", "wrong-scheme"],
)
def test_missing_or_wrong_credentials_get_a_json_401(
    sandbox: SandboxServer, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = httpx2.get(f"{sandbox.url}/v1/customers", headers=headers, params=params)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.json()["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_response_carries_its_own_request_id(sandbox_client: httpx2.Client) -> None:
    ids = {sandbox_client.get(path).headers["X-Request-Id"] for path in ("/health", "/v1/nope", "/v1/customers")}
    assert len(ids) == 3
    assert all(request_id.startswith("req_") for request_id in ids)


# --- resources ------------------------------------------------------------------------------------


def test_pagination_walks_every_customer_once(sandbox_client: httpx2.Client) -> None:
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 10}
    while True:
        page = sandbox_client.get("/v1/customers", params=params).json()
        assert page["object"] == "list"
        assert len(page["data"]) <= 10
        seen += [customer["id"] for customer in page["data"]]
        if not page["has_more"]:
            break
        params["starting_after"] = seen[-1]
    assert len(seen) >= 25
    assert seen == sorted(set(seen))


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"starting_after": "cus_nope"}])
def test_bad_list_parameters_are_a_400(sandbox_client: httpx2.Client, params: dict[str, str | int]) -> None:
    response = sandbox_client.get("/v1/customers", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_customer_and_unknown_route_are_json_404s(sandbox_client: httpx2.Client) -> None:
    for path in ("/v1/customers/cus_nope", "/v1/nowhere"):
        response = sandbox_client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "resource_missing"


def test_create_echoes_the_idempotency_key_and_replays_the_same_object(sandbox_client: httpx2.Client) -> None:
    headers = {"Idempotency-Key": "idem-1"}
    first = sandbox_client.post("/v1/customers", json={"name": "Ada"}, headers=headers)
    again = sandbox_client.post("/v1/customers", json={"name": "Ada"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["idempotency_key"] == "idem-1"
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_reusing_an_idempotency_key_with_other_parameters_is_refused(sandbox_client: httpx2.Client) -> None:
    headers = {"Idempotency-Key": "idem-2"}
    sandbox_client.post("/v1/customers", json={"name": "Ada"}, headers=headers)
    response = sandbox_client.post("/v1/customers", json={"name": "Grace"}, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "idempotency_error"


def test_create_accepts_a_form_body_and_makes_new_objects_without_a_key(sandbox_client: httpx2.Client) -> None:
    first = sandbox_client.post("/v1/customers", data={"name": "Form", "email": "f@example.com"}).json()
    second = sandbox_client.post("/v1/customers", data={"name": "Form", "email": "f@example.com"}).json()
    assert first["id"] != second["id"]
    assert (first["name"], first["email"], first["idempotency_key"]) == ("Form", "f@example.com", None)
    assert sandbox_client.get(f"/v1/customers/{first['id']}").json() == first


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [(b"{", "application/json", 400), (b"[1]", "application/json", 400), (b"x", "text/plain", 415)],
)
def test_create_rejects_bodies_it_cannot_read(
    sandbox_client: httpx2.Client, content: bytes, content_type: str, status: int
) -> None:
    response = sandbox_client.post("/v1/customers", content=content, headers={"Content-Type": content_type})
    assert response.status_code == status


def test_chat_completion_has_the_openai_shape(sandbox_client: httpx2.Client) -> None:
    body = {"model": "sandbox-1", "messages": [{"role": "user", "content": "hello there"}]}
    completion = sandbox_client.post("/v1/chat/completions", json=body).json()
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-")
    assert completion["model"] == "sandbox-1"
    assert completion["choices"][0]["message"]["role"] == "assistant"
    assert "hello there" in completion["choices"][0]["message"]["content"]
    usage = completion["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_the_openai_sdk_talks_to_the_sandbox(sandbox: SandboxServer) -> None:
    with openai.OpenAI(base_url=f"{sandbox.url}/v1", api_key=SANDBOX_BEARER_TOKEN, max_retries=0) as client:
        completion = client.chat.completions.create(model="sandbox-1", messages=[{"role": "user", "content": "ping"}])
        chunks = client.chat.completions.create(
            model="sandbox-1", messages=[{"role": "user", "content": "ping"}], stream=True
        )
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        models = client.models.list()
    assert completion.choices[0].message.content == "Sandbox reply to: ping"
    assert streamed.strip() == "Sandbox reply to: ping"
    assert [model.id for model in models] == ["sandbox-1"]


# --- faults ---------------------------------------------------------------------------------------


def test_status_faults_answer_with_a_json_error(sandbox_client: httpx2.Client) -> None:
    unavailable = sandbox_client.get("/v1/customers", params={"fault": "status:503"})
    bad = sandbox_client.get("/v1/customers", params={"fault": "status:400"})
    assert unavailable.status_code == 503
    assert unavailable.json()["error"]["type"] == "api_error"
    assert bad.status_code == 400
    assert bad.json()["error"]["message"]


def test_faults_can_be_chosen_by_header(sandbox_client: httpx2.Client) -> None:
    response = sandbox_client.get("/health", headers={"X-Sandbox-Fault": "status:502", "X-Sandbox-Retry-After": "3"})
    assert response.status_code == 502
    assert response.headers["Retry-After"] == "3"


def test_rate_limit_fault_sends_retry_after_seconds_and_rate_limit_headers(sandbox_client: httpx2.Client) -> None:
    response = sandbox_client.get("/v1/customers", params={"fault": "429", "retry_after": 2})
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response.headers["Retry-After"] == "2"
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(response.headers["X-RateLimit-Reset"]) - time.time() <= 3


def test_rate_limit_fault_can_send_retry_after_as_an_http_date(sandbox_client: httpx2.Client) -> None:
    response = sandbox_client.get("/v1/customers", params={"fault": "rate_limit", "retry_after_date": 30})
    retry_at = email.utils.parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert 28 <= retry_at - time.time() <= 31


def test_latency_fault_delays_then_answers_normally(sandbox_client: httpx2.Client) -> None:
    started = time.perf_counter()
    response = sandbox_client.get("/health", params={"fault": "latency:0.05"})
    assert time.perf_counter() - started >= 0.05
    assert response.status_code == 200


def test_reset_fault_resets_the_connection(sandbox_client: httpx2.Client) -> None:
    with pytest.raises(httpx2.ReadError):
        sandbox_client.get("/health", params={"fault": "reset"})


def test_disconnect_fault_closes_without_a_response(sandbox_client: httpx2.Client) -> None:
    with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
        sandbox_client.get("/health", params={"fault": "disconnect"})


def test_body_error_fault_breaks_off_mid_body(sandbox_client: httpx2.Client) -> None:
    with sandbox_client.stream("GET", "/health", params={"fault": "body_error"}) as response:
        assert response.status_code == 200
        with pytest.raises(httpx2.RemoteProtocolError, match="complete message body"):
            response.read()


def test_truncated_json_reads_fine_but_does_not_parse(sandbox_client: httpx2.Client) -> None:
    response = sandbox_client.get("/v1/customers", params={"fault": "truncated_json"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_invalid_json_and_wrong_content_type_faults(sandbox_client: httpx2.Client) -> None:
    invalid = sandbox_client.get("/v1/customers", params={"fault": "invalid_json"})
    html = sandbox_client.get("/v1/customers", params={"fault": "wrong_content_type"})
    assert (invalid.status_code, invalid.headers["Content-Type"], invalid.text) == (
        200,
        "application/json",
        "<html>oops</html>",
    )
    assert html.status_code == 200
    assert html.headers["Content-Type"].startswith("text/html")
    assert "<html>" in html.text


def test_fail_times_fails_then_succeeds_and_records_idempotency_keys(
    sandbox_client: httpx2.Client, sandbox_key: str
) -> None:
    params = {"fault": "status:503", "fail_times": "2", "key": sandbox_key}
    statuses = [
        sandbox_client.post("/v1/customers", params=params, json={}, headers={"Idempotency-Key": "k1"}).status_code
        for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    seen = httpx2.get(f"{str(sandbox_client.base_url).rstrip('/')}/v1/requests", params={"key": sandbox_key})
    assert seen.json()["count"] == 3
    assert seen.json()["idempotency_keys"] == ["k1", "k1", "k1"]
    assert seen.json()["requests"][0]["method"] == "POST"


def test_fail_times_can_chain_latency_and_reset(sandbox_client: httpx2.Client, sandbox_key: str) -> None:
    params = {"fault": "latency:0.01,reset", "fail_times": "1", "key": sandbox_key}
    with pytest.raises(httpx2.ReadError):
        sandbox_client.get("/health", params=params)
    assert sandbox_client.get("/health", params=params).status_code == 200


def test_requests_endpoint_reports_unseen_keys_and_needs_a_key(sandbox: SandboxServer) -> None:
    assert httpx2.get(f"{sandbox.url}/v1/requests", params={"key": "never-used"}).json()["count"] == 0
    assert httpx2.get(f"{sandbox.url}/v1/requests").status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"fault": "explode"},
        {"fault": "status:200"},
        {"fault": "latency:soon"},
        {"fault": "status:503", "fail_times": "2"},
        {"fault": "429", "retry_after": "1", "retry_after_date": "1"},
        {"fault": "429", "retry_after": "-1"},
    ],
)
def test_sandbox_misuse_is_a_400(sandbox_client: httpx2.Client, params: dict[str, str]) -> None:
    response = sandbox_client.get("/health", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "sandbox_usage"


async def test_connection_faults_answer_501_outside_the_sandbox_server() -> None:
    transport = httpx2.ASGITransport(app=create_app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        response = await client.get("/health", params={"fault": "reset"})
    assert response.status_code == 501


# --- servers and TLS ------------------------------------------------------------------------------


def test_running_sandbox_picks_a_free_port_and_releases_it() -> None:
    with running_sandbox() as server:
        assert server.port != 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx2.get(f"{server.url}/health").status_code == 200
        with pytest.raises(ValueError, match="plain HTTP"):
            server.ssl_context()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass


def test_running_sandbox_on_a_busy_port_fails_loudly(sandbox: SandboxServer) -> None:
    with pytest.raises(OSError, match="in use"), running_sandbox(port=sandbox.port):
        pass


def test_valid_certificate_verifies_against_the_sandbox_ca(sandbox_certs: CertificateSet) -> None:
    with running_sandbox(tls="valid", certs=sandbox_certs) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ca_cert == sandbox_certs.ca_cert
        with httpx2.Client(verify=ssl.create_default_context(cafile=str(server.ca_cert))) as client:
            assert client.get(f"{server.url}/health").status_code == 200
            assert client.get(f"https://localhost:{server.port}/health").status_code == 200


@pytest.mark.parametrize(
    ("tls", "reasons"),
    [
        ("expired", ("certificate has expired",)),
        ("self_signed", ("self-signed certificate", "self signed certificate")),
        ("wrong_host", ("Hostname mismatch", "IP address mismatch")),
    ],
)
def test_bad_certificates_fail_verification_for_the_right_reason(
    sandbox_certs: CertificateSet, tls: TLSMode, reasons: tuple[str, ...]
) -> None:
    with (
        running_sandbox(tls=tls, certs=sandbox_certs) as server,
        httpx2.Client(verify=server.ssl_context()) as client,
        pytest.raises(httpx2.ConnectError) as caught,
    ):
        client.get(f"{server.url}/health")
    error = _verification_error(caught.value)
    assert any(reason in error.verify_message for reason in reasons), error.verify_message


def test_tls_without_certificates_generates_them(tmp_path: Path) -> None:
    with running_sandbox(tls="valid") as server, httpx2.Client(verify=server.ssl_context()) as client:
        assert server.ca_cert is not None
        assert client.get(f"{server.url}/health").status_code == 200
    assert not server.ca_cert.exists()


def test_serve_reports_readiness_and_stops_cleanly_on_ctrl_c() -> None:
    script = (
        "from tether.sandbox import serve\n"
        "serve(port=0, tls='valid', on_ready=lambda s: print(s.url, s.ca_cert, flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, "serve() did not report readiness"
            url, ca_cert = process.stdout.readline().split()
            with httpx2.Client(verify=ssl.create_default_context(cafile=ca_cert)) as client:
                assert client.get(f"{url}/health").status_code == 200
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
            assert process.stdout.read() == "stopped\n"
        finally:
            process.kill()
    assert not Path(ca_cert).exists()


def _verification_error(exc: BaseException) -> ssl.SSLCertVerificationError:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None, f"no certificate verification error behind {exc!r}"
    return cause

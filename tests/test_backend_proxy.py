"""The backend proxy of ``tether serve`` (``/proxy/NAME/PATH``) on real loopback servers.

A recording upstream API stands behind the proxy, with ``base_url`` under ``/base``; a second, "evil" server
records whatever reaches it, and must receive nothing whatever the browser sends. Requests that have to reach
the proxy byte for byte (escape attempts) are written on a raw socket, since HTTP clients normalise paths.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from fakes import in_thread, tether_serve
from tether.config.loader import parse_config
from tether.sandbox import SANDBOX_API_KEY, SandboxServer
from tether.server import create_app
from tether.server.proxy_rules import Exposure, PathRefused, checked_path
from tether.server.running import serving

API_KEY = "sk_live_proxy_9f8e7d6c5b4a3210"
TOKEN = "pxy_Q7m2Vx9Lr4Tz8Kc1Wb6Nd3Hf5Jg0Sa"
ADMIN = "adm_Z1x2C3v4B5n6M7a8S9d0F1g2H3j4K5"
ORIGIN = "https://app.example.com"


# --- the servers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as a server received it: the raw request target, headers (lower-case names) and body."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    """Under ``/base/v1``: ``models``, ``files/{id}``, ``chat/*`` and ``echo/*`` (JSON), ``leaky`` (headers a
    browser must not get), ``flaky?key=K&times=N`` (503 N times, then 200), ``slow?seconds=S``, ``error``
    (422). Everything needs ``X-API-Key``; anything else is a 404."""

    protocol_version = "HTTP/1.1"
    server: Upstream

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.record(Seen(self.command, self.path, headers, body))
        path, _, query = self.path.partition("?")
        params = dict(parse_qsl(query))
        if headers.get("x-api-key") != API_KEY:
            self._json(401, {"error": {"message": "Invalid API key"}})
        elif path == "/base/v1/models":
            self._json(200, {"data": [{"id": "model-1"}]}, {"X-Request-Id": "req_123", "ETag": '"v1"'})
        elif path.startswith("/base/v1/files/"):
            self._json(200, {"id": path.rpartition("/")[2]})
        elif path.startswith(("/base/v1/chat/", "/base/v1/echo/")):
            self._json(200, {"ok": True, "bytes": len(body)})
        elif path == "/base/v1/leaky":
            leaky = {
                "Set-Cookie": "session=upstream; Path=/",
                "Connection": "X-Hop",
                "X-Hop": "hop-by-hop, named in Connection",
                "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Credentials": "true",
                "WWW-Authenticate": 'Basic realm="api"',
                "Alt-Svc": 'h3=":443"',
                "X-Request-Id": "req_leaky",
            }
            self._json(200, {"ok": True}, leaky)
        elif path == "/base/v1/flaky":
            if self.server.count(params.get("key", "")) <= int(params.get("times", "2")):
                self._json(503, {"error": {"message": "upstream overloaded"}})
            else:
                self._json(200, {"recovered": True})
        elif path == "/base/v1/slow":
            time.sleep(float(params.get("seconds", "1")))
            self._json(200, {"slow": True})
        elif path == "/base/v1/error":
            self._json(422, {"error": {"message": "amount must be positive", "param": "amount"}})
        else:
            self._json(404, {"error": {"message": "no such route"}})

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class Upstream(ThreadingHTTPServer):
    """A recording HTTP server on a free loopback port."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def count(self, key: str) -> int:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def targets(self) -> list[str]:
        with self._lock:
            return [seen.target for seen in self.seen]


@contextlib.contextmanager
def running() -> Iterator[Upstream]:
    server = Upstream()
    with in_thread(server):
        yield server


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """The API behind the proxy, shared by the module (requests are told apart by their path)."""
    with running() as server:
        yield server


@pytest.fixture(scope="module")
def evil() -> Iterator[Upstream]:
    """A server no request may ever reach."""
    with running() as server:
        yield server
    assert server.seen == [], f"the evil server was reached: {server.seen}"


# --- the service ----------------------------------------------------------------------------------------------


def config_text(store: Path, upstream: Upstream, *, down_port: int = 9) -> str:
    return f"""
store = "sqlite:///{store}"
[integrations.api]
base_url = "{upstream.url}/base"
cors_origins = ["{ORIGIN}"]
retry = {{ attempts = 3, backoff = 0.01, max_backoff = 0.02, budget = 1.0 }}
[integrations.api.auth]
type = "api_key"
in = "header"
name = "X-API-Key"
key = "${{PROXY_API_KEY}}"
[integrations.api.proxy]
allow = [
    "GET /v1/models",
    "POST /v1/chat/*",
    "GET /v1/files/{{id}}",
    "/v1/echo/*",
    "PUT /v1/echo/put",
    "GET /v1/leaky",
    "GET /v1/flaky",
    "GET /v1/error",
]

[integrations.wide]
base_url = "{upstream.url}/base/"
retry = false
breaker = false
auth = {{ type = "api_key", in = "header", name = "X-API-Key", key = "${{PROXY_API_KEY}}" }}
proxy = {{ allow = ["* /*"] }}

[integrations.fragile]
base_url = "{upstream.url}/base"
retry = false
breaker = {{ min_calls = 2, failure_ratio = 0.5, open_for = "1m" }}
auth = {{ type = "api_key", in = "header", name = "X-API-Key", key = "${{PROXY_API_KEY}}" }}
proxy = {{ allow = ["GET /v1/flaky"] }}

[integrations.slowpoke]
base_url = "{upstream.url}/base"
retry = false
timeout = "300ms"
auth = {{ type = "api_key", in = "header", name = "X-API-Key", key = "${{PROXY_API_KEY}}" }}
proxy = {{ allow = ["GET /v1/slow"] }}

[integrations.limited]
base_url = "{upstream.url}/base"
rate_limit = {{ requests = 1, per = "1m", max_wait = "10ms" }}
auth = {{ type = "api_key", in = "header", name = "X-API-Key", key = "${{PROXY_API_KEY}}" }}
proxy = {{ allow = ["GET /v1/models"] }}

[integrations.down]
base_url = "http://127.0.0.1:{down_port}/base"
retry = false
proxy = {{ allow = ["GET /v1/models"] }}

[integrations.hidden]
base_url = "{upstream.url}/base"

[integrations.off]
base_url = "{upstream.url}/base"
proxy = {{ allow = ["GET /v1/models"], enabled = false }}
"""


def make_hub(folder: Path, upstream: Upstream, *, down_port: int = 9) -> tether.Hub:
    text = config_text(folder / "tether.db", upstream, down_port=down_port)
    return tether.Hub(parse_config(text, env={"PROXY_API_KEY": API_KEY}, base_dir=folder), base_dir=folder)


@contextlib.contextmanager
def proxy(tmp_path: Path, upstream: Upstream, **options: Any) -> Iterator[tuple[str, tether.Hub]]:
    """``tether serve``'s app on a real uvicorn server; yields its URL and the hub behind it."""
    hub = make_hub(tmp_path, upstream, down_port=options.pop("down_port", 9))
    with serving(create_app(hub, process=False, monitor=False, **options)) as url:
        yield url, hub


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


def raw(url: str, target: str, *, method: str = "GET", host: str | None = None, **headers: str) -> Answer:
    """Send ``target`` byte for byte (no client normalises it) and read the answer."""
    address = url.removeprefix("http://")
    name, _, port = address.rpartition(":")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host or address}", "Connection: close"]
    lines += [f"{key.replace('_', '-')}: {value}" for key, value in headers.items()]
    with socket.create_connection((name, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        body = response.read()
    return Answer(response.status, response.headers, body, list(response.getheaders()))


def no_secret_in(response: httpx2.Response | Answer) -> None:
    """Neither the API key nor the proxy token appears anywhere in what the browser gets."""
    items = response.headers.multi_items() if isinstance(response, httpx2.Response) else response.raw_headers
    body = response.content if isinstance(response, httpx2.Response) else response.body
    for secret in (API_KEY, TOKEN):
        assert secret.encode() not in body
        for name, value in items:
            assert secret not in value, f"a secret leaked in {name}"


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# --- credentials and what crosses ---------------------------------------------------------------------------


def test_the_api_key_is_added_on_the_server_and_never_reaches_the_browser(tmp_path: Path, upstream: Upstream) -> None:
    with proxy(tmp_path, upstream) as (url, _):
        before = len(upstream.seen)
        models = httpx2.get(f"{url}/proxy/api/v1/models?limit=2&after=a%2Fb")
        chat = httpx2.post(f"{url}/proxy/api/v1/chat/completions", json={"messages": [{"role": "user"}]})
        leaky = httpx2.get(f"{url}/proxy/api/v1/leaky", headers={"origin": ORIGIN})
        after = httpx2.get(f"{url}/proxy/api/v1/models")
        seen = upstream.seen[before:]
    assert models.status_code == 200
    assert models.json() == {"data": [{"id": "model-1"}]}
    assert (models.headers["x-request-id"], models.headers["etag"]) == ("req_123", '"v1"')
    assert chat.status_code == 200
    assert chat.json()["bytes"] == len(b'{"messages":[{"role":"user"}]}')
    assert [(s.method, s.target) for s in seen] == [
        ("GET", "/base/v1/models?limit=2&after=a%2Fb"),
        ("POST", "/base/v1/chat/completions"),
        ("GET", "/base/v1/leaky"),
        ("GET", "/base/v1/models"),
    ]
    assert after.status_code == 200
    assert "cookie" not in seen[3].headers, "the API's cookie for one browser is not kept for the next"
    assert all(s.headers["x-api-key"] == API_KEY for s in seen)
    assert seen[1].headers["content-type"] == "application/json"
    assert seen[1].body == b'{"messages":[{"role":"user"}]}'
    for name in ("set-cookie", "x-hop", "strict-transport-security", "www-authenticate", "alt-svc"):
        assert name not in leaky.headers, f"{name} reached the browser"
    assert leaky.headers.get_list("access-control-allow-origin") == [ORIGIN], "tether's CORS, not the API's"
    assert "access-control-allow-credentials" not in leaky.headers
    assert leaky.headers["x-request-id"] == "req_leaky"
    for response in (models, chat, leaky):
        no_secret_in(response)


def test_the_browsers_own_credentials_host_and_forwarding_headers_stay_behind(
    tmp_path: Path, upstream: Upstream, evil: Upstream
) -> None:
    with proxy(tmp_path, upstream, proxy_token=TOKEN) as (url, _):
        before = len(upstream.seen)
        answer = raw(
            url,
            "/proxy/api/v1/echo/headers",
            host=evil.netloc,
            authorization=f"Bearer {TOKEN}",
            cookie="session=browser; tether_admin=x",
            x_tether_proxy_token=TOKEN,
            x_forwarded_host=evil.netloc,
            x_forwarded_for="203.0.113.9",
            x_forwarded_proto="https",
            forwarded=f"for=203.0.113.9;host={evil.netloc}",
            x_real_ip="203.0.113.9",
            user_agent="Mozilla/5.0 (browser)",
            x_custom="page-controlled",
            accept="application/json",
            accept_language="fr-CH",
            if_none_match='"abc"',
            idempotency_key="key-1",
            te="trailers",
            proxy_authorization="Basic eDp5",
        )
        [seen] = upstream.seen[before:]
    assert answer.status == 200, answer.body
    headers = seen.headers
    assert headers["host"] == upstream.netloc
    assert headers["x-api-key"] == API_KEY
    assert headers["user-agent"].startswith("tether/")
    assert (headers["accept"], headers["accept-language"]) == ("application/json", "fr-CH")
    assert (headers["if-none-match"], headers["idempotency-key"]) == ('"abc"', "key-1")
    for name in (
        "authorization",
        "cookie",
        "x-tether-proxy-token",
        "x-forwarded-host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "forwarded",
        "x-real-ip",
        "x-custom",
        "te",
        "proxy-authorization",
    ):
        assert name not in headers, f"the browser's {name} was forwarded"
    no_secret_in(answer)


def test_upstream_errors_pass_through_as_the_apis_answer(tmp_path: Path, upstream: Upstream) -> None:
    with proxy(tmp_path, upstream) as (url, _):
        invalid = httpx2.get(f"{url}/proxy/api/v1/error")
        missing = httpx2.get(f"{url}/proxy/wide/v1/nothing-here")
        head = httpx2.head(f"{url}/proxy/api/v1/models")
    assert invalid.status_code == 422
    assert invalid.json() == {"error": {"message": "amount must be positive", "param": "amount"}}
    assert missing.status_code == 404
    assert missing.json() == {"error": {"message": "no such route"}}
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(json.dumps({"data": [{"id": "model-1"}]})))


def test_the_sandbox_api_works_through_the_proxy_and_event_streams_pass_as_they_come(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    text = f"""
store = "sqlite:///{tmp_path / "tether.db"}"
[integrations.sandbox]
base_url = "{sandbox.url}"
cors_origins = ["{ORIGIN}"]
auth = {{ type = "api_key", in = "header", name = "X-API-Key", key = "${{SANDBOX_KEY}}" }}
proxy = {{ allow = ["GET /v1/customers/{{id}}", "POST /v1/chat/completions"] }}
"""
    hub = tether.Hub(parse_config(text, env={"SANDBOX_KEY": SANDBOX_API_KEY}, base_dir=tmp_path), base_dir=tmp_path)
    chat = {"stream": True, "messages": [{"role": "user", "content": "hello proxy"}]}
    with serving(create_app(hub, process=False, monitor=False)) as url:
        customer = httpx2.get(f"{url}/proxy/sandbox/v1/customers/cus_0001", headers={"origin": ORIGIN})
        target = f"{url}/proxy/sandbox/v1/chat/completions"
        with httpx2.stream("POST", target, json=chat, headers={"origin": ORIGIN}) as streamed:
            chunks = [chunk for chunk in streamed.iter_text() if chunk]
    assert customer.status_code == 200, customer.text  # the sandbox wants its key: tether added it
    assert (customer.json()["id"], customer.json()["object"]) == ("cus_0001", "customer")
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in streamed.headers
    assert streamed.headers["access-control-allow-origin"] == ORIGIN
    events = [json.loads(line[6:]) for line in "".join(chunks).splitlines() if line.startswith("data: {")]
    words = "".join(event["choices"][0]["delta"].get("content", "") for event in events)
    assert words.strip() == "Sandbox reply to: hello proxy"
    assert "data: [DONE]" in "".join(chunks)
    for response in (customer, streamed):
        assert SANDBOX_API_KEY not in str(response.headers)
    assert SANDBOX_API_KEY not in customer.text


# --- the token ------------------------------------------------------------------------------------------------


def test_with_a_token_only_the_proxy_token_opens_the_proxy(tmp_path: Path, upstream: Upstream) -> None:
    with proxy(tmp_path, upstream, proxy_token=TOKEN, admin_token=ADMIN, loopback=False) as (url, _):
        before = len(upstream.seen)
        missing = httpx2.get(f"{url}/proxy/api/v1/models")
        wrong = httpx2.get(f"{url}/proxy/api/v1/models", headers=bearer(TOKEN + "x"))
        wrong_header = httpx2.get(f"{url}/proxy/api/v1/models", headers={"x-tether-proxy-token": TOKEN[:-1]})
        admin = httpx2.get(f"{url}/proxy/api/v1/models", headers=bearer(ADMIN))
        refused = len(upstream.seen) - before
        by_bearer = httpx2.get(f"{url}/proxy/api/v1/models", headers=bearer())
        by_header = httpx2.get(f"{url}/proxy/api/v1/models", headers={"x-tether-proxy-token": TOKEN})
        dashboard = httpx2.get(f"{url}/api/overview", headers=bearer())
        unknown = httpx2.get(f"{url}/proxy/nope/v1/models")
    assert refused == 0
    assert (missing.status_code, wrong.status_code, wrong_header.status_code, admin.status_code) == (401,) * 4
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "TETHER_PROXY_TOKEN" in missing.json()["detail"]
    assert "X-Tether-Proxy-Token" in missing.json()["detail"]
    assert (by_bearer.status_code, by_header.status_code) == (200, 200)
    assert dashboard.status_code == 401, "the proxy token does not open the dashboard"
    assert unknown.status_code == 401, "no token, no word on which integrations exist"
    for response in (missing, wrong, wrong_header, admin, by_bearer, by_header, dashboard):
        no_secret_in(response)


def test_a_public_binding_without_a_token_refuses_every_proxy_request(tmp_path: Path, upstream: Upstream) -> None:
    with proxy(tmp_path, upstream, loopback=False) as (url, _):
        before = len(upstream.seen)
        plain = httpx2.get(f"{url}/proxy/api/v1/models")
        guessed = httpx2.get(f"{url}/proxy/api/v1/models", headers=bearer("anything"))
        reached = len(upstream.seen) - before
    assert (plain.status_code, guessed.status_code) == (403, 403)
    assert "set TETHER_PROXY_TOKEN" in plain.json()["detail"]
    assert reached == 0


def test_a_loopback_binding_without_a_token_is_open_to_loopback_host_names_only(
    tmp_path: Path, upstream: Upstream, evil: Upstream
) -> None:
    with proxy(tmp_path, upstream) as (url, _):
        port = url.rpartition(":")[2]
        by_ip = raw(url, "/proxy/api/v1/models")
        by_name = raw(url, "/proxy/api/v1/models", host=f"localhost:{port}")
        rebound = raw(url, "/proxy/api/v1/models", host=f"attacker.example:{port}")
        evil_host = raw(url, "/proxy/api/v1/models", host=evil.netloc.replace("127.0.0.1", "evil.example"))
    assert (by_ip.status, by_name.status) == (200, 200)
    assert (rebound.status, evil_host.status) == (403, 403), "DNS rebinding: a page's own host name is refused"
    assert "TETHER_PROXY_TOKEN" in rebound.json()["detail"]


# --- the allow list -------------------------------------------------------------------------------------------


def test_only_the_allowed_methods_and_paths_go_through(tmp_path: Path, upstream: Upstream) -> None:
    with proxy(tmp_path, upstream) as (url, _):
        before = len(upstream.seen)
        refused = {
            "GET /v1/secret": httpx2.get(f"{url}/proxy/api/v1/secret"),
            "DELETE /v1/models": httpx2.delete(f"{url}/proxy/api/v1/models"),
            "POST /v1/models": httpx2.post(f"{url}/proxy/api/v1/models", json={}),
            "POST /v1/echo/x": httpx2.post(f"{url}/proxy/api/v1/echo/x", json={}),
            "GET /v1/files/a/b": httpx2.get(f"{url}/proxy/api/v1/files/a/b"),
            "GET /v1/models/x": httpx2.get(f"{url}/proxy/api/v1/models/x"),
            "PATCH /v1/echo/put": httpx2.patch(f"{url}/proxy/api/v1/echo/put", json={}),
        }
        reached = len(upstream.seen) - before
        allowed = [
            httpx2.get(f"{url}/proxy/api/v1/files/file-42"),
            httpx2.get(f"{url}/proxy/api/v1/echo/any/depth"),
            httpx2.put(f"{url}/proxy/api/v1/echo/put", json={}),
            httpx2.post(f"{url}/proxy/api/v1/chat/completions", json={}),
            httpx2.head(f"{url}/proxy/api/v1/models"),
        ]
        hidden = httpx2.get(f"{url}/proxy/hidden/v1/models")
        off = httpx2.get(f"{url}/proxy/off/v1/models")
        unknown = httpx2.get(f"{url}/proxy/nope/v1/models")
    assert reached == 0
    for request, response in refused.items():
        assert response.status_code == 403, request
        detail = response.json()["detail"]
        assert detail.startswith(f"{request} is not allowed through the proxy for 'api'")
        assert "GET /v1/models, POST /v1/chat/*, GET /v1/files/{id}, GET /v1/echo/*" in detail
        no_secret_in(response)
    assert [response.status_code for response in allowed] == [200] * 5
    assert allowed[0].json() == {"id": "file-42"}
    assert (hidden.status_code, off.status_code, unknown.status_code) == (404, 404, 404)
    assert "[integrations.hidden.proxy]" in hidden.json()["detail"]
    assert "not exposed" in off.json()["detail"]


# --- escapes --------------------------------------------------------------------------------------------------

ESCAPES = [
    "/proxy/api/http://EVIL/v1/models",
    "/proxy/api/https:/EVIL/v1/models",
    "/proxy/api/http:%2F%2FEVIL/v1/models",
    "/proxy/api/http%3A%2F%2FEVIL/v1/models",
    "/proxy/api//EVIL/v1/models",
    "/proxy/api/v1//models",
    "/proxy/api/@EVIL/v1/models",
    "/proxy/api/v1/models@EVIL",
    "/proxy/api/%40EVIL/v1/models",
    "/proxy/api/../v1/models",
    "/proxy/api/./v1/models",
    "/proxy/api/v1/../../secret",
    "/proxy/api/v1/files/..",
    "/proxy/api/v1/chat/../../../secret",
    "/proxy/api/v1/chat/%2e%2e/%2e%2e/%2e%2e/secret",
    "/proxy/api/v1/chat/%2E%2E/%2E%2E/secret",
    "/proxy/api/v1/chat/.%2e/.%2E/secret",
    "/proxy/api/v1/chat/%252e%252e/%252e%252e/secret",
    "/proxy/api/v1/chat/%25252e%25252e/secret",
    "/proxy/api/v1/chat/..%2F..%2F..%2Fsecret",
    "/proxy/api/v1/chat/..%2f..%2fsecret",
    "/proxy/api/v1/chat/..%5C..%5Csecret",
    "/proxy/api/v1/chat/..%5c..%5csecret",
    "/proxy/api/v1/chat/..\\..\\secret",
    "/proxy/api/v1/chat/..;/..;/secret",
    "/proxy/api/v1/chat/%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/secret",
    "/proxy/api/v1/chat/x%EF%BC%8Fy",
    "/proxy/api/v1/chat/x%00y",
    "/proxy/api/v1/chat/x%0d%0aHost:%20EVIL",
    "/proxy/api/v1/chat/x%",
    "/proxy/api/v1/chat/x%zz",
    "/proxy/api/%2e",
    "/proxy/api",
    "/proxy/api%2F..%2Fwide/v1/models",
    "/proxy/%2e%2e/api/v1/models",
    "/proxy/../proxy/wide/v1/models",
]


def test_escape_attempts_all_fail_and_no_other_host_is_ever_reached(
    tmp_path: Path, upstream: Upstream, evil: Upstream
) -> None:
    with proxy(tmp_path, upstream, proxy_token=TOKEN) as (url, _):
        before = len(upstream.seen)
        answers = {}
        for target in ESCAPES:
            answers[target] = raw(url, target.replace("EVIL", evil.netloc), method="POST", **bearer())
        reached = upstream.targets()[before:]
        # What a client cannot steer: an absolute-form request target, the Host header, forwarding headers.
        absolute = raw(url, f"http://{evil.netloc}/proxy/api/v1/models", **bearer())
        host = raw(url, "/proxy/api/v1/models", host=evil.netloc, **bearer())
        forwarded = raw(
            url,
            "/proxy/api/v1/models",
            x_forwarded_host=evil.netloc,
            x_forwarded_proto="https",
            forwarded=f"host={evil.netloc};proto=http",
            **bearer(),
        )
        steered = upstream.seen[before + len(reached) :]
    wrong = {target: answer.status for target, answer in answers.items() if answer.status not in (400, 404)}
    assert wrong == {}, "every escape is refused"
    assert reached == []
    assert all(answer.json()["error"] in ("bad_path", "not_found") for answer in answers.values())
    assert (absolute.status, host.status, forwarded.status) == (200, 200, 200)
    assert [(s.target, s.headers["host"]) for s in steered] == [("/base/v1/models", upstream.netloc)] * 3
    assert evil.seen == []


def test_the_url_check_catches_a_path_that_skipped_the_path_rules(upstream: Upstream) -> None:
    exposure = Exposure("api", ["GET /*"], origins=[], base=httpx2.URL(f"{upstream.url}/base"))
    assert exposure.url(b"/v1/models", b"a=1").raw_path == b"/base/v1/models?a=1"
    for unchecked in (b"/../../etc", b"/..", b"/x/../../y"):
        with pytest.raises(PathRefused):
            exposure.url(unchecked, b"")


# Pieces an attacker would combine (spaces excluded: they end a request line).
SEGMENT_PIECES = [
    *["/", "//", ".", "..", "%2e", "%2E", "%252e", "%EF%BC%8E"],  # separators and dots, encoded or not
    *["%2f", "%2F", "%5c", "%5C", "\\", "%EF%BC%8F", "%25", "%", "%zz"],  # slashes and escapes
    *["@", "%40", ":", "http:", "https://", "evil.example", "127.0.0.1"],  # other hosts
    *["%00", "%0d%0a", "%20", "%C3%A9", "%FF", "?", "&", "=", "#", ";"],  # controls, non-ASCII, queries
    *["v1", "models", "a", "~", "|", "[", "]", "'", "!"],  # harmless
]


@given(st.lists(st.sampled_from(SEGMENT_PIECES), max_size=14).map("".join))
@settings(max_examples=400)
def test_a_checked_path_never_leaves_the_base_url(text: str) -> None:
    exposure = Exposure("api", ["* /*"], origins=[], base=httpx2.URL("https://api.example.com:8443/base"))
    raw_path = ("/" + text).encode()
    try:
        path = checked_path(raw_path)
        url = exposure.url(raw_path, b"")
    except PathRefused:
        return
    assert (url.scheme, url.host, url.port) == ("https", "api.example.com", 8443)
    assert url.raw_path.startswith(b"/base/")
    segments = path.split("/")[1:]
    assert all(segment.strip(".") for segment in segments[:-1])
    assert not {"\\", "@", "%"} & set(path)


@given(st.binary(max_size=40))
def test_arbitrary_bytes_are_refused_or_stay_under_the_base_path(data: bytes) -> None:
    exposure = Exposure("api", ["* /*"], origins=[], base=httpx2.URL("http://10.0.0.1/v2"))
    try:
        checked_path(b"/" + data)
        url = exposure.url(b"/" + data, b"")
    except PathRefused:
        return
    assert url.host == "10.0.0.1"
    assert url.raw_path.startswith(b"/v2/")


@pytest.fixture(scope="module")
def open_proxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[str]:
    """One loopback service without a token, shared by the property test's examples."""
    with proxy(tmp_path_factory.mktemp("open-proxy"), upstream) as (url, _):
        yield url


@given(text=st.lists(st.sampled_from(SEGMENT_PIECES), max_size=10).map("".join))
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_whatever_the_path_the_api_sees_only_paths_under_its_base_and_no_5xx(
    text: str, open_proxy: str, upstream: Upstream, evil: Upstream
) -> None:
    before = len(upstream.seen)
    answer = raw(open_proxy, "/proxy/wide/" + text.replace("evil.example", evil.netloc))
    reached = upstream.targets()[before:]
    assert answer.status < 500, (text, answer.status, answer.body)
    assert all(target.startswith("/base/") for target in reached), reached
    assert len(reached) <= 1
    assert evil.seen == []


# --- CORS -----------------------------------------------------------------------------------------------------


def test_preflight_is_answered_for_configured_origins_without_a_token(tmp_path: Path, upstream: Upstream) -> None:
    request_headers = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    with proxy(tmp_path, upstream, proxy_token=TOKEN, loopback=False) as (url, _):
        before = len(upstream.seen)
        target = f"{url}/proxy/api/v1/chat/completions"
        allowed = httpx2.options(target, headers={"origin": ORIGIN, **request_headers})
        stranger = httpx2.options(target, headers={"origin": "https://evil.example", **request_headers})
        hidden = httpx2.options(f"{url}/proxy/hidden/v1/models", headers={"origin": ORIGIN, **request_headers})
        reached = len(upstream.seen) - before
    assert allowed.status_code == 204
    assert allowed.headers.get_list("access-control-allow-origin") == [ORIGIN]
    assert allowed.headers["access-control-allow-methods"] == "GET, HEAD, POST, PUT"
    allow_headers = allowed.headers["access-control-allow-headers"].split(", ")
    for name in ("Authorization", "Content-Type", "X-Tether-Proxy-Token", "If-None-Match", "Idempotency-Key"):
        assert name in allow_headers
    assert allowed.headers["access-control-max-age"] == "600"
    assert "Origin" in allowed.headers["vary"]
    assert "access-control-allow-credentials" not in allowed.headers
    assert (stranger.status_code, hidden.status_code) == (403, 403), "the same for both: no name is revealed"
    for response in (stranger, hidden):
        assert not any(name.startswith("access-control-") for name in response.headers)
    assert reached == 0


def test_actual_requests_get_cors_headers_for_configured_origins_only(tmp_path: Path, upstream: Upstream) -> None:
    with proxy(tmp_path, upstream, proxy_token=TOKEN) as (url, _):
        before = len(upstream.seen)
        target = f"{url}/proxy/api/v1/models"
        configured = httpx2.get(target, headers={"origin": ORIGIN, **bearer()})
        refusal = httpx2.get(target, headers={"origin": ORIGIN, **bearer("wrong")})
        stranger = httpx2.get(target, headers={"origin": "https://evil.example", **bearer()})
        form_post = httpx2.post(
            f"{url}/proxy/api/v1/chat/completions",
            data={"a": "b"},
            headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site", **bearer()},
        )
        image = httpx2.get(target, headers={"sec-fetch-site": "cross-site", **bearer()})
        reached = len(upstream.seen) - before
        same_origin = httpx2.post(
            f"{url}/proxy/api/v1/chat/completions",
            json={},
            headers={"origin": url, "sec-fetch-site": "same-origin", **bearer()},
        )
        server_side = httpx2.get(target, headers=bearer())
    assert configured.status_code == 200
    assert configured.headers["access-control-allow-origin"] == ORIGIN
    assert "Origin" in configured.headers["vary"]
    assert "ETag" in configured.headers["access-control-expose-headers"]
    assert refusal.status_code == 401
    assert refusal.headers["access-control-allow-origin"] == ORIGIN, "a page can read why it was refused"
    assert reached == 1, "only the configured origin's request reached the API"
    for response in (stranger, form_post, image):
        assert response.status_code == 403
        assert "cors_origins" in response.json()["detail"]
        assert "access-control-allow-origin" not in response.headers
    assert (same_origin.status_code, server_side.status_code) == (200, 200)
    assert "access-control-allow-origin" not in same_origin.headers
    assert "access-control-allow-origin" not in server_side.headers


# --- the client's policies ------------------------------------------------------------------------------------


def test_retries_apply_and_the_call_is_recorded_once_with_its_attempts(tmp_path: Path, upstream: Upstream) -> None:
    with proxy(tmp_path, upstream) as (url, hub):
        answer = httpx2.get(f"{url}/proxy/api/v1/flaky", params={"key": "retried", "times": "2"})
        assert hub.recorder is not None
        hub.recorder.flush()
        records = [stored.record for stored in hub.call_log.calls(since=0, integration="api")]
    assert answer.status_code == 200
    assert answer.json() == {"recovered": True}
    assert upstream.targets().count("/base/v1/flaky?key=retried&times=2") == 3
    [record] = records
    assert (record.status, record.attempts, record.endpoint) == (200, 3, "/v1/flaky")


def test_an_open_breaker_answers_503_with_its_class_hint_and_retry_after(tmp_path: Path, upstream: Upstream) -> None:
    with proxy(tmp_path, upstream) as (url, _):
        target = f"{url}/proxy/fragile/v1/flaky"
        failures = [httpx2.get(target, params={"key": "breaker", "times": "99"}) for _ in range(2)]
        opened = httpx2.get(target, params={"key": "breaker", "times": "99"})
    assert [response.status_code for response in failures] == [503, 503]
    assert failures[0].json() == {"error": {"message": "upstream overloaded"}}, "the API's own answer"
    assert upstream.targets().count("/base/v1/flaky?key=breaker&times=99") == 2
    assert opened.status_code == 503
    body = opened.json()
    assert (body["error"], body["integration"], body["attempts"]) == ("CircuitOpenError", "fragile", 0)
    assert "probe" in body["hint"]
    assert 1 <= int(opened.headers["retry-after"]) <= 60
    no_secret_in(opened)


def test_timeouts_answer_504_throttling_429_and_connection_failures_502(
    tmp_path: Path, upstream: Upstream, unused_port: int
) -> None:
    with proxy(tmp_path, upstream, down_port=unused_port) as (url, _):
        slow = httpx2.get(f"{url}/proxy/slowpoke/v1/slow", params={"seconds": "1"})
        first = httpx2.get(f"{url}/proxy/limited/v1/models")
        throttled = httpx2.get(f"{url}/proxy/limited/v1/models")
        down = httpx2.get(f"{url}/proxy/down/v1/models")
    assert slow.status_code == 504
    assert slow.json()["error"] in ("DeadlineExceededError", "ReadTimeoutError")
    assert slow.json()["hint"]
    assert first.status_code == 200
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "ThrottledError"
    assert 50 <= int(throttled.headers["retry-after"]) <= 60
    assert down.status_code == 502
    assert down.json()["error"] == "ConnectionFailedError"
    assert "base_url" in down.json()["hint"]
    for response in (slow, throttled, down):
        no_secret_in(response)
        assert response.headers["cache-control"] == "no-store"


def test_a_body_over_the_cap_answers_413_and_is_not_sent(tmp_path: Path, upstream: Upstream) -> None:
    with proxy(tmp_path, upstream, proxy_max_body=1024) as (url, _):
        before = len(upstream.seen)
        target = f"{url}/proxy/api/v1/chat/completions"
        declared = httpx2.post(target, content=b"x" * 1025)
        chunked = httpx2.post(target, content=iter([b"x" * 600, b"x" * 600]))
        reached = len(upstream.seen) - before
        fits = httpx2.post(target, content=b"x" * 1024, headers={"content-type": "text/plain"})
    assert (declared.status_code, chunked.status_code) == (413, 413)
    assert "1024 bytes" in declared.json()["detail"]
    assert reached == 0
    assert fits.status_code == 200
    assert fits.json()["bytes"] == 1024


# --- tether serve -------------------------------------------------------------------------------------------


def serve_proxy(
    tmp_path: Path, upstream: Upstream, env: dict[str, str]
) -> contextlib.AbstractContextManager[tuple[str, Path]]:
    """``tether serve --host 0.0.0.0`` for this module's config, with ``env``."""
    config = tmp_path / "tether.toml"
    config.write_text(config_text(tmp_path / "tether.db", upstream))
    return tether_serve(config, "0.0.0.0", {"PROXY_API_KEY": API_KEY, **env})


@pytest.mark.slow
def test_tether_serve_on_a_public_address_needs_tether_proxy_token(tmp_path: Path, upstream: Upstream) -> None:
    with serve_proxy(tmp_path, upstream, {}) as (url, log):
        refused = httpx2.get(f"{url}/proxy/api/v1/models")
    warning = " ".join(log.read_text().split())
    assert refused.status_code == 403
    assert "TETHER_PROXY_TOKEN" in refused.json()["detail"]
    assert "without TETHER_PROXY_TOKEN: the backend proxy answers 403" in warning
    short = "short-token"
    with serve_proxy(tmp_path, upstream, {"TETHER_PROXY_TOKEN": short, "TETHER_ADMIN_TOKEN": short}) as (
        url,
        log,
    ):
        opened = httpx2.get(f"{url}/proxy/api/v1/models", headers=bearer(short))
        missing = httpx2.get(f"{url}/proxy/api/v1/models")
    output = " ".join(log.read_text().split())
    assert (opened.status_code, missing.status_code) == (200, 401)
    assert "backend proxy: http://0.0.0.0:" in output
    assert "TETHER_PROXY_TOKEN is shorter than 16 characters" in output
    assert "TETHER_PROXY_TOKEN equals TETHER_ADMIN_TOKEN" in output
    assert short not in output, "the token is never printed or logged"

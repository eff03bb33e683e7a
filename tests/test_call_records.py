"""Call records made by real calls: each test runs through ``hub.client`` and ``hub.async_client`` against a
scripted API on a loopback socket (:class:`Api`), with a manual clock so latencies and waits are exact."""

from __future__ import annotations

import contextlib
import gc
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tether
from fakes import Timeline, in_thread
from tether.config.loader import parse_config
from tether.errors import CallError
from tether.observe.records import CallRecord, endpoint_template

SECRET = "sk_live_7fQ2xR9LmP4vK8nT3wY6zB1cD5"


# --- a scripted API on loopback -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One answer of the API: a status, JSON body and headers, sent after ``delay`` seconds."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Api

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.answer(Received(self.command, self.path, headers, body))
        if reply.delay:
            time.sleep(reply.delay)
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


class Api(ThreadingHTTPServer):
    """A fake third-party API: each path plays its scripted replies in order, repeating the last one
    (unscripted paths answer ``200 {"ok": true}``), and every request is kept."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.received: list[Received] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path] = list(replies)
            self._counts[path] = 0

    def answer(self, request: Received) -> Reply:
        path = urlsplit(request.target).path
        with self._lock:
            self.received.append(request)
            replies = self._scripts.get(path) or [Reply()]
            count = self._counts.get(path, 0)
            self._counts[path] = count + 1
            return replies[min(count, len(replies) - 1)]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is what some tests do on purpose


@contextlib.contextmanager
def serving_api() -> Iterator[Api]:
    """An :class:`Api` serving on loopback from a thread until the block ends."""
    server = Api()
    with in_thread(server):
        yield server


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with serving_api() as server:
        yield server


# --- a hub whose calls go through its sync or its async client -------------------------------------------------

TOML = """
store = "sqlite:///{db}"
[monitoring]
{monitoring}
[integrations.acme]
base_url = "{base_url}"
retry = {retry}
breaker = {breaker}
{extra}
"""


class Tether:
    """A hub on a manual clock whose fake sleeps advance it; :meth:`get` calls through the sync or the async
    client; :attr:`records` collects the records as the recorder's hook sees them."""

    def __init__(self, mode: str, config: str, tmp_path: Path, env: dict[str, str]) -> None:
        self.mode = mode
        self.timeline = Timeline()
        self.hub = tether.Hub(
            parse_config(config, env=env, base_dir=tmp_path),
            base_dir=tmp_path,
            clock=self.timeline.clock,
            sleep=self.timeline.sleep,
            async_sleep=self.timeline.async_sleep,
        )
        self.records: list[CallRecord] = []
        if self.hub.recorder is not None:
            self.hub.recorder.add_hook(self.records.append)

    async def request(self, method: str, path: str, *, name: str = "acme", **kwargs: Any) -> httpx2.Response:
        if self.mode == "sync":
            with self.hub.client(name) as client:
                return client.request(method, path, **kwargs)
        async with self.hub.async_client(name) as client:
            return await client.request(method, path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        return await self.request("GET", path, **kwargs)

    @property
    def record(self) -> CallRecord:
        """The one record made so far."""
        assert len(self.records) == 1, self.records
        return self.records[0]

    def stored(self) -> list[CallRecord]:
        """What the call log holds, after writing what is queued."""
        assert self.hub.recorder is not None
        self.hub.recorder.flush()
        return [stored.record for stored in self.hub.call_log.calls(since=0)]


class MakeTether:
    def __init__(self, mode: str, tmp_path: Path, api: Api) -> None:
        self.mode, self.tmp_path, self.api = mode, tmp_path, api
        self.made: list[Tether] = []

    def __call__(
        self,
        extra: str = "",
        *,
        base_url: str | None = None,
        retry: str = '{ attempts = 3, backoff = "1s" }',
        breaker: str = "false",
        monitoring: str = "otel = false",
        env: dict[str, str] | None = None,
        db: str = "tether.db",
    ) -> Tether:
        config = TOML.format(
            db=self.tmp_path / db,
            monitoring=monitoring,
            base_url=base_url or f"{self.api.url}/v1",
            retry=retry,
            breaker=breaker,
            extra=extra,
        )
        made = Tether(self.mode, config, self.tmp_path, env or {})
        self.made.append(made)
        return made


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest, tmp_path: Path, api: Api) -> Iterator[MakeTether]:
    maker = MakeTether(request.param, tmp_path, api)
    yield maker
    for made in maker.made:
        made.hub.close()


# --- what a record says ------------------------------------------------------------------------------------------


async def test_a_successful_call_makes_one_record_with_status_peer_and_bytes(make: MakeTether) -> None:
    t = make()
    payload = {"name": "Ada", "email": "ada@example.com"}
    response = await t.request("POST", "/customers", json=payload)
    assert response.status_code == 200
    record = t.record
    assert (record.integration, record.method, record.endpoint) == ("acme", "POST", "/customers")
    assert (record.status, record.outcome, record.failed) == (200, "success", False)
    assert (record.error, record.hint) == (None, None)
    assert (record.attempts, record.tries) == (1, ())
    assert record.peer is not None
    assert record.peer.startswith("127.0.0.1")
    assert record.bytes_sent == len(response.request.content) == len(json.dumps(payload, separators=(",", ":")))
    assert record.bytes_received == len(response.content) == len(b'{"ok": true}')
    assert record.latency == 0.0  # the manual clock did not move: nothing waited
    assert record.at == t.timeline.clock.wall()


async def test_the_endpoint_is_the_decoded_path_whichever_way_it_was_encoded(make: MakeTether) -> None:
    t = make()
    await t.get("/customers/%61da")  # "ada", percent-encoded by the caller
    await t.get("/customers/ada")
    await t.get("/customers")
    assert [record.endpoint for record in t.records] == ["/customers/ada", "/customers/ada", "/customers"]
    assert len(t.records[0]) == len(CallRecord._fields), "every field, in order"
    assert t.records[0] == CallRecord(**t.records[0]._asdict())


async def test_records_wait_for_the_flush_holding_no_object_the_garbage_collector_tracks(make: MakeTether) -> None:
    """The recorder keeps a call's fields, not an object per call (see tether/observe/columns.py): an object
    tracked by the collector, kept until the flush, would bring on collections that the calls pay for."""
    t = make()
    assert t.hub.recorder is not None
    held: list[Any] = []
    t.hub.recorder.add_listener(lambda batch: held.extend(batch.values))
    await t.get("/customers/ada", headers={"X-Trace": "1"})
    await t.request("POST", "/customers", json={"name": "Ada"})
    t.hub.recorder.flush()
    assert len(held) == 2 * len(CallRecord._fields)
    assert [value for value in held if gc.is_tracked(value)] == []
    assert [record.endpoint for record in t.stored()] == ["/customers/ada", "/customers"]


async def test_the_peer_is_the_ip_address_the_call_reached(make: MakeTether) -> None:
    """As documented (docs/monitoring.md) and as OpenTelemetry's ``network.peer.address`` wants: no port."""
    t = make()
    await t.get("/customers")
    assert t.record.peer == "127.0.0.1"


async def test_a_record_reads_back_from_the_call_log_as_it_was_made(make: MakeTether, api: Api) -> None:
    api.script("/v1/flaky-orders", Reply(503), Reply(200, headers={"X-Request-Id": "req_abc"}))
    t = make()
    await t.get("/flaky-orders")
    await t.get("/customers")
    assert t.stored() == t.records


async def test_a_503_then_200_records_each_try_with_its_status_and_peer(make: MakeTether, api: Api) -> None:
    api.script("/v1/invoices", Reply(503), Reply(503), Reply(200, headers={"X-Request-Id": "req_last"}))
    t = make()
    response = await t.get("/invoices")
    assert response.status_code == 200
    record = t.record
    assert (record.status, record.outcome, record.attempts) == (200, "success", 3)
    assert [attempt.status for attempt in record.tries] == [503, 503, 200]
    assert [attempt.error for attempt in record.tries] == [None, None, None]
    assert [_ip(attempt.peer) for attempt in record.tries] == ["127.0.0.1"] * 3
    assert record.request_id == "req_last"  # the last attempt's
    assert record.latency == pytest.approx(sum(t.timeline.waits))  # the backoff waits are part of the call
    assert len(t.timeline.waits) == 2


async def test_connection_refused_records_no_status_the_error_class_and_its_hint(
    make: MakeTether, unused_port: int
) -> None:
    t = make(base_url=f"http://127.0.0.1:{unused_port}/v1")
    with pytest.raises(CallError):
        await t.get("/customers")
    record = t.record
    assert (record.status, record.failed, record.outcome) == (None, True, "attempts exhausted")
    assert record.error == "ConnectionFailedError"
    assert record.hint == "check base_url, DNS and firewall; is the service up?"
    assert record.attempts == 3
    tries = [(attempt.status, attempt.error, attempt.peer) for attempt in record.tries]
    assert tries == [(None, "ConnectError", None)] * 3
    assert (record.peer, record.bytes_received) == (None, 0)


async def test_a_read_timeout_records_no_status_and_the_timeout_error(make: MakeTether, api: Api) -> None:
    api.script("/v1/slow-report", Reply(delay=0.5))
    t = make('timeout = { total = "10s", read = "100ms" }', retry="false")
    with pytest.raises(CallError):
        await t.get("/slow-report")
    record = t.record
    assert (record.status, record.failed, record.attempts) == (None, True, 1)
    assert record.error == "ReadTimeoutError"
    assert record.hint is not None
    assert "timeout.read" in record.hint
    assert record.outcome != "success"


async def test_a_401_records_the_hint_naming_the_env_var_not_the_key(make: MakeTether, api: Api) -> None:
    api.script("/v1/me", Reply(401, {"error": {"message": "Invalid API key provided"}}))
    auth = '[integrations.acme.auth]\ntype = "api_key"\nin = "header"\nname = "X-API-Key"\nkey = "${ACME_KEY}"'
    t = make(auth, env={"ACME_KEY": SECRET})
    response = await t.get("/me")
    assert response.status_code == 401
    record = t.record
    assert (record.status, record.failed, record.error) == (401, True, "AuthenticationError")
    assert record.outcome == "not retryable"
    assert record.hint is not None
    assert "env var ACME_KEY" in record.hint
    assert SECRET not in record.hint


async def test_an_open_circuit_refuses_the_call_and_records_zero_attempts(make: MakeTether, api: Api) -> None:
    api.script("/v1/charges", Reply(503))
    t = make(retry="false", breaker='{ min_calls = 2, failure_ratio = 0.5, open_for = "1m" }')
    for _ in range(2):
        assert (await t.get("/charges")).status_code == 503
    sent = len(api.received)
    with pytest.raises(tether.errors.CircuitOpenError):
        await t.get("/charges")
    assert len(api.received) == sent  # refused before sending
    refused = t.records[-1]
    assert (refused.status, refused.attempts, refused.outcome) == (None, 0, "circuit open")
    assert (refused.error, refused.failed, refused.peer) == ("CircuitOpenError", True, None)
    assert refused.hint is not None
    assert "probe" in refused.hint
    assert [record.status for record in t.records[:2]] == [503, 503]


async def test_the_configured_endpoint_pattern_names_the_endpoint(make: MakeTether) -> None:
    t = make(
        '[integrations.acme.endpoints."GET /customers/{customer}/invoices"]\nrate_limit = "100/s"\n'
        '[integrations.acme.endpoints."/search/*"]\nrate_limit = "100/s"'
    )
    await t.get("/customers/cus_9s6XKzkNRiz8i3/invoices")
    await t.get("/search/customers/by-email")
    await t.request("DELETE", "/customers/cus_9s6XKzkNRiz8i3/invoices")  # the pattern is for GET only
    await t.get("/customers/cus_9s6XKzkNRiz8i3")
    assert [record.endpoint for record in t.records] == [
        "/customers/{customer}/invoices",
        "/search/*",
        "/customers/{id}/invoices",
        "/customers/{id}",
    ]


async def test_ids_in_paths_become_id_and_the_base_path_is_left_out(make: MakeTether) -> None:
    t = make()
    await t.get("/customers/cus_9s6XKzkNRiz8i3/invoices/in_1MtHbELkdIwHu7ix/lines", params={"limit": "3"})
    await t.get("/orders/8c4f61d2-5b8e-4a53-9c5c-0f3d2a1b7e90")
    assert [record.endpoint for record in t.records] == [
        "/customers/{id}/invoices/{id}/lines",
        "/orders/{id}",
    ]


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/customers", "/v1/customers"),
        ("/v2beta/models", "/v2beta/models"),
        ("/v1.1/items/42", "/v1.1/items/{id}"),
        ("/v1/customers/cus_9s6XKzkNRiz8i3/invoices", "/v1/customers/{id}/invoices"),
        ("/2024-06-20/events", "/{id}/events"),
        ("/files/" + "a" * 41, "/files/{id}"),
        ("/files/" + "a" * 40, "/files/" + "a" * 40),
        ("/users/ada@example.com", "/users/{id}"),
        ("/", "/"),
        ("", "/"),
    ],
)
def test_endpoint_template_keeps_words_and_versions_and_hides_identifiers(path: str, template: str) -> None:
    assert endpoint_template(path) == template


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="/"), max_size=50), max_size=8))
def test_endpoint_template_is_idempotent_keeps_segments_and_leaves_no_digit_outside_versions(
    segments: list[str],
) -> None:
    path = "/" + "/".join(segments)
    template = endpoint_template(path)
    assert endpoint_template(template) == template
    assert template.count("/") == path.count("/")
    for segment in template.split("/"):
        assert segment == "{id}" or segment.startswith("v") or not any(char.isdigit() for char in segment)


async def test_the_version_header_of_the_response_wins_over_the_configured_version(make: MakeTether, api: Api) -> None:
    api.script("/v1/balance", Reply(headers={"Stripe-Version": "2024-06-20"}))
    t = make('version = "2023-10-16"\nversion_header = "Stripe-Version"')
    await t.get("/balance")
    await t.get("/customers")  # answers without the header
    assert [record.version for record in t.records] == ["2024-06-20", "2023-10-16"]
    assert api.received[-1].headers["stripe-version"] == "2023-10-16"  # and the configured one was sent


async def test_deprecation_and_sunset_headers_are_captured(make: MakeTether, api: Api) -> None:
    sunset = "Wed, 11 Nov 2026 23:59:59 GMT"
    api.script("/v1/legacy-charges", Reply(headers={"Deprecation": "@1735689600", "Sunset": sunset}))
    t = make()
    await t.get("/legacy-charges")
    await t.get("/customers")
    assert [(record.deprecation, record.sunset) for record in t.records] == [("@1735689600", sunset), (None, None)]


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}, 21),  # OpenAI
        ({"usage": {"input_tokens": 30, "output_tokens": 7}}, 37),  # Anthropic
        ({"usageMetadata": {"totalTokenCount": 15}}, 15),  # Gemini
        ({"choices": []}, None),
    ],
)
async def test_tokens_come_from_the_responses_usage(
    make: MakeTether, api: Api, usage: dict[str, Any], tokens: int | None
) -> None:
    api.script("/v1/chat/completions", Reply(body={"id": "chatcmpl", **usage}))
    t = make()
    await t.request("POST", "/chat/completions", json={"model": "m", "messages": []})
    assert t.record.tokens == tokens


async def test_rate_limit_headers_give_limit_remaining_and_usage(make: MakeTether, api: Api) -> None:
    api.script("/v1/events", Reply(headers={"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "25"}))
    t = make()
    await t.get("/events")
    await t.get("/customers")
    limited, plain = t.records
    assert (limited.limit, limited.limit_remaining, limited.usage) == (100.0, 25.0, 0.75)
    assert (plain.limit, plain.limit_remaining, plain.usage) == (None, None, None)


def test_usage_is_bounded_to_zero_and_one_and_needs_a_limit() -> None:
    def usage(limit: float | None, remaining: float | None) -> float | None:
        return CallRecord(0.0, "acme", "GET", "/", 200, "success", limit=limit, limit_remaining=remaining).usage

    assert usage(100, 0) == 1.0
    assert usage(100, 100) == 0.0
    assert usage(100, 150) == 0.0  # an API that reports more left than its limit
    assert usage(100, -5) == 1.0
    assert usage(0, 0) is None
    assert usage(None, 10) is None
    assert usage(100, None) is None


# --- turning it off; keeping secrets out ---------------------------------------------------------------------------


async def test_record_false_makes_no_recorder_and_writes_nothing(make: MakeTether, tmp_path: Path) -> None:
    t = make(monitoring="record = false\notel = false")
    assert t.hub.recorder is None
    assert (await t.get("/customers")).status_code == 200
    t.hub.close()
    assert not _tables(tmp_path / "tether.db") & {"tether_calls", "tether_call_minutes"}


async def test_record_false_with_otel_on_records_for_otel_but_writes_nothing(make: MakeTether, tmp_path: Path) -> None:
    t = make(monitoring="record = false\notel = true")
    assert t.hub.recorder is not None  # OpenTelemetry's hook runs on the records
    await t.get("/customers")
    assert len(t.records) == 1
    assert t.hub.recorder.flush() == 1  # handed on, with nowhere to write it
    t.hub.close()
    assert not _tables(tmp_path / "tether.db") & {"tether_calls", "tether_call_minutes"}


async def test_no_secret_reaches_any_stored_column_or_the_database_file(
    make: MakeTether, api: Api, tmp_path: Path, unused_port: int
) -> None:
    """The key travels in a header for one integration and in the query string for another; every kind of
    record (success, retried 503s, a 401, a refused connection) is written, then the file's bytes are read."""
    api.script("/v1/keys-flaky", Reply(503), Reply(200))
    api.script("/v1/keys-denied", Reply(401, {"error": {"message": "Invalid API key provided"}}))
    in_query = (
        f'[integrations.query]\nbase_url = "{api.url}/v1"\nretry = {{ attempts = 2, backoff = "1s" }}\n'
        '[integrations.query.auth]\ntype = "api_key"\nin = "query"\nname = "api_key"\nkey = "${ACME_KEY}"\n'
        f'[integrations.down]\nbase_url = "http://127.0.0.1:{unused_port}/v1"\nretry = false\n'
        '[integrations.down.auth]\ntype = "api_key"\nin = "query"\nname = "api_key"\nkey = "${ACME_KEY}"\n'
    )
    header = '[integrations.acme.auth]\ntype = "api_key"\nin = "header"\nname = "X-API-Key"\nkey = "${ACME_KEY}"\n'
    t = make(header + in_query, env={"ACME_KEY": SECRET})
    for name in ("acme", "query"):
        for path in ("/customers", "/keys-flaky", "/keys-denied"):
            await t.get(path, name=name)
    with pytest.raises(CallError):
        await t.get("/customers", name="down")
    assert any(SECRET in received.target for received in api.received)  # the key was really sent in the URL
    assert any(received.headers.get("x-api-key") == SECRET for received in api.received)
    stored = t.stored()
    assert len(stored) == 7
    assert {record.integration for record in stored} == {"acme", "query", "down"}
    for record in stored:
        assert SECRET not in repr(record)
    t.hub.close()
    files = _database_files(tmp_path)
    assert "tether.db" in files
    for name, content in files.items():
        assert SECRET.encode() not in content, name


def _database_files(folder: Path) -> dict[str, bytes]:
    """The bytes of the SQLite file and of any journal or WAL beside it."""
    return {path.name: path.read_bytes() for path in folder.glob("tether.db*")}


def _ip(peer: str | None) -> str | None:
    return peer.rpartition(":")[0] if peer and peer.count(":") == 1 else peer


def _tables(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    connection.close()
    return {row[0] for row in rows}

"""Secrets never leave tether in clear: not in logs, errors, reprs or CLI output.

Four integrations send their credentials four ways (query parameter, bearer token, Basic password, custom
header) to a real HTTP server on loopback, which proves each credential was sent. Every log record at DEBUG
(through the CLI's JSON logging and pytest's capture), every error, every repr and every line the CLI prints is
then scanned for the values, and for ``***`` where they were.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import Result
from typer.testing import CliRunner

from tether.auth import ApiKeyAuth, BearerAuth, auth_from_config
from tether.cli import app
from tether.cli._logging import configure_logging
from tether.config import parse_config
from tether.errors import AuthenticationError, CallError, ConnectionFailedError, ConnectionLostError, ServerError
from tether.hub import Hub
from tether.observe.redact import (
    MASK,
    RedactingFilter,
    install_log_filters,
    is_sensitive_name,
    redact_headers,
    redact_text,
    redact_url,
    register_secret,
    register_sensitive_name,
)

QUERY_KEY = "qk_redact_7Hq2ZpR9sV"
BEARER_TOKEN = "tok_redact_Wm3Nd8Kc5J"
BASIC_USER = "svc-redact"
BASIC_PASSWORD = "pw_redact_Bf6Tg2Lr9Y"
HEADER_KEY = "hk_redact_Uc4Xs7Po1V"
BASIC_CREDENTIALS = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
SECRETS = (QUERY_KEY, BEARER_TOKEN, BASIC_PASSWORD, HEADER_KEY, BASIC_CREDENTIALS)
ENV = {
    "REDACT_QUERY_KEY": QUERY_KEY,
    "REDACT_BEARER_TOKEN": BEARER_TOKEN,
    "REDACT_BASIC_PASSWORD": BASIC_PASSWORD,
    "REDACT_HEADER_KEY": HEADER_KEY,
}
AUTHENTICATED = ("query", "bearer", "basic", "header")

CONFIG = """
[integrations.query]
base_url = "{url}"
auth = {{ type = "api_key", key = "${{REDACT_QUERY_KEY}}", in = "query", name = "api_key" }}
retry = {{ backoff = "1ms", max_backoff = "5ms" }}

[integrations.bearer]
base_url = "{url}"
auth = {{ type = "bearer", token = "${{REDACT_BEARER_TOKEN}}" }}
retry = {{ backoff = "1ms", max_backoff = "5ms" }}

[integrations.basic]
base_url = "{url}"
auth = {{ type = "basic", username = "{user}", password = "${{REDACT_BASIC_PASSWORD}}" }}
retry = {{ backoff = "1ms", max_backoff = "5ms" }}

[integrations.header]
base_url = "{url}"
auth = {{ type = "api_key", key = "${{REDACT_HEADER_KEY}}", name = "X-Vendor-Auth" }}
retry = {{ backoff = "1ms", max_backoff = "5ms" }}

[integrations.down]
base_url = "http://127.0.0.1:{unused_port}"
auth = {{ type = "api_key", key = "${{REDACT_QUERY_KEY}}", in = "query", name = "api_key" }}
retry = {{ attempts = 2, backoff = "1ms" }}
"""


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.fixture(scope="module")
def broken_upstream() -> Iterator[str]:
    """A server that answers every request with a malformed status line, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.01)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(1)
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 abc Broken\r\nContent-Length: 2\r\n\r\nhi")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


@pytest.fixture
def broken_hub(broken_upstream: str) -> Hub:
    return Hub(
        parse_config(
            f'[integrations.broken]\nbase_url = "{broken_upstream}"\n'
            'auth = { type = "api_key", key = "${REDACT_QUERY_KEY}", in = "query", name = "api_key" }\n'
            'retry = { attempts = 2, backoff = "1ms" }\n'
        )
    )


@pytest.fixture(autouse=True)
def _secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def config_file(tmp_path: Path, upstream: str, unused_port: int) -> Path:
    path = tmp_path / "tether.toml"
    path.write_text(CONFIG.format(url=upstream, user=BASIC_USER, unused_port=unused_port), encoding="utf-8")
    return path


@pytest.fixture
def hub(config_file: Path) -> Hub:
    return Hub.from_config(config_file)


@dataclass
class Logs:
    """Every log record of the test: the CLI's JSON lines and pytest's captured records."""

    stream: io.StringIO
    caplog: pytest.LogCaptureFixture

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def everything(self) -> list[str]:
        records = self.caplog.records
        return [
            self.stream.getvalue(),
            self.caplog.text,
            *(record.getMessage() for record in records),
            *(repr(vars(record)) for record in records),
        ]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Logs:
    """The CLI's JSON logging at -vv into a buffer, plus pytest's capture, both at DEBUG."""
    root = logging.getLogger()
    pytest_handlers = root.handlers[:]
    configure_logging("json", 2)
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    for kept in pytest_handlers:  # configure_logging replaces the root's handlers, caplog's included
        root.addHandler(kept)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="tether")
    caplog.set_level(logging.DEBUG, logger="httpx2")
    return Logs(stream, caplog)


def _error_texts(error: CallError) -> list[str]:
    return [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        error.url,
        error.hint,
        error.summary,
        *(str(attempt) for attempt in error.attempts),
        *(repr(attempt) for attempt in error.attempts),
    ]


# --- through the library ---------------------------------------------------------------------------------------


def test_successful_calls_send_each_secret_but_log_none(hub: Hub, logs: Logs) -> None:
    received = {}
    for name in AUTHENTICATED:
        with hub.client(name) as client:
            response = client.get("/echo", params={"page": "2"})
        assert response.status_code == 200
        received[name] = response.json()

    # The upstream really got every credential...
    assert received["query"]["query"] == {"page": "2", "api_key": QUERY_KEY}
    assert received["bearer"]["headers"]["authorization"] == f"Bearer {BEARER_TOKEN}"
    assert received["basic"]["headers"]["authorization"] == f"Basic {BASIC_CREDENTIALS}"
    assert received["header"]["headers"]["x-vendor-auth"] == HEADER_KEY
    # ...and no log line shows one, at DEBUG, from tether or httpx2.
    assert_no_secrets(*logs.everything())
    assert {"tether", "httpx2"} <= {record.name for record in logs.caplog.records}
    entries = logs.json_lines()
    assert {"tether", "httpx2"} <= {entry["logger"] for entry in entries}
    request_line = next(e["message"] for e in entries if e["logger"] == "httpx2" and "api_key" in e["message"])
    assert "api_key=***" in request_line
    attempt = next(e for e in entries if e.get("event") == "attempt" and e["integration"] == "query")
    assert attempt["level"] == "debug"
    assert attempt["path"] == "/echo?page=2&api_key=***"


def test_401_errors_name_the_env_var_and_mask_the_query_key(hub: Hub, logs: Logs) -> None:
    errors: dict[str, AuthenticationError] = {}
    for name in AUTHENTICATED:
        with hub.client(name, raise_for_status=True) as client, pytest.raises(AuthenticationError) as caught:
            client.get("/401")
        errors[name] = caught.value

    for error in errors.values():
        assert_no_secrets(*_error_texts(error))
    assert_no_secrets(*logs.everything())
    assert errors["query"].url.endswith("/401?api_key=***")
    assert "api_key=***" in str(errors["query"])
    assert "env var REDACT_QUERY_KEY" in errors["query"].hint
    assert "env var REDACT_BEARER_TOKEN" in errors["bearer"].hint
    assert "env var REDACT_BASIC_PASSWORD" in errors["basic"].hint
    assert "env var REDACT_HEADER_KEY" in errors["header"].hint
    warnings = [entry for entry in logs.json_lines() if entry.get("event") == "call" and entry["level"] == "warning"]
    assert {entry["integration"] for entry in warnings} == set(AUTHENTICATED)


def test_503_retried_until_attempts_run_out_hides_the_secret(hub: Hub, logs: Logs) -> None:
    with hub.client("query", raise_for_status=True) as client, pytest.raises(ServerError) as caught:
        client.get("/fail", params={"key": uuid.uuid4().hex, "times": "10"})

    error = caught.value
    assert [attempt.status for attempt in error.attempts] == [503, 503, 503, 503]
    assert_no_secrets(*_error_texts(error), *logs.everything())
    assert "api_key=***" in error.url
    retried = [e for e in logs.json_lines() if e.get("event") == "attempt" and e["wait"]]
    assert len(retried) == 3
    assert all("api_key=***" in entry["path"] and "retry in" in entry["message"] for entry in retried)


def test_503_then_success_logs_each_attempt_without_the_secret(hub: Hub, logs: Logs) -> None:
    with hub.client("query") as client:
        response = client.get("/fail", params={"key": uuid.uuid4().hex})

    assert response.status_code == 200
    assert [attempt.status for attempt in response.extensions["tether.attempts"]] == [503, 503, 200]
    assert_no_secrets(*logs.everything())


def test_connection_refused_error_shows_the_url_with_the_key_masked(hub: Hub, logs: Logs, unused_port: int) -> None:
    with hub.client("down") as client, pytest.raises(ConnectionFailedError) as caught:
        client.get("/v1/charges")

    error = caught.value
    assert error.url == f"http://127.0.0.1:{unused_port}/v1/charges?api_key=***"
    assert_no_secrets(*_error_texts(error), *logs.everything())
    assert len(error.attempts) == 2


async def test_async_client_errors_and_logs_hide_the_secrets(hub: Hub, logs: Logs) -> None:
    async with hub.async_client("query", raise_for_status=True) as client:
        with pytest.raises(AuthenticationError) as unauthorized:
            await client.get("/401")
        ok = await client.get("/echo")
    async with hub.async_client("down") as client:
        with pytest.raises(ConnectionFailedError) as refused:
            await client.get("/v1/charges")

    assert ok.json()["query"]["api_key"] == QUERY_KEY
    assert_no_secrets(*_error_texts(unauthorized.value), *_error_texts(refused.value), *logs.everything())
    assert refused.value.url.endswith("/v1/charges?api_key=***")


def test_malformed_response_error_and_its_attempts_hide_the_secret(broken_hub: Hub, logs: Logs) -> None:
    with broken_hub.client("broken") as client, pytest.raises(ConnectionLostError) as caught:
        client.get("/v1/charges")

    assert len(caught.value.attempts) == 2
    assert_no_secrets(*_error_texts(caught.value), *logs.everything())


async def test_async_malformed_response_error_and_its_attempts_hide_the_secret(broken_hub: Hub, logs: Logs) -> None:
    async with broken_hub.async_client("broken") as client:
        with pytest.raises(ConnectionLostError) as caught:
            await client.get("/v1/charges")

    assert_no_secrets(str(caught.value), repr(caught.value), *logs.everything())  # these are masked
    assert_no_secrets(*_error_texts(caught.value))  # these are not


def test_reprs_of_hub_config_and_auth_hide_secrets(hub: Hub) -> None:
    texts = [repr(hub), repr(hub.config), str(hub.config), hub.config.model_dump_json()]
    for name, integration in hub.integrations.items():
        texts += [repr(integration), repr(integration.auth), repr(auth_from_config(integration.auth))]
        transport = hub.transport(name)
        texts.append(repr(transport.spec))
        transport.close()

    assert_no_secrets(*texts)
    assert "Secret('${REDACT_BEARER_TOKEN}')" in repr(hub.config)
    assert repr(auth_from_config(hub.integration("bearer").auth)) == "BearerAuth()"
    assert repr(auth_from_config(hub.integration("basic").auth)) == "BasicAuth()"
    assert repr(auth_from_config(hub.integration("query").auth)) == "ApiKeyAuth(name='api_key', in_='query')"


def test_auth_flows_repr_without_their_credentials() -> None:
    assert repr(BearerAuth("tok_unit_3Vn8Hs1Kd6")) == "BearerAuth()"
    assert "hk_unit_5Qm2Rz7Lw4" not in repr(ApiKeyAuth("hk_unit_5Qm2Rz7Lw4", name="X-Unit-Key"))


# --- through the CLI -------------------------------------------------------------------------------------------


def _cli(*args: str | Path) -> Result:
    runner = CliRunner(env={"COLUMNS": "200", "FORCE_COLOR": None, "NO_COLOR": "1"})
    return runner.invoke(app, [str(arg) for arg in args])


def _call(config_file: Path, *args: str) -> Result:
    result = _cli("--config", config_file, "--log-format", "json", "-vv", "call", *args)
    assert_no_secrets(result.stdout, result.stderr)
    return result


def test_cli_call_output_and_logs_mask_every_secret(config_file: Path) -> None:
    query = json.loads(_call(config_file, "query", "GET", "/echo", "-q", "page=2", "--json-output").stdout)
    bearer = json.loads(_call(config_file, "bearer", "GET", "/echo", "--json-output").stdout)
    header = json.loads(_call(config_file, "header", "GET", "/echo", "--json-output").stdout)
    plain = _call(config_file, "query", "GET", "/echo")
    _call(config_file, "basic", "GET", "/ok")
    _call(config_file, "bearer", "GET", "/echo")

    assert query["url"].endswith("/echo?page=2&api_key=***")
    assert query["body"]["query"]["api_key"] == MASK
    assert bearer["body"]["headers"]["authorization"] == "Bearer ***"
    assert header["body"]["headers"]["x-vendor-auth"] == MASK
    assert "api_key=***" in plain.stdout
    assert "api_key=***" in plain.stderr  # the -vv JSON log lines


def test_cli_failed_calls_mask_every_secret(config_file: Path) -> None:
    unauthorized = _call(config_file, "query", "GET", "/401")
    unauthorized_json = json.loads(_call(config_file, "query", "GET", "/401", "--json-output").stdout)
    for name in ("bearer", "basic", "header"):
        assert _call(config_file, name, "GET", "/401").exit_code == 1
    retried = json.loads(
        _call(
            config_file, "query", "GET", "/fail", "-q", f"key={uuid.uuid4().hex}", "-q", "times=10", "--json-output"
        ).stdout
    )
    refused = _call(config_file, "down", "GET", "/ok")
    refused_json = json.loads(_call(config_file, "down", "GET", "/ok", "--json-output").stdout)

    assert unauthorized.exit_code == 1
    assert "api_key=***" in unauthorized.stdout
    assert "env var REDACT_QUERY_KEY" in unauthorized.stderr
    assert unauthorized_json["url"].endswith("/401?api_key=***")
    assert retried["status"] == 503
    assert len(retried["attempts"]) == 4
    assert refused.exit_code == 1
    assert "api_key=***" in refused.stderr
    assert refused_json["error"] == "ConnectionFailedError"
    assert refused_json["url"].endswith("/ok?api_key=***")


def test_cli_check_shows_where_secrets_come_from_not_their_values(config_file: Path) -> None:
    as_json = _cli("--config", config_file, "check", "--json")
    as_table = _cli("--config", config_file, "check")

    assert as_json.exit_code == as_table.exit_code == 0
    assert_no_secrets(as_json.output, as_table.output)
    auth = {row["name"]: row["auth"] for row in json.loads(as_json.stdout)["integrations"]}
    assert auth == {
        "basic": "basic (env var REDACT_BASIC_PASSWORD)",
        "bearer": "bearer (env var REDACT_BEARER_TOKEN)",
        "down": "api_key (env var REDACT_QUERY_KEY)",
        "header": "api_key (env var REDACT_HEADER_KEY)",
        "query": "api_key (env var REDACT_QUERY_KEY)",
    }


def test_cli_check_does_not_echo_a_literal_secret(tmp_path: Path) -> None:
    path = tmp_path / "tether.toml"
    path.write_text(
        '[integrations.x]\nbase_url = "https://x.example"\nauth = { type = "bearer", token = "lit_9Wq4Ez2Rt7" }\n',
        encoding="utf-8",
    )

    result = _cli("--config", path, "check", "--json")

    assert result.exit_code == 1
    assert "lit_9Wq4Ez2Rt7" not in result.output
    assert json.loads(result.stdout)["problems"][0]["path"] == "integrations.x.auth.token"


# --- the redaction helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["api_key", "token", "access_token", "client_secret", "password", "signature", "sig", "key", "apikey", "my_token"],
)
def test_redact_url_masks_sensitive_query_parameters_and_keeps_the_others(name: str) -> None:
    assert (
        redact_url(f"https://api.example.com/v1/items?page=2&{name}=abc123xyz&sort=asc")
        == f"https://api.example.com/v1/items?page=2&{name}=***&sort=asc"
    )


def test_redact_url_masks_user_info() -> None:
    assert redact_url("https://deploy:pa55w0rd@git.example.com:8443/repo") == "https://***@git.example.com:8443/repo"


def test_redact_url_masks_a_registered_secret_anywhere_in_the_url() -> None:
    register_secret("pathsecret_9Kd2Lq")

    assert (
        redact_url("https://h.example/v1/pathsecret_9Kd2Lq/x?q=pathsecret_9Kd2Lq") == "https://h.example/v1/***/x?q=***"
    )


def test_redact_url_accepts_an_httpx2_url() -> None:
    assert (
        redact_url(httpx2.URL("https://h.example/x", params={"token": "t0k3n-value"}))
        == "https://h.example/x?token=***"
    )


@pytest.mark.parametrize("url", ["https://h.example/v1/items", "https://h.example/search?q=a%20b&page=2"])
def test_redact_url_leaves_urls_without_credentials_unchanged(url: str) -> None:
    assert redact_url(url) == url


def test_redact_headers_masks_credential_headers_whatever_their_value() -> None:
    headers = {
        "Authorization": "Basic Zm9vOmJhcg==",
        "Cookie": "session=1",
        "X-API-Key": "anything",
        "Accept": "application/json",
    }

    assert redact_headers(headers) == {
        "Authorization": MASK,
        "Cookie": MASK,
        "X-API-Key": MASK,
        "Accept": "application/json",
    }


def test_redact_headers_masks_registered_names_and_secret_values_and_takes_pairs() -> None:
    register_sensitive_name("X-Redaction-Unit-Auth")
    register_secret("hdrsecret_4Pz8Nc")

    redacted = redact_headers([("x-redaction-unit-auth", "v"), ("X-Debug", "key was hdrsecret_4Pz8Nc"), ("A", "b")])

    assert redacted == {"x-redaction-unit-auth": MASK, "X-Debug": "key was ***", "A": "b"}


def test_redact_text_masks_every_occurrence_of_a_registered_secret() -> None:
    register_secret("txtsecret_6Yb1Mf")

    assert redact_text("a txtsecret_6Yb1Mf b txtsecret_6Yb1Mf") == "a *** b ***"


def test_redact_text_masks_a_secret_that_contains_another_whole() -> None:
    register_secret("nested_3Ks8")
    register_secret("nested_3Ks8_longer_5Tq1")

    assert redact_text("x nested_3Ks8_longer_5Tq1 y nested_3Ks8 z") == "x *** y *** z"


def test_redact_text_masks_sensitive_query_parameters_in_free_text() -> None:
    text = 'GET https://h.example/x?token=abc&page=2&monkey=banana "HTTP/1.1 200 OK"'

    assert redact_text(text) == 'GET https://h.example/x?token=***&page=2&monkey=banana "HTTP/1.1 200 OK"'


def test_values_shorter_than_four_characters_are_not_registered() -> None:
    register_secret("q7z")

    assert redact_text("q7z appears in q7z-ordinary text") == "q7z appears in q7z-ordinary text"


def test_redact_text_leaves_ordinary_text_unchanged() -> None:
    assert redact_text("nothing to hide here: 200 OK") == "nothing to hide here: 200 OK"


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("Authorization", True),
        ("PROXY-AUTHORIZATION", True),
        ("Set-Cookie", True),
        ("x-api-key", True),
        ("X-Auth-Token", True),
        ("client_secret", True),
        ("stripe-signature", True),
        ("db_password", True),
        ("Accept", False),
        ("page", False),
        ("monkey", False),
        ("keyword", False),
    ],
)
def test_is_sensitive_name(name: str, sensitive: bool) -> None:
    assert is_sensitive_name(name) is sensitive


def test_redacting_filter_rewrites_a_record_with_a_secret_in_its_args() -> None:
    register_secret("fltsecret_2Hw7Jd")
    record = logging.LogRecord("httpx2", logging.INFO, __file__, 1, "HTTP Request: %s %s", ("GET", "x"), None)
    record.args = ("GET", "https://h.example/x?api_key=fltsecret_2Hw7Jd")

    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == "HTTP Request: GET https://h.example/x?api_key=***"
    assert record.args is None


def test_redacting_filter_leaves_a_clean_record_untouched() -> None:
    record = logging.LogRecord("httpx2", logging.INFO, __file__, 1, "HTTP Request: %s %s", ("GET", "/x"), None)

    assert RedactingFilter().filter(record) is True
    assert (record.msg, record.args) == ("HTTP Request: %s %s", ("GET", "/x"))


def test_httpx2_logger_redacts_request_lines_for_every_handler(caplog: pytest.LogCaptureFixture) -> None:
    install_log_filters()
    caplog.set_level(logging.INFO, logger="httpx2")

    logging.getLogger("httpx2").info('HTTP Request: %s %s "%s"', "GET", "https://h.example/x?apikey=raw-key-1", "200")

    assert caplog.messages == ['HTTP Request: GET https://h.example/x?apikey=*** "200"']


def test_log_filters_are_installed_once() -> None:
    install_log_filters()
    install_log_filters()

    filters = logging.getLogger("httpx2").filters
    assert sum(isinstance(installed, RedactingFilter) for installed in filters) == 1


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_cli_log_formats_mask_secrets_in_tracebacks(log_format: str) -> None:
    register_secret("tbsecret_8Gm3Xa")
    configure_logging(log_format, 1)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)

    try:
        raise RuntimeError("refused key tbsecret_8Gm3Xa")
    except RuntimeError:
        logging.getLogger("tether.test").exception("call failed with tbsecret_8Gm3Xa")

    output = stream.getvalue()
    assert "tbsecret_8Gm3Xa" not in output
    assert "call failed with ***" in output
    assert "RuntimeError: refused key ***" in output

"""Every error class tether raises, with its hint, from fake upstreams behind ``httpx2.MockTransport``."""

from __future__ import annotations

import builtins
import inspect
import re
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

import tether
import tether.errors
from tether.config import parse_config
from tether.policies import ManualClock

TOKEN = "tok_live_8f2b6c1d9e"
QUERY_KEY = "qk_live_5a7e3b0c4f"

TOML = """
[integrations.acme]
base_url = "https://api.acme.test"
retry = false
timeout = { total = "30s", connect = "4s", read = "12s" }
"""

BEARER_TOML = """
[integrations.acme]
base_url = "https://api.acme.test"
retry = false
auth = { type = "bearer", token = "${ACME_TOKEN}" }
"""

QUERY_KEY_TOML = """
[integrations.acme]
base_url = "https://api.acme.test"
retry = false
auth = { type = "api_key", key = "${ACME_KEY}", in = "query", name = "api_key" }
"""

Handler = Callable[[httpx2.Request], httpx2.Response]


def make_hub(config: str = TOML, env: dict[str, str] | None = None) -> tether.Hub:
    def sleep(seconds: float) -> None:
        clock.advance(seconds)

    clock = ManualClock()
    return tether.Hub(parse_config(config, env=env or {}), clock=clock, sleep=sleep)


def call(
    handler: Handler,
    method: str = "GET",
    url: str = "/v1/things",
    *,
    hub: tether.Hub | None = None,
    **kwargs: Any,
) -> tether.TetherResponse:
    """One call through a sync tether client that raises typed errors for 4xx/5xx."""
    with (hub or make_hub()).client("acme", network=httpx2.MockTransport(handler), raise_for_status=True) as client:
        response = client.request(method, url, **kwargs)
    assert isinstance(response, tether.TetherResponse)
    return response


def answer(code: int, body: object = None, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx2.Response(code, json=body, headers=headers)


def raise_(exc_type: type[httpx2.TransportError], message: str = "boom") -> Handler:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc_type(message, request=request)

    return handler


def body(content: bytes, content_type: str) -> Handler:
    return lambda request: httpx2.Response(200, content=content, headers={"Content-Type": content_type})


def api_error(message: str) -> dict[str, object]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


# --- status errors -------------------------------------------------------------------------------------


def test_400_carries_the_apis_own_message_in_api_message_and_the_hint() -> None:
    with pytest.raises(tether.BadRequestError) as caught:
        call(answer(400, api_error("amount must be a positive integer")), "POST", "/v1/charges", json={})
    error = caught.value
    assert type(error) is tether.BadRequestError
    assert error.status == 400
    assert error.api_message == "amount must be a positive integer"
    assert "amount must be a positive integer" in error.hint
    assert "retrying will not help" in error.hint
    assert "HTTP 400 Bad Request: amount must be a positive integer" in str(error)


def test_422_is_an_unprocessable_entity_error_with_the_apis_message() -> None:
    with pytest.raises(tether.UnprocessableEntityError) as caught:
        call(answer(422, api_error("email is not valid")), "POST", "/v1/customers", json={})
    error = caught.value
    assert isinstance(error, tether.BadRequestError)
    assert error.api_message == "email is not valid"
    assert "email is not valid" in error.hint


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"message": "top-level message"}, "top-level message"),
        ({"detail": "fastapi style"}, "fastapi style"),
        ({"error": "a bare string"}, "a bare string"),
        ({"error": {"error_description": "oauth style"}}, "oauth style"),
        ({"title": "problem+json style"}, "problem+json style"),
        ({"unrelated": 1}, None),
        ([1, 2, 3], None),
    ],
)
def test_api_message_is_found_in_common_body_shapes(payload: object, message: str | None) -> None:
    with pytest.raises(tether.BadRequestError) as caught:
        call(answer(400, payload))
    assert caught.value.api_message == message


def test_api_message_is_none_for_a_body_that_is_not_json() -> None:
    with pytest.raises(tether.BadRequestError) as caught:
        call(lambda request: httpx2.Response(400, text="<html>Bad Request</html>"))
    assert caught.value.api_message is None
    assert str(caught.value).startswith("acme: HTTP 400 Bad Request (")


def test_api_message_is_cut_to_a_readable_length() -> None:
    with pytest.raises(tether.BadRequestError) as caught:
        call(answer(400, api_error("x" * 5000)))
    assert caught.value.api_message == "x" * 300


def test_401_hint_names_the_env_var_the_token_came_from_and_never_the_token() -> None:
    hub = make_hub(BEARER_TOML, env={"ACME_TOKEN": TOKEN})
    seen: list[str] = []

    def reject(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["Authorization"])
        return httpx2.Response(401, json=api_error(f"Invalid token {TOKEN}"))

    with pytest.raises(tether.AuthenticationError) as caught:
        call(reject, hub=hub)
    error = caught.value
    assert seen == [f"Bearer {TOKEN}"]
    assert "env var ACME_TOKEN" in error.hint
    assert "wrong, expired or revoked" in error.hint
    assert TOKEN not in str(error)
    assert TOKEN not in repr(error)


def test_401_without_configured_auth_speaks_of_the_credentials() -> None:
    with pytest.raises(tether.AuthenticationError) as caught:
        call(answer(401))
    assert caught.value.hint.startswith("the credentials ")
    assert "wrong, expired or revoked" in caught.value.hint


def test_401_hint_without_configured_auth_is_grammatical() -> None:
    with pytest.raises(tether.AuthenticationError) as caught:
        call(answer(401))
    assert caught.value.hint.startswith("the credentials are wrong")


def test_403_hint_mentions_permission_and_scope() -> None:
    with pytest.raises(tether.PermissionDeniedError) as caught:
        call(answer(403, api_error("missing scope write:charges")))
    assert "permission" in caught.value.hint
    assert "scope" in caught.value.hint
    assert caught.value.api_message == "missing scope write:charges"


def test_404_is_not_found_and_hints_at_the_path() -> None:
    with pytest.raises(tether.NotFoundError) as caught:
        call(answer(404), url="/v1/customers/cus_missing")
    assert "check the path" in caught.value.hint
    assert caught.value.url == "https://api.acme.test/v1/customers/cus_missing"


def test_409_is_a_conflict_and_mentions_idempotency_key_reuse() -> None:
    with pytest.raises(tether.ConflictError) as caught:
        call(answer(409), "PUT", "/v1/things/1")
    assert "conflicts" in caught.value.hint
    assert "idempotency key" in caught.value.hint


def test_429_carries_the_wait_the_api_asked_for() -> None:
    with pytest.raises(tether.RateLimitError) as caught:
        call(answer(429, headers={"Retry-After": "7"}))
    error = caught.value
    assert error.retry_after == 7.0
    assert "wait 7.0s" in error.hint


def test_429_without_a_wait_says_the_api_did_not_say() -> None:
    with pytest.raises(tether.RateLimitError) as caught:
        call(answer(429))
    assert caught.value.retry_after is None
    assert "did not say" in caught.value.hint


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_5xx_is_a_server_error_pointing_at_the_status_page(code: int) -> None:
    with pytest.raises(tether.ServerError) as caught:
        call(answer(code))
    assert caught.value.status == code
    assert "status page" in caught.value.hint


def test_other_error_statuses_are_plain_api_status_errors() -> None:
    with pytest.raises(tether.APIStatusError) as caught:
        call(answer(418, api_error("short and stout")))
    assert type(caught.value) is tether.APIStatusError
    assert caught.value.hint == "the API answered 418: short and stout"


# --- transport errors ----------------------------------------------------------------------------------


def test_connect_timeout_is_a_connect_timeout_error_about_the_network_path() -> None:
    with pytest.raises(tether.ConnectTimeoutError) as caught:
        call(raise_(httpx2.ConnectTimeout, "timed out"))
    error = caught.value
    assert isinstance(error, httpx2.ConnectTimeout)
    assert not isinstance(error, tether.ReadTimeoutError)
    assert "no connection to api.acme.test within 4s" in str(error)
    assert "network path" in error.hint


def test_read_timeout_is_a_read_timeout_error_about_slow_endpoints() -> None:
    with pytest.raises(tether.ReadTimeoutError) as caught:
        call(raise_(httpx2.ReadTimeout, "timed out"))
    error = caught.value
    assert isinstance(error, httpx2.ReadTimeout)
    assert not isinstance(error, tether.ConnectTimeoutError)
    assert "no response within 12s" in str(error)
    assert "timeout.read" in error.hint


@pytest.mark.parametrize("exc_type", [httpx2.WriteTimeout, httpx2.PoolTimeout])
def test_write_and_pool_timeouts_map_to_the_timeout_classes(exc_type: type[httpx2.TimeoutException]) -> None:
    expected = tether.ConnectTimeoutError if exc_type is httpx2.PoolTimeout else tether.ReadTimeoutError
    with pytest.raises(expected):
        call(raise_(exc_type))


def test_connect_error_is_connection_failed() -> None:
    with pytest.raises(tether.ConnectionFailedError) as caught:
        call(raise_(httpx2.ConnectError, "connection refused"))
    error = caught.value
    assert isinstance(error, httpx2.ConnectError)
    assert "connection refused" in str(error)
    assert "check base_url, DNS and firewall" in error.hint


def test_connect_error_summary_has_no_dangling_colon_for_a_default_port() -> None:
    with pytest.raises(tether.ConnectionFailedError) as caught:
        call(raise_(httpx2.ConnectError, "connection refused"))
    assert "api.acme.test::" not in str(caught.value)


@pytest.mark.parametrize("exc_type", [httpx2.RemoteProtocolError, httpx2.ReadError])
def test_dropped_connection_is_connection_lost(exc_type: type[httpx2.TransportError]) -> None:
    with pytest.raises(tether.ConnectionLostError) as caught:
        call(raise_(exc_type, "peer closed connection without sending complete message body"))
    error = caught.value
    assert isinstance(error, httpx2.TransportError)
    assert f"the connection dropped: {exc_type.__name__}" in str(error)
    assert "load balancer" in error.hint


def test_transport_errors_are_chained_to_the_original_exception() -> None:
    with pytest.raises(tether.ConnectionFailedError) as caught:
        call(raise_(httpx2.ConnectError, "refused"))
    assert isinstance(caught.value.__cause__, httpx2.ConnectError)
    assert caught.value.request.url == "https://api.acme.test/v1/things"


async def test_async_clients_raise_the_same_error_classes() -> None:
    hub = make_hub()
    outcomes: list[tuple[Handler, type[tether.CallError]]] = [
        (answer(404), tether.NotFoundError),
        (raise_(httpx2.ConnectTimeout), tether.ConnectTimeoutError),
        (raise_(httpx2.ReadTimeout), tether.ReadTimeoutError),
        (raise_(httpx2.ConnectError), tether.ConnectionFailedError),
        (raise_(httpx2.RemoteProtocolError), tether.ConnectionLostError),
    ]
    for handler, expected in outcomes:
        network = httpx2.MockTransport(handler)
        async with hub.async_client("acme", network=network, raise_for_status=True) as client:
            with pytest.raises(expected):
                await client.get("/v1/things")


# --- response format errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        (b"<html><body>Service Unavailable</body></html>", "application/json", tether.NotJSONError),
        (b"OK", "application/json; charset=utf-8", tether.NotJSONError),
        (b'{"id": "cus_1", "name": "Ada Lov', "application/json", tether.TruncatedJSONError),
        (b'{"items": [1, 2, 3', "application/json", tether.TruncatedJSONError),
        (b'[{"id": 1}, {"id": 2}', "application/problem+json", tether.TruncatedJSONError),
        (b"<!doctype html><title>Maintenance</title>", "text/html", tether.UnexpectedContentTypeError),
        (b"<html></html>", "", tether.UnexpectedContentTypeError),
    ],
)
def test_json_raises_a_typed_format_error(content: bytes, content_type: str, expected: type[Exception]) -> None:
    response = call(body(content, content_type))
    with pytest.raises(expected) as caught:
        response.json()
    error = caught.value
    assert type(error) is expected
    assert isinstance(error, ValueError)
    assert isinstance(error, httpx2.DecodingError)
    assert isinstance(error, tether.ResponseFormatError)
    assert "unexpected format" in error.hint
    assert isinstance(error.__cause__, ValueError)


def test_format_error_names_the_content_type_it_got() -> None:
    with pytest.raises(tether.UnexpectedContentTypeError) as caught:
        call(body(b"<html></html>", "text/html")).json()
    assert "expected JSON, got Content-Type 'text/html'" in str(caught.value)


def test_format_error_carries_the_calls_integration_status_and_attempts() -> None:
    with pytest.raises(tether.NotJSONError) as caught:
        call(body(b"<html>", "application/json"), url="/v1/things?page=2").json()
    error = caught.value
    assert (error.integration, error.method, error.status) == ("acme", "GET", 200)
    assert error.url == "https://api.acme.test/v1/things?page=2"
    assert [attempt.status for attempt in error.attempts] == [200]
    assert "(GET https://api.acme.test/v1/things?page=2; 1 attempt, " in str(error)


def test_json_that_parses_is_returned_whatever_its_content_type() -> None:
    assert call(body(b'{"ok": true}', "text/plain")).json() == {"ok": True}


def test_complete_json_with_trailing_garbage_is_not_called_truncated() -> None:
    with pytest.raises(tether.NotJSONError):
        call(body(b'{"ok": true}}', "application/json")).json()


def test_json_cut_inside_a_literal_is_truncated() -> None:
    with pytest.raises(tether.TruncatedJSONError):
        call(body(b'{"id": 1, "active": tru', "application/json")).json()


# --- what every error's message carries ----------------------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    [answer(500, headers={"X-Request-Id": "req_7Hq2"}), answer(404, headers={"X-Request-Id": "req_7Hq2"})],
    ids=["500", "404"],
)
def test_error_message_has_integration_method_masked_url_attempts_and_request_id(handler: Handler) -> None:
    hub = make_hub(QUERY_KEY_TOML, env={"ACME_KEY": QUERY_KEY})
    with pytest.raises(tether.APIStatusError) as caught:
        call(handler, "DELETE", "/v1/things/1", hub=hub, params={"expand": "owner"})
    error = caught.value
    text = str(error)
    assert QUERY_KEY not in text
    assert text.startswith("acme: HTTP ")
    assert "(DELETE https://api.acme.test/v1/things/1?expand=owner&api_key=***; 1 attempt, " in text
    assert "request id req_7Hq2" in text
    assert error.request_id == "req_7Hq2"
    assert error.url == "https://api.acme.test/v1/things/1?expand=owner&api_key=***"
    assert "\n  hint: " in text


def test_sensitive_query_parameters_are_masked_even_when_not_configured() -> None:
    with pytest.raises(tether.ServerError) as caught:
        call(answer(500), params={"api_key": "literal-key-value", "access_token": "another-one", "q": "shoes"})
    text = str(caught.value)
    assert "literal-key-value" not in text
    assert "another-one" not in text
    assert "api_key=***" in text
    assert "access_token=***" in text
    assert "q=shoes" in text


def test_transport_error_message_has_the_masked_url_and_attempt_count() -> None:
    hub = make_hub(QUERY_KEY_TOML, env={"ACME_KEY": QUERY_KEY})
    with pytest.raises(tether.ConnectionFailedError) as caught:
        call(raise_(httpx2.ConnectError, "refused"), "POST", "/v1/charges", hub=hub)
    text = str(caught.value)
    assert QUERY_KEY not in text
    assert "(POST https://api.acme.test/v1/charges?api_key=***; 1 attempt, " in text


@pytest.mark.parametrize("header", ["X-Request-Id", "Request-Id", "X-Amzn-RequestId", "X-GitHub-Request-Id", "CF-Ray"])
def test_request_id_is_read_from_the_usual_provider_headers(header: str) -> None:
    with pytest.raises(tether.ServerError) as caught:
        call(answer(500, headers={header: "rid-123"}))
    assert caught.value.request_id == "rid-123"


def test_message_counts_every_attempt_of_a_retried_call() -> None:
    hub = make_hub(TOML.replace("retry = false", 'retry = { attempts = 3, backoff = "10ms" }'))
    with pytest.raises(tether.ServerError) as caught:
        call(answer(503), hub=hub)
    assert "; 3 attempts, " in str(caught.value)
    assert "after 2 retries (attempts exhausted)" in caught.value.hint


def test_repr_names_the_class_integration_and_status_only() -> None:
    with pytest.raises(tether.NotFoundError) as caught:
        call(answer(404))
    assert repr(caught.value) == "NotFoundError(integration='acme', status=404)"


# --- the hierarchy -------------------------------------------------------------------------------------


def _drawn_hierarchy() -> dict[str, tuple[str | None, list[str]]]:
    """Each class drawn in the docstring's tree → (its parent in the drawing, the bases named in brackets)."""
    lines = (tether.errors.__doc__ or "").splitlines()
    start = next(index for index, line in enumerate(lines) if line.endswith("::")) + 2
    tree: dict[str, tuple[str | None, list[str]]] = {}
    stack: list[tuple[int, str]] = []  # (column of the name, name) of the current ancestors
    for line in lines[start:]:
        if not line.strip():
            break
        match = re.search(r"(?P<name>[A-Z]\w+)(?:\s+\((?P<bases>[^)]*)\))?", line)
        assert match is not None, line
        column = match.start("name")
        while stack and stack[-1][0] >= column:
            stack.pop()
        bases = [base.strip() for base in match["bases"].split(",")] if match["bases"] else []
        tree[match["name"]] = (stack[-1][1] if stack else None, bases)
        stack.append((column, match["name"]))
    return tree


def _exception_names() -> set[str]:
    return {
        name
        for name in tether.errors.__all__
        if inspect.isclass(getattr(tether.errors, name)) and issubclass(getattr(tether.errors, name), BaseException)
    }


def test_hierarchy_docstring_draws_every_exported_exception() -> None:
    assert set(_drawn_hierarchy()) == _exception_names()


def test_hierarchy_docstring_matches_the_real_class_tree() -> None:
    tree = _drawn_hierarchy()
    assert tree["TetherError"] == (None, [])
    for name, (parent, bases) in tree.items():
        cls = getattr(tether.errors, name)
        if parent is not None:
            assert getattr(tether.errors, parent) in cls.__mro__[1:], f"{name} is drawn under {parent}"
        for base in bases:
            expected = getattr(httpx2, base.removeprefix("httpx2.")) if "." in base else getattr(builtins, base)
            assert issubclass(cls, expected), f"{name} is drawn as a {base}"


def test_hierarchy_parser_reads_parents_and_brackets() -> None:
    """Guards the two tests above against a parser that would pass by reading nothing."""
    tree = _drawn_hierarchy()
    assert tree["UnprocessableEntityError"] == ("BadRequestError", [])
    assert tree["SelfSignedCertificateError"] == ("UntrustedCertificateError", [])
    assert tree["ResponseFormatError"] == ("CallError", ["httpx2.DecodingError", "ValueError"])
    assert tree["APIStatusError"] == ("CallError", ["httpx2.HTTPStatusError"])
    assert tree["ConfigError"] == ("TetherError", [])


AUTH_ERRORS = {"AuthError", "GrantRevokedError", "LoginRequiredError", "TokenEndpointError"}


def test_every_call_error_is_a_tether_error_and_an_httpx2_error() -> None:
    for name in _exception_names() - {"TetherError", "ConfigError"} - AUTH_ERRORS:
        cls = getattr(tether.errors, name)
        assert issubclass(cls, tether.CallError), name
        if cls is not tether.CallError:
            assert issubclass(cls, httpx2.HTTPError), name


def test_auth_errors_are_httpx2_errors_with_a_hint() -> None:
    for name in AUTH_ERRORS:
        cls = getattr(tether.errors, name)
        assert issubclass(cls, tether.AuthError)
        assert issubclass(cls, httpx2.HTTPError)
    error = tether.GrantRevokedError("crm", "the grant was revoked", hint="run `tether auth login crm`")
    assert str(error) == "crm: the grant was revoked\n  hint: run `tether auth login crm`"
    assert repr(error) == "GrantRevokedError(integration='crm', error=None)"


@pytest.mark.parametrize(
    ("error", "httpx2_base"),
    [
        (tether.APIStatusError, httpx2.HTTPStatusError),
        (tether.ServerError, httpx2.HTTPStatusError),
        (tether.RequestTimeoutError, httpx2.TimeoutException),
        (tether.ConnectTimeoutError, httpx2.ConnectTimeout),
        (tether.ReadTimeoutError, httpx2.ReadTimeout),
        (tether.DeadlineExceededError, httpx2.TimeoutException),
        (tether.ConnectionFailedError, httpx2.ConnectError),
        (tether.ConnectionLostError, httpx2.TransportError),
        (tether.TLSError, httpx2.ConnectError),
        (tether.ResponseFormatError, httpx2.DecodingError),
    ],
)
def test_error_classes_refine_the_httpx2_exception_they_replace(
    error: type[Exception], httpx2_base: type[Exception]
) -> None:
    assert issubclass(error, httpx2_base)


# --- the public API ------------------------------------------------------------------------------------

EXPECTED_PUBLIC_NAMES = {
    "CircuitOpenError",
    "ThrottledError",
    "APIStatusError",
    "Attempt",
    "AuthenticationError",
    "AuthError",
    "BadRequestError",
    "CallError",
    "CertificateExpiredError",
    "ConfigError",
    "ConflictError",
    "ConnectTimeoutError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "DeadlineExceededError",
    "GrantRevokedError",
    "HostnameMismatchError",
    "Hub",
    "LoginRequiredError",
    "NotFoundError",
    "NotJSONError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReadTimeoutError",
    "RequestTimeoutError",
    "ResponseFormatError",
    "SchemaMismatchError",
    "SelfSignedCertificateError",
    "ServerError",
    "TLSError",
    "TetherError",
    "TetherResponse",
    "TokenEndpointError",
    "TruncatedJSONError",
    "UnexpectedContentTypeError",
    "UnprocessableEntityError",
    "UntrustedCertificateError",
    "__version__",
}


def test_public_api_is_exactly_the_expected_names() -> None:
    assert set(tether.__all__) == EXPECTED_PUBLIC_NAMES
    assert len(tether.__all__) == len(EXPECTED_PUBLIC_NAMES)


def test_every_public_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from tether import *", namespace)  # noqa: S102 - the star import is what users write
    for name in tether.__all__:
        assert getattr(tether, name) is namespace[name]


def test_every_exception_in_tether_errors_is_public_from_tether() -> None:
    assert _exception_names() <= set(tether.__all__)

"""``validate = true``: JSON responses checked against the OpenAPI document, through real clients and a real HTTP
server on loopback.

The document is an excerpt of OpenAI's (tests/data/openai-excerpt.yaml, MIT); OpenAPI 3.0 features are tried on
small documents written by the tests.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tether
from fakes import in_thread
from tether.config import parse_config
from tether.errors import ConfigError, ResponseFormatError, SchemaMismatchError
from tether.openapi import load_document
from tether.openapi.dialect import to_json_schema
from tether.openapi.operations import OperationIndex, operations
from tether.openapi.refs import Locator, registry_for
from tether.openapi.validate import ResponseValidator

EXCERPT = Path(__file__).parent / "data" / "openai-excerpt.yaml"
SECRET_VALUE = "sk-live-must-never-show-4f9a"  # a value a body may hold that an error must never repeat

Route = tuple[int, Any, str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        status, payload, content_type = self.server.routes.get(
            (self.command, path), (404, {"error": {"message": "no route"}}, "application/json")
        )
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_DELETE = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[tuple[str, str], Route] = {}


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    """An API on loopback answering what each test puts in ``routes``: (method, path) → (status, body, type)."""
    instance = _Server()
    with in_thread(instance):
        yield instance


@pytest.fixture
def api(server: _Server) -> Iterator[_Server]:
    server.routes.clear()
    yield server
    server.routes.clear()


def answer(api: _Server, method: str, path: str, body: Any, status: int = 200, ctype: str = "application/json") -> None:
    api.routes[(method, path)] = (status, body, ctype)


def make_hub(
    api: _Server, tmp_path: Path, document: Path, *, validate: bool = True, base: str = "/v1", extra: str = ""
) -> tether.Hub:
    """A hub whose integration ``openai`` reads ``document`` from the config's own folder, as users write it."""
    shutil.copy(document, tmp_path / document.name)
    config = tmp_path / "tether.toml"
    config.write_text(
        f"""
[monitoring]
record = false

[integrations.openai]
base_url = "http://127.0.0.1:{api.server_address[1]}{base}"
retry = false
openapi = "{document.name}"
validate = {str(validate).lower()}
{extra}
""",
        encoding="utf-8",
    )
    return tether.Hub.from_config(config)


def fetch(api: _Server, tmp_path: Path, document: Path, method: str, path: str, *, base: str = "/v1") -> Any:
    """One call through a fresh hub's sync client; the body is read, so ``json()`` works after the client closes."""
    with make_hub(api, tmp_path, document, base=base) as hub, hub.client("openai") as client:
        return client.request(method, path)


def model(**overrides: Any) -> dict[str, Any]:
    return {"id": "gpt-4o", "object": "model", "created": 1686935002, "owned_by": "openai", **overrides}


# --- through real clients -------------------------------------------------------------------------------------


def test_a_body_that_matches_the_document_is_returned(api: _Server, tmp_path: Path) -> None:
    answer(api, "GET", "/v1/models", {"object": "list", "data": [model(), model(shutdown_date=None)]})
    with make_hub(api, tmp_path, EXCERPT) as hub, hub.client("openai") as client:
        response = client.get("/models")
        assert response.json()["data"][0]["id"] == "gpt-4o"


def test_a_wrong_type_raises_schema_mismatch_with_the_json_path(api: _Server, tmp_path: Path) -> None:
    answer(api, "GET", "/v1/models", {"object": "list", "data": [model(created=SECRET_VALUE)]})
    with make_hub(api, tmp_path, EXCERPT) as hub, hub.client("openai") as client:
        response = client.get("/models")
        with pytest.raises(SchemaMismatchError) as caught:
            response.json()
    error = caught.value
    assert error.path == "$.data[0].created"
    assert error.keyword == "type"
    assert "expected integer, got string" in error.summary
    assert "GET /models → 200" in error.summary
    assert "pin the API version" in error.hint
    assert (error.integration, error.method, error.status) == ("openai", "GET", 200)
    assert isinstance(error, ResponseFormatError)
    assert isinstance(error, ValueError)
    assert isinstance(error, httpx2.DecodingError)
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_the_error_never_repeats_the_bodys_values(api: _Server, tmp_path: Path) -> None:
    answer(api, "GET", "/v1/models", {"object": "list", "data": [model(owned_by=[SECRET_VALUE])]})
    with pytest.raises(SchemaMismatchError) as caught:
        fetch(api, tmp_path, EXCERPT, "GET", "/models").json()
    error = caught.value
    assert error.path == "$.data[0].owned_by"
    for text in (str(error), repr(error), *map(str, error.args)):
        assert SECRET_VALUE not in text


def test_a_missing_required_property_is_named_in_the_path(api: _Server, tmp_path: Path) -> None:
    incomplete = model()
    del incomplete["owned_by"]
    answer(api, "GET", "/v1/models/gpt-4o", incomplete)
    with pytest.raises(SchemaMismatchError) as caught:
        fetch(api, tmp_path, EXCERPT, "GET", "/models/gpt-4o").json()
    assert caught.value.path == "$.owned_by"
    assert caught.value.keyword == "required"


def test_an_enum_mismatch_names_the_allowed_values(api: _Server, tmp_path: Path) -> None:
    answer(api, "GET", "/v1/models/gpt-4o", model(object=SECRET_VALUE))
    with pytest.raises(SchemaMismatchError) as caught:
        fetch(api, tmp_path, EXCERPT, "GET", "/models/gpt-4o").json()
    assert caught.value.path == "$.object"
    assert "expected one of ['model']" in str(caught.value)
    assert SECRET_VALUE not in str(caught.value)


def test_a_path_the_document_does_not_have_is_not_validated(api: _Server, tmp_path: Path) -> None:
    answer(api, "GET", "/v1/not-in-the-document", {"anything": ["goes"]})
    answer(api, "POST", "/v1/models", {"created": "a string"})  # the path exists, not with this method
    with make_hub(api, tmp_path, EXCERPT) as hub, hub.client("openai") as client:
        assert client.get("/not-in-the-document").json() == {"anything": ["goes"]}
        assert client.post("/models").json() == {"created": "a string"}


def test_the_schema_is_chosen_by_status(api: _Server, tmp_path: Path) -> None:
    deleted = {"object": "eval.deleted", "deleted": True, "eval_id": "eval_1"}
    answer(api, "DELETE", "/v1/evals/eval_1", deleted)
    answer(api, "DELETE", "/v1/evals/missing", {"code": None, "message": "not found", "param": None, "type": "x"}, 404)
    answer(api, "DELETE", "/v1/evals/bad404", deleted, 404)  # a 200 body under a 404: not the Error schema
    with make_hub(api, tmp_path, EXCERPT) as hub, hub.client("openai") as client:
        assert client.delete("/evals/eval_1").json() == deleted
        assert client.delete("/evals/missing").json()["message"] == "not found"
        with pytest.raises(SchemaMismatchError) as caught:
            client.delete("/evals/bad404").json()
    assert "→ 404" in caught.value.summary
    assert caught.value.status == 404


def test_a_response_given_by_ref_is_followed(api: _Server, tmp_path: Path) -> None:
    """The 429 of DELETE /evals/{eval_id} is ``$ref: '#/components/responses/TooManyRequests'``."""
    error = {"code": None, "message": 42, "param": None, "type": "rate_limit_exceeded"}
    answer(api, "DELETE", "/v1/evals/slow", {"error": error}, 429)
    with pytest.raises(SchemaMismatchError) as caught:
        fetch(api, tmp_path, EXCERPT, "DELETE", "/evals/slow").json()
    assert caught.value.path == "$.error.message"
    assert "→ 429" in caught.value.summary


def test_without_validate_nothing_is_checked_and_nothing_is_attached(api: _Server, tmp_path: Path) -> None:
    answer(api, "GET", "/v1/models", {"object": "list", "data": [model(created="not a number")]})
    with make_hub(api, tmp_path, EXCERPT, validate=False) as hub, hub.client("openai") as client:
        response = client.get("/models")
        assert "tether.validator" not in response.extensions
        assert response.json()["data"][0]["created"] == "not a number"


async def test_the_async_client_validates_too(api: _Server, tmp_path: Path) -> None:
    answer(api, "GET", "/v1/models", {"object": "list", "data": [model(created=1.5)]})
    with make_hub(api, tmp_path, EXCERPT) as hub:
        async with hub.async_client("openai") as client:
            response = await client.get("/models")
            with pytest.raises(SchemaMismatchError) as caught:
                response.json()
    assert caught.value.path == "$.data[0].created"


def test_a_cached_response_is_checked_as_the_fresh_one_was(api: _Server, tmp_path: Path) -> None:
    """A mismatching body kept by the cache does not slip through on the next call: it is the API's body too."""
    answer(api, "GET", "/v1/models", {"object": "list", "data": [model(created="yesterday")]})
    hub = make_hub(api, tmp_path, EXCERPT, extra='cache = { "GET /models" = "1h" }')
    with hub, hub.client("openai") as client:
        fresh, cached = client.get("/models"), client.get("/models")
        assert cached.extensions["tether.from_cache"] is True
        for response in (fresh, cached):
            with pytest.raises(SchemaMismatchError) as caught:
                response.json()
            assert caught.value.path == "$.data[0].created"


def test_a_non_json_body_is_still_a_not_json_error(api: _Server, tmp_path: Path) -> None:
    answer(api, "GET", "/v1/models", b"<html>maintenance</html>", ctype="text/html")
    with pytest.raises(tether.UnexpectedContentTypeError):
        fetch(api, tmp_path, EXCERPT, "GET", "/models").json()


def test_a_missing_document_is_a_config_error_at_the_first_check(api: _Server, tmp_path: Path) -> None:
    answer(api, "GET", "/v1/models", {"object": "list", "data": []})
    hub = make_hub(api, tmp_path, EXCERPT)
    (tmp_path / EXCERPT.name).unlink()
    with hub, hub.client("openai") as client:
        response = client.get("/models")
        with pytest.raises(ConfigError, match="cannot read the OpenAPI document"):
            response.json()


def test_validate_needs_openapi() -> None:
    with pytest.raises(ConfigError, match="'openapi' is not set"):
        parse_config('[integrations.x]\nbase_url = "https://x.example"\nvalidate = true\n')


# --- OpenAPI 3.0, and 3.1 documents written the 3.0 way ------------------------------------------------------

DOCUMENT_30 = """
openapi: 3.0.3
info: {title: Things, version: "1"}
servers: [{url: "https://things.example/api"}]
paths:
  /things/{id}:
    get:
      responses:
        "200":
          description: a thing
          content:
            application/json; charset=utf-8:
              schema: {$ref: "#/components/schemas/Thing"}
  /things/me:
    get:
      responses:
        "200":
          description: me
          content:
            application/json:
              schema: {type: object, required: [me], properties: {me: {type: boolean}}}
  /jobs:
    post:
      responses:
        2XX:
          description: accepted
          content:
            application/json:
              schema: {type: object, required: [job], properties: {job: {type: string}}}
        default:
          description: an error
          content:
            application/problem+json:
              schema: {type: object, required: [title], properties: {title: {type: string}}}
components:
  schemas:
    Thing:
      type: object
      required: [name, count]
      properties:
        name: {type: string, nullable: true}
        count: {type: integer, minimum: 0, exclusiveMinimum: true}
        owner:
          nullable: true
          allOf: [{$ref: "#/components/schemas/Owner"}]
        kind: {type: string, enum: [a, b], nullable: true}
    Owner:
      type: object
      required: [id]
      properties: {id: {type: string}}
"""


@pytest.fixture
def document_30(tmp_path: Path) -> Path:
    path = tmp_path / "docs" / "things.yaml"
    path.parent.mkdir()
    path.write_text(DOCUMENT_30, encoding="utf-8")
    return path


def test_openapi_30_nullable_allows_null(api: _Server, tmp_path: Path, document_30: Path) -> None:
    thing = {"name": None, "count": 1, "owner": None, "kind": None}
    answer(api, "GET", "/api/things/t1", thing, ctype="application/json; charset=utf-8")
    with make_hub(api, tmp_path, document_30, base="/api") as hub, hub.client("openai") as client:
        assert client.get("/things/t1").json() == thing


@pytest.mark.parametrize(
    ("body", "path", "keyword"),
    [
        ({"name": 5, "count": 1}, "$.name", "type"),
        ({"name": "x", "count": 0}, "$.count", "exclusiveMinimum"),
        ({"name": "x", "count": 1, "owner": {}}, "$.owner.id", "required"),
        ({"name": "x", "count": 1, "kind": "c"}, "$.kind", "enum"),
    ],
)
def test_openapi_30_schemas_are_checked_as_30_means_them(
    api: _Server, tmp_path: Path, document_30: Path, body: dict[str, Any], path: str, keyword: str
) -> None:
    answer(api, "GET", "/api/things/t1", body)
    with pytest.raises(SchemaMismatchError) as caught:
        fetch(api, tmp_path, document_30, "GET", "/things/t1", base="/api").json()
    assert (caught.value.path, caught.value.keyword) == (path, keyword)


def test_a_concrete_path_wins_over_a_template(api: _Server, tmp_path: Path, document_30: Path) -> None:
    answer(api, "GET", "/api/things/me", {"me": True})
    with make_hub(api, tmp_path, document_30, base="/api") as hub, hub.client("openai") as client:
        assert client.get("/things/me").json() == {"me": True}  # not checked as a Thing


def test_status_ranges_and_default(api: _Server, tmp_path: Path, document_30: Path) -> None:
    answer(api, "POST", "/api/jobs", {"job": 7}, 202)
    with make_hub(api, tmp_path, document_30, base="/api") as hub, hub.client("openai") as client:
        with pytest.raises(SchemaMismatchError) as caught:
            client.post("/jobs").json()
        assert "→ 2XX" in caught.value.summary
        answer(api, "POST", "/api/jobs", {"title": "boom"}, 500, ctype="application/problem+json")
        assert client.post("/jobs").json() == {"title": "boom"}
        answer(api, "POST", "/api/jobs", {"detail": "no title"}, 500, ctype="application/problem+json")
        with pytest.raises(SchemaMismatchError) as caught:
            client.post("/jobs").json()
        assert (caught.value.path, "→ default" in caught.value.summary) == ("$.title", True)


def test_a_31_document_that_writes_nullable_is_read_as_meant(tmp_path: Path) -> None:
    """OpenAI's 3.1 document writes ``nullable: true`` in places (3.0 style); a null there is no mismatch."""
    path = tmp_path / "doc.json"
    schema = {"type": "object", "properties": {"n": {"type": "integer", "nullable": True}}}
    path.write_text(json.dumps(_document("3.1.0", schema)), encoding="utf-8")
    validator = ResponseValidator(path, "")
    validator.check(_response("GET", "/n", 200, {"n": None}), {"n": None})
    with pytest.raises(SchemaMismatchError):
        validator.check(_response("GET", "/n", 200, {"n": "1"}), {"n": "1"})


# --- pieces -----------------------------------------------------------------------------------------------------


def _document(version: str, schema: dict[str, Any]) -> dict[str, Any]:
    content = {"application/json": {"schema": schema}}
    return {
        "openapi": version,
        "info": {"title": "t", "version": "1"},
        "paths": {"/n": {"get": {"responses": {"200": {"description": "ok", "content": content}}}}},
    }


def _response(method: str, path: str, status: int, body: Any) -> httpx2.Response:
    return httpx2.Response(status, json=body, request=httpx2.Request(method, f"https://api.example{path}"))


def test_30_conversion_keeps_examples_and_drops_ref_siblings() -> None:
    schema = {
        "type": "object",
        "example": {"nullable": True, "type": "string"},  # an example is data, never converted
        "properties": {
            "a": {"$ref": "#/components/schemas/A", "description": "ignored in 3.0", "nullable": True},
            "b": {"type": "number", "maximum": 5, "exclusiveMaximum": True},
            "c": {"type": "number", "minimum": 1, "exclusiveMinimum": False},
        },
    }
    converted = to_json_schema(schema, openapi_30=True)
    assert converted["example"] == {"nullable": True, "type": "string"}
    assert converted["properties"]["a"] == {"anyOf": [{"$ref": "#/components/schemas/A"}, {"type": "null"}]}
    assert converted["properties"]["b"] == {"type": "number", "exclusiveMaximum": 5}
    assert converted["properties"]["c"] == {"type": "number", "minimum": 1}
    assert "nullable" in schema["properties"]["a"]  # the shared document is left as it was


def test_operations_are_matched_by_template_segment() -> None:
    document = load_document(EXCERPT)
    index = OperationIndex(operations(document.data, Locator(document, registry_for(document.uri, document.data))))
    found = index.find("GET", "/models/gpt-4o")
    assert found is not None
    assert found.operation_id == "retrieveModel"
    assert index.find("DELETE", "/models/ft:gpt-4o:acme") is not None
    assert index.find("GET", "/models/a/b") is None
    assert index.find("GET", "/models/") is not None  # a trailing slash is the same path
    assert index.find("PATCH", "/models/x") is None


MODELS = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.text(max_size=20),
            "object": st.just("model"),
            "created": st.integers(min_value=0, max_value=2**40),
            "owned_by": st.text(max_size=20),
        },
        optional={"shutdown_date": st.one_of(st.none(), st.text(max_size=10))},
    ),
    max_size=5,
)


@given(data=MODELS)
def test_any_body_built_to_the_schema_passes(data: list[dict[str, Any]]) -> None:
    body = {"object": "list", "data": data}
    ResponseValidator(EXCERPT, "/v1").check(_response("GET", "/v1/models", 200, body), body)


@given(
    created=st.one_of(
        st.text(),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
        st.booleans(),
        st.none(),
    )
)
def test_any_non_integer_created_is_reported_at_its_path(created: Any) -> None:
    body = {"object": "list", "data": [model(), model(created=created)]}
    with pytest.raises(SchemaMismatchError) as caught:
        ResponseValidator(EXCERPT, "/v1").check(_response("GET", "/v1/models", 200, body), body)
    assert caught.value.path == "$.data[1].created"


def test_a_reference_to_another_file_says_to_bundle_the_document(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    path.write_text(json.dumps(_document("3.1.0", {"$ref": "schemas.yaml#/Thing"})), encoding="utf-8")
    with pytest.raises(ConfigError, match="bundle the document"):
        ResponseValidator(path, "").check(_response("GET", "/n", 200, {}), {})

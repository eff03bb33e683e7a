"""``tether init``: a commented tether.toml table, drafted from a real OpenAPI document (OpenAI's, 288 operations)
or from NAME and --base-url; appended to an existing file, never over it.

OpenAPI 3.0 features (server variables, API keys, OAuth 2.0 flows) are tried on small documents written here.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tether.cli import app
from tether.config import parse_config
from tether.config.models import ApiKeyAuthConfig, BasicAuthConfig, BearerAuthConfig, OAuth2AuthConfig
from tether.errors import ConfigError
from tether.openapi import draft_integration, load_document, render_header, render_integration, slug
from tether.openapi.document import clear_cache
from tether.openapi.security import AUTH_CHOICES

# OpenAI's public OpenAPI 3.1 document (version 2.3.0, 288 operations, ~3 MB), shipped as test data under its
# MIT license (openai.LICENSE beside it): the real document `tether init --openapi` is tested on.
OPENAI = Path(__file__).resolve().parent / "data" / "openapi" / "openai.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ENDPOINT_LINE = re.compile(r'^# "(GET|PUT|POST|DELETE|OPTIONS|HEAD|PATCH|TRACE) ([^"]+)"', re.MULTILINE)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    """No stray $TETHER_CONFIG; the logging set-up each command installs is undone afterwards."""
    monkeypatch.delenv("TETHER_CONFIG", raising=False)


@pytest.fixture
def openai_document() -> Path:
    return OPENAI


def init(*args: str) -> Any:
    return runner.invoke(app, list(args))


def said(result: Any) -> str:
    """The command's output on one line: rich wraps long messages to the terminal's width."""
    return " ".join(result.output.split())


def env_for(text: str) -> dict[str, str]:
    """A value for every ${VAR} the text references."""
    return {name: f"value-of-{name.lower()}" for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)}


# --- the full OpenAI document ------------------------------------------------------------------------------------


def test_init_drafts_openai_from_its_openapi_document(openai_document: Path, tmp_path: Path) -> None:
    config = tmp_path / "conf" / "tether.toml"
    clear_cache()
    started = time.perf_counter()
    result = init("--config", str(config), "init", "--openapi", str(openai_document))
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert "created" in said(result)
    assert "288 operations" in said(result)
    assert "OPENAI_API_KEY" in said(result)
    # Reading 3 MB of YAML (libyaml: under a second here) and drafting; generous for a loaded CI machine.
    assert elapsed < 20, f"init took {elapsed:.1f}s"

    text = config.read_text(encoding="utf-8")
    parsed = parse_config(text, base_dir=config.parent, env={"OPENAI_API_KEY": "sk-test"})
    openai = parsed.integrations["openai"]
    assert str(openai.base_url) == "https://api.openai.com/v1"
    assert isinstance(openai.auth, BearerAuthConfig)
    assert openai.auth.token.reference == "${OPENAI_API_KEY}"
    assert openai.validate_responses is False
    assert openai.openapi is not None
    assert (config.parent / openai.openapi).resolve() == openai_document.resolve()
    assert openai.purpose == "OpenAI API: The OpenAI REST API."
    assert openai.endpoints == {}  # listed as comments: an endpoints table needs a limit

    # Every operation of the document, counted here independently of tether's reader, is listed once.
    document = yaml.load(openai_document.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe
    expected = {
        f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item if method in METHODS
    }
    listed = [f"{method} {path}" for method, path in ENDPOINT_LINE.findall(text)]
    assert len(expected) == 288
    assert len(listed) == len(expected)
    assert set(listed) == expected
    assert re.search(r'^# "POST /chat/completions" +createChatCompletion — ', text, re.MULTILINE)
    assert "# Chat (6)" in text
    assert '# [integrations.openai.endpoints."POST ' in text  # how to give a group its own limit


def test_the_openai_draft_without_its_env_var_fails_only_on_that(openai_document: Path) -> None:
    draft = draft_integration(load_document(openai_document), openapi="openai.yaml")
    text = render_header() + "\n" + render_integration(draft)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    assert [(p.path, p.message) for p in caught.value.problems] == [
        (
            "integrations.openai.auth.token",
            "environment variable OPENAI_API_KEY is not set; export it before starting tether",
        )
    ]


def test_the_openai_document_is_read_once_and_drafted_quickly(openai_document: Path) -> None:
    clear_cache()
    started = time.perf_counter()
    document = load_document(openai_document)
    loaded = time.perf_counter()
    render_integration(draft_integration(document))
    drafted = time.perf_counter()
    assert load_document(openai_document) is document  # cached per (path, mtime)
    cached = time.perf_counter() - drafted
    assert loaded - started < 15
    assert drafted - loaded < 2
    assert cached < 0.05


# --- init without a document ---------------------------------------------------------------------------------


def test_init_creates_the_file_with_a_header_then_appends(tmp_path: Path) -> None:
    config = tmp_path / "tether.toml"
    first = init("--config", str(config), "init", "stripe", "--base-url", "https://api.stripe.com/")
    assert first.exit_code == 0, first.output
    created = config.read_text(encoding="utf-8")
    assert created.startswith("# tether.toml:")
    assert '# state = "memory"' in created
    assert '# store = "sqlite:///tether.db"' in created

    second = init("--config", str(config), "init", "crm", "--base-url", "https://crm.example/api/", "--auth", "oauth2")
    assert second.exit_code == 0, second.output
    text = config.read_text(encoding="utf-8")
    assert text.startswith(created)  # what was there is untouched
    parsed = parse_config(text, env=env_for(text))
    assert str(parsed.integrations["stripe"].base_url) == "https://api.stripe.com/"
    assert parsed.integrations["crm"].base_url.path == "/api"
    assert isinstance(parsed.integrations["stripe"].auth, BearerAuthConfig)
    assert parsed.integrations["stripe"].auth.token.reference == "${STRIPE_API_KEY}"
    crm = parsed.integrations["crm"].auth
    assert isinstance(crm, OAuth2AuthConfig)
    assert str(crm.token_url) == "https://crm.example/oauth/token"


def test_init_refuses_an_integration_that_exists(tmp_path: Path) -> None:
    config = tmp_path / "tether.toml"
    config.write_text('store = "sqlite:///x.db"\n\n[integrations.stripe]\nbase_url = "https://a.example"', "utf-8")
    before = config.read_bytes()
    result = init("--config", str(config), "init", "stripe", "--base-url", "https://api.stripe.com")
    assert result.exit_code == 1
    assert "already has an integration named 'stripe'" in said(result)
    assert config.read_bytes() == before


def test_init_appends_to_a_file_without_a_final_newline(tmp_path: Path) -> None:
    config = tmp_path / "tether.toml"
    config.write_text('[integrations.stripe]\nbase_url = "https://a.example"', "utf-8")
    result = init("--config", str(config), "init", "github", "--base-url", "https://api.github.com", "--auth", "none")
    assert result.exit_code == 0, result.output
    parsed = parse_config(config.read_text("utf-8"))
    assert set(parsed.integrations) == {"stripe", "github"}
    assert parsed.integrations["github"].auth is None


def test_init_refuses_a_file_that_is_not_toml(tmp_path: Path) -> None:
    config = tmp_path / "tether.toml"
    config.write_text("[integrations.stripe\n", "utf-8")
    result = init("--config", str(config), "init", "github", "--base-url", "https://api.github.com")
    assert result.exit_code == 1
    assert "is not valid TOML" in said(result)
    assert config.read_text("utf-8") == "[integrations.stripe\n"


def test_init_finds_the_file_through_tether_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "elsewhere.toml"
    monkeypatch.setenv("TETHER_CONFIG", str(config))
    assert init("init", "acme", "--base-url", "https://acme.example").exit_code == 0
    assert "[integrations.acme]" in config.read_text("utf-8")


def test_init_writes_to_the_working_folder_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert init("init", "acme", "--base-url", "https://acme.example").exit_code == 0
    assert (tmp_path / "tether.toml").exists()


def test_stdout_prints_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "tether.toml"
    result = init("--config", str(config), "init", "acme", "--base-url", "https://acme.example", "--stdout")
    assert result.exit_code == 0, result.output
    assert not config.exists()
    assert result.output.startswith("# tether.toml:")
    assert parse_config(result.output, env=env_for(result.output)).integrations["acme"]


@pytest.mark.parametrize("kind", AUTH_CHOICES)
def test_every_auth_kind_drafts_a_valid_table(kind: str) -> None:
    result = init("init", "my-api.v2", "--base-url", "https://api.example/v2", "--auth", kind, "--stdout")
    assert result.exit_code == 0, result.output
    parsed = parse_config(result.output, env=env_for(result.output))
    auth = parsed.integrations["my-api.v2"].auth  # a dotted name is quoted, not a nested table
    expected = {
        "bearer": BearerAuthConfig,
        "api_key": ApiKeyAuthConfig,
        "basic": BasicAuthConfig,
        "oauth2": OAuth2AuthConfig,
        "none": type(None),
    }
    assert isinstance(auth, expected[kind])
    references = set(re.findall(r"\$\{(\w+)\}", result.output)) - {"VAR", "ENV_VAR"}  # those two explain the syntax
    assert references
    assert all(name.startswith("MY_API_V2_") for name in references)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init", "acme"], "give NAME and --base-url"),
        (["init", "acme", "--base-url", "api.acme.example"], "must be an http:// or https:// URL"),
        (["init", "bad/name", "--base-url", "https://x.example"], "must be letters"),
        (["init", "acme", "--base-url", "https://x.example", "--auth", "digest"], "--auth must be one of"),
        (["init", "a", "--name", "b", "--base-url", "https://x.example"], "differ"),
    ],
)
def test_init_explains_what_is_wrong_with_its_arguments(args: list[str], message: str, tmp_path: Path) -> None:
    result = init("--config", str(tmp_path / "tether.toml"), *args)
    assert result.exit_code != 0
    assert message in said(result)
    assert not (tmp_path / "tether.toml").exists()


# --- OpenAPI 3.0 features, on small documents -----------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "api.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def draft_text(document: Path, **kwargs: Any) -> str:
    return render_integration(draft_integration(load_document(document), **kwargs))


ACME_30 = """
openapi: 3.0.3
info:
  title: "Acme \\"Widgets\\" API"
  version: "2024-05-01"
  description: |
    # Acme Widgets
    Widgets, made to order.
    Second sentence here.
externalDocs: {url: "https://docs.acme.example/api"}
servers:
  - url: https://{region}.acme.example/{basePath}
    variables:
      region: {default: eu, enum: [eu, us]}
      basePath: {default: v2}
  - url: https://sandbox.acme.example/v2
    description: Sandbox
security:
  - partnerKey: []
paths:
  /widgets:
    get:
      operationId: listWidgets
      summary: "List widgets\\x01 (with a control character)"
      tags: [Widgets]
  /widgets/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: string}}]
    get: {operationId: getWidget, tags: [Widgets]}
  /health:
    get: {operationId: health}
components:
  securitySchemes:
    partnerKey: {type: apiKey, in: header, name: X-Partner-Key}
    oauth:
      type: oauth2
      flows:
        clientCredentials:
          tokenUrl: /oauth/token
          scopes: {widgets.read: read, widgets.write: write}
"""


def test_a_30_document_with_server_variables_and_an_api_key_header(tmp_path: Path) -> None:
    text = draft_text(write(tmp_path, ACME_30))
    parsed = parse_config(text, env=env_for(text))
    acme = parsed.integrations["acme-widgets"]
    assert str(acme.base_url) == "https://eu.acme.example/v2"
    assert "us" in text
    assert "https://sandbox.acme.example/v2 (Sandbox)" in text
    assert isinstance(acme.auth, ApiKeyAuthConfig)
    assert (acme.auth.name, acme.auth.in_, acme.auth.key.reference) == (
        "X-Partner-Key",
        "header",
        "${ACME_WIDGETS_API_KEY}",
    )
    assert "oauth (oauth2)" in text  # the other scheme is named
    assert acme.purpose == 'Acme "Widgets" API: Widgets, made to order.'
    assert str(acme.docs_url) == "https://docs.acme.example/api"
    assert '# health = "GET /health"' in text
    assert "\x01" not in text
    assert len(ENDPOINT_LINE.findall(text)) == 3
    assert "# Other (no tag) (1)" in text


def test_oauth2_client_credentials_become_an_oauth2_table(tmp_path: Path) -> None:
    document = write(tmp_path, ACME_30.replace("  - partnerKey: []", "  - oauth: [widgets.read]"))
    text = draft_text(document, name="acme")
    auth = parse_config(text, env=env_for(text)).integrations["acme"].auth
    assert isinstance(auth, OAuth2AuthConfig)
    assert str(auth.token_url) == "https://eu.acme.example/oauth/token"  # relative tokenUrl, joined to the server
    assert auth.scopes == ["widgets.read"]
    assert auth.client_secret is not None
    assert auth.client_secret.reference == "${ACME_CLIENT_SECRET}"


def scheme_document(scheme: str) -> str:
    return f"""
openapi: 3.0.0
info: {{title: Scheme, version: "1"}}
servers: [{{url: "https://scheme.example"}}]
paths: {{}}
components:
  securitySchemes:
    only: {scheme}
"""


@pytest.mark.parametrize(
    ("scheme", "auth_type", "says"),
    [
        ("{type: http, scheme: bearer, bearerFormat: JWT}", "bearer", "a JWT"),
        ("{type: http, scheme: basic}", "basic", "HTTP basic"),
        ("{type: apiKey, in: query, name: api_key}", "api_key", "access logs"),
        ("{type: apiKey, in: cookie, name: session}", None, "not in a cookie"),
        ("{type: http, scheme: digest}", None, "does not send HTTP digest"),
        (
            "{type: oauth2, flows: {authorizationCode: {authorizationUrl: 'https://s.example/authorize', "
            "tokenUrl: 'https://s.example/token', scopes: {}}}}",
            None,
            "tether auth login scheme",
        ),
        ("{type: oauth2, flows: {implicit: {authorizationUrl: 'https://s.example/a', scopes: {}}}}", None, "implicit"),
        (
            "{type: openIdConnect, openIdConnectUrl: 'https://s.example/.well-known/openid-configuration'}",
            None,
            "OpenID",
        ),
        ("{type: mutualTLS}", None, "client certificates"),
    ],
)
def test_each_security_scheme_becomes_auth_or_a_comment_saying_why_not(
    tmp_path: Path, scheme: str, auth_type: str | None, says: str
) -> None:
    text = draft_text(write(tmp_path, scheme_document(scheme)))
    auth = parse_config(text, env=env_for(text)).integrations["scheme"].auth
    assert (auth.type if auth else None) == auth_type
    assert says in " ".join(line.lstrip("# ") for line in text.splitlines())
    if auth is not None and auth.type == "api_key" and "query" in scheme:
        assert (auth.in_, auth.name) == ("query", "api_key")


def test_a_commented_authorization_code_example_is_valid_once_uncommented(tmp_path: Path) -> None:
    scheme = (
        "{type: oauth2, flows: {authorizationCode: {authorizationUrl: 'https://s.example/authorize', "
        "tokenUrl: 'https://s.example/token', scopes: {}}}}"
    )
    text = draft_text(write(tmp_path, scheme_document(scheme)))
    uncommented = re.sub(r"^# (auth\.)", r"\1", text, flags=re.MULTILINE)
    auth = parse_config(uncommented, env=env_for(uncommented)).integrations["scheme"].auth
    assert isinstance(auth, OAuth2AuthConfig)
    assert auth.grant == "authorization_code"


def test_a_relative_server_needs_base_url(tmp_path: Path) -> None:
    document = write(
        tmp_path, "openapi: 3.0.1\ninfo: {title: Pets, version: '1'}\nservers: [{url: /api/v3}]\npaths: {}\n"
    )
    config = tmp_path / "tether.toml"
    refused = init("--config", str(config), "init", "--openapi", str(document))
    assert refused.exit_code == 1
    assert "--base-url https://api.example.com/api/v3" in said(refused)
    accepted = init(
        "--config", str(config), "init", "--openapi", str(document), "--base-url", "https://p.example/api/v3"
    )
    assert accepted.exit_code == 0, accepted.output
    pets = parse_config(config.read_text("utf-8")).integrations["pets"]
    assert str(pets.base_url) == "https://p.example/api/v3"
    assert pets.openapi == "api.yaml"


def test_swagger_2_is_refused_with_what_to_do(tmp_path: Path) -> None:
    document = write(tmp_path, '{"swagger": "2.0", "info": {"title": "Old", "version": "1"}, "paths": {}}', "old.json")
    result = init("--config", str(tmp_path / "tether.toml"), "init", "--openapi", str(document))
    assert result.exit_code == 1
    assert "Swagger 2.0 (OpenAPI 2) is not supported" in said(result)
    assert "swagger2openapi" in said(result)
    assert not (tmp_path / "tether.toml").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("just: [a, list", "not valid YAML or JSON at line"),
        ("- a list\n", "expected a mapping"),
        ("info: {title: x}\n", "no 'openapi' version field"),
        ("openapi: 4.0.0\n", "OpenAPI 4.0.0 is not supported"),
    ],
)
def test_what_is_not_an_openapi_3_document_is_refused(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_document(write(tmp_path, content))


def test_yaml_is_read_as_json_would_see_it(tmp_path: Path) -> None:
    document = load_document(write(tmp_path, "openapi: 3.1.0\nx-when: 2024-01-01\nx-flags: {on: yes, 200: ok}\n"))
    assert document.data["x-when"] == "2024-01-01"
    assert document.data["x-flags"] == {"on": "yes", "200": "ok"}


def test_a_document_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "openapi: 3.0.0\ninfo: {title: One}\n")
    first = load_document(path)
    assert load_document(path) is first
    path.write_text("openapi: 3.0.0\ninfo: {title: Two, version: '2'}\n", encoding="utf-8")
    assert load_document(path).title == "Two"


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("OpenAI API", "openai"),
        ("Swagger Petstore - OpenAPI 3.0", "swagger-petstore-openapi-3-0"),
        ("Ünïcode REST API", "unicode"),
        ("!!!", "api"),
    ],
)
def test_the_name_is_a_slug_of_the_title(title: str, expected: str) -> None:
    assert slug(title) == expected


def test_check_reads_each_openapi_document_and_names_a_broken_one(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("openapi: 3.1.0\ninfo: {title: Good, version: '1'}\npaths: {}\n")
    (tmp_path / "swagger.yaml").write_text("swagger: '2.0'\ninfo: {title: Old, version: '1'}\npaths: {}\n")
    config = tmp_path / "tether.toml"
    config.write_text(
        '[integrations.good]\nbase_url = "https://good.test"\nopenapi = "good.yaml"\nvalidate = true\n'
        '[integrations.old]\nbase_url = "https://old.test"\nopenapi = "swagger.yaml"\n'
        '[integrations.gone]\nbase_url = "https://gone.test"\nopenapi = "missing.yaml"\n'
    )

    result = runner.invoke(app, ["--config", str(config), "check"])

    assert result.exit_code == 1
    assert "integrations.old.openapi" in result.output
    assert "integrations.gone.openapi" in result.output
    assert "integrations.good" not in result.output
    (tmp_path / "swagger.yaml").write_text("openapi: 3.0.3\ninfo: {title: New, version: '1'}\npaths: {}\n")
    (tmp_path / "missing.yaml").write_text("openapi: 3.0.3\ninfo: {title: Back, version: '1'}\npaths: {}\n")
    assert runner.invoke(app, ["--config", str(config), "check"]).exit_code == 0

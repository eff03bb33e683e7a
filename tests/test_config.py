"""tether.toml: the schema, its defaults, durations, secret references and the errors a person can act on."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether._durations import parse_duration
from tether.config import (
    ApiKeyAuthConfig,
    BasicAuthConfig,
    BearerAuthConfig,
    Secret,
    TetherConfig,
    find_config,
    load_config,
    parse_config,
)
from tether.config.models import DEFAULT_RETRY_STATUSES, IDEMPOTENT_METHODS
from tether.errors import ConfigError
from tether.observe.redact import redact_text

# Distinctive values: every resolved secret is registered process-wide with the redactor.
STRIPE_KEY = "sk_test_cfg_4Tq9Lm2Wx7"
GITHUB_TOKEN = "ghp_cfg_8Rz3Kd6Nv1"
TWILIO_PASSWORD = "tw_cfg_5Hs0Pj9Qc2"
SEARCH_KEY = "srch_cfg_2Bv7Yx4Ge6"
ENV = {
    "STRIPE_KEY": STRIPE_KEY,
    "GITHUB_TOKEN": GITHUB_TOKEN,
    "TWILIO_PASSWORD": TWILIO_PASSWORD,
    "SEARCH_KEY": SEARCH_KEY,
}

FULL_CONFIG = """
[integrations.stripe]
base_url = "https://api.stripe.com"
auth = { type = "api_key", key = "${STRIPE_KEY}", name = "Authorization", prefix = "Bearer " }
timeout = "30s"
headers = { Accept = "application/json" }
version = "2024-06-20"
version_header = "Stripe-Version"
idempotency_header = "Idempotency-Key"
owner = "payments-team"
docs_url = "https://docs.stripe.com/api"
notes = "Live keys rotate quarterly."
health = "GET /v1/x"
ca_bundle = "certs/corporate.pem"

[integrations.stripe.retry]
attempts = 5
backoff = "500ms"
max_backoff = "1m30s"
statuses = [429, 503]
methods = ["get", "post"]
budget = 0.5
respect_retry_after = false

[integrations.search]
base_url = "https://search.example.com/v2/"
auth = { type = "api_key", key = "${SEARCH_KEY}", in = "query", name = "api_key" }
timeout = { total = "6m0s", connect = 2, read = "10s", write = 1.5, pool = "250ms" }

[integrations.github]
base_url = "https://api.github.com"
auth = { type = "bearer", token = "${GITHUB_TOKEN}" }

[integrations.twilio]
base_url = "https://api.twilio.com"
auth = { type = "basic", username = "AC123", password = "${TWILIO_PASSWORD}" }
"""

MINIMAL = """
[integrations.stripe]
base_url = "https://api.stripe.com"
"""


def _write(folder: Path, text: str, name: str = "tether.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _load_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[Path, ConfigError]:
    """Write ``text`` as a config file and return the file and the ConfigError loading it raises."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=ENV if env is None else env)
    return path, caught.value


def _stripe(body: str) -> str:
    return f'[integrations.stripe]\nbase_url = "https://api.stripe.com"\n{body}\n'


# --- a valid config, every key -------------------------------------------------------------------------------


def test_every_integration_key_is_read(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL_CONFIG), env=ENV)

    assert sorted(config.integrations) == ["github", "search", "stripe", "twilio"]
    stripe = config.integrations["stripe"]
    assert str(stripe.base_url) == "https://api.stripe.com/"
    assert isinstance(stripe.auth, ApiKeyAuthConfig)
    assert stripe.auth.key.value == STRIPE_KEY
    assert stripe.auth.key.reference == "${STRIPE_KEY}"
    assert (stripe.auth.in_, stripe.auth.name, stripe.auth.prefix) == ("header", "Authorization", "Bearer ")
    assert stripe.timeout.total == 30.0
    assert stripe.retry.attempts == 5
    assert stripe.retry.backoff == 0.5
    assert stripe.retry.max_backoff == 90.0
    assert stripe.retry.statuses == frozenset({429, 503})
    assert stripe.retry.methods == frozenset({"GET", "POST"})
    assert stripe.retry.budget == 0.5
    assert stripe.retry.respect_retry_after is False
    assert stripe.headers == {"Accept": "application/json"}
    assert (stripe.version, stripe.version_header) == ("2024-06-20", "Stripe-Version")
    assert stripe.idempotency_header == "Idempotency-Key"
    assert stripe.owner == "payments-team"
    assert str(stripe.docs_url) == "https://docs.stripe.com/api"
    assert stripe.notes == "Live keys rotate quarterly."
    assert stripe.health is not None
    assert (stripe.health.method, stripe.health.path) == ("GET", "/v1/x")
    assert stripe.ca_bundle == "certs/corporate.pem"


def test_api_key_can_be_sent_as_a_query_parameter_with_in() -> None:
    search = parse_config(FULL_CONFIG, env=ENV).integrations["search"]

    assert isinstance(search.auth, ApiKeyAuthConfig)
    assert (search.auth.in_, search.auth.name) == ("query", "api_key")
    assert search.auth.key.value == SEARCH_KEY


def test_bearer_and_basic_auth_resolve_their_secrets() -> None:
    config = parse_config(FULL_CONFIG, env=ENV)
    github, twilio = config.integrations["github"].auth, config.integrations["twilio"].auth

    assert isinstance(github, BearerAuthConfig)
    assert github.token.value == GITHUB_TOKEN
    assert isinstance(twilio, BasicAuthConfig)
    assert twilio.username == "AC123"
    assert isinstance(twilio.password, Secret)
    assert twilio.password.value == TWILIO_PASSWORD


def test_basic_username_may_be_a_secret_reference() -> None:
    config = parse_config(
        _stripe('auth = { type = "basic", username = "${STRIPE_KEY}" }'),
        env=ENV,
    )
    auth = config.integrations["stripe"].auth

    assert isinstance(auth, BasicAuthConfig)
    assert isinstance(auth.username, Secret)
    assert auth.username.value == STRIPE_KEY
    assert auth.password is None


def test_timeout_as_a_table_sets_each_limit() -> None:
    timeout = parse_config(FULL_CONFIG, env=ENV).integrations["search"].timeout

    assert (timeout.total, timeout.connect, timeout.read, timeout.write, timeout.pool) == (360.0, 2.0, 10.0, 1.5, 0.25)


def test_timeout_as_a_scalar_sets_the_total_and_keeps_the_default_connect() -> None:
    timeout = parse_config(_stripe('timeout = "30s"')).integrations["stripe"].timeout

    assert timeout.total == 30.0
    assert timeout.connect == 5.0


def test_config_round_trips_through_its_json_dump() -> None:
    config = parse_config(FULL_CONFIG, env=ENV)
    dumped = config.model_dump(mode="json", by_alias=True)

    again = TetherConfig.model_validate(dumped, context={"env": ENV})

    assert again == config
    assert dumped["integrations"]["search"]["auth"]["in"] == "query"


def test_dump_writes_secret_references_never_values() -> None:
    config = parse_config(FULL_CONFIG, env=ENV)

    dumped = config.model_dump_json()

    assert "${STRIPE_KEY}" in dumped
    assert "${TWILIO_PASSWORD}" in dumped
    for value in ENV.values():
        assert value not in dumped


@pytest.mark.parametrize(
    ("written", "method", "path"),
    [("GET /v1/x", "GET", "/v1/x"), ("post /v1/ping", "POST", "/v1/ping"), ("/health", "GET", "/health")],
)
def test_health_check_is_written_as_method_and_path(written: str, method: str, path: str) -> None:
    health = parse_config(_stripe(f'health = "{written}"')).integrations["stripe"].health

    assert health is not None
    assert (health.method, health.path) == (method, path)


def test_an_empty_file_has_no_integrations() -> None:
    assert parse_config("").integrations == {}


# --- defaults --------------------------------------------------------------------------------------------------


def test_timeout_defaults_to_30s_total_with_a_separate_connect_limit() -> None:
    timeout = parse_config(MINIMAL).integrations["stripe"].timeout

    assert timeout.total == 30.0
    assert timeout.connect == 5.0
    assert timeout.connect < timeout.total
    assert (timeout.read, timeout.write, timeout.pool) == (None, None, 5.0)


def test_retry_defaults_to_4_attempts_that_is_3_retries_with_1s_backoff_capped_at_30s() -> None:
    retry = parse_config(MINIMAL).integrations["stripe"].retry

    assert retry.attempts == 4
    assert retry.backoff == 1.0
    assert retry.max_backoff == 30.0
    assert retry.statuses == frozenset({408, 429, 500, 502, 503, 504}) == DEFAULT_RETRY_STATUSES
    assert retry.methods == IDEMPOTENT_METHODS
    assert "POST" not in retry.methods
    assert retry.budget == 0.2
    assert retry.respect_retry_after is True


def test_integration_defaults_leave_optional_keys_unset() -> None:
    stripe = parse_config(MINIMAL).integrations["stripe"]

    assert stripe.auth is None
    assert stripe.headers == {}
    assert stripe.version is stripe.version_header is stripe.idempotency_header is None
    assert stripe.owner is stripe.docs_url is stripe.notes is stripe.health is stripe.ca_bundle is None


def test_api_key_defaults_to_the_x_api_key_header() -> None:
    config = parse_config(_stripe('auth = { type = "api_key", key = "${STRIPE_KEY}" }'), env=ENV)
    auth = config.integrations["stripe"].auth

    assert isinstance(auth, ApiKeyAuthConfig)
    assert (auth.in_, auth.name, auth.prefix) == ("header", "X-API-Key", "")


def test_retry_false_means_a_single_attempt_and_true_means_the_defaults() -> None:
    text = MINIMAL + "retry = false\n" + '[integrations.github]\nbase_url = "https://api.github.com"\nretry = true\n'

    config = parse_config(text)

    assert config.integrations["stripe"].retry.attempts == 1
    assert config.integrations["github"].retry.attempts == 4


# --- durations -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h1m1s1ms", 3661.001),
        (" 250MS ", 0.25),
        ("45", 45.0),
        ("2.5", 2.5),
        (30, 30.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration_reads_numbers_and_unit_strings(written: str | float, seconds: float) -> None:
    assert parse_duration(written) == pytest.approx(seconds)


NOT_DURATIONS = ["", "   ", "abc", "10x", "1m30", "5 s", "s", "-1", "-1s", "1s-", "inf", "nan", "1e999"]


@pytest.mark.parametrize("written", [*NOT_DURATIONS, True, -3, math.inf, math.nan])
def test_parse_duration_refuses_what_is_not_a_non_negative_finite_duration(written: str | float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(written)


@given(st.text())
def test_parse_duration_raises_only_value_error_on_arbitrary_text(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert math.isfinite(seconds)
    assert seconds >= 0


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["ms", "s", "m", "h", "d"])), min_size=1))
def test_parse_duration_of_concatenated_parts_is_their_sum(parts: list[tuple[int, str]]) -> None:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    text = "".join(f"{number}{unit}" for number, unit in parts)

    assert parse_duration(text) == pytest.approx(sum(number * units[unit] for number, unit in parts))


def test_durations_in_config_accept_numbers_and_strings() -> None:
    retry = parse_config(_stripe('retry = { backoff = 0.25, max_backoff = "1m" }')).integrations["stripe"].retry

    assert (retry.backoff, retry.max_backoff) == (0.25, 60.0)


def test_duration_of_the_wrong_type_is_a_config_error_with_its_key_path(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, _stripe("timeout = { total = [30] }"))

    assert str(path) in str(error)
    assert "integrations.stripe.timeout.total" in str(error)


# --- errors: file, key path, what is expected ------------------------------------------------------------------


def test_unknown_key_suggests_the_closest_one(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, _stripe("retyr = { attempts = 3 }"))

    assert str(error) == f"{path}: integrations.stripe.retyr: unknown key; did you mean 'retry'?"
    assert error.file == str(path)
    assert [problem.path for problem in error.problems] == ["integrations.stripe.retyr"]


def test_unknown_key_inside_retry_suggests_attempts(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, _stripe("retry = { atempts = 3 }"))

    message = str(error)
    assert str(path) in message
    assert "integrations.stripe.retry.atempts" in message
    assert "did you mean 'attempts'" in message


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, _stripe("zzz = 1"))

    message = str(error)
    assert str(path) in message
    assert "integrations.stripe.zzz: unknown key; expected one of: alerts, auth, base_url, breaker" in message


def test_unknown_top_level_key_suggests_integrations(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, '[integration.stripe]\nbase_url = "https://api.stripe.com"\n')

    assert str(error) == f"{path}: integration: unknown key; did you mean 'integrations'?"


def test_wrong_type_names_the_key_path_and_the_expected_type(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, _stripe('retry = { attempts = "three" }'))

    message = str(error)
    assert str(path) in message
    assert [problem.path for problem in error.problems] == ["integrations.stripe.retry.attempts"]
    assert "valid integer" in message
    assert "'three'" in message


def test_unset_env_var_names_the_variable_and_the_key_path_without_the_auth_tag(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, _stripe('auth = { type = "bearer", token = "${STRIPE_KEY}" }'), env={})

    message = str(error)
    assert str(path) in message
    assert "STRIPE_KEY" in message
    assert "is not set" in message
    assert [problem.path for problem in error.problems] == ["integrations.stripe.auth.token"]
    assert ".bearer." not in message


def test_empty_env_var_is_reported_as_empty(tmp_path: Path) -> None:
    _, error = _load_error(
        tmp_path, _stripe('auth = { type = "api_key", key = "${STRIPE_KEY}" }'), env={"STRIPE_KEY": ""}
    )

    assert "integrations.stripe.auth.key: environment variable STRIPE_KEY is set but empty" in str(error)


def test_literal_secret_is_refused_with_advice_to_use_an_env_var_and_is_not_echoed(tmp_path: Path) -> None:
    literal = "sk_live_literal_9Xc2Vb7Nm4"
    path, error = _load_error(tmp_path, _stripe(f'auth = {{ type = "bearer", token = "{literal}" }}'))

    message = str(error)
    assert str(path) in message
    assert "integrations.stripe.auth.token" in message
    assert "literal secret is not allowed" in message
    assert "environment variable" in message
    assert "${NAME}" in message
    assert literal not in message


def test_wrong_typed_value_under_auth_is_never_echoed(tmp_path: Path) -> None:
    _, error = _load_error(tmp_path, _stripe('auth = { type = "api_key", key = "${STRIPE_KEY}", name = 98765432 }'))

    message = str(error)
    assert "integrations.stripe.auth.name" in message
    assert "valid string" in message
    assert "98765432" not in message


def test_file_secret_is_read_relative_to_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "deploy"
    (config_dir / "secrets").mkdir(parents=True)
    (config_dir / "secrets" / "stripe.key").write_text("sk_test_file_3Jh8Fd1Ls6\n", encoding="utf-8")
    path = _write(config_dir, _stripe('auth = { type = "bearer", token = "file:secrets/stripe.key" }'))
    monkeypatch.chdir(tmp_path)  # elsewhere: the path must not be resolved against the working directory

    auth = load_config(path).integrations["stripe"].auth

    assert isinstance(auth, BearerAuthConfig)
    assert auth.token.value == "sk_test_file_3Jh8Fd1Ls6"
    assert auth.token.reference == "file:secrets/stripe.key"
    assert auth.token.source == "file secrets/stripe.key"


def test_missing_secret_file_is_reported_with_its_resolved_path(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, _stripe('auth = { type = "bearer", token = "file:missing.key" }'))

    message = str(error)
    assert str(path) in message
    assert "integrations.stripe.auth.token: cannot read secret file" in message
    assert str(tmp_path / "missing.key") in message


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.key").write_text("\n", encoding="utf-8")
    _, error = _load_error(tmp_path, _stripe('auth = { type = "bearer", token = "file:empty.key" }'))

    assert "integrations.stripe.auth.token: secret file" in str(error)
    assert "is empty" in str(error)


def test_bad_auth_type_lists_the_allowed_types(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, _stripe('auth = { type = "oauth", token = "${STRIPE_KEY}" }'))

    assert str(error) == (
        f"{path}: integrations.stripe.auth: 'type' must be one of 'api_key', 'bearer', 'basic', 'jwt', 'oauth2'"
    )


def test_auth_without_a_type_lists_the_allowed_types(tmp_path: Path) -> None:
    _, error = _load_error(tmp_path, _stripe('auth = { token = "${STRIPE_KEY}" }'))

    message = str(error)
    assert "integrations.stripe.auth" in message
    assert "bearer" in message
    assert "api_key" in message


def test_version_without_version_header_is_refused(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, _stripe('version = "2024-06-20"'))

    message = str(error)
    assert str(path) in message
    assert [problem.path for problem in error.problems] == ["integrations.stripe"]
    assert "'version' is set but 'version_header' is not" in message
    assert 'version_header = "Stripe-Version"' in message


@pytest.mark.parametrize(
    ("body", "key_path"),
    [
        ("timeout = 0", "integrations.stripe.timeout.total"),
        ('timeout = "0s"', "integrations.stripe.timeout.total"),
        ('timeout = { connect = "0ms" }', "integrations.stripe.timeout.connect"),
    ],
)
def test_zero_timeout_is_refused(tmp_path: Path, body: str, key_path: str) -> None:
    path, error = _load_error(tmp_path, _stripe(body))

    assert str(error) == f"{path}: {key_path}: must be greater than 0: a zero timeout fails every call"


def test_negative_timeout_is_refused(tmp_path: Path) -> None:
    _, error = _load_error(tmp_path, _stripe('timeout = "-5s"'))

    assert "integrations.stripe.timeout.total" in str(error)
    assert "duration" in str(error)


@pytest.mark.parametrize(
    ("attempts", "expected"), [(21, "less than or equal to 20"), (0, "greater than or equal to 1")]
)
def test_attempts_outside_1_to_20_are_refused(tmp_path: Path, attempts: int, expected: str) -> None:
    path, error = _load_error(tmp_path, _stripe(f"retry = {{ attempts = {attempts} }}"))

    message = str(error)
    assert str(path) in message
    assert "integrations.stripe.retry.attempts" in message
    assert expected in message


def test_retry_statuses_must_be_http_status_codes(tmp_path: Path) -> None:
    _, error = _load_error(tmp_path, _stripe("retry = { statuses = [99, 503, 600] }"))

    assert "integrations.stripe.retry.statuses: not HTTP status codes: [99, 600]" in str(error)


def test_missing_base_url_is_reported_as_a_required_key(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, '[integrations.stripe]\nowner = "payments"\n')

    assert str(error) == f"{path}: integrations.stripe.base_url: required key is missing"


def test_base_url_must_be_a_url(tmp_path: Path) -> None:
    _, error = _load_error(tmp_path, '[integrations.stripe]\nbase_url = "api.stripe.com"\n')

    assert "integrations.stripe.base_url" in str(error)
    assert "URL" in str(error)


def test_health_path_must_start_with_a_slash(tmp_path: Path) -> None:
    _, error = _load_error(tmp_path, _stripe('health = "GET v1/balance"'))

    assert "integrations.stripe.health.path: expected a path starting with '/'" in str(error)


def test_integration_name_must_be_a_plain_identifier(tmp_path: Path) -> None:
    _, error = _load_error(tmp_path, '[integrations."my api"]\nbase_url = "https://a.example"\n')

    assert "integrations: integration name 'my api' must be letters, digits" in str(error)


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, '[integrations.stripe\nbase_url = "https://api.stripe.com"\n')

    message = str(error)
    assert message.startswith(f"{path}: not valid TOML:")
    assert "line 1" in message
    assert error.problems[0].path == ""


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "tether.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(missing)

    message = str(caught.value)
    assert message.startswith(f"{missing}: file not found")
    assert "--config" in message
    assert "$TETHER_CONFIG" in message


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        '[integrations.stripe]\nbase_url = "https://api.stripe.com"\nretyr = {}\n'
        'retry = { attempts = "three" }\ntimeout = 0\n'
        '[integrations.github]\nauth = { type = "bearer", token = "${NOT_SET_ANYWHERE}" }\n'
    )
    path, error = _load_error(tmp_path, text, env={})

    assert sorted(problem.path for problem in error.problems) == [
        "integrations.github.auth.token",
        "integrations.github.base_url",
        "integrations.stripe.retry.attempts",
        "integrations.stripe.retyr",
        "integrations.stripe.timeout.total",
    ]
    lines = str(error).splitlines()
    assert len(lines) == 5
    assert all(line.startswith(f"{path}: integrations.") for line in lines)


def test_parse_config_uses_the_env_it_is_given_rather_than_the_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_KEY", "sk_test_process_6Wn2Qa8Zt5")
    text = _stripe('auth = { type = "bearer", token = "${STRIPE_KEY}" }')

    with pytest.raises(ConfigError, match="STRIPE_KEY is not set"):
        parse_config(text, env={})
    auth = parse_config(text).integrations["stripe"].auth
    assert isinstance(auth, BearerAuthConfig)
    assert auth.token.value == "sk_test_process_6Wn2Qa8Zt5"


# --- discovery -------------------------------------------------------------------------------------------------


@pytest.fixture
def three_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A config in the working directory, one named by $TETHER_CONFIG and an explicit one, each naming itself."""
    paths = {
        where: _write(tmp_path / where, f'[integrations.{where}]\nbase_url = "https://{where}.example"\n')
        for where in ("cwd", "env", "explicit")
    }
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    return paths


def test_explicit_path_wins_over_env_and_working_directory(
    three_configs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_CONFIG", str(three_configs["env"]))

    assert find_config(three_configs["explicit"]) == three_configs["explicit"]
    assert list(load_config(three_configs["explicit"]).integrations) == ["explicit"]


def test_tether_config_env_var_wins_over_working_directory(
    three_configs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_CONFIG", str(three_configs["env"]))

    assert find_config() == three_configs["env"]
    assert list(load_config().integrations) == ["env"]


def test_tether_toml_in_working_directory_is_the_fallback(three_configs: dict[str, Path]) -> None:
    assert find_config() == three_configs["cwd"]
    assert list(load_config().integrations) == ["cwd"]


def test_empty_tether_config_env_var_is_ignored(
    three_configs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_CONFIG", "")

    assert list(load_config().integrations) == ["cwd"]


# --- Secret ----------------------------------------------------------------------------------------------------


def test_secret_repr_and_str_never_show_the_value() -> None:
    secret = Secret("${STRIPE_KEY}", "sk_test_repr_1Mv5Kp3Rs9")

    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert repr(secret) == "Secret('${STRIPE_KEY}')"
    assert "sk_test_repr_1Mv5Kp3Rs9" not in repr([secret, {"k": secret}])


def test_secret_source_names_the_env_var_or_the_file() -> None:
    assert Secret("${STRIPE_KEY}", "x" * 8).source == "env var STRIPE_KEY"
    assert Secret("file:/run/secrets/key", "x" * 8).source == "file /run/secrets/key"


def test_secrets_compare_by_reference_only() -> None:
    assert Secret("${A}", "one-value") == Secret("${A}", "another-value")
    assert Secret("${A}", "same-value") != Secret("${B}", "same-value")


def test_config_repr_and_str_show_references_not_values() -> None:
    config = parse_config(FULL_CONFIG, env=ENV)

    for text in (repr(config), str(config), repr(config.integrations["twilio"].auth)):
        for value in ENV.values():
            assert value not in text
    assert "Secret('${GITHUB_TOKEN}')" in repr(config)


# --- ${ENV} in store and state URLs ------------------------------------------------------------------------------


def test_a_whole_store_url_can_come_from_the_environment() -> None:
    url = "postgresql://app:s3cr3t@db.internal:5432/app"
    config = parse_config('store = "${DATABASE_URL}"\n', env={"DATABASE_URL": url})
    assert config.store == url
    assert "s3cr3t" not in redact_text(f"cannot connect to {url}")


def test_a_password_inside_a_url_is_percent_encoded_and_redacted() -> None:
    config = parse_config(
        'store = "postgresql://app:${PGPASSWORD}@db/app"\nstate = "redis://:${REDIS_PASSWORD}@cache:6379/0"\n'
        'cache_store = "redis://:${REDIS_PASSWORD}@cache:6379/1"\n',
        env={"PGPASSWORD": "p@ss/w:rd#1", "REDIS_PASSWORD": "r3d1s-pw"},
    )
    assert config.store == "postgresql://app:p%40ss%2Fw%3Ard%231@db/app"
    assert config.state == "redis://:r3d1s-pw@cache:6379/0"
    assert config.cache_store == "redis://:r3d1s-pw@cache:6379/1"
    assert "r3d1s-pw" not in redact_text("redis said no to r3d1s-pw")


def test_an_unset_variable_in_a_url_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    _, error = _load_error(tmp_path, 'store = "postgresql://app:${PG_PASSWORD_UNSET}@db/app"\n', env={})
    assert [problem.path for problem in error.problems] == ["store"]
    assert "PG_PASSWORD_UNSET is not set" in str(error)


def test_describing_the_config_keeps_url_references_unresolved() -> None:
    config = parse_config('store = "postgresql://app:${PGPASSWORD}@db/app"\n', env={}, resolve_secrets=False)
    assert config.store == "postgresql://app:${PGPASSWORD}@db/app"


@pytest.mark.parametrize(
    ("template", "missing"), [("{timestamp}.{body}", "timestamp_header"), ("{id}.{body}", "id_header")]
)
def test_a_generic_hmac_template_names_the_header_of_each_part_it_signs(
    tmp_path: Path, template: str, missing: str
) -> None:
    hmac = f'hmac = {{ header = "X-Sig", template = "{template}" }}'
    webhooks = f'[integrations.stripe.webhooks]\nscheme = "hmac"\nsecret = "s"\n{hmac}'
    path, error = _load_error(tmp_path, _stripe(webhooks))

    message = str(error)
    assert str(path) in message
    assert "integrations.stripe.webhooks.hmac" in message
    assert f"name the header that carries it in '{missing}'" in message

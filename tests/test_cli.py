"""The ``tether`` command line: ``check`` and ``call`` through CliRunner and the installed console script.

``tether call`` goes to a real HTTP server on loopback whose handler is a small stateful fake upstream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tether import __version__
from tether.cli import app

TOKEN = "tok_cli_6Gd1Wq8Zr3"  # distinctive: every resolved secret is registered process-wide with the redactor
TETHER = Path(sys.executable).parent / "tether"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    """No stray $TETHER_CONFIG; the logging set-up each command installs is undone afterwards."""
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    monkeypatch.setenv("TETHER_CLI_TEST_TOKEN", TOKEN)


@pytest.fixture
def config(tmp_path: Path, upstream: str, unused_port: int) -> Path:
    path = tmp_path / "tether.toml"
    path.write_text(
        f"""
[integrations.local]
base_url = "{upstream}"
auth = {{ type = "bearer", token = "${{TETHER_CLI_TEST_TOKEN}}" }}
retry = {{ backoff = "1ms", max_backoff = "5ms" }}
owner = "payments-team"

[integrations.refused]
base_url = "http://127.0.0.1:{unused_port}"
retry = {{ attempts = 3, backoff = "1ms" }}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def invalid_config(tmp_path: Path) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(
        '[integrations.stripe]\nbase_url = "https://api.stripe.com"\nretry = { atempts = 3 }\ntimeout = 0\n',
        encoding="utf-8",
    )
    return path


def run(*args: str | Path) -> Result:
    """Invoke the CLI in-process, wide enough that rich does not wrap key paths."""
    runner = CliRunner(env={"COLUMNS": "200", "FORCE_COLOR": None, "NO_COLOR": "1"})
    return runner.invoke(app, [str(arg) for arg in args])


def call_json(config: Path, *args: str | Path) -> tuple[Result, dict[str, Any]]:
    result = run("--config", config, "call", *args, "--json-output")
    return result, json.loads(result.stdout)


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "TETHER_CONFIG"}
    return {**env, "COLUMNS": "200", **extra}


# --- the console script ----------------------------------------------------------------------------------------


def test_installed_console_script_prints_the_version() -> None:
    done = subprocess.run([TETHER, "--version"], capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0
    assert done.stdout.strip() == f"tether {__version__}"


def test_installed_console_script_checks_a_valid_config(config: Path) -> None:
    done = subprocess.run(
        [TETHER, "--config", config, "check", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_subprocess_env(),
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [row["name"] for row in report["integrations"]] == ["local", "refused"]


def test_installed_console_script_reports_an_invalid_config(invalid_config: Path) -> None:
    done = subprocess.run(
        [TETHER, "--config", invalid_config, "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_subprocess_env(),
    )

    assert done.returncode == 1
    assert "integrations.stripe.retry.atempts" in done.stderr
    assert "Traceback" not in done.stderr


def test_installed_console_script_calls_the_upstream(config: Path) -> None:
    done = subprocess.run(
        [TETHER, "call", "local", "GET", "/ok", "--json-output"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_subprocess_env(TETHER_CONFIG=str(config)),
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["body"]["ok"] is True


def test_version_flag_prints_the_version_in_process() -> None:
    result = run("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"tether {__version__}"


def test_no_arguments_shows_help() -> None:
    result = run()

    assert "check" in result.output
    assert "call" in result.output


def test_unknown_log_format_is_a_usage_error(config: Path) -> None:
    result = run("--config", config, "--log-format", "xml", "check")

    assert result.exit_code == 2
    assert "--log-format" in result.output


# --- tether check ----------------------------------------------------------------------------------------------


def test_check_valid_config_exits_zero_and_lists_each_integration(config: Path) -> None:
    result = run("--config", config, "check")

    assert result.exit_code == 0, result.output
    assert f"{config}: 2 integration(s)" in result.stdout
    for shown in ("local", "refused", "bearer (env var TETHER_CLI_TEST_TOKEN)", "payments-team", "4 attempts"):
        assert shown in result.stdout
    assert "configuration is valid" in result.stdout


def test_check_json_summarises_each_integration(config: Path, upstream: str) -> None:
    result = run("--config", config, "check", "--json")

    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["file"] == str(config)
    local, refused = report["integrations"]
    assert local == {
        "name": "local",
        "base_url": f"{upstream}/",
        "auth": "bearer (env var TETHER_CLI_TEST_TOKEN)",
        "timeout": "30s total, 5s connect",
        "retry": "4 attempts, backoff 0.001s",
        "version": "-",
        "owner": "payments-team",
    }
    assert (refused["name"], refused["auth"], refused["owner"]) == ("refused", "none", "-")


def test_check_finds_the_config_through_tether_config_env_var(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_CONFIG", str(config))

    result = run("check", "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["file"] == str(config)


def test_check_finds_tether_toml_in_the_working_directory(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(config.parent)

    result = run("check", "--json")

    assert result.exit_code == 0
    assert [row["name"] for row in json.loads(result.stdout)["integrations"]] == ["local", "refused"]


def test_check_invalid_config_exits_one_and_shows_every_problem_with_its_key_path(invalid_config: Path) -> None:
    result = run("--config", invalid_config, "check")

    assert result.exit_code == 1
    assert f"2 problem(s) in {invalid_config}" in result.stderr
    assert (
        f"{invalid_config}: integrations.stripe.retry.atempts: unknown key; did you mean 'attempts'?" in result.stderr
    )
    assert f"{invalid_config}: integrations.stripe.timeout.total: must be greater than 0" in result.stderr


def test_check_invalid_config_as_json_lists_problems(invalid_config: Path) -> None:
    result = run("--config", invalid_config, "check", "--json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["file"] == str(invalid_config)
    assert sorted(problem["path"] for problem in report["problems"]) == [
        "integrations.stripe.retry.atempts",
        "integrations.stripe.timeout.total",
    ]


def test_check_missing_config_exits_one_with_the_hint(tmp_path: Path) -> None:
    result = run("--config", tmp_path / "absent.toml", "check")

    assert result.exit_code == 1
    assert "file not found" in result.stderr
    assert "--config" in result.stderr


# --- tether call -----------------------------------------------------------------------------------------------


def test_call_prints_status_and_pretty_body(config: Path, upstream: str) -> None:
    result = run("--config", config, "call", "local", "get", "/ok")

    assert result.exit_code == 0, result.output
    assert f"200 OK GET {upstream}/ok" in result.stdout
    assert "1 attempt(s)" in result.stdout
    assert '"id": "cus_1"' in result.stdout
    assert '\n  "ok": true' in result.stdout  # indented, not one line


def test_call_json_output_reports_status_attempts_and_body(config: Path, upstream: str) -> None:
    result, report = call_json(config, "local", "GET", "/ok")

    assert result.exit_code == 0
    assert report["ok"] is True
    assert report["status"] == 200
    assert report["url"] == f"{upstream}/ok"
    assert report["body"] == {"ok": True, "items": [{"id": "cus_1"}, {"id": "cus_2"}]}
    assert [attempt["status"] for attempt in report["attempts"]] == [200]
    assert report["error"] is None
    assert report["hint"] is None
    assert report["headers"]["content-type"] == "application/json"


def test_call_sends_query_parameters_headers_and_a_json_body(config: Path) -> None:
    result, report = call_json(
        config, "local", "POST", "/echo", "-q", "limit=2", "-q", "expand=a=b", "-H", "X-Trace: abc-123", "--json",
        '{"email": "a@example.com"}',
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    echoed = report["body"]
    assert echoed["method"] == "POST"
    assert echoed["query"] == {"limit": "2", "expand": "a=b"}
    assert echoed["headers"]["x-trace"] == "abc-123"
    assert echoed["headers"]["content-type"] == "application/json"
    assert json.loads(echoed["body"]) == {"email": "a@example.com"}


def test_call_sends_the_bearer_token_from_the_env_but_prints_it_masked(config: Path) -> None:
    result, report = call_json(config, "local", "GET", "/echo")

    assert report["body"]["headers"]["authorization"] == "Bearer ***"
    assert TOKEN not in result.output


def test_call_sends_a_body_read_from_a_file_with_at(config: Path, tmp_path: Path) -> None:
    payload = tmp_path / "payload.txt"
    payload.write_text("name=tether&plan=pro", encoding="utf-8")

    result, report = call_json(config, "local", "PUT", "/echo", "-d", f"@{payload}")

    assert result.exit_code == 0
    assert report["body"]["method"] == "PUT"
    assert report["body"]["body"] == "name=tether&plan=pro"


def test_call_sends_raw_data(config: Path) -> None:
    result, report = call_json(config, "local", "PATCH", "/echo", "-d", "plain text")

    assert result.exit_code == 0
    assert report["body"]["body"] == "plain text"


def test_call_retries_503_and_reports_every_attempt(config: Path) -> None:
    key = uuid.uuid4().hex

    result, report = call_json(config, "local", "GET", "/fail", "-q", f"key={key}")

    assert result.exit_code == 0, result.output
    assert report["status"] == 200
    assert report["body"] == {"recovered": True}
    assert [attempt["status"] for attempt in report["attempts"]] == [503, 503, 200]
    assert [attempt["number"] for attempt in report["attempts"]] == [1, 2, 3]
    assert report["attempts"][-1]["wait"] == 0


def test_call_shows_an_attempts_table_when_it_retried(config: Path) -> None:
    result = run("--config", config, "call", "local", "GET", f"/fail?key={uuid.uuid4().hex}")

    assert result.exit_code == 0
    assert "3 attempt(s)" in result.stdout
    assert "then waited" in result.stdout
    assert result.stdout.count("503") == 2


def test_call_401_exits_nonzero_with_a_hint_naming_the_env_var(config: Path) -> None:
    result = run("--config", config, "call", "local", "GET", "/401")

    assert result.exit_code == 1
    assert "401 Unauthorized" in result.stdout
    assert "AuthenticationError: HTTP 401 Unauthorized: Invalid API key provided" in result.stderr
    assert "hint:" in result.stderr
    assert "env var TETHER_CLI_TEST_TOKEN" in result.stderr


def test_call_401_as_json_carries_error_and_hint(config: Path) -> None:
    result, report = call_json(config, "local", "GET", "/401")

    assert result.exit_code == 1
    assert report["ok"] is False
    assert report["status"] == 401
    assert report["error"] == "AuthenticationError"
    assert "env var TETHER_CLI_TEST_TOKEN" in report["hint"]
    assert report["body"] == {"error": {"message": "Invalid API key provided"}}


def test_call_connection_refused_exits_nonzero_with_the_error_class_and_hint(config: Path) -> None:
    result = run("--config", config, "call", "refused", "GET", "/ok")

    assert result.exit_code == 1
    assert "ConnectionFailedError" in result.stderr
    assert "hint:" in result.stderr
    assert "is the service up?" in result.stderr


def test_call_connection_refused_as_json_lists_the_retried_attempts(config: Path, unused_port: int) -> None:
    result, report = call_json(config, "refused", "GET", "/ok")

    assert result.exit_code == 1
    assert report["ok"] is False
    assert report["error"] == "ConnectionFailedError"
    assert report["url"] == f"http://127.0.0.1:{unused_port}/ok"
    assert report["hint"] == "check base_url, DNS and firewall; is the service up?"
    assert len(report["attempts"]) == 3
    assert all(attempt["status"] is None and "ConnectError" in attempt["error"] for attempt in report["attempts"])


def test_call_unknown_integration_exits_one_and_lists_the_configured_ones(config: Path) -> None:
    result = run("--config", config, "call", "stripe", "GET", "/ok")

    assert result.exit_code == 1
    assert "no integration named 'stripe'" in result.stderr
    assert "configured: local, refused" in result.stderr


def test_call_with_an_invalid_config_exits_one_with_the_problems(invalid_config: Path) -> None:
    result = run("--config", invalid_config, "call", "stripe", "GET", "/ok")

    assert result.exit_code == 1
    assert "integrations.stripe.retry.atempts" in result.stderr


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (["-q", "no-equals-sign"], "-q must look like key=value"),
        (["-H", "NoColon"], "-H must look like key:value"),
        (["--json", "{not json"], "--json is not valid JSON"),
        (["--json", "{}", "-d", "x"], "give --json or -d, not both"),
        (["-d", "@/nonexistent/payload.json"], "cannot read /nonexistent/payload.json"),
    ],
)
def test_call_bad_options_are_usage_errors(config: Path, options: list[str], complaint: str) -> None:
    result = run("--config", config, "call", "local", "POST", "/echo", *options)

    assert result.exit_code == 2
    assert complaint in " ".join(result.output.split())  # rich wraps the usage box


def test_call_with_json_logs_writes_one_json_object_per_attempt_on_stderr(config: Path) -> None:
    result = run("--config", config, "--log-format", "json", "-vv", "call", "local", "GET", "/ok")

    assert result.exit_code == 0
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    events = {(entry["logger"], entry.get("event")) for entry in entries}
    assert ("tether", "attempt") in events
    assert ("tether", "call") in events
    assert ("httpx2", None) in events


def test_call_prints_a_body_with_square_brackets_verbatim(config: Path) -> None:
    result = run("--config", config, "call", "local", "GET", "/text", "-q", "say=no route [/v1/x]")

    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 0
    assert "no route [/v1/x]" in result.stdout


def test_call_prints_a_plain_text_body(config: Path) -> None:
    result = run("--config", config, "call", "local", "GET", "/text", "-q", "say=pong")

    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "pong"


def test_call_with_debug_logs_succeeds_against_a_server_that_closes_the_connection(config: Path) -> None:
    result = run("--config", config, "--log-format", "json", "-v", "call", "local", "GET", "/close")

    assert result.exit_code == 0, result.output


def test_call_with_per_attempt_logs_succeeds_against_a_server_that_closes_the_connection(config: Path) -> None:
    result = run("--config", config, "--log-format", "json", "-vv", "call", "local", "GET", "/close")

    assert result.exit_code == 0, repr(result.exception)

"""``tether alerts export --prometheus``: the rule file passes the real ``promtool check rules``, and
``promtool test rules`` shows it fires with tether's effective thresholds (defaults, overrides, silenced)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.alerts import alerts
from tether.config.loader import parse_config
from tether.observe.promrules import _duration, prometheus_rules

CONFIG = """
[alerts]
resolve_after = "2m"
notify = [{ type = "slack", url = "${SLACK_ALERTS_URL}" }]

[integrations.stripe]
base_url = "https://api.stripe.com"
[integrations.stripe.alerts]
error_rate = 0.01

[integrations.github]
base_url = "https://api.github.com"

[integrations.quiet]
base_url = "https://quiet.example.com"

[integrations.openai]
base_url = "https://api.openai.com"
[integrations.openai.alerts]
token_budget = 1000000
disable = ["latency_p95"]

[integrations."legacy.api"]
base_url = "https://legacy.example.com"
[integrations."legacy.api".alerts]
enabled = false
"""

ENV = {"SLACK_ALERTS_URL": "https://hooks.slack.com/services/T0/B0/x"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs promtool (apt package prometheus)")
        pytest.skip("promtool is not installed (apt package prometheus)")
    return found


def rules_for(text: str = CONFIG) -> str:
    return prometheus_rules(parse_config(text, env=ENV))


def rule_blocks(rules: str) -> list[str]:
    return rules.split("      - alert: ")[1:]


def test_the_exported_rules_pass_promtool_check(tmp_path: Path) -> None:
    tool = promtool()
    for name, text in {"configured": CONFIG, "defaults": ""}.items():
        path = tmp_path / f"{name}.yml"
        path.write_text(rules_for(text))
        checked = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{name}:\n{checked.stdout}{checked.stderr}"


def test_defaults_cover_every_integration_without_an_override() -> None:
    blocks = rule_blocks(rules_for())
    [default_rate, stripe_rate] = [b for b in blocks if b.startswith("TetherErrorRate")]
    assert 'integration!~"legacy\\\\.api|stripe"' in default_rate
    assert ") > 0.05" in default_rate
    assert ">= 20" in default_rate
    assert 'integration="stripe"' in stripe_rate
    assert ") > 0.01" in stripe_rate
    assert 'integration: "stripe"' in stripe_rate
    assert "above 1%" in stripe_rate


def test_a_disabled_rule_and_a_silenced_integration_get_no_rule() -> None:
    blocks = rule_blocks(rules_for())
    [latency] = [b for b in blocks if b.startswith("TetherLatencyP95")]
    assert 'integration!~"legacy\\\\.api|openai"' in latency, "openai disabled it"
    assert not any('integration="legacy.api"' in b or 'integration="legacy\\\\.api"' in b for b in blocks)
    for block in blocks:
        if "integration!~" not in block:
            assert 'integration="' in block, "every rule excludes or names integrations here"
        else:
            assert "legacy" in block, "the silenced integration is excluded from every default rule"


def test_a_rule_the_alerts_table_disables_is_exported_only_where_an_integration_sets_it() -> None:
    text = '[alerts]\ndisable = ["error_rate"]\n[integrations.stripe]\nbase_url = "https://api.stripe.com"\n'
    assert "TetherErrorRate" not in rules_for(text)
    overridden = text + "alerts = { error_rate = 0.2 }\n"
    [rate] = [b for b in rule_blocks(rules_for(overridden)) if b.startswith("TetherErrorRate")]
    assert 'integration="stripe"' in rate
    assert ") > 0.2" in rate


def test_token_budget_only_where_one_is_set() -> None:
    [budget] = [b for b in rule_blocks(rules_for()) if b.startswith("TetherTokenBudget")]
    assert 'increase(tether_ai_tokens_total{integration="openai"}[1d])) > 1000000' in budget


def test_for_keep_firing_for_labels_and_annotations() -> None:
    rules = rules_for()
    [circuit] = [b for b in rule_blocks(rules) if b.startswith("TetherCircuitOpen")]
    assert "        for:" not in circuit
    assert "keep_firing_for: 2m" in circuit
    assert 'severity: "critical"' in circuit
    assert 'summary: "{{ $labels.integration }}: circuit breaker open"' in circuit
    [tls] = [b for b in rule_blocks(rules) if b.startswith("TetherTlsCertificateExpiry")]
    assert "for: 10m" in tls
    assert "- time() < 1209600" in tls
    assert "    interval: 15s" in rules


def test_without_integrations_the_default_rules_match_every_integration() -> None:
    rules = rules_for("")
    assert "integration!~" not in rules
    assert 'tether_requests_total{error="true"}[5m]' in rules
    assert [b.split("\n")[0] for b in rule_blocks(rules)] == [
        "TetherErrorRate",
        "TetherLatencyP95",
        "TetherRateLimitUsage",
        "TetherAuthFailures",
        "TetherCircuitOpen",
        "TetherApiDeprecated",
        "TetherTlsCertificateExpiry",
    ]


def test_with_every_rule_off_the_group_is_empty(tmp_path: Path) -> None:
    config = parse_config("[integrations.a]\nbase_url = 'https://a.example.com'\n")
    off = dict.fromkeys(("error_rate", "latency_p95", "rate_limit_usage", "auth_failures", "tls_expiry"))
    off |= {"circuit_open": False, "deprecation": False, "resolve_after": 0.0}
    rules = prometheus_rules(config.model_copy(update={"alerts": config.alerts.model_copy(update=off)}))
    assert rules.endswith("    rules: []\n")
    path = tmp_path / "off.yml"
    path.write_text(rules)
    assert subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, check=False).returncode == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5m"), (5400, "1h30m"), (14 * 86400, "14d"), (90061, "1d1h1m1s"), (1.5, "1500ms"), (0, "0s")],
)
def test_durations_are_written_the_prometheus_way(seconds: float, text: str) -> None:
    assert _duration(seconds) == text


# --- promtool test rules: the rules fire where tether's would -------------------------------------------------

UNIT_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # stripe: 3% errors, above its own 1%; github: 3%, below the default 5%; quiet: all errors but 1 call a minute
      - series: 'tether_requests_total{integration="stripe",code="500",error="true"}'
        values: '0+3x20'
      - series: 'tether_requests_total{integration="stripe",code="200",error="false"}'
        values: '0+97x20'
      - series: 'tether_requests_total{integration="github",code="500",error="true"}'
        values: '0+3x20'
      - series: 'tether_requests_total{integration="github",code="200",error="false"}'
        values: '0+97x20'
      - series: 'tether_requests_total{integration="quiet",code="none",error="true"}'
        values: '0+1x20'
      # legacy.api is silenced: all errors, many calls, no alert
      - series: 'tether_requests_total{integration="legacy.api",code="503",error="true"}'
        values: '0+100x20'
      - series: 'tether_circuit_open{integration="github"}'
        values: '0 0 1x18'
      - series: 'tether_circuit_open{integration="legacy.api"}'
        values: '1x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: TetherErrorRate
        exp_alerts:
          - exp_labels: {integration: stripe, severity: critical, rule: error_rate, source: tether}
            exp_annotations:
              summary: "stripe: error rate 3% over 5m, above 1%"
              description: "More than 1% of the calls to stripe failed (no response, or a status of 400 or more)
                over the last 5m, counting only when there were at least 20 calls.
                Run `tether doctor stripe` and check the API's status page."
      - eval_time: 10m
        alertname: TetherCircuitOpen
        exp_alerts:
          - exp_labels: {integration: github, severity: critical, rule: circuit_open, source: tether}
            exp_annotations:
              summary: "github: circuit breaker open"
              description: "Calls to github fail at once without reaching the API (after too many failures in a row);
                fallbacks answer where configured. The breaker probes the API and closes when it recovers."
  - interval: 1m
    input_series:
      # 10 401s a minute for 3 minutes, then none: fires at once, and keeps firing 2m (resolve_after) after
      - series: 'tether_requests_total{integration="github",code="401",error="true"}'
        values: '0 10 20 30 30 30 30 30 30 30 30 30 30 30'
    alert_rule_test:
      - eval_time: 2m
        alertname: TetherAuthFailures
        exp_alerts:
          - exp_labels: {integration: github, severity: critical, rule: auth_failures, source: tether}
            exp_annotations:
              summary: "github: 20 answers 401/403 over 5m, 5 or more"
              description: "github refused tether's credentials repeatedly over the last 5m: a key was revoked,
                rotated or lacks a permission. Run `tether auth status` and `tether doctor github`."
      - eval_time: 9m
        alertname: TetherAuthFailures
        exp_alerts:
          # 9m: nothing counted since 8m, still firing for keep_firing_for, with the last value counted
          - exp_labels: {integration: github, severity: critical, rule: auth_failures, source: tether}
            exp_annotations:
              summary: "github: 10 answers 401/403 over 5m, 5 or more"
              description: "github refused tether's credentials repeatedly over the last 5m: a key was revoked,
                rotated or lacks a permission. Run `tether auth status` and `tether doctor github`."
      - eval_time: 11m
        alertname: TetherAuthFailures
        exp_alerts: []
  - interval: 1m
    input_series:
      # github: 100 calls a minute, all between 3 s and 5 s; quiet: all slow, but 1 call a minute (below min_calls)
      - series: 'tether_request_duration_seconds_bucket{integration="github",le="3"}'
        values: '0+0x20'
      - series: 'tether_request_duration_seconds_bucket{integration="github",le="5"}'
        values: '0+100x20'
      - series: 'tether_request_duration_seconds_bucket{integration="github",le="+Inf"}'
        values: '0+100x20'
      - series: 'tether_request_duration_seconds_count{integration="github"}'
        values: '0+100x20'
      - series: 'tether_request_duration_seconds_bucket{integration="quiet",le="5"}'
        values: '0+0x20'
      - series: 'tether_request_duration_seconds_bucket{integration="quiet",le="+Inf"}'
        values: '0+1x20'
      - series: 'tether_request_duration_seconds_count{integration="quiet"}'
        values: '0+1x20'
    alert_rule_test:
      - eval_time: 1m
        alertname: TetherLatencyP95
        exp_alerts: []  # pending: the rule holds for 1m first
      - eval_time: 10m
        alertname: TetherLatencyP95
        exp_alerts:
          - exp_labels: {integration: github, severity: warning, rule: latency_p95, source: tether}
            exp_annotations:
              summary: "github: p95 latency 4.9s over 5m, above 3s"
              description: "One call in twenty to github took longer than 3s over the last 5m (counting only when
                there were at least 20 calls). Slow answers hold workers and eat into timeouts; check the API's
                status page and the call log."
"""


def test_promtool_unit_tests_show_the_rules_fire_with_the_effective_thresholds(tmp_path: Path) -> None:
    tool = promtool()
    (tmp_path / "rules.yml").write_text(rules_for())
    (tmp_path / "tests.yml").write_text(UNIT_TESTS)
    tested = subprocess.run(
        [tool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


# --- the command ----------------------------------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "tether.toml"
    path.write_text(CONFIG)
    return path


def test_export_writes_the_rules_to_stdout_without_needing_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_ALERTS_URL", raising=False)  # a CI job that renders rules has no Slack URL
    config = write_config(tmp_path)
    result = CliRunner().invoke(alerts, ["export", "--prometheus"], obj={"config": str(config)})
    assert result.exit_code == 0, result.output
    assert result.stdout == rules_for()


def test_export_writes_a_file_that_promtool_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_CONFIG", str(write_config(tmp_path)))
    output = tmp_path / "out" / "tether-rules.yml"
    output.parent.mkdir()
    result = CliRunner().invoke(alerts, ["export", "--prometheus", "--output", str(output)], obj={})
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr
    assert output.read_text() == rules_for()
    checked = subprocess.run([promtool(), "check", "rules", str(output)], capture_output=True, check=False)
    assert checked.returncode == 0


def test_export_needs_a_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(alerts, ["export"], obj={"config": str(write_config(tmp_path))})
    assert result.exit_code == 1
    assert "--prometheus" in result.stderr


def test_export_of_a_bad_config_says_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "tether.toml"
    path.write_text("[alerts]\nerror_rate = 5\n")
    result = CliRunner().invoke(alerts, ["export", "--prometheus"], obj={"config": str(path)})
    assert result.exit_code == 1
    assert "alerts.error_rate" in result.stderr

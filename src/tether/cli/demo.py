"""``tether demo``: the sandbox, a handful of injected faults, and what tether did about each."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass

import httpx2
import typer

from tether.cli._output import console, esc, say
from tether.cli._tour import TOUR_CONFIG
from tether.cli._tour import tour as run_tour
from tether.config.loader import parse_config
from tether.errors import Attempt, CallError
from tether.hub import Hub
from tether.sandbox.oauth import SANDBOX_CLIENT_SECRET

__all__ = ["demo"]

_CONFIG = """
store = "sqlite:///:memory:"

[integrations.sandbox]
base_url = "{url}"
auth = {{ type = "api_key", key = "${{SANDBOX_API_KEY}}", name = "X-API-Key" }}
timeout = {{ total = "4s", connect = "1s", read = "1s" }}
retry = {{ attempts = 4, backoff = "200ms", max_backoff = "2s" }}
idempotency_header = "Idempotency-Key"
owner = "demo"
breaker = {{ min_calls = 50 }}

[integrations.sandbox-breaker]
base_url = "{url}"
auth = {{ type = "api_key", key = "${{SANDBOX_API_KEY}}" }}
retry = false
breaker = {{ min_calls = 4, failure_ratio = 0.5, open_for = "30s" }}

[integrations.sandbox-oauth]
base_url = "{url}"
retry = {{ backoff = "200ms" }}
[integrations.sandbox-oauth.auth]
type = "oauth2"
token_url = "{url}/oauth/token"
client_id = "sandbox-client"
client_secret = "${{SANDBOX_CLIENT_SECRET}}"
params = {{ expires_in = "3" }}  # the sandbox's tokens then live 3 s

[integrations.sandbox-wrong-key]
base_url = "{url}"
auth = {{ type = "api_key", key = "${{SANDBOX_WRONG_KEY}}" }}
retry = {{ backoff = "200ms" }}
"""


@dataclass(frozen=True)
class Scenario:
    title: str
    integration: str
    method: str
    path: str
    faulted: str  # what the sandbox was told to do
    repeat: int = 1  # calls made; the last one's outcome is shown
    pause: float = 0.0  # seconds between the calls


def _scenarios() -> list[Scenario]:
    def key() -> str:
        return uuid.uuid4().hex[:8]

    return [
        Scenario("healthy call", "sandbox", "GET", "/v1/customers?limit=2", "nothing"),
        Scenario(
            "503 twice, then OK",
            "sandbox",
            "GET",
            f"/v1/customers?fault=status:503&fail_times=2&key={key()}",
            "503, 503, then 200",
        ),
        Scenario(
            "429 with Retry-After: 1",
            "sandbox",
            "GET",
            f"/v1/customers?fault=429&retry_after=1&fail_times=1&key={key()}",
            "429 once",
        ),
        Scenario(
            "connection reset once",
            "sandbox",
            "GET",
            f"/v1/customers?fault=reset&fail_times=1&key={key()}",
            "drops the connection once",
        ),
        Scenario(
            "POST retried with one idempotency key",
            "sandbox",
            "POST",
            f"/v1/customers?fault=status:502&fail_times=1&key={key()}",
            "502 once",
        ),
        Scenario(
            "slow endpoint (2 s) vs 1 s read timeout",
            "sandbox",
            "GET",
            "/v1/customers?fault=latency:2",
            "answers after 2 s",
        ),
        Scenario("truncated JSON", "sandbox", "GET", "/v1/customers?fault=truncated_json", "cuts the body"),
        Scenario(
            "429 asking for 120 s, deadline 4 s",
            "sandbox",
            "GET",
            "/v1/customers?fault=429&retry_after=120",
            "429, Retry-After: 120",
        ),
        Scenario(
            "the next call, while the API's 120 s pause holds",
            "sandbox",
            "GET",
            "/v1/customers",
            "would answer, but tether does not ask",
        ),
        Scenario(
            "OAuth token living 3 s, two calls 2 s apart",
            "sandbox-oauth",
            "GET",
            "/v1/customers?limit=1",
            "issues client-credentials tokens valid for 3 s",
            repeat=2,
            pause=2.0,
        ),
        Scenario(
            "the API rejects a still-valid token once",
            "sandbox-oauth",
            "GET",
            f"/v1/customers?limit=1&fault=status:401&fail_times=1&key={key()}",
            "401 once",
        ),
        Scenario("wrong API key", "sandbox-wrong-key", "GET", "/v1/customers", "401"),
        Scenario(
            "API down: the breaker opens after 4 failures",
            "sandbox-breaker",
            "GET",
            "/v1/customers?fault=status:503",
            "503 on every call",
            repeat=5,
        ),
    ]


def _attempts(attempts: tuple[Attempt, ...]) -> str:
    parts = []
    for attempt in attempts:
        outcome = str(attempt.status) if attempt.status is not None else (attempt.error or "?").split(":")[0]
        parts.append(outcome + (f" ⏱{attempt.wait:.2f}s" if attempt.wait else ""))
    return " → ".join(parts)


def _run(hub: Hub, scenario: Scenario) -> list[str]:
    """Make the scenario's call; the lines that say what tether did."""
    body = {"email": "demo@example.com"} if scenario.method == "POST" else None
    earlier: list[str] = []
    with hub.client(scenario.integration, raise_for_status=True) as client:
        for number in range(1, scenario.repeat + 1):
            if number > 1:
                time.sleep(scenario.pause)
            started = time.perf_counter()
            try:
                response = client.request(scenario.method, scenario.path, json=body)
                response.json()
            except CallError as exc:
                took = time.perf_counter() - started
                if number < scenario.repeat:
                    earlier.append(type(exc).__name__)
                    continue
                lines = [f"    calls before: {', '.join(earlier)}"] if earlier else []
                return [
                    *lines,
                    f"    attempts: {esc(_attempts(exc.attempts)) or '(none: not sent)'}",
                    f"    outcome:  [red]{type(exc).__name__}[/red] after {took * 1000:.1f} ms",
                    f"    hint:     [yellow]{esc(exc.hint)}[/yellow]",
                ]
    took = time.perf_counter() - started
    attempts: tuple[Attempt, ...] = response.extensions["tether.attempts"]
    lines = [
        f"    attempts: {esc(_attempts(attempts))}",
        f"    outcome:  [green]{response.status_code} {response.reason_phrase}[/green] after {took:.2f}s",
    ]
    key = response.request.headers.get("Idempotency-Key")
    if key:
        lines.append(f"    every attempt sent the same Idempotency-Key {key[:8]}…")
    return lines


def _token_requests(url: str) -> int:
    """How many tokens the sandbox's OAuth endpoint has issued so far."""
    issued: int = httpx2.get(f"{url}/oauth/stats").json()["tokens_issued"]
    return issued


def demo(
    only: str | None = typer.Option(None, help="Run only scenarios whose title contains this text ('tour': the tour)."),
    tour: bool = typer.Option(True, "--tour/--no-tour", help="Then tour tether serve: dashboard, alerts, webhooks."),
    keep: bool = typer.Option(False, "--keep", help="Keep the tour running (with traffic) until Ctrl-C."),
) -> None:
    """Start the sandbox and call it through injected faults, showing what tether did; then tour tether serve."""
    from tether.sandbox.server import running_sandbox

    os.environ.setdefault("SANDBOX_API_KEY", "sk_test_sandbox")
    os.environ.setdefault("SANDBOX_WRONG_KEY", "sk_test_revoked")
    os.environ.setdefault("SANDBOX_CLIENT_SECRET", SANDBOX_CLIENT_SECRET)
    os.environ.setdefault("SHOP_WEBHOOK_SECRET", "whsec_" + secrets.token_hex(16))
    with running_sandbox() as server:
        config = parse_config(_CONFIG.format(url=server.url), source="(demo config)")
        hub = Hub(config)
        say(f"sandbox API on {server.url}; tether retries up to 3 times, 4 s deadline per call\n")
        say("[dim]attempts list each try's outcome; ⏱ is the wait tether chose before the next[/dim]\n")
        for scenario in _scenarios():
            if only and only.lower() not in scenario.title.lower():
                continue
            say(f"[bold]● {scenario.title}[/bold]  [dim](the API: {scenario.faulted})[/dim]")
            oauth = scenario.integration == "sandbox-oauth"
            issued = _token_requests(server.url) if oauth else 0
            with console.status(scenario.title):
                lines = _run(hub, scenario)
            if oauth:
                renewals = _token_requests(server.url) - issued
                lines.append(f"    token requests during this scenario: {renewals}")
            for line in lines:
                say(line)
        hub.close()
        if tour and (not only or "tour" in only.lower()):
            with Hub(parse_config(TOUR_CONFIG.format(url=server.url), source="(demo tour config)")) as shop:
                run_tour(shop, keep=keep, secret=os.environ["SHOP_WEBHOOK_SECRET"], key=os.environ["SANDBOX_API_KEY"])
    say(
        "\nNext: [bold]tether demo --only tour --keep[/bold] to watch the dashboard fill; [bold]tether sandbox[/bold] "
        "to keep the sandbox running, then [bold]tether call[/bold] against it."
    )

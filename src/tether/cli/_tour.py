"""The second half of ``tether demo``: ``tether serve`` beside the sandbox, traffic with a fault, an alert
that fires and resolves, webhooks that arrive, and the dashboard and metrics that show it all.

Everything runs in this process on loopback: the sandbox API, ``tether serve`` (webhooks, dashboard,
``/metrics``, the alert monitor) and a traffic generator whose calls go through a hub that shares the serve's
store, as an application's processes would. The alert rules are tightened for the tour (a 1-minute window,
evaluated every second, resolved after 2 quiet seconds) so that a newcomer sees a whole incident in seconds.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable

import httpx2

from tether.cli._output import esc, say
from tether.hub import Hub
from tether.sandbox.webhooks import send_webhook
from tether.webhooks.events import WebhookEvent

__all__ = ["TOUR_CONFIG", "tour"]

TOUR_CONFIG = """
store = "sqlite:///:memory:"
monitoring = {{ flush_interval = "250ms" }}

[alerts]
interval = "1s"
resolve_after = "2s"
window = "1m"
min_calls = 20
latency_p95 = "2s"
notify = [{{ type = "log" }}]

[integrations.shop]
base_url = "{url}"
auth = {{ type = "api_key", key = "${{SANDBOX_API_KEY}}", name = "X-API-Key" }}
timeout = {{ total = "3s", read = "1s" }}
retry = {{ attempts = 2, backoff = "20ms" }}
breaker = {{ enabled = false }}
owner = "payments team"
notes = "The sandbox plays the payments provider."
cors_origins = ["http://localhost:3000"]
[integrations.shop.proxy]
allow = ["GET /v1/customers"]
[integrations.shop.webhooks]
scheme = "stripe"
secret = "${{SHOP_WEBHOOK_SECRET}}"
"""

_THREADS = 8


class _Alerts(logging.Handler):
    """Prints the log notifier's lines (the ``tether.alerts`` logger) as the tour's notifications."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.firing = threading.Event()
        self.resolved = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            say(f"    [red]🔔 {esc(message)}[/red]")
            self.firing.set()
        else:
            say(f"    [green]✔ {esc(message)}[/green]")
            self.resolved.set()


def _traffic(hub: Hub, calls: int, *, failing: float = 0.0) -> tuple[int, int]:
    """``calls`` calls to the sandbox from a few threads, ``failing`` of them faulted (503 on every attempt)."""
    every = round(1 / failing) if failing else 0

    def one(client: httpx2.Client, number: int) -> bool:
        path = "/v1/customers?limit=3"
        if every and number % every == 0:
            path += "&fault=status:503"
        return client.get(path).status_code < 400

    with hub.client("shop") as client, concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
        results = list(pool.map(lambda number: one(client, number), range(calls)))
    return results.count(True), results.count(False)


def _until(event: threading.Event, timeout: float, step: Callable[[], object] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while not event.is_set() and time.monotonic() < deadline:
        if step is not None:
            step()
        else:
            event.wait(0.2)
    return event.is_set()


def tour(hub: Hub, *, keep: bool, secret: str, key: str) -> None:
    """Run the tour against ``hub`` (made from :data:`TOUR_CONFIG`); ``key`` is the API key the hub sends."""
    from tether.server import create_app
    from tether.server.running import serving

    handled: list[WebhookEvent] = []

    @hub.on("shop", "*")
    def record_event(event: WebhookEvent) -> None:
        handled.append(event)

    alerts = _Alerts()
    logger = logging.getLogger("tether.alerts")
    logger.addHandler(alerts)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # printed once, by this handler, not again by the CLI's log handler
    try:
        with serving(create_app(hub)) as url:
            say(f"\n[bold]● tether serve[/bold] on {url}: dashboard at [bold]{url}/[/bold], metrics at {url}/metrics")
            ok, failed = _traffic(hub, 150)
            say(f"    traffic: {ok + failed} calls to shop, {failed} failed")
            say("    fault: the API answers 503 to every 3rd call …")
            ok, failed = _traffic(hub, 60, failing=1 / 3)
            say(f"    traffic: {ok + failed} calls, {failed} failed (retried once each, then given up)")
            if not _until(alerts.firing, 15):
                say("    [yellow]no alert within 15 s[/yellow]")
            say("    recovery: the API is healthy again …")
            if not _until(alerts.resolved, 30, step=lambda: _traffic(hub, 100)):
                say("    [yellow]the alert did not resolve within 30 s[/yellow]")
            _webhooks(url, secret, handled)
            _proxy(url, key)
            _show(url)
            if keep:
                say("\n[bold]Ctrl-C[/bold] stops the tour; traffic keeps flowing to fill the dashboard.")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        _traffic(hub, 20, failing=0.02)
                        time.sleep(0.5)
    finally:
        logger.removeHandler(alerts)
        logger.propagate = True


def _webhooks(url: str, secret: str, handled: list[WebhookEvent]) -> None:
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    answers = []
    with httpx2.Client(timeout=10) as client:
        for kind, event in (("invoice.paid", event_id), ("invoice.paid", event_id), ("customer.created", None)):
            response = send_webhook(
                f"{url}/webhooks/shop", "stripe", secret, event_id=event, event_type=kind, client=client
            )
            answers.append(f"{response.status_code} {response.json().get('status', '')}")
        forged = client.post(
            f"{url}/webhooks/shop", content=b'{"id":"evt_forged"}', headers={"Stripe-Signature": "t=1,v1=00"}
        )
    say(
        f"    webhooks: 3 signed Stripe-style events (one sent twice) → {', '.join(answers)}; "
        f"a forged one → {forged.status_code}"
    )
    deadline = time.monotonic() + 10
    while len(handled) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    kinds = ", ".join(sorted(f"{event.type} ({event.id[:12]}…)" for event in handled))
    say(f"    handled once each: {esc(kinds) or 'none yet'}")


def _proxy(url: str, key: str) -> None:
    """A browser page's calls through the backend proxy: the API key is added on the server, never seen."""
    page = {"Origin": "http://localhost:3000"}
    with httpx2.Client(timeout=10) as client:
        allowed = client.get(f"{url}/proxy/shop/v1/customers", params={"limit": 2}, headers=page)
        refused = client.delete(f"{url}/proxy/shop/v1/customers/cus_1", headers=page)
    leaked = key in allowed.text or any(key in value for value in allowed.headers.values())
    say(
        f"    proxy: a page on http://localhost:3000 calls GET /proxy/shop/v1/customers → {allowed.status_code} "
        f"(CORS {allowed.headers.get('access-control-allow-origin', '-')}; the API key "
        f"{'LEAKED' if leaked else 'stayed on the server'}); DELETE → {refused.status_code} (not in the allow list)"
    )


def _show(url: str) -> None:
    with httpx2.Client(timeout=10) as client:
        data = client.get(f"{url}/api/overview", params={"window": 600}).json()
        metrics = client.get(f"{url}/metrics").text
    for row in data["integrations"]:
        if not row["requests"]:
            continue
        p95 = f"{row['p95'] * 1000:.0f} ms" if row["p95"] is not None else "-"
        say(
            f"    dashboard: {esc(row['name'])} {row['requests']} requests, error rate {row['error_rate']:.1%}, "
            f"p95 {p95}, inbox {esc(row['inbox'])}"
        )
    lines = [line for line in metrics.splitlines() if line.startswith("tether_requests_total{")]
    example = next((line for line in lines if 'code="200"' in line), lines[0] if lines else "-")
    say(f"    /metrics: {len(lines)} tether_requests_total series, e.g. [dim]{esc(example)}[/dim]")

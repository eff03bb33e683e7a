"""Make ``docs/dashboard.png``: the dashboard of ``tether serve`` in headless Chromium, in a realistic state.

Four integrations point at the sandbox (``tether.sandbox``). The last hour of history is written to the call
log as records (a screenshot cannot wait an hour for the charts to fill); everything after that is real: calls
through ``hub.client`` with the sandbox's faults, signed webhooks into the inbox, an OAuth token from the
sandbox's token endpoint, and the alerts ``tether serve``'s monitor raises from all of it.

Run it from the repository root with the dev extra and Debian's chromium and chromedriver installed::

    .venv/bin/python scripts/screenshot_dashboard.py [--out docs/dashboard.png] [--dark]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import tether
from tether.config.loader import parse_config
from tether.errors import CallError
from tether.observe.records import CallRecord
from tether.sandbox import SANDBOX_API_KEY, SANDBOX_BEARER_TOKEN, running_sandbox
from tether.sandbox.oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from tether.server import create_app
from tether.webhooks.schemes import scheme_for

WEBHOOK_SECRET = "whsec_screenshot_only"  # noqa: S105 (a throwaway for this script's sandbox)

CONFIG = """
store = "sqlite:///{db}"
[alerts]
min_calls = 10
interval = "1s"
[integrations.payments]
base_url = "{url}/"
owner = "payments-team"
version = "2024-06-20"
version_header = "Stripe-Version"
rate_limit = {{ requests = 20, per = "1s" }}
retry = false
auth = {{ type = "api_key", key = "${{PAYMENTS_KEY}}" }}
webhooks = {{ scheme = "stripe", secret = "${{PAYMENTS_WEBHOOK_SECRET}}" }}
[integrations.openai]
base_url = "{url}/"
owner = "ml-platform"
rate_limit = {{ requests = 500, per = "1m" }}
retry = false
auth = {{ type = "bearer", token = "${{OPENAI_API_KEY}}" }}
[integrations.crm]
base_url = "{url}/"
owner = "growth"
retry = false
[integrations.crm.auth]
type = "oauth2"
token_url = "{url}/oauth/token"
client_id = "{client_id}"
client_secret = "${{CRM_CLIENT_SECRET}}"
[integrations.shipping]
base_url = "{url}/"
owner = "fulfilment"
retry = false
timeout = "0.3s"
breaker = {{ min_calls = 6, failure_ratio = 0.5, open_for = "5m" }}
auth = {{ type = "api_key", key = "${{PAYMENTS_KEY}}" }}
"""

SERVER_ERROR = ("ServerError", 503, "the provider failed; check its status page, or try again later")
THROTTLED = ("RateLimitedError", 429, "the API is throttling us; slow down or raise the limit")
# Per integration: calls per minute, median latency (s), error ratio, and the error of the history's failures.
HISTORY = {
    "payments": (55, 0.11, 0.01, SERVER_ERROR),
    "openai": (18, 0.9, 0.02, THROTTLED),
    "crm": (9, 0.2, 0.0, None),
    "shipping": (25, 0.16, 0.04, SERVER_ERROR),
}
ENDPOINTS = {"openai": "/v1/chat/completions", "crm": "/v1/customers/{id}"}


@contextlib.contextmanager
def serving(app: object) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)


def backfill(hub: tether.Hub, now: float) -> None:
    """An hour of plausible history per integration, with an incident on ``shipping`` 20 minutes ago."""
    rng = random.Random(7)
    records = []
    for name, (per_minute, median, error_ratio, failure) in HISTORY.items():
        for minute in range(60, 0, -1):
            start = (now // 60 - minute) * 60
            daytime = 1 + 0.35 * (minute % 17) / 17
            incident = name == "shipping" and 18 <= minute <= 24
            for _ in range(int(per_minute * daytime * rng.uniform(0.85, 1.15))):
                latency = rng.lognormvariate(0, 0.45) * median * (2.6 if incident else 1.0)
                failed = failure is not None and rng.random() < (0.35 if incident else error_ratio)
                error, status, hint = failure if failed and failure else (None, 200, None)
                records.append(
                    CallRecord(
                        at=start + rng.uniform(0, 59),
                        integration=name,
                        method="POST" if name == "openai" else "GET",
                        endpoint=ENDPOINTS.get(name, "/v1/customers"),
                        status=status,
                        outcome="attempts exhausted" if failed else "success",
                        error=error,
                        hint=hint,
                        latency=latency,
                        tokens=rng.randint(300, 1400) if name == "openai" and not failed else None,
                    )
                )
    hub.call_log.write(sorted(records, key=lambda record: record.at))


def live_calls(hub: tether.Hub, url: str) -> None:
    """What happens now: real calls through tether, with the sandbox's faults."""

    def get(client: Any, path: str, **params: str) -> None:
        with contextlib.suppress(CallError):
            client.get(path, params=params)

    with hub.client("payments") as payments:
        for _ in range(40):
            get(payments, "/v1/customers")
        get(payments, "/v1/customers", fault="status:503")
        get(payments, "/v1/customers/cus_missing")
    with hub.client("openai") as openai:
        body = {"model": "sandbox-1", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(12):
            openai.post("/v1/chat/completions", json=body)
        with contextlib.suppress(CallError):
            openai.post("/v1/chat/completions", json=body, params={"fault": "429", "retry_after": "20"})
    with hub.client("crm") as crm:
        for _ in range(8):
            get(crm, "/v1/customers")
    with hub.client("shipping") as shipping:
        for _ in range(4):
            get(shipping, "/v1/customers")
        for fault in ("status:503", "latency:1", "status:502", "truncated_json", "status:503", "status:503"):
            get(shipping, "/v1/customers", fault=fault)
        for _ in range(3):
            get(shipping, "/v1/customers")  # refused: the breaker is open
    for index in range(7):
        body = json.dumps({"id": f"evt_{index}", "object": "event", "type": "invoice.paid", "data": {}}).encode()
        signed = scheme_for("stripe", [WEBHOOK_SECRET]).sign(body, timestamp=int(time.time()))
        httpx2.post(f"{url}/webhooks/payments", content=body, headers={"content-type": "application/json", **signed})
    assert hub.recorder is not None
    hub.recorder.flush()


def browser(dark: bool) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900"):
        options.add_argument(argument)
    options.add_argument("--force-device-scale-factor=1")
    if dark:
        options.add_argument("--blink-settings=preferredColorScheme=0")
    else:
        options.add_argument("--blink-settings=preferredColorScheme=1")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--dark", action="store_true", help="the dark colour scheme")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_sandbox() as sandbox:
        env = {
            "PAYMENTS_KEY": SANDBOX_API_KEY,
            "OPENAI_API_KEY": SANDBOX_BEARER_TOKEN,
            "CRM_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
            "PAYMENTS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
        text = CONFIG.format(db=Path(tmp) / "tether.db", url=sandbox.url, client_id=SANDBOX_CLIENT_ID)

        def hub() -> tether.Hub:
            return tether.Hub(parse_config(text, env=env, base_dir=Path(tmp)), base_dir=Path(tmp))

        with hub() as app_hub:
            backfill(app_hub, time.time())
            with serving(create_app(hub(), process=False)) as url:
                live_calls(app_hub, url)
                driver = browser(args.dark)
                try:
                    driver.get(f"{url}/")
                    wait = WebDriverWait(driver, 30, poll_frequency=0.2)
                    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card.alerting"))
                    time.sleep(0.5)
                    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
                    source = driver.page_source
                    leaked = [value for value in env.values() if value in source]
                    if leaked:
                        print(f"a secret reached the page: {len(leaked)} value(s)", file=sys.stderr)
                        return 1
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    # The whole page, not just the window: Chromium renders beyond the viewport for this.
                    shot = driver.execute_cdp_cmd(
                        "Page.captureScreenshot",
                        {
                            "captureBeyondViewport": True,
                            "clip": {"x": 0, "y": 0, "width": 1440, "height": height, "scale": 1},
                        },
                    )
                    args.out.write_bytes(base64.b64decode(shot["data"]))
                finally:
                    driver.quit()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

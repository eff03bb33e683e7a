"""The dashboard of ``tether serve``: the admin guard, ``/api/overview`` against the test's own calls through the
sandbox, and the page itself in a real headless Chromium (Debian's, through its chromedriver)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.requests import Request

import tether
from fakes import tether_serve
from tether.config.loader import parse_config
from tether.errors import CallError
from tether.sandbox import SANDBOX_API_KEY, SandboxServer
from tether.server import create_app
from tether.server.admin import COOKIE, AdminGuard, is_loopback
from tether.webhooks.schemes import scheme_for
from webhook_fixtures import STRIPE_SECRET, serving

TOKEN = "adm_3kP9xQ2vL7mN4rT8wZ1yB6cD5fG0hJ"
SERVER_HINT = "the provider failed; check its status page, or try again later"


def config_text(tmp_path: Path, sandbox_url: str, *, alerts: str = "") -> str:
    """Two integrations on the sandbox sharing one SQLite store; ``payments`` sends the key and gets webhooks."""
    return f"""
store = "sqlite:///{tmp_path / "tether.db"}"
[alerts]
{alerts}
[integrations.payments]
base_url = "{sandbox_url}"
owner = "payments-team"
rate_limit = {{ requests = 600, per = "1m" }}
retry = false
[integrations.payments.auth]
type = "api_key"
in = "header"
name = "X-API-Key"
key = "${{SANDBOX_KEY}}"
[integrations.payments.webhooks]
scheme = "stripe"
secret = "${{STRIPE_WEBHOOK_SECRET}}"
[integrations.search]
base_url = "{sandbox_url}"
retry = false
"""


def make_hub(tmp_path: Path, sandbox: SandboxServer, *, alerts: str = "") -> tether.Hub:
    env = {"SANDBOX_KEY": SANDBOX_API_KEY, "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET}
    config = parse_config(config_text(tmp_path, sandbox.url, alerts=alerts), env=env, base_dir=tmp_path)
    return tether.Hub(config, base_dir=tmp_path)


def call(hub: tether.Hub, *, ok: int, failing: int, name: str = "payments") -> None:
    """``ok`` successful calls and ``failing`` 503s through ``hub.client(name)``, then written to the store."""
    with hub.client(name) as client:
        for _ in range(ok):
            assert client.get("/v1/customers" if name == "payments" else "/health").status_code == 200
        for _ in range(failing):
            with contextlib.suppress(CallError):
                client.get("/v1/customers", params={"fault": "status:503"})
    assert hub.recorder is not None
    hub.recorder.flush()


def post_event(url: str, event_id: str) -> None:
    body = json.dumps({"id": event_id, "object": "event", "type": "invoice.paid", "data": {"object": {}}}).encode()
    signed = scheme_for("stripe", [STRIPE_SECRET]).sign(body, timestamp=int(time.time()))
    answer = httpx2.post(
        f"{url}/webhooks/payments", content=body, headers={"content-type": "application/json", **signed}
    )
    assert answer.status_code == 200, answer.text


def wait_for(condition: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def no_token_in(response: httpx2.Response) -> None:
    assert TOKEN not in response.text
    for name, value in response.headers.multi_items():
        assert TOKEN not in value, f"the token leaked in {name}"


# --- the admin guard ----------------------------------------------------------------------------------------


LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]


@pytest.mark.parametrize("host", [*LOOPBACK, "0.0.0.0", "::", "10.1.2.3", "example.internal"])
def test_loopback_is_127_slash_8_ipv6_loopback_and_localhost(host: str) -> None:
    assert is_loopback(host) is (host in LOOPBACK)


def request(server: tuple[str, int] | None, **headers: str) -> Request:
    encoded = [(key.lower().encode(), value.encode()) for key, value in headers.items()]
    return Request(
        {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": encoded, "server": server}
    )


def test_without_a_token_a_loopback_binding_is_open_but_not_to_requests_arriving_elsewhere() -> None:
    guard = AdminGuard(None, loopback=True)
    assert guard.check(request(("127.0.0.1", 8700))) is None
    assert guard.check(request(("::1", 8700))) is None
    refused = guard.check(request(("10.0.0.5", 8700)))
    assert refused is not None
    assert refused.status_code == 403
    assert "TETHER_ADMIN_TOKEN" in bytes(refused.body).decode()
    assert TOKEN not in repr(AdminGuard(TOKEN, loopback=True))


@pytest.mark.parametrize("host", ["127.0.0.1:8700", "localhost:8700", "[::1]:8700", "localhost"])
def test_open_on_loopback_the_dashboard_answers_requests_addressed_to_this_machine(host: str) -> None:
    assert AdminGuard(None, loopback=True).check(request(("127.0.0.1", 8700), host=host)) is None


@pytest.mark.parametrize("host", ["evil.example:8700", "evil.example", "127.0.0.1.nip.io:8700"])
def test_open_on_loopback_the_dashboard_refuses_a_host_name_pointed_at_127_0_0_1(host: str) -> None:
    """DNS rebinding: a page whose own name resolves to 127.0.0.1 must not read the dashboard's data."""
    refused = AdminGuard(None, loopback=True).check(request(("127.0.0.1", 8700), host=host))
    assert refused is not None
    assert refused.status_code == 403
    assert "TETHER_ADMIN_TOKEN" in bytes(refused.body).decode()


def test_the_token_redirect_stays_on_this_site() -> None:
    scope = {"type": "http", "method": "GET", "path": "//evil.example/x", "headers": [], "server": ("10.0.0.5", 80)}
    answer = AdminGuard(TOKEN, loopback=False).check(Request({**scope, "query_string": f"token={TOKEN}".encode()}))
    assert answer is not None
    assert answer.status_code == 303
    assert answer.headers["location"] == "/evil.example/x"


def test_a_loopback_service_without_a_token_shows_the_dashboard_to_anyone_local(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    with serving(create_app(make_hub(tmp_path, sandbox), monitor=False)) as url:
        page = httpx2.get(f"{url}/")
        data = httpx2.get(f"{url}/api/overview")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "<title>tether" in page.text
    assert data.status_code == 200
    assert [item["name"] for item in data.json()["integrations"]] == ["payments", "search"]


def test_a_public_binding_without_a_token_answers_403_saying_to_set_it_but_probes_and_metrics_stay_open(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    with serving(create_app(make_hub(tmp_path, sandbox), loopback=False, monitor=False)) as url:
        page = httpx2.get(f"{url}/", headers={"accept": "text/html"})
        data = httpx2.get(f"{url}/api/overview")
        with_a_guess = httpx2.get(f"{url}/api/overview", headers={"authorization": "Bearer anything"})
        health = httpx2.get(f"{url}/healthz")
        metrics = httpx2.get(f"{url}/metrics")
    assert page.status_code == 403
    assert "TETHER_ADMIN_TOKEN" in page.text
    assert "<h1>" in page.text
    assert data.status_code == 403
    assert data.json()["error"] == "forbidden"
    assert "TETHER_ADMIN_TOKEN" in data.json()["detail"]
    assert with_a_guess.status_code == 403, "no token configured: nothing opens it"
    assert health.status_code == 200
    assert metrics.status_code == 200
    assert "tether_" in metrics.text


def test_with_a_token_the_bearer_opens_the_dashboard_and_a_wrong_or_missing_one_gets_401(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    app = create_app(make_hub(tmp_path, sandbox), admin_token=TOKEN, loopback=False, monitor=False)
    with serving(app) as url:
        good = httpx2.get(f"{url}/api/overview", headers={"authorization": f"Bearer {TOKEN}"})
        page = httpx2.get(f"{url}/", headers={"authorization": f"bearer {TOKEN}"})
        wrong = httpx2.get(f"{url}/api/overview", headers={"authorization": f"Bearer {TOKEN}x"})
        short = httpx2.get(f"{url}/api/overview", headers={"authorization": f"Bearer {TOKEN[:-1]}"})
        missing = httpx2.get(f"{url}/api/overview")
        bad_cookie = httpx2.get(f"{url}/", cookies={COOKIE: TOKEN}, headers={"accept": "text/html"})
    assert (good.status_code, page.status_code) == (200, 200)
    assert (wrong.status_code, short.status_code, missing.status_code) == (401, 401, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "TETHER_ADMIN_TOKEN" in missing.json()["detail"]
    assert bad_cookie.status_code == 401, "the cookie holds a session value, not the token"
    for response in (good, page, wrong, short, missing, bad_cookie):
        no_token_in(response)


def test_token_in_the_url_sets_a_strict_httponly_cookie_and_redirects_it_out_of_the_url(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    app = create_app(make_hub(tmp_path, sandbox), admin_token=TOKEN, loopback=False, monitor=False)
    with serving(app) as url:
        login = httpx2.get(f"{url}/?token={TOKEN}")
        deep = httpx2.get(f"{url}/api/overview?window=600&token={TOKEN}")
        wrong = httpx2.get(f"{url}/?token=nope")
        session = login.cookies[COOKIE]
        with httpx2.Client(base_url=url, cookies={COOKIE: session}) as browser:
            page = browser.get("/")
            data = browser.get(deep.headers["location"])
    assert login.status_code == 303
    assert login.headers["location"] == "/"
    cookie = login.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/"):
        assert attribute in cookie
    assert TOKEN.lower() not in cookie, "the cookie is derived from the token, not the token"
    assert deep.status_code == 303
    assert deep.headers["location"] == "/api/overview?window=600"
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    assert (page.status_code, data.status_code) == (200, 200)
    assert data.json()["window"] == 600
    for response in (login, deep, wrong, page, data):
        no_token_in(response)


def serve_dashboard(
    tmp_path: Path, sandbox: SandboxServer, token: str | None
) -> contextlib.AbstractContextManager[tuple[str, Path]]:
    """``tether serve --host 0.0.0.0`` for this module's config, with ``token`` as TETHER_ADMIN_TOKEN (if any)."""
    config = tmp_path / "tether.toml"
    config.write_text(config_text(tmp_path, sandbox.url))
    env = {"SANDBOX_KEY": SANDBOX_API_KEY, "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET}
    if token is not None:
        env["TETHER_ADMIN_TOKEN"] = token
    return tether_serve(config, "0.0.0.0", env)


@pytest.mark.slow
def test_tether_serve_on_a_public_address_refuses_the_dashboard_until_the_token_is_set(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    with serve_dashboard(tmp_path, sandbox, None) as (url, log):
        refused = httpx2.get(f"{url}/api/overview")
    warning = " ".join(log.read_text().split())
    assert refused.status_code == 403
    assert "without TETHER_ADMIN_TOKEN: the dashboard answers 403" in warning
    with serve_dashboard(tmp_path, sandbox, TOKEN) as (url, log):
        opened = httpx2.get(f"{url}/api/overview", headers={"authorization": f"Bearer {TOKEN}"})
        missing = httpx2.get(f"{url}/")
    output = log.read_text()
    assert (opened.status_code, missing.status_code) == (200, 401)
    assert "dashboard: http://0.0.0.0:" in output
    assert TOKEN not in output, "the token is never printed or logged"


# --- /api/overview ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_overview_reports_the_calls_made_through_the_hub_with_their_errors_hints_inbox_and_alerts(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    server_hub = make_hub(tmp_path, sandbox, alerts='min_calls = 3\ninterval = "0.2s"')
    with serving(create_app(server_hub, process=False)) as url, make_hub(tmp_path, sandbox) as app_hub:
        call(app_hub, ok=6, failing=3)
        call(app_hub, ok=2, failing=0, name="search")
        post_event(url, "evt_dash_1")
        post_event(url, "evt_dash_2")

        def alerting() -> dict[str, Any] | None:
            answer = httpx2.get(f"{url}/api/overview", params={"window": "600"})
            assert answer.status_code == 200
            found = {item["name"]: item for item in answer.json()["integrations"]}
            return found if found["payments"]["alerts"] else None

        found = wait_for(alerting)
        raw = httpx2.get(f"{url}/api/overview").text
    payments, search = found["payments"], found["search"]
    assert (payments["requests"], payments["failures"]) == (9, 3)
    assert payments["error_rate"] == pytest.approx(3 / 9)
    assert 0 < payments["p50"] <= payments["p95"]
    assert payments["breaker"] == "closed"
    assert payments["rate_limit"] == "600/min"
    assert payments["usage"] == pytest.approx(9 / 600)
    assert payments["token"] == {"type": "api_key", "state": "static"}
    assert payments["inbox"]["pending"] == 2
    assert len(payments["errors"]) == 3
    assert {(e["status"], e["error"], e["hint"], e["endpoint"]) for e in payments["errors"]} == {
        (503, "ServerError", SERVER_HINT, "/v1/customers")
    }
    assert sum(payments["series"]["requests"]) == 9
    [incident] = [a for a in payments["alerts"] if a["rule"] == "error_rate"]
    assert incident["integration"] == "payments"
    assert "33.3%" in incident["message"]
    assert (search["requests"], search["failures"], search["errors"], search["inbox"]) == (2, 0, [], None)
    assert SANDBOX_API_KEY not in raw
    assert STRIPE_SECRET not in raw


def test_overview_window_is_clamped_to_a_minute_and_a_week(tmp_path: Path, sandbox: SandboxServer) -> None:
    with serving(create_app(make_hub(tmp_path, sandbox), monitor=False)) as url:
        tiny = httpx2.get(f"{url}/api/overview", params={"window": "5"})
        huge = httpx2.get(f"{url}/api/overview", params={"window": "1e12"})
        nonsense = httpx2.get(f"{url}/api/overview", params={"window": "soon"})
    assert tiny.json()["window"] == 60
    assert len(tiny.json()["integrations"][0]["series"]["t"]) == 1
    assert huge.json()["window"] == 7 * 86400
    assert nonsense.status_code == 400
    assert "window" in nonsense.json()["detail"]


def test_the_page_is_self_contained_and_allows_only_its_own_inline_code(tmp_path: Path, sandbox: SandboxServer) -> None:
    with serving(create_app(make_hub(tmp_path, sandbox), monitor=False)) as url:
        page = httpx2.get(f"{url}/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'sha256-" in policy
    assert "unsafe" not in policy
    assert "connect-src 'self'" in policy
    assert page.headers["cache-control"] == "no-store"
    for external in ("http://", "https://", "//cdn", "@import", "src="):
        assert external not in page.text.replace("http://www.w3.org/2000/svg", ""), external
    assert ".innerHTML" not in page.text
    assert "insertAdjacentHTML" not in page.text


# --- the page in a real browser -----------------------------------------------------------------------------


@pytest.fixture
def chrome() -> Iterator[Any]:
    """Headless Chromium through chromedriver; missing pieces skip the test, except under CI, where they fail."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        browser, problem = None, f"selenium is not installed ({exc})"
    else:
        problem = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    if browser is None or driver_path is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a headless browser: {problem}")
        pytest.skip(problem)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The system's driver, never one selenium would download.
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


# The page re-renders every few seconds: read it with one script each time rather than holding element
# references, which go stale when a refresh replaces the elements between a lookup and its read.
def text(driver: Any, selector: str) -> str:
    """The visible text of the first element ``selector`` matches ('' when none does)."""
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", selector
    )
    return str(found).strip()


def count(driver: Any, selector: str) -> int:
    return int(driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector))


def field(driver: Any, integration: str, name: str) -> str:
    return text(driver, f'[data-integration="{integration}"] [data-field="{name}"]')


@pytest.mark.slow
def test_the_page_in_chromium_shows_the_calls_live_and_no_secret(
    tmp_path: Path, sandbox: SandboxServer, chrome: Any
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    with (
        make_hub(tmp_path, sandbox) as app_hub,
        serving(create_app(make_hub(tmp_path, sandbox), process=False, monitor=False)) as url,
    ):
        call(app_hub, ok=7, failing=3)
        post_event(url, "evt_page_1")
        chrome.get(f"{url}/")
        wait = WebDriverWait(chrome, 10, poll_frequency=0.1)
        wait.until(lambda d: field(d, "payments", "requests") == "10")
        assert field(chrome, "payments", "error-rate") == "30.0%"
        assert field(chrome, "search", "requests") == "0"
        assert field(chrome, "payments", "breaker") == "breaker closed"
        assert field(chrome, "payments", "token") == "api_key · static"
        errors = field(chrome, "payments", "errors")
        assert SERVER_HINT in errors
        assert "503" in errors
        assert "GET /v1/customers" in errors
        inbox = text(chrome, '[data-integration="payments"] [data-inbox="pending"]')
        assert inbox == "1 pending"
        assert count(chrome, '[data-integration="payments"] svg.chart') == 2
        # One minute of calls draws a dot; calls straddling a minute boundary draw a line.
        latency = '[data-integration="payments"] [data-chart="latency"]'
        assert count(chrome, f"{latency} circle, {latency} path.line") > 0
        assert chrome.execute_script("return document.getElementById('status').dataset.state") == "live"
        assert "updated" in text(chrome, "#status-text")

        chrome.execute_script("window.__same_page = true")
        call(app_hub, ok=5, failing=1)
        wait.until(lambda d: field(d, "payments", "requests") == "16")
        assert field(chrome, "payments", "error-rate") == "25.0%"
        assert chrome.execute_script("return window.__same_page === true"), "updated in place, not reloaded"
        assert text(chrome, '[data-summary="requests"]') == "16"
        source = chrome.page_source
        assert SANDBOX_API_KEY not in source
        assert STRIPE_SECRET not in source
    # The server is gone: the page says so and keeps what it showed.
    wait.until(lambda d: d.execute_script("return document.getElementById('status').dataset.state") == "error")
    assert "Cannot load" in text(chrome, "#banner"), "the banner is shown (innerText is empty while hidden)"
    assert field(chrome, "payments", "requests") == "16"
    problems = [entry for entry in chrome.get_log("browser") if entry["level"] == "SEVERE"]
    # Only the failed polls after shutdown: no script error, no Content-Security-Policy violation.
    assert all("api/overview" in entry["message"] for entry in problems), problems

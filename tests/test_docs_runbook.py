"""``tether docs``: the integration runbook, as Markdown and as one self-contained HTML page.

Everything runs for real: configs on disk with secrets in env vars and files, calls through tether to a loopback
server recorded to a SQLite store, the CLI through typer's runner, and the HTML parsed by markdown-it as
browsers would get it.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import html
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from typer.testing import CliRunner

import tether.docs
from tether.cli import app
from tether.config.loader import parse_config
from tether.docs._text import code, text
from tether.docs.html import CSS
from tether.docs.troubleshooting import failures
from tether.hub import Hub
from tether.observe.incidents import Alerter, Condition
from tether.webhooks.inbox import Incoming

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
SANDBOX_ENV = {
    "SANDBOX_API_KEY": "sk_test_sandbox",
    "SANDBOX_BEARER_TOKEN": "tok_sandbox",
    "SANDBOX_CLIENT_SECRET": "sandbox-client-secret",
    "PAYMENTS_WEBHOOK_SECRET": "whsec_c2FuZGJveA==",
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def _docs(config: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--config", str(config), "docs", *args])
    return result.exit_code, result.output


def _runbook(folder: Path, toml: str) -> str:
    """The runbook ``tether docs --out`` writes for the config ``toml``."""
    config, out = folder / "tether.toml", folder / "runbook.md"
    config.write_text(toml)
    code_, output = _docs(config, "--out", str(out))
    assert code_ == 0, output
    return out.read_text()


# -- no secret value, anywhere ---------------------------------------------------------------------------------


@pytest.fixture
def secret_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    """A config whose every kind of credential has a real, random value in an env var or a file."""
    values = {
        "ACME_API_KEY": "ak_" + secrets.token_urlsafe(24),
        "MAIL_PASSWORD": "pw_" + secrets.token_urlsafe(24),
        "CRM_CLIENT_SECRET": "cs_" + secrets.token_urlsafe(24),
        "CRM_REFRESH_TOKEN": "rt_" + secrets.token_urlsafe(24),
        "SIGNING_KEY": "hs_" + secrets.token_urlsafe(40),
        "HOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        "FORWARD_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    files = {"bearer.txt": "bt_" + secrets.token_urlsafe(24), "old-hook.txt": "old_" + secrets.token_urlsafe(24)}
    (tmp_path / "secrets").mkdir()
    for name, value in files.items():
        (tmp_path / "secrets" / name).write_text(value + "\n")
    path = tmp_path / "tether.toml"
    path.write_text(
        """
[integrations.acme]
base_url = "https://api.acme.test"
auth = { type = "api_key", key = "${ACME_API_KEY}", in = "query", name = "api_key" }
[integrations.acme.webhooks]
scheme = "github"
secret = "${HOOK_SECRET}"
secrets = ["file:secrets/old-hook.txt"]
forward = { url = "http://billing.internal/hooks", secret = "${FORWARD_SECRET}" }

[integrations.search]
base_url = "https://search.test"
auth = { type = "bearer", token = "file:secrets/bearer.txt" }

[integrations.mail]
base_url = "https://mail.test"
auth = { type = "basic", username = "api", password = "${MAIL_PASSWORD}" }

[integrations.ledger]
base_url = "https://ledger.test"
auth = { type = "jwt", private_key = "${SIGNING_KEY}", algorithm = "HS256", issuer = "billing" }

[integrations.crm]
base_url = "https://crm.test"
[integrations.crm.auth]
type = "oauth2"
grant = "refresh_token"
token_url = "https://login.crm.test/token"
client_id = "my-app"
client_secret = "${CRM_CLIENT_SECRET}"
refresh_token = "${CRM_REFRESH_TOKEN}"
"""
    )
    return path, {**values, **{f"file {name}": value for name, value in files.items()}}


def _derived(value: str) -> list[str]:
    """``value`` and the forms a careless writer could leak it in."""
    raw = value.encode()
    forms = [value, raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")]
    return [*forms, base64.b64encode(b"api:" + raw).decode()]  # HTTP Basic's header value


def test_no_secret_value_reaches_the_markdown_the_html_or_the_terminal(
    secret_config: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    config, values = secret_config
    out, page = tmp_path / "out" / "runbook.md", tmp_path / "out" / "runbook.html"

    code_, output = _docs(config, "--out", str(out), "--html", str(page))

    assert code_ == 0, output
    written = {"markdown": out.read_text(), "html": page.read_text(), "terminal": output}
    for where, content in written.items():
        for name, value in values.items():
            for form in _derived(value):
                assert form not in content, f"{name}'s value (or a form of it) is in the {where}"
    markdown = written["markdown"]
    for name in ("ACME_API_KEY", "MAIL_PASSWORD", "CRM_CLIENT_SECRET", "CRM_REFRESH_TOKEN", "SIGNING_KEY"):
        assert f"env var `{name}`" in markdown
    for name in ("HOOK_SECRET", "FORWARD_SECRET"):
        assert f"env var `{name}`" in markdown
    assert "file `secrets/bearer.txt`" in markdown
    assert "file `secrets/old-hook.txt`" in markdown


def test_the_docs_package_never_reads_a_secrets_value() -> None:
    """The guarantee behind the scan above: no module of tether.docs touches ``Secret.value`` at all."""
    package = Path(tether.docs.__file__).parent
    for module in sorted(package.glob("*.py")):
        tree = ast.parse(module.read_text())
        reads = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "value"]
        assert reads == [], f"{module.name} reads .value on line(s) {reads}"


# -- team notes ------------------------------------------------------------------------------------------------


def _two_integrations(path: Path, *names: str) -> None:
    body = "".join(f'[integrations."{name}"]\nbase_url = "https://{name}.test"\n' for name in names)
    path.write_text(body)


def _write_between(markdown: str, key: str, note: str) -> str:
    begin = f"<!-- BEGIN TEAM NOTES{': ' + key if key else ''} -->"
    end = f"<!-- END TEAM NOTES{': ' + key if key else ''} -->"
    head, rest = markdown.split(begin + "\n", 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{note}\n{end}{tail}"


def test_team_notes_survive_regenerations_and_a_removed_integrations_notes_are_kept(tmp_path: Path) -> None:
    config, out = tmp_path / "tether.toml", tmp_path / "docs" / "integrations.md"
    _two_integrations(config, "stripe", "github")
    assert _docs(config, "--no-health")[0] == 0, "the default --out is docs/integrations.md next to the config"
    everyone = "Escalation: page #oncall, then the vendor's\n\n| tier | contact |\n|---|---|\n| 1 | <b>ops</b> |"
    stripe = "Refunds over $10k need a second pair of eyes.\n- run `make reconcile` after an outage"
    github = "The app is installed on the org, not on users."
    edited = _write_between(out.read_text(), "", everyone)
    edited = _write_between(edited, "stripe", stripe)
    out.write_text(_write_between(edited, "github", github))

    for _ in range(2):
        assert _docs(config, "--no-health")[0] == 0
    kept = out.read_text()
    assert f"<!-- BEGIN TEAM NOTES -->\n{everyone}\n<!-- END TEAM NOTES -->" in kept
    assert f"<!-- BEGIN TEAM NOTES: stripe -->\n{stripe}\n<!-- END TEAM NOTES: stripe -->" in kept
    assert kept.index("<!-- BEGIN TEAM NOTES: stripe -->") > kept.index("## stripe")

    _two_integrations(config, "stripe")
    assert _docs(config, "--no-health")[0] == 0
    orphaned = out.read_text()
    assert "\n## github\n" not in orphaned
    orphans = orphaned.split("## Orphaned team notes", 1)[1]
    assert f"<!-- BEGIN TEAM NOTES: github -->\n{github}\n<!-- END TEAM NOTES: github -->" in orphans
    assert "- [Orphaned team notes](#orphaned-team-notes)" in orphaned

    _two_integrations(config, "stripe", "github")
    assert _docs(config, "--no-health")[0] == 0
    back = out.read_text()
    assert "## Orphaned team notes" not in back, "an integration added back takes its notes back"
    assert back.index("<!-- BEGIN TEAM NOTES: github -->") > back.index("## github")


def test_broken_markers_refuse_to_write_rather_than_lose_notes(tmp_path: Path) -> None:
    config, out = tmp_path / "tether.toml", tmp_path / "runbook.md"
    _two_integrations(config, "stripe")
    broken = "<!-- BEGIN TEAM NOTES: stripe -->\nprecious\n"
    out.write_text(broken)

    code_, output = _docs(config, "--no-health", "--out", str(out))

    assert code_ == 1
    said = " ".join(output.split())
    assert "the team notes of 'stripe' is never closed" in said
    assert "nothing was written" in said
    assert out.read_text() == broken


def test_placeholder_only_blocks_of_removed_integrations_are_dropped(tmp_path: Path) -> None:
    config, out = tmp_path / "tether.toml", tmp_path / "runbook.md"
    _two_integrations(config, "stripe", "github")
    assert _docs(config, "--no-health", "--out", str(out))[0] == 0
    _two_integrations(config, "stripe")
    assert _docs(config, "--no-health", "--out", str(out))[0] == 0
    assert "github" not in out.read_text()


# -- the HTML page ---------------------------------------------------------------------------------------------


def test_html_page_is_self_contained_with_a_strict_csp(
    secret_config: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    config, _ = secret_config
    page = tmp_path / "runbook.html"
    assert _docs(config, "--out", str(tmp_path / "runbook.md"), "--html", str(page))[0] == 0
    content = page.read_text()

    assert not re.search(r"""\b(?:src|href|action|srcset)\s*=\s*["']?\s*(?:https?:|//)""", content, re.IGNORECASE)
    assert "<script" not in content.lower()
    assert "<link" not in content.lower()
    assert "@import" not in content
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', content)
    assert policy is not None
    assert "default-src 'none'" in policy.group(1)
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy.group(1), "the one stylesheet is allowed by its hash"
    assert f"<style>{CSS}</style>" in content
    assert ' style="' not in content, "no inline style attribute (the CSP would block it)"
    assert 'href="#acme"' in content
    assert 'id="acme"' in content


def test_config_text_is_escaped_in_markdown_and_html(tmp_path: Path) -> None:
    config = tmp_path / "tether.toml"
    config.write_text(
        """
[integrations.evil]
base_url = "https://evil.test"
purpose = "[click](javascript:alert(1)) <img src=x onerror=alert(2)>"
owner = "**team** | `x` &amp; <b>bold</b>"
notes = "<script>alert(1)</script>\\n# not a heading\\n1. not a list"
headers = { "X-Note" = "<i>hi</i>" }
"""
    )
    md_path, page = tmp_path / "runbook.md", tmp_path / "runbook.html"
    assert _docs(config, "--no-health", "--out", str(md_path), "--html", str(page))[0] == 0
    markdown, content = md_path.read_text(), page.read_text()

    for raw in ("<script>", "<img src=x", "<b>bold</b>", "](javascript:"):
        assert not re.search(r"(?<!\\)" + re.escape(raw), markdown), f"{raw} is live markup in the Markdown"
    assert "<script" not in content
    assert "<img" not in content
    assert "<b>" not in content
    assert "<i>" not in content
    assert 'href="javascript' not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "[click](javascript:alert(1))" in content, "shown as the text it is"
    assert "&amp;amp;" in content, "an entity in config text stays the characters written"
    assert "<h1>not a heading" not in content
    assert "<ol>" not in content


@pytest.fixture
def chrome() -> Iterator[Any]:
    """Headless Chromium through the system's chromedriver; skipped without one, except under CI."""
    browser, driver_path = shutil.which("chromium") or shutil.which("google-chrome"), shutil.which("chromedriver")
    if browser is None or driver_path is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs a headless browser: apt-get install chromium chromium-driver")
        pytest.skip("chromium and chromedriver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_page_in_chromium_is_styled_and_breaks_no_csp_rule(tmp_path: Path, chrome: Any) -> None:
    """The stylesheet's hash in the CSP is the one a browser computes; nothing is blocked, nothing runs."""
    config, page = tmp_path / "tether.toml", tmp_path / "runbook.html"
    config.write_text('[integrations.evil]\nbase_url = "https://evil.test"\nnotes = "<script>alert(1)</script>"\n')
    assert _docs(config, "--no-health", "--out", str(tmp_path / "runbook.md"), "--html", str(page))[0] == 0

    chrome.get(page.as_uri())

    assert chrome.execute_script("return getComputedStyle(document.body).margin") == "0px", "the <style> applied"
    assert chrome.execute_script("return document.scripts.length") == 0
    assert "<script>alert(1)</script>" in chrome.execute_script("return document.body.innerText")
    violations = [
        entry["message"] for entry in chrome.get_log("browser") if "Content Security Policy" in entry["message"]
    ]
    assert violations == []


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40))
def test_text_renders_as_exactly_the_characters_given(value: str) -> None:
    expected = " ".join(value.split())
    rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(text(value))
    if not expected:
        assert rendered == ""
        return
    assert rendered.startswith("<p>"), rendered
    assert rendered.endswith("</p>\n"), rendered
    assert html.unescape(rendered[3:-5]) == expected


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40))
def test_code_spans_hold_exactly_the_characters_given(value: str) -> None:
    expected = " ".join(value.split())
    if not expected:
        return
    rendered = MarkdownIt("commonmark").render(code(value))
    assert rendered.startswith("<p><code>"), rendered
    assert rendered.endswith("</code></p>\n"), rendered
    assert html.unescape(rendered[9:-12]) == expected


def test_contents_link_to_the_anchors_headings_really_get(tmp_path: Path) -> None:
    """A team note with a heading of its own shifts GitHub's numbering; the contents follow it."""
    config, out, page = tmp_path / "tether.toml", tmp_path / "runbook.md", tmp_path / "runbook.html"
    _two_integrations(config, "payments", "api.v2")
    assert _docs(config, "--no-health", "--out", str(out))[0] == 0
    out.write_text(_write_between(out.read_text(), "", "## payments\n\nThe payments escalation path."))

    assert _docs(config, "--no-health", "--out", str(out), "--html", str(page))[0] == 0

    markdown, content = out.read_text(), page.read_text()
    assert "- [payments](#payments-1)" in markdown
    assert "- [api.v2](#apiv2)" in markdown
    assert '<h2 id="payments-1">payments</h2>' in content
    assert '<h2 id="payments">payments</h2>' in content, "the team's own heading keeps the first anchor"


# -- the troubleshooting runbook -------------------------------------------------------------------------------


def test_each_failure_entry_is_tailored_to_the_integrations_config(tmp_path: Path) -> None:
    config = parse_config(
        """
state = "redis://cache.internal:6379/0"
[integrations.pay]
base_url = "https://api.pay.test"
auth = { type = "bearer", token = "${PAY_TOKEN}" }
timeout = { total = "12s", connect = "3s", read = "7s" }
rate_limit = "40/s"
health = "GET /v1/balance"
ca_bundle = "certs/corp-ca.pem"
cors_origins = ["https://app.pay.test"]
proxy = { allow = ["GET /v1/prices"] }
openapi = "openapi/pay.yaml"
validate = true
[integrations.crm]
base_url = "http://127.0.0.1:9000"
[integrations.crm.auth]
type = "oauth2"
grant = "authorization_code"
token_url = "https://login.crm.test/token"
authorize_url = "https://login.crm.test/authorize"
client_id = "app"
client_auth = "none"
scopes = ["contacts.read"]
""",
        env={"PAY_TOKEN": "tok_" + secrets.token_hex(8)},
        base_dir=tmp_path,
    )
    pay = {f.title: f for f in failures("pay", config.integrations["pay"], state=config.state)}
    crm = {f.title: f for f in failures("crm", config.integrations["crm"], state=config.state)}

    assert list(pay) == [
        "401 Unauthorized",
        "403 Forbidden",
        "429 Too Many Requests",
        "Timeout or 408",
        "JSON parse error or unexpected format",
        "CORS",
        "SSL/TLS certificate",
    ]
    assert "env var `PAY_TOKEN`" in pay["401 Unauthorized"].cause
    assert "`tether doctor pay` (sends `GET /v1/balance`" in pay["401 Unauthorized"].confirm
    assert "40 requests per second" in pay["429 Too Many Requests"].cause
    assert "each process counts on its own" not in pay["429 Too Many Requests"].cause, "state is shared in Redis"
    assert "until the reset the API gave" in pay["429 Too Many Requests"].action
    assert "connect `3s`, read `7s`, `12s` in total" in pay["Timeout or 408"].cause
    assert "`tether.SchemaMismatchError`" in pay["JSON parse error or unexpected format"].symptom
    assert "`https://app.pay.test`" in pay["CORS"].cause
    assert "`/proxy/pay/…`" in pay["CORS"].action
    assert "`certs/corp-ca.pem` (`ca_bundle`)" in pay["SSL/TLS certificate"].action
    assert "`tether doctor pay`" in pay["SSL/TLS certificate"].confirm

    assert "`tether auth login crm`" in crm["401 Unauthorized"].action
    assert "`tether.GrantRevokedError`" in crm["401 Unauthorized"].symptom
    assert "`contacts.read`" in crm["403 Forbidden"].cause
    assert "plain HTTP" in crm["SSL/TLS certificate"].cause
    assert "the token endpoint is HTTPS" in crm["SSL/TLS certificate"].cause
    assert "set `health` first" in crm["401 Unauthorized"].confirm
    assert "[integrations.crm.proxy]" in crm["CORS"].action


# -- live health -----------------------------------------------------------------------------------------------


def test_live_health_shows_recorded_calls_alerts_and_webhook_types(
    tmp_path: Path, upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_KEY", "shop-key-" + secrets.token_hex(8))
    monkeypatch.setenv("SHOP_HOOK", "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    config = tmp_path / "tether.toml"
    config.write_text(
        f"""
store = "sqlite:///tether.db"
[integrations.shop]
base_url = "{upstream}"
auth = {{ type = "api_key", key = "${{SHOP_KEY}}" }}
retry = false
[integrations.shop.webhooks]
scheme = "stripe"
secret = "${{SHOP_HOOK}}"
[integrations.quiet]
base_url = "{upstream}"
"""
    )
    with Hub.from_config(config) as hub, hub.client("shop") as client:
        for _ in range(5):
            assert client.get("/ok").status_code == 200
        assert client.get("/401").status_code == 401
        Alerter(hub.store, [], resolve_after=0).evaluate(
            [Condition("shop", "auth_failures", True, 6.0, 5.0, "6 401/403 answers over 5m, at least 5")]
        )
        hub.inbox.add(
            [Incoming("shop", f"evt_{n}", "invoice.paid", {}, b"{}", time.time()) for n in range(3)]
            + [Incoming("shop", "evt_x", "customer.created", {}, b"{}", time.time())]
        )
    before = time.time()

    code_, output = _docs(config, "--out", str(tmp_path / "runbook.md"))

    assert code_ == 0, output
    markdown = (tmp_path / "runbook.md").read_text()
    summary = markdown.split("## Current health", 1)[1].split("\n## ", 1)[0]
    assert "As of **" in summary
    assert "over the last hour, from the store `sqlite:///tether.db`" in summary
    assert "| shop | 6 | 16.7% |" in summary
    assert "| quiet | 0 | - |" in summary
    shop = markdown.split("\n## shop\n", 1)[1]
    assert "| calls | 6 (1 failure, 16.7%) |" in shop
    assert "`auth_failures` since" in shop
    assert "6 401/403 answers over 5m" in shop
    assert "`GET /{id}` → HTTP 401: the key in env var SHOP\\_KEY is wrong" in shop, "the endpoint's template"
    assert "**Types received lately:** `invoice.paid` × 3, `customer.created` × 1" in shop
    assert "| webhook inbox | 4 pending |" in shop
    stamp = re.search(r"As of \*\*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\*\*", summary)
    assert stamp is not None
    assert time.strftime("%Y-%m-%d %H:%M", time.gmtime(before)) <= stamp.group(1)
    assert "No calls recorded" not in shop
    quiet = markdown.split("\n## quiet\n", 1)[1].split("\n## ", 1)[0]
    assert "No calls recorded in the hour before" in quiet


def test_a_store_not_created_yet_is_said_so_and_not_created(tmp_path: Path) -> None:
    config = tmp_path / "tether.toml"
    _two_integrations(config, "stripe")

    code_, _ = _docs(config, "--out", str(tmp_path / "runbook.md"))

    assert code_ == 0
    assert (
        "No health to show from the store `sqlite:///tether.db`: it has not been created yet (no call has been"
        in (tmp_path / "runbook.md").read_text()
    )
    assert not (tmp_path / "tether.db").exists()


@pytest.mark.parametrize(
    ("store", "reason"),
    [("postgresql://tether:hunter22@127.0.0.1:1/nope", "Error"), ("sqlite:///garbage.db", "DatabaseError")],
)
def test_a_broken_store_still_writes_the_docs_and_says_why(tmp_path: Path, store: str, reason: str) -> None:
    config = tmp_path / "tether.toml"
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    config.write_text(f'store = "{store}"\n[integrations.stripe]\nbase_url = "https://api.stripe.test"\n')

    code_, output = _docs(config, "--out", str(tmp_path / "runbook.md"), "--html", str(tmp_path / "runbook.html"))

    assert code_ == 0, output
    markdown = (tmp_path / "runbook.md").read_text()
    assert "**Unavailable:** the store" in markdown
    assert reason in markdown
    assert "## stripe" in markdown
    assert (tmp_path / "runbook.html").exists()
    assert "health left out" in output
    assert "hunter22" not in markdown + output, "a store URL's password is masked"


# -- the CLI and the checked-in example ------------------------------------------------------------------------


def test_a_config_error_exits_1_naming_the_key_and_writes_nothing(tmp_path: Path) -> None:
    config, out = tmp_path / "tether.toml", tmp_path / "runbook.md"
    config.write_text('[integrations.stripe]\nbase_url = "https://api.stripe.test"\nretyr = 3\n')

    code_, output = _docs(config, "--out", str(out))

    assert code_ == 1
    assert "integrations.stripe.retyr" in output
    assert "did you mean 'retry'" in output
    assert not out.exists()
    assert _docs(tmp_path / "missing.toml")[0] == 1


def test_the_checked_in_example_is_what_the_sandbox_config_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/examples/runbook.md and .html cannot go stale: regenerating them from the config changes nothing."""
    for name, value in SANDBOX_ENV.items():
        monkeypatch.setenv(name, value)
    out, page = tmp_path / "runbook.md", tmp_path / "runbook.html"
    shutil.copy(EXAMPLES / "runbook.md", out)  # the team notes written in the checked-in copy are carried over

    code_, output = _docs(EXAMPLES / "sandbox.tether.toml", "--no-health", "--out", str(out), "--html", str(page))

    assert code_ == 0, output
    assert out.read_text() == (EXAMPLES / "runbook.md").read_text()
    assert page.read_text() == (EXAMPLES / "runbook.html").read_text()
    for value in SANDBOX_ENV.values():
        assert value not in out.read_text() + page.read_text()


def test_docs_need_no_secret_to_be_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A docs job (CI, a laptop) has no production secrets: references are described, never resolved."""
    for name in SANDBOX_ENV:
        monkeypatch.delenv(name, raising=False)
    text = _runbook(
        tmp_path,
        '[integrations.acme]\nbase_url = "https://acme.test"\n'
        'auth = { type = "bearer", token = "file:secrets/missing.txt" }\n'
        '[integrations.mail]\nbase_url = "https://mail.test"\nauth = { type = "basic", username = "api", '
        'password = "${MAIL_PASSWORD_NOT_SET}" }\n',
    )
    assert "file `secrets/missing.txt`" in text
    assert "env var `MAIL_PASSWORD_NOT_SET`" in text


def test_a_literal_secret_is_still_refused_without_resolving(tmp_path: Path) -> None:
    config = tmp_path / "tether.toml"
    config.write_text(
        '[integrations.acme]\nbase_url = "https://acme.test"\nauth = { type = "bearer", token = "sk_live_x" }\n'
    )

    code_, output = _docs(config, "--out", str(tmp_path / "runbook.md"))

    assert code_ == 1
    assert "literal secret is not allowed" in output
    assert "sk_live_x" not in output


def test_a_store_url_with_a_secret_reference_is_read_for_health_when_the_secret_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production shape, store = "postgresql://app:${PGPASSWORD}@db/app": the docs read health with it."""
    database = tmp_path / "calls.db"
    config = tmp_path / "tether.toml"
    config.write_text(
        'store = "sqlite:///${DOCS_DB_PATH}"\n[integrations.stripe]\nbase_url = "https://api.stripe.test"\n'
    )
    out = tmp_path / "runbook.md"

    monkeypatch.delenv("DOCS_DB_PATH", raising=False)
    code_, output = _docs(config, "--out", str(out))
    assert code_ == 0, output
    assert "its URL needs a secret: environment variable DOCS\\_DB\\_PATH is not set" in out.read_text()

    database.write_bytes(b"")  # an empty file is an empty SQLite database
    monkeypatch.setenv("DOCS_DB_PATH", str(database).lstrip("/"))
    code_, output = _docs(config, "--out", str(out))
    assert code_ == 0, output
    markdown = out.read_text()
    assert "needs a secret" not in markdown
    assert "**Unavailable:**" not in markdown


def test_a_generic_hmac_integration_says_what_is_signed_and_where_the_delivery_id_comes_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_HOOK_SECRET", "acme-hook-secret-value")
    markdown = _runbook(
        tmp_path,
        """
[integrations.acme]
base_url = "https://api.acme.test"
[integrations.acme.webhooks]
scheme = "hmac"
secret = "${ACME_HOOK_SECRET}"
hmac = { header = "X-Acme-Signature", template = "{id}.{body}", id_header = "X-Acme-Delivery" }
""",
    )
    assert "over `{id}.{body}`, delivery id in `X-Acme-Delivery`" in markdown
    assert "id from the `X-Acme-Delivery` header" in markdown
    assert "acme-hook-secret-value" not in markdown

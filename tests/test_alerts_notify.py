"""Notifiers against real receivers on loopback: an HTTP server for webhooks and Slack, aiosmtpd for email
(plain, and STARTTLS with login over a certificate the test makes). A notifier's URL or password never shows
in an error or a log line."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from fakes import in_thread
from tether.config.monitoring import AlertsConfig, EmailNotifier, SlackNotifier, WebhookNotifier
from tether.observe.incidents import Alerter, Condition
from tether.observe.notify import (
    EmailNotify,
    LogNotify,
    Notification,
    NotifyError,
    SlackNotify,
    WebhookNotify,
    deliver,
    notifier_for,
    payload,
)
from tether.sandbox.tls import make_certificates
from tether.store.sqlite import SqliteStore

TOKEN = "T0KEN-8c1f5a2e9d"  # what a webhook URL carries; must never be shown
PASSWORD = "smtp-pa55-7f3b9e"
T0 = 1_800_000_000.0

FIRING = Notification(
    "firing", 7, "stripe", "error_rate", "error rate 12.5% over 5m (40 of 320 calls), above 5%", 0.125, 0.05, T0
)
RESOLVED = replace(
    FIRING,
    state="resolved",
    message="error rate 0.3% over 5m (1 of 300 calls), below 5%",
    value=0.003,
    resolved_at=T0 + 600,
)


# --- an HTTP receiver -----------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.received.append(Received(self.path, headers, json.loads(body)))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    with in_thread(server):
        yield server


def webhook(url: str, **extra: Any) -> WebhookNotify:
    return WebhookNotify(WebhookNotifier.model_validate({"type": "webhook", "url": url, **extra}))


def slack(url: str) -> SlackNotify:
    config = SlackNotifier.model_validate({"type": "slack", "url": "${SLACK_URL}"}, context={"env": {"SLACK_URL": url}})
    return SlackNotify(config)


def shown(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the log records say, tracebacks included."""
    return "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)


# --- log ------------------------------------------------------------------------------------------------------


def test_the_log_notifier_warns_when_firing_and_informs_when_resolved(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tether.alerts"):
        LogNotify().send(FIRING)
        LogNotify().send(RESOLVED)
    firing, resolved = caplog.records
    assert (firing.name, firing.levelno, resolved.levelno) == ("tether.alerts", logging.WARNING, logging.INFO)
    assert firing.getMessage() == "FIRING stripe: error rate: error rate 12.5% over 5m (40 of 320 calls), above 5%"
    assert resolved.getMessage().startswith("RESOLVED stripe: error rate: error rate 0.3%")
    fields = firing.tether  # type: ignore[attr-defined]
    assert fields == {"event": "alert", **payload(FIRING)}


# --- webhook --------------------------------------------------------------------------------------------------


def test_the_webhook_notifier_posts_the_documented_json(receiver: _Receiver) -> None:
    notify = webhook(f"{receiver.url}/hooks/alerts", headers={"X-Team": "payments"})
    notify.send(FIRING)
    notify.send(RESOLVED)
    first, second = receiver.received
    assert first.path == "/hooks/alerts"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-team"] == "payments"
    assert first.body == {
        "version": 1,
        "source": "tether",
        "state": "firing",
        "incident": 7,
        "integration": "stripe",
        "rule": "error_rate",
        "title": "FIRING stripe: error rate",
        "message": "error rate 12.5% over 5m (40 of 320 calls), above 5%",
        "value": 0.125,
        "threshold": 0.05,
        "started_at": "2027-01-15T08:00:00Z",
        "resolved_at": None,
    }
    assert (second.body["state"], second.body["resolved_at"]) == ("resolved", "2027-01-15T08:10:00Z")
    assert second.body == payload(RESOLVED)


@pytest.mark.parametrize(("status", "reason"), [(500, "Internal Server Error"), (404, "Not Found"), (302, "Found")])
def test_a_webhook_that_answers_an_error_fails_without_showing_its_url(
    receiver: _Receiver, status: int, reason: str
) -> None:
    receiver.status = status
    with pytest.raises(NotifyError) as caught:
        webhook(f"{receiver.url}/hooks/{TOKEN}?key={TOKEN}").send(FIRING)
    assert str(caught.value) == f"webhook notifier to 127.0.0.1: answered {status} {reason}"
    assert caught.value.__cause__ is None
    assert TOKEN not in repr(caught.value)


def test_an_unreachable_webhook_fails_without_showing_its_url(unused_port: int) -> None:
    with pytest.raises(NotifyError) as caught:
        webhook(f"http://127.0.0.1:{unused_port}/hooks/{TOKEN}").send(FIRING)
    assert "ConnectError" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None


def test_through_the_alerter_a_failing_webhook_token_never_reaches_the_logs(
    receiver: _Receiver, unused_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 503
    failing = [
        webhook(f"{receiver.url}/hooks/{TOKEN}?token={TOKEN}"),
        webhook(f"http://127.0.0.1:{unused_port}/{TOKEN}"),
        slack(f"{receiver.url}/services/{TOKEN}"),
    ]
    store = SqliteStore(tmp_path / "tether.db")
    alerter = Alerter(store, failing, resolve_after=0, wall=lambda: 1_800_000_000.0, sleep=lambda _: None)
    with caplog.at_level(logging.DEBUG):  # every logger, httpx2's and httpcore's included
        alerter.evaluate([Condition("stripe", "error_rate", True, 0.2, 0.05, "error rate 20.0% over 5m, above 5%")])
    store.close()
    text = shown(caplog)
    assert "answered 503 Service Unavailable" in text
    assert "ConnectError" in text
    assert TOKEN not in text
    assert len(receiver.received) == 6, "two notifiers on the receiver, three tries each"


# --- Slack ----------------------------------------------------------------------------------------------------


def test_the_slack_notifier_posts_text_and_blocks(receiver: _Receiver) -> None:
    notify = slack(f"{receiver.url}/services/{TOKEN}")
    assert TOKEN not in notify.name
    notify.send(FIRING)
    notify.send(RESOLVED)
    firing, resolved = (each.body for each in receiver.received)
    assert receiver.received[0].path == f"/services/{TOKEN}"
    assert firing["text"] == "FIRING stripe: error rate: error rate 12.5% over 5m (40 of 320 calls), above 5%"
    section, context = firing["blocks"]
    assert (section["type"], section["text"]["type"]) == ("section", "mrkdwn")
    assert section["text"]["text"].startswith(":red_circle: *FIRING stripe: error rate*\nerror rate 12.5%")
    assert context["elements"][0]["text"] == "rule `error_rate` · started 2027-01-15 08:00:00 UTC · threshold 0.05"
    assert resolved["blocks"][0]["text"]["text"].startswith(":large_green_circle: *RESOLVED")
    assert "resolved 2027-01-15 08:10:00 UTC" in resolved["blocks"][1]["elements"][0]["text"]


def test_slack_markup_in_a_message_is_escaped(receiver: _Receiver) -> None:
    odd = Notification("firing", 1, "a<b>", "error_rate", "5 & <!channel>", None, None, 0.0)
    slack(f"{receiver.url}/s").send(odd)
    [got] = receiver.received
    assert "5 &amp; &lt;!channel&gt;" in got.body["blocks"][0]["text"]["text"]
    assert got.body["text"] == "FIRING a<b>: error rate: 5 & <!channel>", "the plain fallback stays plain"


# --- email ----------------------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What an SMTP server on loopback received, and the logins it saw."""

    messages: list[tuple[Envelope, Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((envelope, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = (auth_data.login, auth_data.password) == (b"alerts", PASSWORD.encode())
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


@pytest.fixture
def smtp(unused_port: int) -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=unused_port)
    controller.start()
    yield mailbox, unused_port
    controller.stop()


@pytest.fixture
def certificates(tmp_path: Path) -> Any:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def trust(certificates: Any) -> ssl.SSLContext:
    """A client context that trusts the test's CA."""
    return ssl.create_default_context(cafile=str(certificates.ca_cert))


@pytest.fixture
def smtp_tls(unused_port: int, certificates: Any) -> Iterator[tuple[Mailbox, int]]:
    """STARTTLS required, login required (only after STARTTLS), with a certificate made for 127.0.0.1."""
    mailbox = Mailbox()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(certificates.valid.cert, certificates.valid.key)
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=unused_port,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=mailbox.authenticate,
    )
    controller.start()
    yield mailbox, unused_port
    controller.stop()


def email(port: int, *, secret: str = PASSWORD, **extra: Any) -> EmailNotifier:
    values = {"type": "email", "host": "127.0.0.1", "port": port, "from": "tether@example.com"}
    values |= {"to": ["oncall@example.com", "team@example.com"], "starttls": False, **extra}
    return EmailNotifier.model_validate(values, context={"env": {"SMTP_PASSWORD": secret}})


def test_the_email_notifier_sends_a_plain_text_mail(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    notifier_for(email(port)).send(FIRING)
    [(envelope, mail)] = mailbox.messages
    assert envelope.mail_from == "tether@example.com"
    assert envelope.rcpt_tos == ["oncall@example.com", "team@example.com"]
    assert mail["Subject"] == "[tether] FIRING stripe: error rate 12.5% over 5m (40 of 320 calls), above 5%"
    assert mail["To"] == "oncall@example.com, team@example.com"
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert b"threshold:   0.05" in body
    assert b"started:     2027-01-15 08:00:00 UTC" in body


def test_a_long_subject_is_cut(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    long = Notification("resolved", 1, "stripe", "latency_p95", "x" * 300, 1.0, 3.0, 0.0, 60.0)
    EmailNotify(email(port)).send(long)
    [(_, mail)] = mailbox.messages
    subject = str(mail["Subject"])
    assert subject.startswith("[tether] RESOLVED stripe: xxx")
    assert subject.endswith("…")
    assert len(subject) == 140


def test_the_email_notifier_uses_starttls_and_logs_in(smtp_tls: tuple[Mailbox, int], trust: ssl.SSLContext) -> None:
    mailbox, port = smtp_tls
    config = email(port, starttls=True, username="alerts", password="${SMTP_PASSWORD}")
    EmailNotify(config, ssl_context=trust).send(RESOLVED)
    assert mailbox.logins == ["alerts"]
    [(_, mail)] = mailbox.messages
    assert str(mail["Subject"]).startswith("[tether] RESOLVED stripe: error rate 0.3%")


def test_a_refused_login_fails_without_showing_the_password(
    smtp_tls: tuple[Mailbox, int], trust: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    _, port = smtp_tls
    config = email(port, starttls=True, username="alerts", password="${SMTP_PASSWORD}", secret="wrong-" + PASSWORD)
    notify = EmailNotify(config, ssl_context=trust)
    with pytest.raises(NotifyError) as caught:
        notify.send(FIRING)
    assert "SMTPAuthenticationError" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None
    with caplog.at_level(logging.DEBUG):
        assert deliver([notify], FIRING, sleep=lambda _: None) == 0
    assert "SMTPAuthenticationError" in shown(caplog)
    assert PASSWORD not in shown(caplog)


def test_starttls_to_a_server_whose_certificate_is_not_trusted_fails(smtp_tls: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp_tls
    config = email(port, starttls=True, username="alerts", password="${SMTP_PASSWORD}")
    with pytest.raises(NotifyError, match="SSLCertVerificationError"):
        EmailNotify(config).send(FIRING)  # the system CAs do not know the test's CA
    assert (mailbox.messages, mailbox.logins) == ([], [])


def test_an_unreachable_smtp_server_is_a_notify_error(unused_port: int) -> None:
    with pytest.raises(NotifyError, match=r"email notifier via 127\.0\.0\.1:\d+: ConnectionRefusedError"):
        EmailNotify(email(unused_port)).send(FIRING)


# --- choosing and retrying ------------------------------------------------------------------------------------


def test_notifier_for_builds_each_kind_from_the_alerts_table() -> None:
    config = AlertsConfig.model_validate(
        {
            "notify": [
                {"type": "log"},
                {"type": "webhook", "url": "https://hooks.example.com/x"},
                {"type": "slack", "url": "${SLACK_URL}"},
                {"type": "email", "host": "smtp.example.com", "from": "a@example.com", "to": ["b@example.com"]},
            ]
        },
        context={"env": {"SLACK_URL": f"https://hooks.slack.com/services/{TOKEN}"}},
    )
    built = [notifier_for(each) for each in config.notify]
    assert [type(each) for each in built] == [LogNotify, WebhookNotify, SlackNotify, EmailNotify]
    assert [each.name for each in built] == [
        "log notifier",
        "webhook notifier to hooks.example.com",
        "slack notifier to hooks.slack.com",
        "email notifier via smtp.example.com:587",
    ]


def test_deliver_retries_with_a_short_backoff_and_counts_deliveries(receiver: _Receiver) -> None:
    waits: list[float] = []
    receiver.status = 500
    assert deliver([webhook(receiver.url)], FIRING, sleep=waits.append) == 0
    assert (waits, len(receiver.received)) == ([1.0, 3.0], 3)
    receiver.status = 204
    assert deliver([webhook(receiver.url), LogNotify()], FIRING, sleep=waits.append) == 2
    assert waits == [1.0, 3.0]

"""Notifiers: how a firing or resolved incident reaches a person.

Each ``[[alerts.notify]]`` table becomes a :class:`Notify` through :func:`notifier_for`: the ``tether.alerts``
log, a JSON webhook, a Slack incoming webhook or an email. A notifier sends one :class:`Notification` or raises
:class:`NotifyError`; :func:`deliver` retries a failing notifier a couple of times and logs what still fails,
so one broken channel never stops the others or the alert loop.

Notifier URLs and SMTP passwords are credentials (a Slack URL *is* its token), so no error message or log line
says more than the notifier's kind and host: the failing library's own message goes through the redaction of
secrets and has the URL cut out before it is shown, and it is never chained.
"""

from __future__ import annotations

import email.policy
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx2

from tether.config.monitoring import EmailNotifier, LogNotifier, Notifier, SlackNotifier, WebhookNotifier
from tether.config.secrets import Secret
from tether.errors import TetherError
from tether.observe.redact import MASK, redact_text

__all__ = [
    "RULE_LABELS",
    "EmailNotify",
    "LogNotify",
    "Notification",
    "Notify",
    "NotifyError",
    "SlackNotify",
    "WebhookNotify",
    "deliver",
    "iso_utc",
    "notifier_for",
    "payload",
]

alerts_logger = logging.getLogger("tether.alerts")

RULE_LABELS = {
    "error_rate": "error rate",
    "latency_p95": "p95 latency",
    "rate_limit_usage": "rate limit usage",
    "auth_failures": "auth failures",
    "circuit_open": "circuit open",
    "deprecation": "API deprecated",
    "tls_expiry": "TLS certificate expiry",
    "token_budget": "AI token budget",
}
"""How each rule is named in titles and subjects."""

_SUBJECT_LIMIT = 140  # mail clients cut long subjects anyway; the body has the whole message
# Python folds a header that starts with "[tether]" right after "Subject:", which leaves the subject with a
# leading space once unfolded; no folding up to the RFC 5322 hard limit keeps it as written.
_EMAIL_POLICY = email.policy.SMTP.clone(max_line_length=998)
_RETRY_DELAYS = (1.0, 3.0)  # short: the next evaluation comes within ``interval`` anyway


@dataclass(frozen=True)
class Notification:
    """One transition of an incident, as it is sent.

    Attributes:
        state: ``"firing"`` when the incident opened, ``"resolved"`` when it closed.
        incident: The incident's id in the store (the same in both notifications of one incident).
        integration: The integration's name in ``tether.toml``.
        rule: The rule, e.g. ``"error_rate"``.
        message: What was measured, in plain words (when resolved: the measurement that resolved it).
        value: The measured value, when there is one.
        threshold: The rule's threshold.
        started_at: When the incident opened (Unix time).
        resolved_at: When it resolved (Unix time), ``None`` while firing.
    """

    state: Literal["firing", "resolved"]
    incident: int
    integration: str
    rule: str
    message: str
    value: float | str | None
    threshold: float | str | None
    started_at: float
    resolved_at: float | None = None

    @property
    def title(self) -> str:
        """A short headline: ``FIRING stripe: error rate``."""
        return f"{self.state.upper()} {self.integration}: {RULE_LABELS.get(self.rule, self.rule)}"


class NotifyError(TetherError):
    """A notifier could not deliver a notification; the message names the notifier, never its URL."""


class Notify(Protocol):
    """Something that delivers notifications."""

    @property
    def name(self) -> str:
        """Who this notifier tells, fit for logs (``webhook to hooks.example.com``): never a credential."""
        ...

    def send(self, notification: Notification) -> None:
        """Deliver ``notification``.

        Raises:
            NotifyError: it was not delivered.
        """
        ...


def notifier_for(config: Notifier, *, ssl_context: ssl.SSLContext | None = None) -> Notify:
    """The notifier an ``[[alerts.notify]]`` table describes.

    Args:
        config: The table.
        ssl_context: What an email notifier trusts for STARTTLS (default: the system's CAs).
    """
    if isinstance(config, LogNotifier):
        return LogNotify()
    if isinstance(config, WebhookNotifier):
        return WebhookNotify(config)
    if isinstance(config, SlackNotifier):
        return SlackNotify(config)
    return EmailNotify(config, ssl_context=ssl_context)


def deliver(
    notifiers: Sequence[Notify],
    notification: Notification,
    *,
    sleep: Callable[[float], None] = time.sleep,
    delays: Sequence[float] = _RETRY_DELAYS,
) -> int:
    """Send ``notification`` through every notifier, retrying each after ``delays``; how many delivered it.

    Never raises: a notifier that still fails is logged at ERROR on ``tether.alerts``.
    """
    delivered = 0
    for notifier in notifiers:
        for attempt in range(len(delays) + 1):
            try:
                notifier.send(notification)
            except Exception as exc:  # any failure of a channel is that channel's problem, not the loop's
                reason = str(exc) if isinstance(exc, NotifyError) else f"{type(exc).__name__}: {redact_text(str(exc))}"
                if attempt < len(delays):
                    alerts_logger.warning("%s failed (%s); retrying in %.0fs", notifier.name, reason, delays[attempt])
                    sleep(delays[attempt])
                    continue
                alerts_logger.error(
                    "%s failed %d times; %s of %s not delivered: %s",
                    notifier.name,
                    attempt + 1,
                    notification.state,
                    notification.title,
                    reason,
                )
            else:
                delivered += 1
            break
    return delivered


def payload(notification: Notification) -> dict[str, Any]:
    """The webhook notifier's JSON document (schema version 1, see ``docs/alerts.md``)."""
    return {
        "version": 1,
        "source": "tether",
        "state": notification.state,
        "incident": notification.incident,
        "integration": notification.integration,
        "rule": notification.rule,
        "title": notification.title,
        "message": notification.message,
        "value": notification.value,
        "threshold": notification.threshold,
        "started_at": iso_utc(notification.started_at),
        "resolved_at": iso_utc(notification.resolved_at),
    }


# -- log -------------------------------------------------------------------------------------------------------


class LogNotify:
    """Log to ``tether.alerts``: WARNING when firing, INFO when resolved (fields in ``record.tether``)."""

    name = "log notifier"

    def send(self, notification: Notification) -> None:
        level = logging.WARNING if notification.state == "firing" else logging.INFO
        fields = {"event": "alert", **payload(notification)}
        alerts_logger.log(level, "%s: %s", notification.title, notification.message, extra={"tether": fields})


# -- webhook and Slack -----------------------------------------------------------------------------------------


class _Post:
    """POST a JSON document; the URL may be a secret and stays out of every message."""

    kind = "webhook"

    def __init__(self, url: str | Secret, headers: Mapping[str, str | Secret], timeout: float) -> None:
        self._url = url.value if isinstance(url, Secret) else url
        self._headers = {name: value.value if isinstance(value, Secret) else value for name, value in headers.items()}
        self._timeout = timeout
        self.name = f"{self.kind} notifier to {urlsplit(self._url).hostname or '?'}"

    def document(self, notification: Notification) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, notification: Notification) -> None:
        body = json.dumps(self.document(notification), ensure_ascii=False).encode()
        headers = {**self._headers, "content-type": "application/json", "user-agent": "tether-alerts"}
        # The transport, not a Client: a Client logs every request line with its whole URL, token included.
        extensions = {"timeout": httpx2.Timeout(self._timeout).as_dict()}
        try:
            request = httpx2.Request("POST", self._url, content=body, headers=headers, extensions=extensions)
            with httpx2.HTTPTransport() as transport:
                response = transport.handle_request(request)
                response.read()
                response.close()
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            raise NotifyError(f"{self.name}: {type(exc).__name__}: {_scrub(str(exc), self._url)}") from None
        if not 200 <= response.status_code < 300:
            raise NotifyError(f"{self.name}: answered {response.status_code} {response.reason_phrase}")


class WebhookNotify(_Post):
    """POST the :func:`payload` JSON to the configured URL, with the configured headers."""

    def __init__(self, config: WebhookNotifier) -> None:
        super().__init__(config.url, config.headers, config.timeout)

    def document(self, notification: Notification) -> dict[str, Any]:
        return payload(notification)


class SlackNotify(_Post):
    """POST to a Slack incoming webhook: a ``text`` fallback and Block Kit ``blocks``."""

    kind = "slack"

    def __init__(self, config: SlackNotifier) -> None:
        super().__init__(config.url, {}, config.timeout)

    def document(self, notification: Notification) -> dict[str, Any]:
        icon = ":red_circle:" if notification.state == "firing" else ":large_green_circle:"
        facts = [f"rule `{notification.rule}`", f"started {_human(notification.started_at)}"]
        if notification.threshold is not None:
            facts.append(f"threshold {_slack(str(notification.threshold))}")
        if notification.resolved_at is not None:
            facts.append(f"resolved {_human(notification.resolved_at)}")
        return {
            "text": f"{notification.title}: {notification.message}",
            "blocks": [
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f"{icon} *{_slack(notification.title)}*\n{_slack(notification.message)}",
                    },
                },
                {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
            ],
        }


# -- email -----------------------------------------------------------------------------------------------------


class EmailNotify:
    """Send a plain-text email over SMTP: STARTTLS when configured, then login when a username is set."""

    def __init__(self, config: EmailNotifier, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._config = config
        self._context = ssl_context
        self.name = f"email notifier via {config.host}:{config.port}"

    def message(self, notification: Notification) -> EmailMessage:
        """The email for ``notification``."""
        subject = f"[tether] {notification.state.upper()} {notification.integration}: {notification.message}"
        if len(subject) > _SUBJECT_LIMIT:
            subject = subject[: _SUBJECT_LIMIT - 1] + "…"
        lines = [
            notification.title,
            "",
            notification.message,
            "",
            f"integration: {notification.integration}",
            f"rule:        {notification.rule}",
            f"value:       {notification.value}",
            f"threshold:   {notification.threshold}",
            f"started:     {_human(notification.started_at)}",
        ]
        if notification.resolved_at is not None:
            lines.append(f"resolved:    {_human(notification.resolved_at)}")
        lines.append(f"incident:    {notification.incident}")
        mail = EmailMessage(policy=_EMAIL_POLICY)
        mail["Subject"] = subject
        mail["From"] = self._config.sender
        mail["To"] = ", ".join(self._config.to)
        mail.set_content("\n".join(lines) + "\n")
        return mail

    def send(self, notification: Notification) -> None:
        config = self._config
        password = config.password.value if config.password is not None else None
        try:
            with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as smtp:
                if config.starttls:
                    smtp.starttls(context=self._context or ssl.create_default_context())
                if config.username is not None and password is not None:
                    smtp.login(config.username, password)
                smtp.send_message(self.message(notification))
        except (OSError, smtplib.SMTPException) as exc:  # ssl.SSLError is an OSError
            reason = f"{type(exc).__name__}: {_scrub(str(exc), password)}"
            raise NotifyError(f"{self.name}: {reason}") from None


# -- helpers ---------------------------------------------------------------------------------------------------


def _scrub(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` (nor its path or query, which hold a webhook's token) and other secrets."""
    if secret:
        parts = urlsplit(secret)
        for piece in (secret, parts.path if len(parts.path) > 1 else "", parts.query):
            if piece:
                text = text.replace(piece, MASK)
    return redact_text(text)


def iso_utc(timestamp: float | None) -> str | None:
    """``timestamp`` (Unix seconds) as ISO-8601 UTC to the second, ``2026-01-02T03:04:05Z``."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _human(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _slack(text: str) -> str:
    # Slack's mrkdwn reads these three as markup (links, mentions); everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""The ``[monitoring]`` and ``[alerts]`` tables: call records, and the rules ``tether serve`` evaluates.

Defaults come from the integration guide: alert when the error rate passes 5% or response time passes 3 s.
An integration overrides any threshold in its own ``[integrations.NAME.alerts]`` table.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tether.config._types import Duration, _Model
from tether.config.secrets import SecretField, TextOrSecretField

__all__ = [
    "AlertRules",
    "AlertsConfig",
    "EmailNotifier",
    "IntegrationAlerts",
    "LogNotifier",
    "MonitoringConfig",
    "Notifier",
    "SlackNotifier",
    "WebhookNotifier",
]


class MonitoringConfig(_Model):
    """Call records: one per call, written to ``store`` off the hot path.

    Each process appends records in memory and a background thread writes them in batches every
    ``flush_interval``; at most ``buffer`` records wait (beyond that the oldest are dropped and counted, so a
    store outage never slows or breaks a call). ``tether serve`` reads them for the dashboard, ``/metrics``
    and the alerts, so it sees the calls of every process that shares the store. Records older than
    ``retention`` are deleted; the per-minute summaries the charts use are kept for ``summary_retention``.
    ``otel = "auto"`` sends metrics and traces to OpenTelemetry when its SDK is installed (the ``otel``
    extra); ``true`` makes a missing SDK an error, ``false`` never loads it.
    """

    record: bool = True
    flush_interval: Duration = Field(1.0, gt=0)
    buffer: int = Field(100_000, ge=100)
    retention: Duration = Field(7 * 86400.0, gt=0)
    summary_retention: Duration = Field(30 * 86400.0, gt=0)
    otel: bool | Literal["auto"] = "auto"


class AlertRules(_Model):
    """Thresholds of the alert rules; ``None`` turns a rule off.

    Attributes:
        error_rate: Fraction of failed calls over ``window`` (at least ``min_calls`` calls).
        latency_p95: The 95th percentile of call latency over ``window``.
        rate_limit_usage: Fraction of the rate limit in use (client-side limit or the API's headers).
        auth_failures: 401/403 answers over ``window`` that make a burst.
        circuit_open: Alert while the circuit breaker is open.
        deprecation: Alert when the API sends ``Deprecation`` or ``Sunset`` headers (with the date).
        tls_expiry: Alert when the API's TLS certificate expires within this long.
        token_budget: AI tokens per day (``usage`` in responses) beyond which to alert.
    """

    error_rate: float | None = Field(0.05, gt=0, le=1)
    min_calls: int = Field(20, ge=1)
    window: Duration = Field(300.0, gt=0)
    latency_p95: Duration | None = 3.0
    rate_limit_usage: float | None = Field(0.8, gt=0, le=1)
    auth_failures: int | None = Field(5, ge=1)
    circuit_open: bool = True
    deprecation: bool = True
    tls_expiry: Duration | None = 14 * 86400.0
    token_budget: int | None = Field(None, ge=1)


Rule = Literal[
    "error_rate",
    "latency_p95",
    "rate_limit_usage",
    "auth_failures",
    "circuit_open",
    "deprecation",
    "tls_expiry",
    "token_budget",
]


def _without(values: dict[str, object], rules: list[Rule]) -> dict[str, object]:
    for rule in rules:
        values[rule] = False if rule in ("circuit_open", "deprecation") else None
    return values


class LogNotifier(_Model):
    """Write each notification to the ``tether.alerts`` logger (WARNING when firing, INFO when resolved)."""

    type: Literal["log"]


class WebhookNotifier(_Model):
    """POST each notification as JSON to ``url`` (a ``${ENV}`` reference when the URL holds a token)."""

    type: Literal["webhook"]
    url: TextOrSecretField
    headers: dict[str, TextOrSecretField] = Field(default_factory=dict)
    timeout: Duration = 10.0


class SlackNotifier(_Model):
    """POST each notification to a Slack-compatible incoming webhook (its URL is a secret: ``${ENV}``)."""

    type: Literal["slack"]
    url: SecretField
    timeout: Duration = 10.0


class EmailNotifier(_Model):
    """Send each notification by email over SMTP (STARTTLS when ``starttls``; login when ``username`` is set)."""

    type: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: SecretField | None = None
    starttls: bool = True
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _login(self) -> EmailNotifier:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both 'username' and 'password' (password = \"${SMTP_PASSWORD}\"), or neither")
        return self


Notifier = Annotated[LogNotifier | WebhookNotifier | SlackNotifier | EmailNotifier, Field(discriminator="type")]


def _log_notifier() -> Notifier:
    return LogNotifier(type="log")


class AlertsConfig(AlertRules):
    """The ``[alerts]`` table: default thresholds, how often they are evaluated, and who is told.

    One notification goes out when an incident fires and one when it resolves; an incident resolves after its
    condition has been false for ``resolve_after`` (so a flapping metric does not flood anyone). Without
    ``notify``, incidents are logged. ``disable`` turns rules off for every integration.
    """

    disable: list[Rule] = Field(default_factory=list)
    interval: Duration = Field(15.0, gt=0)
    resolve_after: Duration = Field(120.0, ge=0)
    notify: list[Notifier] = Field(default_factory=lambda: [_log_notifier()])


class IntegrationAlerts(_Model):
    """``[integrations.NAME.alerts]``: any threshold of :class:`AlertRules`, for this integration only.

    ``disable`` lists rules to turn off here (``disable = ["latency_p95"]``); ``enabled = false`` silences
    the integration altogether.
    """

    enabled: bool = True
    disable: list[Rule] = Field(default_factory=list)
    error_rate: float | None = Field(None, gt=0, le=1)
    min_calls: int | None = Field(None, ge=1)
    window: Duration | None = Field(None, gt=0)
    latency_p95: Duration | None = None
    rate_limit_usage: float | None = Field(None, gt=0, le=1)
    auth_failures: int | None = Field(None, ge=1)
    circuit_open: bool | None = None
    deprecation: bool | None = None
    tls_expiry: Duration | None = None
    token_budget: int | None = Field(None, ge=1)

    def over(self, defaults: AlertRules) -> AlertRules:
        """``defaults`` with what this table sets, less the rules it disables."""
        values = defaults.model_dump(include=set(AlertRules.model_fields))
        _without(values, getattr(defaults, "disable", []))
        values.update(self.model_dump(exclude_none=True, exclude={"enabled", "disable"}))
        return AlertRules(**_without(values, self.disable))

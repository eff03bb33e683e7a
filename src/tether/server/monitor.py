"""The monitor of ``tether serve``: evaluates the alert rules every ``[alerts] interval`` and checks TLS.

Each round runs in a worker thread (the store and the notifiers block): measure every rule
(:func:`tether.observe.rules.conditions`), let the :class:`~tether.observe.incidents.Alerter` open and resolve
incidents and send their notifications, and refresh what the dashboard and ``/metrics`` show (open
incidents, certificate expiry dates, webhook inbox counts). The HTTPS certificate of every integration is
checked at start and every ``tls_every`` seconds. A round that fails is logged and the next one runs as
usual: a monitor that stops on the first store hiccup would be worse than none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from tether.hub import Hub
from tether.observe.incidents import Alerter, Incident
from tether.observe.log import logger
from tether.observe.rules import conditions
from tether.observe.tls import CertificateInfo, certificate_expiry

__all__ = ["Monitor"]


class Monitor:
    """Alert evaluation and TLS checks for ``hub``'s integrations.

    Args:
        hub: The integrations (its store holds the call records and the incidents).
        interval: Seconds between rounds (default: ``[alerts] interval``).
        tls_every: Seconds between certificate checks of each HTTPS integration.
        wall: The clock (Unix time).
    """

    def __init__(
        self,
        hub: Hub,
        *,
        interval: float | None = None,
        tls_every: float = 3600.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.interval = interval if interval is not None else hub.config.alerts.interval
        self.tls_every = tls_every
        self._wall = wall
        self.alerter = Alerter.from_config(hub.store, hub.config.alerts, wall=wall)
        self.certificates: dict[str, CertificateInfo | None] = {}
        self._tls_checked_at = -float("inf")
        self._active: list[Incident] = []
        self._inbox: dict[str, dict[str, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    async def start(self) -> None:
        """Start evaluating in the background (the first round runs at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tether-monitor")

    async def aclose(self) -> None:
        """Stop; a round in progress finishes in its thread."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def active(self) -> list[dict[str, Any]]:
        """The open incidents as of the last round, as the dashboard shows them."""
        return [asdict(incident) for incident in self._active]

    def evaluate(self) -> None:
        """One round, now (blocking)."""
        now = self._wall()
        if now - self._tls_checked_at >= self.tls_every:
            self._tls_checked_at = now
            self._check_certificates()
        self.alerter.evaluate(conditions(self.hub, now=now, tls=self.certificates))
        self._active = self.alerter.active()
        if self.hub.webhook_configs():
            self._inbox = self.hub.inbox.counts()
        self.rounds += 1

    def gauges(self) -> Iterator[Metric]:
        """Gauges for ``/metrics``: open incidents, certificate expiry, webhook inbox counts."""
        firing = GaugeMetricFamily("tether_alerts_firing", "1 per open incident.", labels=["integration", "rule"])
        for incident in self._active:
            firing.add_metric([incident.integration, incident.rule], 1.0)
        yield firing
        expiry = GaugeMetricFamily(
            "tether_tls_certificate_expiry_timestamp_seconds",
            "When the API's TLS certificate expires.",
            labels=["integration"],
        )
        for name, info in sorted(self.certificates.items()):
            if info is not None:
                expiry.add_metric([name], info.not_after.timestamp())
        yield expiry
        inbox = GaugeMetricFamily(
            "tether_webhook_events", "Webhook events in the inbox by status.", labels=["integration", "status"]
        )
        for name, counts in sorted(self._inbox.items()):
            for status, count in sorted(counts.items()):
                inbox.add_metric([name, status], float(count))
        yield inbox

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.evaluate)
            except Exception as exc:
                logger.warning(
                    "tether: alert evaluation failed (%s: %s); next round in %ss",
                    type(exc).__name__,
                    exc,
                    self.interval,
                )
            await asyncio.sleep(self.interval)

    def _check_certificates(self) -> None:
        for name, config in sorted(self.hub.integrations.items()):
            url = config.base_url
            if url.scheme != "https" or url.host is None:
                continue
            ca_bundle = str(self.hub.base_dir / config.ca_bundle) if config.ca_bundle else None
            try:
                self.certificates[name] = certificate_expiry(url.host, url.port or 443, ca_bundle=ca_bundle)
            except Exception as exc:  # unreachable now: keep the last answer, the call records show the outage
                logger.info("tether: cannot check %s's TLS certificate: %s", name, exc)

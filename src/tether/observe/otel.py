"""OpenTelemetry metrics and traces from call records (the ``tether[otel]`` extra).

Loaded only when ``[monitoring] otel`` asks for it (``"auto"``: when the SDK is installed and the application
set an SDK tracer or meter provider before making the hub). Each call becomes
one CLIENT span, started at the call's start and ended at its end, retries and waits included, with the
HTTP semantic-convention attributes and tether's own (integration, attempts, outcome); its parent is the
application's span that was current when the call ran. Metrics: ``http.client.request.duration`` (the
semantic-convention histogram, seconds) and ``tether.ai.tokens``. Providers are whatever the application
configured (``opentelemetry.trace.set_tracer_provider`` …): tether configures no exporter.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from tether._version import __version__
from tether.observe.recorder import Recorder
from tether.observe.records import CallRecord

__all__ = ["OTelHook", "available", "configured", "instrument"]


def available() -> bool:
    """Whether the OpenTelemetry SDK is installed."""
    try:
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:
        return False


def configured() -> bool:
    """Whether the application set an SDK tracer or meter provider (what ``otel = "auto"`` waits for: with the
    SDK installed but no provider set, spans would go nowhere and the hook would cost every call for nothing)."""
    if not available():
        return False
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(trace.get_tracer_provider(), TracerProvider) or isinstance(
        metrics.get_meter_provider(), MeterProvider
    )


class OTelHook:
    """Turns each call record into a span and metric points.

    Args:
        tracer_provider: Default: the global one.
        meter_provider: Default: the global one.
    """

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError as exc:
            raise ImportError(
                'OpenTelemetry is not installed: pip install "tether[otel]", or set [monitoring] otel = false'
            ) from exc
        self._trace = trace
        self.tracer = trace.get_tracer("tether", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("tether", __version__, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "http.client.request.duration", unit="s", description="Duration of calls through tether."
        )
        self.tokens = meter.create_counter("tether.ai.tokens", unit="{token}", description="AI tokens used.")

    def __call__(self, record: CallRecord) -> None:
        trace = self._trace
        attributes: dict[str, Any] = {
            "http.request.method": record.method,
            "url.template": record.endpoint,
            "tether.integration": record.integration,
        }
        if record.status is not None:
            attributes["http.response.status_code"] = record.status
        if record.failed:
            attributes["error.type"] = record.error or str(record.status)
        self.duration.record(record.latency, attributes)
        if record.tokens:
            self.tokens.add(record.tokens, {"tether.integration": record.integration})
        start = int(record.at * 1e9)
        span = self.tracer.start_span(
            f"{record.method} {record.endpoint}",
            kind=trace.SpanKind.CLIENT,
            start_time=start,
            attributes={
                **attributes,
                "tether.attempts": record.attempts,
                "tether.outcome": record.outcome,
                **({"network.peer.address": record.peer} if record.peer else {}),
                **({"tether.request_id": record.request_id} if record.request_id else {}),
            },
        )
        if record.failed:
            span.set_status(trace.Status(trace.StatusCode.ERROR, record.hint or record.error or ""))
        span.end(end_time=start + int(record.latency * 1e9))


def instrument(recorder: Recorder, *, tracer_provider: Any = None, meter_provider: Any = None) -> OTelHook:
    """Send ``recorder``'s calls to OpenTelemetry; the hook that does it.

    Raises:
        ImportError: OpenTelemetry is not installed (the ``tether[otel]`` extra).
    """
    hook = OTelHook(tracer_provider=tracer_provider, meter_provider=meter_provider)
    recorder.add_hook(hook)
    return hook

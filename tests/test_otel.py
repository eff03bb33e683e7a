"""OpenTelemetry from call records, through the real SDK: private providers with in-memory exporters, real
calls to a loopback API through the sync and the async client, each call one CLIENT span under the
application's span, and the duration histogram and token counter."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tether
from fakes import Timeline
from test_call_records import Api, Reply, serving_api
from tether.config.loader import parse_config
from tether.errors import CallError
from tether.observe.otel import OTelHook, available, instrument
from tether.observe.records import CallRecord


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with serving_api() as server:
        yield server


class Otel:
    """A hub instrumented with private providers; :meth:`get` calls through the sync or the async client."""

    def __init__(self, mode: str, api: Api, tmp_path: Path, unused_port: int) -> None:
        self.mode = mode
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.timeline = Timeline()
        text = f"""
store = "sqlite:///{tmp_path / "tether.db"}"
[monitoring]
otel = false
[integrations.acme]
base_url = "{api.url}/v1"
retry = {{ attempts = 3, backoff = "1s" }}
breaker = false
[integrations.down]
base_url = "http://127.0.0.1:{unused_port}/v1"
retry = false
"""
        self.hub = tether.Hub(
            parse_config(text, env={}),
            base_dir=tmp_path,
            clock=self.timeline.clock,
            sleep=self.timeline.sleep,
            async_sleep=self.timeline.async_sleep,
        )
        assert self.hub.recorder is not None
        self.hook = instrument(
            self.hub.recorder, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )
        self.records: list[CallRecord] = []
        self.hub.recorder.add_hook(self.records.append)
        self.tracer = self.tracer_provider.get_tracer("the-application")

    async def request(self, method: str, path: str, *, name: str = "acme", **kwargs: Any) -> Any:
        if self.mode == "sync":
            with self.hub.client(name) as client:
                return client.request(method, path, **kwargs)
        async with self.hub.async_client(name) as client:
            return await client.request(method, path, **kwargs)

    def client_spans(self) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.kind is trace.SpanKind.CLIENT]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def close(self) -> None:
        self.hub.close()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture(params=["sync", "async"])
def otel(request: pytest.FixtureRequest, api: Api, tmp_path: Path, unused_port: int) -> Iterator[Otel]:
    made = Otel(request.param, api, tmp_path, unused_port)
    yield made
    made.close()


def test_the_sdk_is_available() -> None:
    assert available()


async def test_a_call_inside_an_application_span_is_one_client_child_span(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("checkout") as parent:
        response = await otel.request("GET", "/customers/cus_9s6XKzkNRiz8i3")
    assert response.status_code == 200
    (span,) = otel.client_spans()
    parent_context = parent.get_span_context()
    assert span.parent is not None
    assert span.parent.span_id == parent_context.span_id
    assert span.context is not None
    assert span.context.trace_id == parent_context.trace_id
    assert span.name == "GET /customers/{id}"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "tether"
    attributes = dict(span.attributes or {})
    peer = attributes.pop("network.peer.address")
    assert isinstance(peer, str)
    assert peer.startswith("127.0.0.1")
    assert attributes == {
        "http.request.method": "GET",
        "url.template": "/customers/{id}",
        "tether.integration": "acme",
        "http.response.status_code": 200,
        "tether.attempts": 1,
        "tether.outcome": "success",
    }
    assert span.status.status_code is trace.StatusCode.UNSET
    assert [each.name for each in otel.exporter.get_finished_spans()] == ["GET /customers/{id}", "checkout"]


async def test_a_call_outside_any_span_is_a_root_client_span(otel: Otel) -> None:
    await otel.request("GET", "/customers")
    (span,) = otel.client_spans()
    assert span.parent is None


async def test_the_span_starts_and_ends_with_the_call_retries_and_waits_included(otel: Otel, api: Api) -> None:
    api.script("/v1/otel-flaky", Reply(503), Reply(503), Reply(200, headers={"X-Request-Id": "req_otel"}))
    response = await otel.request("GET", "/otel-flaky")
    assert response.status_code == 200
    (span,) = otel.client_spans()
    (record,) = otel.records
    assert record.latency == pytest.approx(sum(otel.timeline.waits))
    assert record.latency > 0
    assert span.start_time == int(record.at * 1e9)
    assert span.end_time is not None
    assert span.end_time - span.start_time == int(record.latency * 1e9)
    assert span.end_time / 1e9 == pytest.approx(otel.timeline.clock.wall(), abs=1e-6)  # the call ended now
    assert span.attributes is not None
    assert span.attributes["tether.attempts"] == 3
    assert span.attributes["tether.request_id"] == "req_otel"
    assert span.status.status_code is trace.StatusCode.UNSET


async def test_a_failed_call_is_an_error_span_with_the_error_type_and_the_hint(otel: Otel, api: Api) -> None:
    api.script("/v1/otel-denied", Reply(401, {"error": {"message": "Invalid API key provided"}}))
    with otel.tracer.start_as_current_span("checkout"):
        response = await otel.request("GET", "/otel-denied")
    assert response.status_code == 401
    (span,) = otel.client_spans()
    (record,) = otel.records
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == record.hint
    assert span.attributes is not None
    assert span.attributes["error.type"] == "AuthenticationError"
    assert span.attributes["http.response.status_code"] == 401
    assert span.attributes["tether.outcome"] == "not retryable"


async def test_a_call_without_a_response_has_no_status_code_and_names_the_error(otel: Otel) -> None:
    with pytest.raises(CallError):
        await otel.request("GET", "/customers", name="down")
    (span,) = otel.client_spans()
    attributes = dict(span.attributes or {})
    assert "http.response.status_code" not in attributes
    assert "network.peer.address" not in attributes
    assert attributes["error.type"] == "ConnectionFailedError"
    assert attributes["tether.integration"] == "down"
    assert span.status.status_code is trace.StatusCode.ERROR


async def test_the_duration_histogram_records_each_call_with_its_attributes(otel: Otel, api: Api) -> None:
    api.script("/v1/otel-slow", Reply(503), Reply(200))
    api.script("/v1/otel-missing", Reply(404, {"error": {"message": "No such customer"}}))
    await otel.request("GET", "/customers")
    await otel.request("GET", "/customers")
    await otel.request("GET", "/otel-slow")
    await otel.request("GET", "/otel-missing")
    points = {
        (point.attributes["url.template"], point.attributes.get("error.type")): point
        for point in otel.points("http.client.request.duration")
    }
    assert sorted(points) == [("/customers", None), ("/otel-missing", "NotFoundError"), ("/otel-slow", None)]
    assert points[("/customers", None)].count == 2
    assert points[("/customers", None)].sum == 0.0  # the manual clock did not move
    slow = points[("/otel-slow", None)]
    assert slow.count == 1
    assert slow.sum == pytest.approx(otel.timeline.waits[0])
    assert dict(points[("/otel-missing", "NotFoundError")].attributes) == {
        "http.request.method": "GET",
        "url.template": "/otel-missing",
        "tether.integration": "acme",
        "http.response.status_code": 404,
        "error.type": "NotFoundError",
    }


async def test_the_tokens_counter_adds_each_responses_usage(otel: Otel, api: Api) -> None:
    api.script("/v1/otel-chat", Reply(body={"usage": {"input_tokens": 30, "output_tokens": 7}}))
    await otel.request("POST", "/otel-chat", json={"messages": []})
    await otel.request("POST", "/otel-chat", json={"messages": []})
    await otel.request("GET", "/customers")  # no usage: nothing added
    (point,) = otel.points("tether.ai.tokens")
    assert point.value == 74
    assert dict(point.attributes) == {"tether.integration": "acme"}


def test_a_hook_turns_a_record_into_a_span_without_a_call() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    try:
        hook = OTelHook(tracer_provider=provider, meter_provider=meters)
        hook(
            CallRecord(1_700_000_000.5, "stripe", "POST", "/v1/charges", None, "circuit open", error="CircuitOpenError")
        )
        (span,) = exporter.get_finished_spans()
        assert span.start_time == span.end_time == 1_700_000_000_500_000_000
        assert span.status.status_code is trace.StatusCode.ERROR
        assert span.status.description == "CircuitOpenError"  # no hint: the error's class
        assert span.attributes is not None
        assert span.attributes["tether.attempts"] == 1
    finally:
        provider.shutdown()
        meters.shutdown()


def test_the_hub_sends_to_the_global_providers_when_otel_is_auto(api: Api, tmp_path: Path) -> None:
    """In a fresh interpreter (the global providers can be set once): ``otel = "auto"`` with the SDK installed
    instruments the hub, ``otel = false`` does not."""
    script = f"""
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import tether
from tether.config.loader import parse_config

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
names = {{}}
for otel in ('"auto"', "false"):
    text = (
        f'store = "sqlite:///{tmp_path / "tether.db"}"\\n[monitoring]\\nrecord = false\\notel = {{otel}}\\n'
        '[integrations.acme]\\nbase_url = "{api.url}/v1"\\n'
    )
    with tether.Hub(parse_config(text, env={{}})) as hub, hub.client("acme") as client:
        client.get("/customers")
    names[otel] = [span.name for span in exporter.get_finished_spans()]
    exporter.clear()
print(json.dumps(names))
"""
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {'"auto"': ["GET /customers"], "false": []}

"""Prometheus metrics from call records (prometheus-client).

Two ways in, one set of names:

- **In a library user's process** — opt-in: :func:`enable_metrics` registers tether's metrics on a registry
  (the default one unless told otherwise) and feeds them from the hub's recorder, in its background thread,
  so the hot path pays nothing. Expose them as usual (``prometheus_client.start_http_server`` or your web
  framework's exporter).
- **On ``tether serve``** — ``GET /metrics`` (:func:`metrics_endpoint`): the server follows the call log in
  the store (:class:`LogFollower`), so its metrics count the calls of every process that shares the store.
  Counters start at zero when the server starts, as Prometheus expects of a restarted target.

Names follow Prometheus conventions (base units, ``_total`` counters; the ``error`` label follows
:func:`tether.observe.records.failed`):

- ``tether_requests_total{integration,method,endpoint,code,error}``
- ``tether_request_duration_seconds{integration,method,endpoint}`` (histogram; 3 s is a bucket bound)
- ``tether_request_attempts_total{integration}``
- ``tether_ai_tokens_total{integration}``, ``tether_response_bytes_total{integration}``
- ``tether_rate_limit_usage_ratio{integration}``, ``tether_circuit_open{integration}``,
  ``tether_api_deprecated{integration}``, ``tether_api_sunset_timestamp_seconds{integration}``
- ``tether_call_records_dropped_total`` (records the recorder could not keep)
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tether.observe.cache_metrics import CacheCounters
from tether.observe.columns import BUCKET_OF, Calls, as_calls
from tether.observe.log import logger
from tether.observe.records import LATENCY_BUCKETS, CallRecord, Row, failed

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from tether.hub import Hub
    from tether.observe.calllog import CallLog

__all__ = ["CallMetrics", "LogFollower", "enable_metrics", "metrics_endpoint"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A breaker counts as open while it refused a call this recently.
_OPEN_WITHIN = 60.0
# What a record says for the gauges (with its usage).
_GAUGED = ("integration", "at", "outcome", "limit", "deprecation", "sunset")


class CallMetrics(Collector):
    """tether's metrics on ``registry``, updated from batches of call records (:meth:`observe`).

    Args:
        registry: Where to register (``None``: not registered).
        wall: The wall clock, for how recent a refusal by the breaker is.
        dropped: How many records the recorder dropped so far (``None``: not exported).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        wall: Callable[[], float] = time.time,
        dropped: Callable[[], int] | None = None,
    ) -> None:
        self._wall, self._dropped = wall, dropped
        kwargs: dict[str, Any] = {"registry": registry}
        self.requests = Counter(
            "tether_requests", "Calls through tether.", ["integration", "method", "endpoint", "code", "error"], **kwargs
        )
        # The latency histogram is tether's own (exported by collect()): prometheus-client's takes a lock and
        # searches the buckets for every observation, which cost more than the rest of a record's metrics.
        # Per label set: the count in each bucket (not cumulative; the last is above every bound), then the sum.
        self._durations: dict[tuple[str, str, str], list[float]] = {}
        self.attempts = Counter(
            "tether_request_attempts", "Attempts made (retries included).", ["integration"], **kwargs
        )
        self.tokens = Counter(
            "tether_ai_tokens", "AI tokens that responses' usage reported.", ["integration"], **kwargs
        )
        self.bytes = Counter("tether_response_bytes", "Response body bytes received.", ["integration"], **kwargs)
        self._usage: dict[str, float] = {}
        self._refused_at: dict[str, float] = {}
        self._seen: set[str] = set()
        self._deprecated: dict[str, float | None] = {}  # integration -> sunset timestamp (None: no date)
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, records: Calls | Sequence[Row]) -> None:
        """Count ``records`` (called with each batch).

        Grouped by label set first, so each metric child is looked up (and the lock taken) once per batch, not
        once per record: this runs in the recorder's thread, which shares the GIL with the application.
        """
        calls = as_calls(records)
        counts: collections.Counter[tuple[str, str, str, str, str]] = collections.Counter()
        latencies: dict[tuple[str, str, str], list[float]] = {}
        per_integration: dict[str, list[int]] = {}
        usage: dict[str, float] = {}
        refused: dict[str, float] = {}
        deprecated: dict[str, float | None] = {}
        # A column at a time per label set: a batch is mostly one integration's calls to a few endpoints, and
        # this runs for every call the application makes.
        for key, group in calls.by_labels().items():
            for status, count in collections.Counter(group.column("status")).items():
                code = "none" if status is None else str(status)
                counts[(*key, code, "true" if failed(status) else "false")] += count
            histogram = latencies.get(key)
            if histogram is None:
                latencies[key] = histogram = [0.0] * (len(LATENCY_BUCKETS) + 2)
            durations = group.column("latency")
            for index, count in collections.Counter(map(BUCKET_OF, durations)).items():
                histogram[index] += count  # "le": a value on a bound is in its bucket
            histogram[-1] += sum(durations)
            sums = per_integration.get(key[0])
            if sums is None:
                sums = per_integration[key[0]] = [0, 0, 0]
            sums[0] += sum(group.column("attempts"))
            sums[1] += sum(filter(None, group.column("tokens")))
            sums[2] += sum(group.column("bytes_received"))
        if _noteworthy(calls):
            gauged = zip(*(calls.column(name) for name in _GAUGED), calls.usages(), strict=True)
            for integration, at, outcome, limit, deprecation, sunset, ratio in gauged:
                if limit is not None and ratio is not None:
                    usage[integration] = ratio  # the latest in the batch, as the records come in order
                if outcome == "circuit open":
                    refused[integration] = max(at, refused.get(integration, 0.0))
                if deprecation or sunset:
                    deprecated[integration] = _sunset_timestamp(sunset)
        with self._lock:
            for key, histogram in latencies.items():
                total = self._durations.get(key)
                if total is None:
                    self._durations[key] = histogram
                else:
                    for index, value in enumerate(histogram):
                        total[index] += value
            self._seen.update(per_integration)
            self._usage.update(usage)
            for integration, at in refused.items():
                self._refused_at[integration] = max(at, self._refused_at.get(integration, 0))
            self._deprecated.update(deprecated)
        for labels, count in counts.items():
            self.requests.labels(*labels).inc(count)
        for integration, (attempts, tokens, received) in per_integration.items():
            self.attempts.labels(integration).inc(attempts)
            if tokens:
                self.tokens.labels(integration).inc(tokens)
            if received:
                self.bytes.labels(integration).inc(received)

    def collect(self) -> Iterator[Metric]:
        """The gauges, computed at scrape time."""
        now = self._wall()
        with self._lock:
            seen = sorted(self._seen)
            usage = dict(self._usage)
            refused = dict(self._refused_at)
            deprecated = dict(self._deprecated)
            durations = {key: list(histogram) for key, histogram in self._durations.items()}
        yield _histogram(durations)
        ratio = GaugeMetricFamily(
            "tether_rate_limit_usage_ratio",
            "Fraction of the API's rate limit in use (last report).",
            labels=["integration"],
        )
        for integration, value in sorted(usage.items()):
            ratio.add_metric([integration], value)
        yield ratio
        circuit = GaugeMetricFamily(
            "tether_circuit_open", "1 while the circuit breaker refuses calls.", labels=["integration"]
        )
        for integration in seen:
            circuit.add_metric([integration], 1.0 if now - refused.get(integration, -1e18) <= _OPEN_WITHIN else 0.0)
        yield circuit
        flagged = GaugeMetricFamily(
            "tether_api_deprecated", "1 once the API sent a Deprecation or Sunset header.", labels=["integration"]
        )
        sunset = GaugeMetricFamily(
            "tether_api_sunset_timestamp_seconds",
            "When the API said it goes away (Sunset header).",
            labels=["integration"],
        )
        for integration in seen:
            flagged.add_metric([integration], 1.0 if integration in deprecated else 0.0)
            when = deprecated.get(integration)
            if when is not None:
                sunset.add_metric([integration], when)
        yield flagged
        yield sunset
        if self._dropped is not None:
            yield CounterMetricFamily(
                "tether_call_records_dropped", "Call records dropped (buffer full).", value=self._dropped()
            )

    def describe(self) -> Iterable[Metric]:
        return []  # the gauges' label values are known only at scrape time


def _histogram(durations: dict[tuple[str, str, str], list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "tether_request_duration_seconds",
        "Call latency, retries and waits included.",
        labels=["integration", "method", "endpoint"],
    )
    bounds = [*(repr(bound) for bound in LATENCY_BUCKETS), "+Inf"]  # as prometheus-client writes "le"
    for key, histogram in sorted(durations.items()):
        cumulative = list(itertools.accumulate(histogram[:-1]))
        family.add_metric(list(key), list(zip(bounds, cumulative, strict=True)), histogram[-1])
    return family


def enable_metrics(hub: Hub, registry: CollectorRegistry | None = REGISTRY) -> CallMetrics:
    """Feed tether's Prometheus metrics from ``hub``'s calls in this process, and export its cache counters.

    Call once per hub; expose ``registry`` as usual (``prometheus_client.start_http_server(9100)``).

    Raises:
        ValueError: the hub does not record calls (``[monitoring] record = false``).
    """
    recorder = hub.recorder
    if recorder is None:
        raise ValueError("metrics come from call records: set [monitoring] record = true (the default)")
    metrics = CallMetrics(registry, wall=hub.clock.wall, dropped=lambda: recorder.dropped)
    recorder.add_listener(metrics.observe)
    if registry is not None:
        registry.register(CacheCounters(hub.config.integrations, hub.stats))
    return metrics


class LogFollower:
    """Reads call records written since it started, in order, each once (how ``tether serve`` counts).

    It follows the two places records live: the rows of ``tether_calls`` and the batches of plain successes
    (:mod:`tether.observe.packed`), each by its own ids. On PostgreSQL, ids are handed out before commit, so a
    row with a lower id can appear after a higher one was read. An id skipped over is looked for again on later
    reads for ``settle`` seconds (a rolled back insert leaves a gap for ever; that is why it stops).

    Args:
        log: The call log.
        settle: Seconds to keep looking for a skipped id.
        wall: The clock for ``settle``.
    """

    def __init__(self, log: CallLog, *, settle: float = 30.0, wall: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self._rows = _Ids(
            lambda last, limit: [(each.id or 0, [each.record]) for each in log.after(last, limit=limit)],
            lambda ids: [(each.id or 0, [each.record]) for each in log.by_ids(ids)],
            log.last_id,
            settle,
            wall,
        )
        self._batches = _Ids(
            lambda last, limit: log.batches_after(last, limit=max(1, limit // 100)),
            log.batches_by_ids,
            log.last_batch_id,
            settle,
            wall,
        )

    def read(self, *, limit: int = 10_000) -> list[CallRecord]:
        """The records written since the last read (none on the first: following starts now).

        ``limit`` bounds the rows read, and the batches (of up to thousands of calls each) a hundredth of it.
        """
        return self._rows.read(limit) + self._batches.read(limit)


# (id, the records it holds): a row holds one, a batch many.
_Found = list[tuple[int, list[CallRecord]]]


class _Ids:
    """One id sequence followed: what came after the last id read, and the ids skipped over for a while."""

    def __init__(
        self,
        after: Callable[[int, int], _Found],
        by_ids: Callable[[list[int]], _Found],
        last_id: Callable[[], int],
        settle: float,
        wall: Callable[[], float],
    ) -> None:
        self._after, self._by_ids, self._last_id = after, by_ids, last_id
        self.settle, self._wall = settle, wall
        self._last: int | None = None
        self._missing: dict[int, float] = {}

    def read(self, limit: int) -> list[CallRecord]:
        if self._last is None:
            self._last = self._last_id()
            return []
        now = self._wall()
        found: list[CallRecord] = []
        if self._missing:
            for id_, records in self._by_ids(sorted(self._missing)):
                found.extend(records)
                del self._missing[id_]
            self._missing = {id_: since for id_, since in self._missing.items() if now - since < self.settle}
        for id_, records in self._after(self._last, limit):
            for gap in range(self._last + 1, id_):
                self._missing[gap] = now
            found.extend(records)
            self._last = id_
        return found


def metrics_endpoint(
    hub: Hub, *, extra: Callable[[], Iterable[Metric]] | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /metrics`` endpoint of ``tether serve``: the call log's metrics, plus ``extra()`` gauges.

    The log is read at scrape time (in a thread), from where it stood when the endpoint was made, so the
    counters cover every call written to the store since the server started.
    """
    from starlette.responses import Response

    registry = CollectorRegistry()
    metrics = CallMetrics(registry, wall=hub.clock.wall)
    follower = LogFollower(hub.call_log)
    if extra is not None:
        registry.register(_Extra(extra))
    lock = asyncio.Lock()
    try:
        follower.read()  # start following here, so the first scrape counts what happened since startup
    except Exception as exc:  # the store is down: following starts at the first scrape that reaches it
        logger.warning("tether: /metrics cannot read the call log yet (%s: %s)", type(exc).__name__, exc)

    def scrape() -> bytes:
        while True:
            records = follower.read()
            if not records:
                break
            metrics.observe(records)
        return generate_latest(registry)

    async def endpoint(request: Request) -> Response:
        async with lock:  # one scrape at a time reads the log
            body = await asyncio.to_thread(scrape)
        return Response(body, media_type=CONTENT_TYPE)

    return endpoint


class _Extra(Collector):
    def __init__(self, source: Callable[[], Iterable[Metric]]) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source()


def _sunset_timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _noteworthy(calls: Calls) -> bool:
    """Whether any of ``calls`` says something for the gauges: a rate-limit budget, a circuit that refused
    the call, a deprecation. Asked of the batch, a column at a time: most batches say nothing of the kind."""
    return (
        any(calls.column("limit"))
        or "circuit open" in calls.column("outcome")
        or any(calls.column("deprecation"))
        or any(calls.column("sunset"))
    )

"""Per-minute summaries of call records: counts, failures and a latency histogram that add up.

A :class:`Minute` is one integration's calls in one minute, as :mod:`tether.observe.calllog` stores them, or
the sum of several (:meth:`Minute.merge`); percentiles are read from its histogram as Prometheus reads its
own, interpolated inside a bucket.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field

from tether.observe.columns import BUCKET_OF, Calls, as_calls
from tether.observe.records import LATENCY_BUCKETS, CallRecord, Row, failed

__all__ = ["BUCKETS", "Minute"]

BUCKETS = len(LATENCY_BUCKETS) + 1  # the last one is +Inf


@dataclass
class Minute:
    """One integration's calls in one minute (also the sum of several minutes).

    Attributes:
        minute: The minute's start, in Unix minutes (``at // 60``).
        buckets: Calls per latency bucket (bounds :data:`~tether.observe.records.LATENCY_BUCKETS`, then +Inf).
        max_usage: The highest fraction of the API's reported rate limit in use.
    """

    minute: int = 0
    calls: int = 0
    failures: int = 0
    auth_failures: int = 0
    rejected: int = 0
    attempts: int = 0
    latency_sum: float = 0.0
    tokens: int = 0
    bytes_received: int = 0
    max_usage: float | None = None
    version: str | None = None
    deprecation: str | None = None
    sunset: str | None = None
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, record: CallRecord) -> None:
        """Count ``record`` in this minute."""
        self.calls += 1
        self.failures += record.failed
        self.auth_failures += record.status in (401, 403)
        self.rejected += record.outcome == "circuit open"
        self.attempts += record.attempts
        self.latency_sum += record.latency
        self.tokens += record.tokens or 0
        self.bytes_received += record.bytes_received
        self.buckets[BUCKET_OF(record.latency)] += 1
        usage = record.usage
        if usage is not None and (self.max_usage is None or usage > self.max_usage):
            self.max_usage = usage
        self.version = record.version or self.version
        self.deprecation = record.deprecation or self.deprecation
        self.sunset = record.sunset or self.sunset

    def add_all(self, records: Calls | Sequence[Row]) -> None:
        """Count ``records``, all of this minute, as :meth:`add` on each would (the latency sum up to float
        rounding), a column at a time: the recorder folds every call it writes, in one call per flush and minute."""
        calls = as_calls(records)
        if not calls:
            return
        statuses, latencies = calls.column("status"), calls.column("latency")
        self.calls += len(calls)
        if None in statuses or max(statuses) >= 400:  # else none failed: the usual batch, told in C
            self.failures += sum(1 for status in statuses if failed(status))
        self.auth_failures += statuses.count(401) + statuses.count(403)
        self.rejected += calls.column("outcome").count("circuit open")
        self.attempts += sum(calls.column("attempts"))
        self.latency_sum += sum(latencies)
        self.tokens += sum(filter(None, calls.column("tokens")))
        self.bytes_received += sum(calls.column("bytes_received"))
        buckets = self.buckets
        for index, count in collections.Counter(map(BUCKET_OF, latencies)).items():
            buckets[index] += count
        if any(calls.column("limit")):
            highest = max((usage for usage in calls.usages() if usage is not None), default=None)
            if highest is not None and (self.max_usage is None or highest > self.max_usage):
                self.max_usage = highest
        for name in ("version", "deprecation", "sunset"):
            column = calls.column(name)
            if any(column):  # the latest said wins
                setattr(self, name, [value for value in column if value][-1])

    def merge(self, other: Minute) -> None:
        """Add ``other``'s counts to this one (the later minute's headers win)."""
        for name in ("calls", "failures", "auth_failures", "rejected", "attempts", "tokens", "bytes_received"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency_sum += other.latency_sum
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        if other.max_usage is not None and (self.max_usage is None or other.max_usage > self.max_usage):
            self.max_usage = other.max_usage
        if other.minute >= self.minute:
            self.version = other.version or self.version
            self.deprecation = other.deprecation or self.deprecation
            self.sunset = other.sunset or self.sunset
        self.minute = max(self.minute, other.minute)

    @property
    def error_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of latency, interpolated inside its bucket (as Prometheus does); ``None``
        without calls. Past the last finite bound the answer is that bound."""
        if not self.calls:
            return None
        rank, seen = q * self.calls, 0
        for index, count in enumerate(self.buckets):
            if count and seen + count >= rank:
                if index == len(LATENCY_BUCKETS):
                    return LATENCY_BUCKETS[-1]
                low = LATENCY_BUCKETS[index - 1] if index else 0.0
                return low + (LATENCY_BUCKETS[index] - low) * (rank - seen) / count
            seen += count
        return LATENCY_BUCKETS[-1]

    def slower_than(self, seconds: float) -> float:
        """The fraction of calls slower than ``seconds`` (exact on a bucket bound, interpolated between)."""
        if not self.calls:
            return 0.0
        slower, low = 0.0, 0.0
        for index, count in enumerate(self.buckets):
            high = LATENCY_BUCKETS[index] if index < len(LATENCY_BUCKETS) else float("inf")
            if low >= seconds:
                slower += count
            elif high > seconds and count:
                slower += count * (1.0 if high == float("inf") else (high - seconds) / (high - low))
            low = high
        return slower / self.calls

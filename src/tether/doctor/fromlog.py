"""``tether doctor --from-log``: what the call records say about intermittent failures, in plain words.

:func:`analyse` is pure over a list of :class:`~tether.observe.records.CallRecord` and a time window: it groups
the calls by upstream address (one bad backend behind a load balancer), by endpoint, by time of day and by
status, finds the episodes when the rate limit ran close and the slow tail, and says what stands out. A group
"stands out" when its failure rate is at least 10 points above the rest's and a two-proportion z-test puts the
difference beyond chance (z ≥ 3), so evenly spread failures are never pinned on one address.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Literal

from tether.observe.records import CallRecord, failed

__all__ = ["Finding", "LogReport", "analyse", "outliers", "peer_address"]

Level = Literal["problem", "warning", "info"]

_MIN_FAILURES = 3
_MIN_GAP = 0.10
_MIN_Z = 3.0
_EPISODE_GAP = 300.0
_MIN_FOR_TAIL = 20


@dataclass(frozen=True)
class Finding:
    """One thing the records show.

    Attributes:
        kind: ``overview``, ``peers``, ``endpoints``, ``time``, ``statuses``, ``rate_limit`` or ``latency``.
        level: ``problem`` (exit 1), ``warning`` or ``info``.
        message: What was found, in plain words.
        fix: What to do, when there is something to do.
        data: The numbers behind the message, for ``--json``.
    """

    kind: str
    level: Level
    message: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogReport:
    """The analysis of one integration's records over ``since``–``until``."""

    integration: str
    since: float
    until: float
    calls: int
    failures: int
    findings: tuple[Finding, ...]
    since_text: str

    @property
    def ok(self) -> bool:
        """Whether nothing found is a problem."""
        return all(finding.level != "problem" for finding in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "integration": self.integration,
            "since": self.since,
            "until": self.until,
            "calls": self.calls,
            "failures": self.failures,
            "ok": self.ok,
            "findings": [
                {"kind": f.kind, "level": f.level, "message": f.message, "fix": f.fix, "data": f.data}
                for f in self.findings
            ],
        }


def peer_address(peer: str | None) -> str | None:
    """The IP address of a recorded peer, without the port some transports add (``1.2.3.4:443``, ``[::1]:443``)."""
    if not peer:
        return None
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    host, sep, port = peer.rpartition(":")
    return host if sep and host.count(":") == 0 and port.isdigit() else peer


def outliers(groups: dict[str, tuple[int, int]]) -> list[str]:
    """The groups (name → (failures, total)) whose failure rate stands clearly above the rest's."""
    all_failures = sum(f for f, _ in groups.values())
    all_total = sum(t for _, t in groups.values())
    found = []
    for name, (fails, total) in groups.items():
        rest_fails, rest_total = all_failures - fails, all_total - total
        if fails < _MIN_FAILURES or rest_total == 0:
            continue
        rate, rest = fails / total, rest_fails / rest_total
        pooled = all_failures / all_total
        spread = math.sqrt(pooled * (1 - pooled) * (1 / total + 1 / rest_total))
        if rate - rest >= _MIN_GAP and spread > 0 and (rate - rest) / spread >= _MIN_Z:
            found.append(name)
    return sorted(found, key=lambda name: -groups[name][0] / groups[name][1])


def _rate(fails: int, total: int) -> str:
    return f"{fails / total:.0%}" if total else "-"


def _rest(groups: dict[str, tuple[int, int]], exclude: Iterable[str]) -> tuple[int, int]:
    skip = set(exclude)
    kept = [value for name, value in groups.items() if name not in skip]
    return sum(f for f, _ in kept), sum(t for _, t in kept)


def analyse(
    integration: str,
    records: Sequence[CallRecord],
    *,
    since: float,
    until: float,
    latency_threshold: float | None = 3.0,
    error_rate: float | None = 0.05,
    near_limit: float | None = 0.8,
    tz: tzinfo | None = None,
    truncated: bool = False,
) -> LogReport:
    """Analyse ``integration``'s ``records`` between ``since`` and ``until`` (Unix seconds).

    Args:
        integration: The integration's name (records of others are ignored).
        records: Its call records, in any order.
        since: Start of the window.
        until: End of the window.
        latency_threshold: The ``latency_p95`` alert threshold (seconds), or ``None``.
        error_rate: The ``error_rate`` alert threshold (fraction), or ``None``.
        near_limit: Rate-limit usage from which a call counts as near the limit, or ``None`` (429s only).
        tz: Time zone for the times in messages (the machine's by default).
        truncated: The records are only the first of more (said in the overview).
    """
    calls = sorted((r for r in records if r.integration == integration), key=lambda r: r.at)
    long_window = until - since > 86400

    def clock(at: float) -> str:
        moment = datetime.fromtimestamp(at, tz) if tz is not None else datetime.fromtimestamp(at).astimezone()
        return moment.strftime("%Y-%m-%d %H:%M" if long_window else "%H:%M")

    failures = sum(1 for r in calls if r.failed)
    since_text = clock(since)
    findings = [_overview(calls, failures, since_text, error_rate, truncated)]
    if calls:
        findings += _peers(calls, clock)
        findings += _endpoints(calls)
        findings += _times(calls, since, until, clock)
        findings += _statuses(calls)
        findings += _rate_limits(calls, near_limit, clock)
        findings += _latency(calls, latency_threshold)
    return LogReport(integration, since, until, len(calls), failures, tuple(findings), since_text)


def _overview(calls: list[CallRecord], failures: int, since: str, threshold: float | None, truncated: bool) -> Finding:
    if not calls:
        return Finding(
            "overview",
            "info",
            f"no calls recorded since {since}",
            fix="is monitoring.record on, and does the application write to the same store as this tether.toml?",
        )
    more = " (only the first records were read; narrow --since)" if truncated else ""
    message = f"{len(calls)} calls since {since}, {failures} failed ({_rate(failures, len(calls))}){more}"
    alarming = threshold is not None and failures >= _MIN_FAILURES and failures / len(calls) > threshold
    return Finding(
        "overview",
        "problem" if alarming else "info",
        message + (f", above the {threshold:.0%} error-rate alert threshold" if alarming and threshold else ""),
        data={"calls": len(calls), "failures": failures},
    )


def _peers(calls: list[CallRecord], clock: Callable[[float], str]) -> list[Finding]:
    attempts: list[tuple[float, str, bool]] = []
    for record in calls:
        tries = record.tries or ()
        if tries:
            attempts += [(record.at, a, failed(t.status)) for t in tries if (a := peer_address(t.peer))]
        elif (address := peer_address(record.peer)) is not None:
            attempts.append((record.at, address, record.failed))
    groups: dict[str, tuple[int, int]] = {}
    for _, address, bad in attempts:
        fails, total = groups.get(address, (0, 0))
        groups[address] = (fails + bad, total + 1)
    if len(groups) < 2:
        return []
    data = {address: {"failures": f, "calls": t} for address, (f, t) in groups.items()}
    bad_peers = outliers(groups)
    if not bad_peers:
        if not any(f for f, _ in groups.values()):
            return []
        rates = ", ".join(f"{address} {_rate(*groups[address])}" for address in sorted(groups))
        message = f"failures are spread over all {len(groups)} upstream addresses ({rates}): not one bad backend"
        return [Finding("peers", "info", message, data=data)]
    sentences = []
    for address in bad_peers:
        first = min(at for at, peer, bad in attempts if peer == address and bad)
        fails = sum(1 for at, peer, bad in attempts if peer == address and bad and at >= first)
        total = sum(1 for at, peer, _ in attempts if peer == address and at >= first)
        sentences.append(f"{address} failed {_rate(fails, total)} of calls since {clock(first)} ({fails} of {total})")
    healthy = len(groups) - len(bad_peers)
    others = _rate(*_rest(groups, bad_peers))
    message = (
        f"{healthy} of {len(groups)} upstream addresses are healthy; {'; '.join(sentences)}; "
        f"the other addresses failed {others}"
    )
    fix = (
        "one backend behind the API's name is failing: tell the provider which address (with request ids from "
        "tether status); meanwhile keep retries on, since a retry usually lands on a healthy address"
    )
    return [Finding("peers", "problem", message, fix, {"bad": bad_peers, "peers": data})]


def _endpoints(calls: list[CallRecord]) -> list[Finding]:
    groups: dict[str, tuple[int, int]] = {}
    for record in calls:
        key = f"{record.method} {record.endpoint}"
        fails, total = groups.get(key, (0, 0))
        groups[key] = (fails + record.failed, total + 1)
    bad = outliers(groups) if len(groups) > 1 else []
    findings = []
    for key in bad:
        fails, total = groups[key]
        hints = Counter(r.hint for r in calls if r.failed and f"{r.method} {r.endpoint}" == key and r.hint)
        every = " (every call: a consistent error, not an intermittent one)" if fails == total else ""
        message = (
            f"{key} failed {_rate(fails, total)} of its calls ({fails} of {total}){every}; "
            f"the other endpoints {_rate(*_rest(groups, [key]))}"
        )
        fix = hints.most_common(1)[0][0] if hints else "look at this endpoint's errors in tether status"
        findings.append(Finding("endpoints", "problem", message, fix, {"endpoint": key, "failures": fails}))
    return findings


def _times(calls: list[CallRecord], since: float, until: float, clock: Callable[[float], str]) -> list[Finding]:
    size = 3600.0 if until - since >= 3 * 3600 else 600.0
    groups: dict[str, tuple[int, int]] = {}
    starts: dict[str, float] = {}
    for record in calls:
        start = record.at - record.at % size
        key = str(int(start))
        fails, total = groups.get(key, (0, 0))
        groups[key] = (fails + record.failed, total + 1)
        starts[key] = start
    if len(groups) < 2:
        return []
    bad = sorted(outliers(groups), key=lambda key: starts[key])
    if not bad:
        return []
    ranges: list[list[float]] = []
    for key in bad:
        if ranges and starts[key] == ranges[-1][1]:
            ranges[-1][1] = starts[key] + size
        else:
            ranges.append([starts[key], starts[key] + size])
    fails, total = _rest(groups, [key for key in groups if key not in bad])
    spans = ", ".join(f"{clock(start)}–{clock(end)}" for start, end in ranges)
    message = (
        f"failures cluster in {spans}: {_rate(fails, total)} failed then ({fails} of {total}), "
        f"{_rate(*_rest(groups, bad))} at other times"
    )
    fix = "compare with the provider's status history, your deploys and scheduled jobs at those times"
    return [Finding("time", "problem", message, fix, {"ranges": ranges})]


def _statuses(calls: list[CallRecord]) -> list[Finding]:
    kinds = Counter(
        f"HTTP {r.status}" if r.status is not None else (r.error or "no response") for r in calls if r.failed
    )
    if not kinds:
        return []
    listed = ", ".join(f"{count} × {kind}" for kind, count in kinds.most_common())
    hints = Counter(r.hint for r in calls if r.failed and r.hint)
    fix = hints.most_common(1)[0][0] if hints else None
    return [Finding("statuses", "info", f"failures by kind: {listed}", fix, dict(kinds))]


def _rate_limits(calls: list[CallRecord], near_limit: float | None, clock: Callable[[float], str]) -> list[Finding]:
    near = [
        r
        for r in calls
        if r.status == 429 or (near_limit is not None and r.usage is not None and r.usage >= near_limit)
    ]
    if not near:
        return []
    episodes: list[list[CallRecord]] = []
    for record in near:
        if episodes and record.at - episodes[-1][-1].at <= _EPISODE_GAP:
            episodes[-1].append(record)
        else:
            episodes.append([record])
    described = []
    for episode in episodes:
        lowest = min(episode, key=lambda r: r.limit_remaining if r.limit_remaining is not None else math.inf)
        left = (
            f"down to {lowest.limit_remaining:g} of {lowest.limit:g} left"
            if lowest.limit_remaining is not None and lowest.limit
            else "limit not reported"
        )
        limited = sum(1 for r in episode if r.status == 429)
        got = f", {limited} × 429" if limited else ""
        described.append(f"{clock(episode[0].at)}–{clock(episode[-1].at)} ({left}{got})")
    limited = sum(1 for r in near if r.status == 429)
    times = "once" if len(episodes) == 1 else f"{len(episodes)} times"
    message = f"the rate limit ran close {times}: {'; '.join(described)}"
    fix = (
        "spread the calls out, set rate_limit in tether.toml just below the API's limit (state = redis to share it "
        "between processes), or ask the provider for a higher limit"
    )
    return [Finding("rate_limit", "problem" if limited else "warning", message, fix, {"episodes": len(episodes)})]


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _latency(calls: list[CallRecord], threshold: float | None) -> list[Finding]:
    timed = sorted((r for r in calls if r.attempts > 0), key=lambda r: r.latency)
    if len(timed) < _MIN_FOR_TAIL:
        return []
    latencies = [r.latency for r in timed]
    p50, p95, p99 = (_quantile(latencies, q) for q in (0.5, 0.95, 0.99))
    over = threshold is not None and p95 > threshold
    if not over and p99 <= max(5 * p50, 1.0):
        return []
    slow = [r for r in timed if r.latency >= p95]
    why = []
    keys: list[tuple[str, Callable[[CallRecord], str | None]]] = [
        ("went to", lambda r: peer_address(r.peer)),
        ("were", lambda r: f"{r.method} {r.endpoint}"),
    ]
    for label, key in keys:
        counts = Counter(key(r) for r in slow)
        top, count = counts.most_common(1)[0]
        share_all = sum(1 for r in timed if key(r) == top) / len(timed)
        if top is not None and count / len(slow) >= 0.6 and share_all < 0.6:
            why.append(f"{count} of the {len(slow)} slowest {label} {top}")
    retried = sum(1 for r in slow if r.attempts > 1)
    if retried * 2 >= len(slow):
        why.append(f"{retried} of them were retried (the time is retries and backoff)")
    message = (
        f"slow tail: half the calls take under {_seconds(p50)} but 1 in 20 over {_seconds(p95)} "
        f"(slowest {_seconds(latencies[-1])})" + (f"; {'; '.join(why)}" if why else "")
    )
    if over and threshold is not None:
        message += f"; p95 is over the {threshold:g}s alert threshold"
    fix = "cache what can be cached, set a tighter timeout.read so a stuck call is retried sooner, or ask the provider"
    data = {"p50": p50, "p95": p95, "p99": p99, "max": latencies[-1]}
    return [Finding("latency", "problem" if over else "warning", message, fix, data)]


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"

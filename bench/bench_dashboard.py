"""How long the dashboard's queries take over a SQLite store holding a million call records.

Usage::

    .venv/bin/python bench/bench_dashboard.py [--records 1000000] [--days 7] [--runs 20] [--rebuild]
                                              [--dir /tmp/tether-bench-dashboard]

The store is built once through the real write path, :meth:`CallLog.write` in batches of 5,000 (the
recorder's batch), so the per-minute summaries exist as in production, and kept in ``--dir`` for later runs
(``--rebuild`` builds it again; a different ``--records``/``--days``/``--seed`` builds another file). The
records are spread over ``--days`` days with a daily rhythm, over ten integrations of different volumes, with
a realistic mix: about 3% failures (4xx, 429, 5xx, timeouts, refusals by the breaker), retried calls with
their tries, AI tokens on the AI APIs, rate-limit budgets, version and deprecation headers.

Then each query runs ``--runs`` times (after one untimed run) as of the newest record, and the median and p95
are compared with the goal, 200 ms:

- ``overview(hub, window=…)`` for 1 hour, 1 day and 7 days: the dashboard's ``/api/overview`` and
  ``tether status`` (per-minute summaries for the window, plus each integration's last five failures);
- ``conditions(hub)``: one round of the alert rules that ``tether serve`` evaluates every 15 s (the rule
  windows, the last day for deprecation and token budgets, the last two minutes);
- ``CallLog.failures(name)``: the dashboard's last errors of one integration;
- ``CallLog.calls(since=now - 3600, integration=name)``: what ``tether doctor --from-log`` reads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.observe.health import overview
from tether.observe.records import CallRecord, Try
from tether.observe.rules import conditions

GOAL = 0.200  # seconds
BATCH = 5000  # records per CallLog.write, as the recorder's batches
GENERATOR = 2  # bump when the generated data or its storage changes, so cached stores are rebuilt


@dataclass(frozen=True)
class Profile:
    """One integration's traffic: its share of calls, endpoints, latency and what its responses carry."""

    share: float
    endpoints: tuple[tuple[str, str], ...]
    latency: float  # median seconds; log-normal around it
    spread: float = 0.6  # sigma of the log-normal
    tokens: bool = False
    limit: float | None = None  # the rate-limit budget the API reports
    version: str | None = None
    deprecation: bool = False
    config: str = ""  # extra lines of its [integrations.NAME] table


PROFILES: dict[str, Profile] = {
    "stripe": Profile(
        0.24,
        (
            ("GET", "/v1/customers/{id}"),
            ("POST", "/v1/payment_intents"),
            ("GET", "/v1/charges"),
            ("POST", "/v1/refunds"),
        ),
        0.25,
        version="2024-06-20",
        config='auth = { type = "basic", username = "${BENCH_SECRET}" }\nrate_limit = "100/s"\n',
    ),
    "openai": Profile(
        0.15,
        (("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings")),
        1.2,
        spread=0.9,
        tokens=True,
        limit=10_000,
        config='auth = { type = "bearer", token = "${BENCH_SECRET}" }\n',
    ),
    "anthropic": Profile(
        0.05, (("POST", "/v1/messages"),), 2.0, spread=0.8, tokens=True, limit=4000, version="2023-06-01"
    ),
    "github": Profile(
        0.14,
        (("GET", "/repos/{id}/pulls"), ("GET", "/repos/{id}/issues/{id}"), ("POST", "/repos/{id}/dispatches")),
        0.18,
        limit=5000,
        config='auth = { type = "bearer", token = "${BENCH_SECRET}" }\n',
    ),
    "salesforce": Profile(
        0.10,
        (
            ("GET", "/services/data/v59.0/sobjects/Account/{id}"),
            ("PATCH", "/services/data/v59.0/sobjects/Account/{id}"),
        ),
        0.35,
        config=(
            '[integrations.salesforce.auth]\ntype = "oauth2"\ntoken_url = "https://login.example/oauth/token"\n'
            'client_id = "bench"\nclient_secret = "${BENCH_SECRET}"\n'
        ),
    ),
    "slack": Profile(0.08, (("POST", "/api/chat.postMessage"),), 0.15),
    "hubspot": Profile(0.08, (("GET", "/crm/v3/objects/contacts"), ("POST", "/crm/v3/objects/deals")), 0.3),
    "shopify": Profile(0.06, (("GET", "/admin/api/{id}/orders.json"),), 0.4, limit=40, deprecation=True),
    "twilio": Profile(0.05, (("POST", "/{id}/Accounts/{id}/Messages.json"),), 0.5),
    "sendgrid": Profile(0.05, (("POST", "/v3/mail/send"),), 0.2, config='rate_limit = "600/min"\n'),
}

# (status, share of all calls, error class, outcome); the rest succeed. About 3% fail in all.
FAILURES = (
    (400, 0.004, "BadRequestError", "not retryable"),
    (401, 0.002, "AuthenticationError", "not retryable"),
    (404, 0.007, "NotFoundError", "not retryable"),
    (409, 0.001, "ConflictError", "not retryable"),
    (429, 0.005, "RateLimitError", "attempts exhausted"),
    (500, 0.003, "ServerError", "attempts exhausted"),
    (502, 0.002, "ServerError", "attempts exhausted"),
    (503, 0.003, "ServerError", "attempts exhausted"),
    (None, 0.002, "ReadTimeoutError", "attempts exhausted"),
    (None, 0.001, "CircuitOpenError", "circuit open"),
)
HINTS = {
    "BadRequestError": "The API rejected the request's content; see the response body.",
    "AuthenticationError": "The credential was refused: check the env var it comes from.",
    "NotFoundError": "The resource does not exist (or the credential cannot see it).",
    "ConflictError": "The resource changed meanwhile; fetch it again and retry.",
    "RateLimitError": "Rate limited after 3 attempts; lower rate_limit or raise the plan's limit.",
    "ServerError": "The API failed after 3 attempts; check its status page.",
    "ReadTimeoutError": "No response within the read timeout after 3 attempts.",
    "CircuitOpenError": "The circuit breaker is open after repeated failures; calls resume after open_for.",
}


# -- generating the records ----------------------------------------------------------------------------------


def timestamps(count: int, end: float, days: float, rng: random.Random) -> list[float]:
    """``count`` call times over ``days`` days before ``end``, busier by day than by night, sorted."""
    span = days * 86400.0
    result: list[float] = []
    while len(result) < count:
        at = end - span * rng.random()
        hour = (at % 86400.0) / 3600.0
        # Three times busier at 14:00 than at 02:00.
        if rng.random() < 0.5 + 0.25 * (1 + math.sin((hour - 8.0) / 24.0 * 2 * math.pi)):
            result.append(at)
    result.sort()
    return result


def records(count: int, end: float, days: float, seed: int) -> Iterator[CallRecord]:
    """The generated call records, oldest first."""
    rng = random.Random(seed)
    names = list(PROFILES)
    weights = [PROFILES[name].share for name in names]
    peers = [f"10.0.{index}.{host}" for index in range(len(names)) for host in range(1, 5)]
    for at in timestamps(count, end, days, rng):
        name = rng.choices(names, weights)[0]
        profile = PROFILES[name]
        method, endpoint = rng.choice(profile.endpoints)
        latency = min(60.0, profile.latency * math.exp(rng.gauss(0.0, profile.spread)))
        status: int | None = 201 if method == "POST" else 200
        outcome, error, hint = "success", None, None
        roll, attempts, tries = rng.random(), 1, ()
        for code, share, error_class, why in FAILURES:
            if roll < share:
                status, outcome, error, hint = code, why, error_class, HINTS[error_class]
                break
            roll -= share
        if outcome == "attempts exhausted":
            attempts = 3
        elif outcome == "circuit open":
            attempts, latency = 0, 0.0001
        elif error is None and roll < 0.02:
            attempts = 2  # a success after one retried 503
        if attempts > 1:
            first = Try(503 if status is not None else None, None if status else "ReadTimeout", None, latency / 3)
            last = Try(status, error and error.replace("Error", ""), rng.choice(peers), latency / 3)
            tries = (first,) * (attempts - 1) + (last,)
            latency *= 1.5  # the backoff between attempts
        ok = error is None
        yield CallRecord(
            at=at,
            integration=name,
            method=method,
            endpoint=endpoint,
            status=status,
            outcome=outcome,
            error=error,
            hint=hint,
            latency=latency,
            attempts=attempts,
            peer=rng.choice(peers) if attempts else None,
            bytes_sent=rng.randrange(80, 2000) if method != "GET" else 0,
            bytes_received=rng.randrange(200, 20_000) if status is not None else 0,
            limit=profile.limit if ok else None,
            limit_remaining=profile.limit * rng.random() if ok and profile.limit else None,
            tokens=rng.randrange(50, 4000) if ok and profile.tokens else None,
            version=profile.version,
            deprecation="@1767225600" if profile.deprecation and ok else None,
            sunset="Wed, 01 Jul 2027 00:00:00 GMT" if profile.deprecation and ok else None,
            request_id=f"req_{rng.getrandbits(64):016x}" if attempts else None,
            tries=tries,
        )


# -- the store -----------------------------------------------------------------------------------------------


def config_text(db: Path) -> str:
    lines = [f'store = "sqlite:///{db}"\n', "[monitoring]\nrecord = false\n"]
    for name, profile in PROFILES.items():
        lines.append(f'[integrations.{name}]\nbase_url = "https://api.{name}.example"\n{profile.config}')
    return "\n".join(lines)


def open_hub(directory: Path, db: Path) -> Any:
    from tether import Hub  # type: ignore[attr-defined,unused-ignore]

    os.environ.setdefault("BENCH_SECRET", "not-a-secret")
    config = directory / "tether.toml"
    config.write_text(config_text(db))
    return Hub.from_config(config)


def build(directory: Path, db: Path, meta: Path, args: argparse.Namespace) -> dict[str, Any]:
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), meta):
        path.unlink(missing_ok=True)
    end = float(int(time.time()))
    print(f"building {db}: {args.records:,} records over {args.days:g} days ...", flush=True)
    with open_hub(directory, db) as hub:
        log = hub.call_log
        start = time.perf_counter()
        writing = 0.0
        batch: list[CallRecord] = []
        written = 0
        for record in records(args.records, end, args.days, args.seed):
            batch.append(record)
            if len(batch) == BATCH:
                began = time.perf_counter()
                log.write(batch)
                writing += time.perf_counter() - began
                written += len(batch)
                batch = []
                if written % 100_000 == 0:
                    print(f"  {written:,} ({time.perf_counter() - start:.0f} s)", flush=True)
        if batch:
            began = time.perf_counter()
            log.write(batch)
            writing += time.perf_counter() - began
        total = time.perf_counter() - start
    info = {
        "records": args.records,
        "days": args.days,
        "seed": args.seed,
        "generator": GENERATOR,
        "end": end,
        "build_seconds": round(total, 1),
        "write_seconds": round(writing, 1),
    }
    meta.write_text(json.dumps(info, indent=2))
    return info


def describe(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        rows, failed = connection.execute("SELECT COUNT(*), SUM(failed) FROM tether_calls").fetchone()
        packed, batches = connection.execute(
            "SELECT COALESCE(SUM(calls), 0), COUNT(*) FROM tether_call_batches"
        ).fetchone()
        calls = rows + packed  # plain successes are stored packed, many to a row
        minutes = connection.execute("SELECT COUNT(*) FROM tether_call_minutes").fetchone()[0]
    size = sum(path.stat().st_size for path in db.parent.glob(db.name + "*")) / 1e6
    return (
        f"{calls:,} call records ({failed / calls:.1%} failed; {packed:,} plain successes in {batches:,} batches), "
        f"{minutes:,} summary rows, {size:,.0f} MB "
        f"(SQLite {sqlite3.sqlite_version})"
    )


# -- timing --------------------------------------------------------------------------------------------------


def timed(query: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    result = query()  # untimed: the first run pays for opening the store and reading the schema
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = query()
        times.append(time.perf_counter() - start)
    return times, result


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000, help="call records in the store")
    parser.add_argument("--days", type=float, default=7.0, help="days the records span")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated records")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per query")
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()) / "tether-bench-dashboard", help="where the store is"
    )
    parser.add_argument("--rebuild", action="store_true", help="build the store again even if it is there")
    args = parser.parse_args(argv)
    if args.runs < 20:
        parser.error("--runs must be at least 20 (a p95 of fewer means little)")

    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"calls-{args.records}-{args.days:g}d-s{args.seed}"
    db, meta = directory / f"{stem}.db", directory / f"{stem}.json"
    info = json.loads(meta.read_text()) if meta.exists() and db.exists() and not args.rebuild else None
    if info is None or info.get("generator") != GENERATOR:
        info = build(directory, db, meta, args)
        print(
            f"built in {info['build_seconds']:.1f} s, of which CallLog.write {info['write_seconds']:.1f} s "
            f"({args.records / info['write_seconds']:,.0f} records/s written)"
        )
    else:
        print(f"using the store built before ({info['build_seconds']:.1f} s to build; --rebuild to build again)")
    print(describe(db))
    print(f"platform  {platform.platform()}, CPython {platform.python_version()}")
    print()

    now = info["end"]
    busiest = max(PROFILES, key=lambda name: PROFILES[name].share)
    with open_hub(directory, db) as hub:
        log = hub.call_log
        queries: list[tuple[str, Callable[[], Any], Callable[[Any], str]]] = [
            ("overview(window=1h)", lambda: overview(hub, window=3600, now=now), _overview_size),
            ("overview(window=1d)", lambda: overview(hub, window=86400, now=now), _overview_size),
            ("overview(window=7d)", lambda: overview(hub, window=7 * 86400, now=now), _overview_size),
            ("alert rules (one round)", lambda: conditions(hub, now=now), lambda r: f"{len(r)} conditions"),
            (f"failures({busiest!r})", lambda: log.failures(busiest), lambda r: f"{len(r)} records"),
            (
                f"calls(since=now-1h, {busiest!r})",
                lambda: log.calls(since=now - 3600, integration=busiest),
                lambda r: f"{len(r):,} records",
            ),
        ]
        header = f"{'query':36} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'< 200 ms':>9}  returns"
        print(header)
        print("-" * len(header))
        failed = []
        for name, query, size in queries:
            times, result = timed(query, args.runs)
            median, high = statistics.median(times), p95(times)
            verdict = "pass" if high < GOAL else "FAIL"
            if verdict == "FAIL":
                failed.append(name)
            print(
                f"{name:36} {median * 1000:>10.1f} {high * 1000:>8.1f} {max(times) * 1000:>8.1f} {verdict:>9}  "
                f"{size(result)}"
            )
    print()
    print(f"{args.runs} timed runs per query after one untimed; pass = p95 under {GOAL * 1000:.0f} ms")
    print("goal: every query under 200 ms -- " + ("met" if not failed else f"NOT met ({', '.join(failed)})"))


def _overview_size(result: Any) -> str:
    calls = sum(health.requests for health in result.integrations)
    points = sum(len(health.series["t"]) for health in result.integrations)
    return f"{len(result.integrations)} integrations, {calls:,} calls, {points:,} chart points"


if __name__ == "__main__":
    main()

"""What call recording (and metrics) cost tether's clients: req/s with recording off, on, and on with metrics.

Usage::

    .venv/bin/python bench/bench_recording.py [--url URL] [--seconds 3] [--rounds 5] [--warmup 1]
                                              [--concurrency 1,16,64] [--metrics | --no-metrics]
                                              [--variants off,on,metrics,otel]
    .venv/bin/python bench/bench_recording.py --canned 40     # CPU per call, no network (see canned())

The scenarios are the client benchmark's (``bench_client.py``): ``hub.client("bench")`` called in a loop on one
thread, and ``hub.async_client("bench")`` called by N asyncio tasks, against the same upstream. Each scenario
runs once per variant per round, in one process, the variants' order rotating from round to round; every run
gets a fresh hub (and, for async, a fresh event loop) built from a ``tether.toml`` of its own:

- ``off``: ``[monitoring] record = false`` and ``otel = false``: no recorder at all.
- ``on``: ``record = true`` with ``store = "sqlite:///…/calls-on.db"``, ``otel = false``: every call builds a
  record, the recorder's thread writes them in batches, as in production.
- ``metrics``: as ``on``, with tether's Prometheus metrics fed by the recorder (``enable_metrics`` from
  ``tether.observe.metrics``); skipped, with a note, while that module does not exist. ``--metrics`` makes its
  absence an error.
- ``otel``: as ``on``, with ``otel = true`` (what the default ``otel = "auto"`` means once the OpenTelemetry
  SDK is installed): each call also becomes a span and a histogram point, on the caller's thread. No tracer or
  meter provider is configured, so this is the cost of tether's hook over OpenTelemetry's no-op providers.
  Shown beside the others; the goal applies to recording and metrics.

``--variants`` picks some (``off`` is always run: the others are compared with it). On a busy machine the
req/s of one run swing more than the 5% being looked for; ``--canned BLOCKS`` measures instead the CPU each
call costs over a transport that answers at once, the variants alternated in blocks of calls (no upstream).

After every recording run the hub is closed (its last records written) and the records the store gained are
compared with the calls made: the table shows records stored / calls made and the recorder's dropped count,
so a variant that silently recorded nothing cannot pass for a cheap one.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_client import DEFAULT_URL, _check, drive, drive_sync, ensure_upstream, print_machine

VARIANTS = ("off", "on", "metrics", "otel")
GOAL_VARIANTS = ("on", "metrics")
GOAL = 0.05  # the issue's budget: recording and metrics cost at most 5% of req/s


@dataclass
class Result:
    """The runs of one scenario in one variant."""

    rates: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # the process's CPU seconds per call, each run
    calls: int = 0
    stored: int = 0
    dropped: int = 0
    counted: int | None = None  # by the metrics, in the metrics variant

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


# -- hubs ----------------------------------------------------------------------------------------------------


def metrics_attacher() -> Callable[[Any], Any] | None:
    """``enable_metrics`` on a registry of the run's own, or None while ``tether.observe.metrics`` does not exist."""
    try:
        from prometheus_client import CollectorRegistry

        from tether.observe.metrics import enable_metrics
    except ImportError:
        return None

    def attach(hub: Any) -> Any:
        # A fresh registry per hub: the default one refuses the same metric names twice.
        return enable_metrics(hub, registry=CollectorRegistry())

    return attach


def counted(metrics: Any) -> int:
    """Calls counted by ``tether_requests_total`` of the metrics ``attach`` returned."""
    return int(sum(sample.value for sample in _samples(metrics.requests) if sample.name.endswith("_total")))


def _samples(metric: Any) -> list[Any]:
    return [sample for family in metric.collect() for sample in family.samples]


def make_hub(base_url: str, variant: str, directory: Path, attach: Callable[[Any], Any] | None) -> tuple[Any, Any]:
    """A hub with one integration, ``bench``, recording (or not) as ``variant`` says; and its metrics, if any."""
    from tether import Hub  # type: ignore[attr-defined,unused-ignore]

    record = "false" if variant == "off" else "true"
    otel = "true" if variant == "otel" else "false"
    config = directory / f"tether-{variant}.toml"
    config.write_text(
        f'store = "sqlite:///{directory}/calls-{variant}.db"\n'
        f"[monitoring]\nrecord = {record}\notel = {otel}\n"
        f'[integrations.bench]\nbase_url = "{base_url}"\n'
    )
    hub = Hub.from_config(config)
    return hub, attach(hub) if variant == "metrics" and attach is not None else None


def stored_records(directory: Path, variant: str) -> int:
    path = directory / f"calls-{variant}.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as connection:
        try:
            rows = connection.execute("SELECT COUNT(*) FROM tether_calls").fetchone()[0]
            packed = connection.execute("SELECT COALESCE(SUM(calls), 0) FROM tether_call_batches").fetchone()[0]
            return int(rows) + int(packed)  # plain successes are stored packed, many to a row
        except sqlite3.OperationalError:  # no table yet: nothing was ever written
            return 0


# -- one run -------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    base_url: str
    path: str
    directory: Path
    warmup: float
    seconds: float
    attach: Callable[[Any], Any] | None

    def run(self, variant: str, concurrency: int | None, result: Result) -> float:
        """One run of the sync scenario (``concurrency`` None) or the async one; its req/s."""
        before = stored_records(self.directory, variant)
        hub, metrics = make_hub(self.base_url, variant, self.directory, self.attach)
        calls = 0
        cpu = time.process_time()
        try:
            if concurrency is None:
                with hub.client("bench") as client:

                    def fetch_sync() -> None:
                        nonlocal calls
                        _check(client.get(self.path))
                        calls += 1

                    rate = drive_sync(fetch_sync, self.warmup, self.seconds)
            else:

                async def main(c: int) -> float:
                    async with hub.async_client("bench") as client:

                        async def fetch() -> None:
                            nonlocal calls
                            (await client.get(self.path)).raise_for_status()
                            calls += 1

                        return await drive(fetch, c, self.warmup, self.seconds)

                rate = asyncio.run(main(concurrency))
        finally:
            recorder = hub.recorder
            hub.close()  # writes the records still queued
        cpu = time.process_time() - cpu
        if variant == "off" and recorder is not None:
            sys.exit("the off variant has a recorder: the config no longer turns recording off")
        result.rates.append(rate)
        result.cpu.append(cpu / max(calls, 1))
        result.calls += calls
        if recorder is not None:
            result.stored += stored_records(self.directory, variant) - before
            result.dropped += recorder.dropped
        if metrics is not None:
            result.counted = (result.counted or 0) + counted(metrics)
        return rate


# -- CPU per call without the network (--canned) -------------------------------------------------------------

CANNED_BODY = b'{"id":"cus_123","object":"customer","email":"a@example.com"}'
CANNED_HEADERS = [
    (b"server", b"nginx/1.22.1"),
    (b"date", b"Mon, 23 Nov 2026 23:00:00 GMT"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(CANNED_BODY)).encode()),
    (b"connection", b"keep-alive"),
]


def canned(directory: Path, variants: list[str], attach: Callable[[Any], Any] | None, blocks: int) -> None:
    """CPU per sync call over a transport that answers at once as nginx's ``/json`` does, variants alternated.

    Every variant's hub lives through the whole run; blocks of calls alternate between them (in turn, then
    in reverse), so whatever else the machine does falls on all alike, and the difference from ``off`` is taken
    block by block. The caller's thread is timed with ``thread_time``; the process (the recorder's thread
    included) with ``process_time``, each block's records written before its clock stops.
    """
    import httpx2

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=CANNED_HEADERS, content=CANNED_BODY, request=request)

    calls = 3000
    hubs = {v: make_hub("http://127.0.0.1:18080", v, directory, attach)[0] for v in variants}
    clients = {v: hub.client("bench", network=httpx2.MockTransport(answer)) for v, hub in hubs.items()}
    caller: dict[str, list[float]] = {v: [] for v in variants}
    process: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for block in range(-1, blocks):  # block -1 warms up
            for variant in variants if block % 2 == 0 else variants[::-1]:
                client, recorder = clients[variant], hubs[variant].recorder
                started, thread_started = time.process_time(), time.thread_time()
                for _ in range(calls):
                    client.get("/json")
                thread_spent = time.thread_time() - thread_started
                if recorder is not None:
                    recorder.flush()
                if block >= 0:
                    caller[variant].append(thread_spent / calls * 1e6)
                    process[variant].append((time.process_time() - started) / calls * 1e6)
    finally:
        for variant, hub in hubs.items():
            clients[variant].close()
            hub.close()
    print(f"\nCPU per call over a canned transport, {blocks} blocks of {calls:,} calls per variant, medians")
    print(f"{'variant':8} {'caller thread':>14} {'vs off':>8} {'process':>10} {'vs off':>8}")
    for variant in variants:

        def delta(series: dict[str, list[float]], v: str = variant) -> float:
            return statistics.median(a - b for a, b in zip(series[v], series["off"], strict=True))

        print(
            f"{variant:8} {statistics.median(caller[variant]):>11.1f} µs {delta(caller):>+6.1f} µs "
            f"{statistics.median(process[variant]):>7.1f} µs {delta(process):>+6.1f} µs"
        )


# -- reporting -----------------------------------------------------------------------------------------------


def report(
    scenarios: list[tuple[str, int | None]],
    variants: list[str],
    results: dict[tuple[str, str], Result],
    args: argparse.Namespace,
) -> None:
    import aiohttp
    import httpx2

    print()
    print_machine()
    print(f"versions  httpx2 {httpx2.__version__}, aiohttp {aiohttp.__version__}, SQLite {sqlite3.sqlite_version}")
    print(f"url       {args.url}   {args.seconds:g} s per run, {args.rounds} rounds, median quoted")
    print()
    header = (
        f"{'scenario':12} {'variant':8} {'req/s':>8} {'min-max':>15} {'vs off':>7} {'cost':>7} "
        f"{'paired':>7} {'CPU/call':>9} {'+CPU':>7} {'stored/calls':>21} {'dropped':>8}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    notes: list[str] = []
    for scenario, _ in scenarios:
        off = results[(scenario, "off")]
        for variant in variants:
            result = results[(scenario, variant)]
            spread = f"{min(result.rates):,.0f}-{max(result.rates):,.0f}"
            cpu = statistics.median(result.cpu) * 1e6
            if variant == "off":
                print(f"{scenario:12} {variant:8} {result.median:>8,.0f} {spread:>15} {'':>23} {cpu:>6.1f} µs")
                continue
            extra = cpu - statistics.median(off.cpu) * 1e6
            ratio = result.median / off.median
            # Each round's variant against the same round's off: neighbours in time, so the load they saw is alike.
            paired = statistics.median(on / base for on, base in zip(result.rates, off.rates, strict=True))
            if variant in GOAL_VARIANTS:
                worst = max(worst, 1 - ratio)
            stored = f"{result.stored:,}/{result.calls:,}"
            if result.counted is not None and result.counted != result.stored:
                notes.append(f"{scenario} {variant}: metrics counted {result.counted:,}, store {result.stored:,}")
            print(
                f"{scenario:12} {variant:8} {result.median:>8,.0f} {spread:>15} {ratio:>6.3f}x "
                f"{(1 - ratio) * 100:>6.1f}% {(1 - paired) * 100:>6.1f}% {cpu:>6.1f} µs {extra:>+7.1f} "
                f"{stored:>21} {result.dropped:>8,}"
            )
    print()
    for note in notes:
        print(f"MISMATCH {note}")
    print("cost = 1 - median(variant) / median(off); paired = 1 - median over rounds of variant/off in that round")
    print("CPU/call = the benchmark process's CPU time (all threads, warm-up included) / calls made; +CPU vs off")
    verdict = "met" if worst <= GOAL else "NOT met"
    print(
        f"goal: cost of {' and '.join(GOAL_VARIANTS)} <= {GOAL:.0%} in every scenario -- {verdict} "
        f"(worst {worst * 100:.1f}%)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=None, help=f"the URL to GET (default {DEFAULT_URL})")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs per scenario and variant; the median is quoted")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated async concurrencies")
    parser.add_argument("--no-sync", action="store_true", help="skip the sync scenario")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants to run")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--metrics", action="store_true", help="require the metrics variant (fail without it)")
    group.add_argument("--no-metrics", action="store_true", help="skip the metrics variant")
    parser.add_argument(
        "--canned", type=int, default=0, metavar="BLOCKS", help="measure CPU per call without the network instead"
    )
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (medians of fewer runs mean little here)")
    if args.canned:
        chosen = {"off", *args.variants.split(",")}
        attach = metrics_attacher() if "metrics" in chosen else None
        variants = [v for v in VARIANTS if v in chosen and (v != "metrics" or attach is not None)]
        with tempfile.TemporaryDirectory(prefix="tether-bench-recording-") as name:
            canned(Path(name), variants, attach, args.canned)
        return
    start_if_down = args.url is None
    args.url = args.url or DEFAULT_URL
    ensure_upstream(args.url, start_if_down)

    attach = None if args.no_metrics else metrics_attacher()
    if args.metrics and attach is None:
        sys.exit("--metrics: tether.observe.metrics does not exist yet")
    chosen = {"off", *args.variants.split(",")}
    if chosen - set(VARIANTS):
        parser.error(f"--variants: unknown {', '.join(sorted(chosen - set(VARIANTS)))}")
    variants = [v for v in VARIANTS if v in chosen and (v != "metrics" or attach is not None)]
    if attach is None and not args.no_metrics:
        print("note: tether.observe.metrics does not exist yet; measuring recording alone")

    parts = urlsplit(args.url)
    base_url, path = f"{parts.scheme}://{parts.netloc}", (parts.path or "/")
    if parts.query:
        path += "?" + parts.query
    scenarios: list[tuple[str, int | None]] = [] if args.no_sync else [("sync", None)]
    scenarios += [(f"async c={c}", int(c)) for c in args.concurrency.split(",") if c]
    results = {(scenario, variant): Result() for scenario, _ in scenarios for variant in variants}

    with tempfile.TemporaryDirectory(prefix="tether-bench-recording-") as name:
        bench = Bench(base_url, path, Path(name), args.warmup, args.seconds, attach)
        for round_ in range(args.rounds):
            order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
            for scenario, concurrency in scenarios:
                for variant in order:
                    print(f"[{round_ + 1}/{args.rounds}] {scenario} {variant} ...", end=" ", flush=True)
                    rate = bench.run(variant, concurrency, results[(scenario, variant)])
                    print(f"{rate:,.0f} req/s", flush=True)
    report(scenarios, variants, results, args)


if __name__ == "__main__":
    main()

"""What call recording (and metrics) cost tether's clients, measured in alternating blocks within one process.

Usage::

    .venv/bin/python bench/bench_recording_paired.py [--url URL] [--blocks 25] [--block-seconds 1]
                                                     [--concurrency 1,16,64] [--no-sync] [--variants on,metrics]

``bench_recording.py`` runs each variant as its own run, with a fresh hub, client and event loop, and compares
medians of runs; on this shared machine one run's req/s swing by more than the 5% being looked for. Here the
variants' hubs and clients live through the whole scenario, and short blocks of calls alternate between them
(``off``, then each variant, the order reversed every other block), so a neighbour's load falls on every variant
alike and the cost is read block by block: ``cost = 1 - median over blocks of rate(variant) / rate(off)``
(a variant's block divided by the ``off`` block next to it).

The scenarios and variants are ``bench_recording.py``'s: ``hub.client("bench")`` in a loop on one thread, and
``hub.async_client("bench")`` called by N asyncio tasks, against the same upstream (the lab's nginx ``/json``);
``off`` records nothing; ``on`` records every call to SQLite through the recorder's thread; ``metrics`` adds
tether's Prometheus metrics. A block runs its calls for ``--block-seconds``, lets the calls in flight finish,
then writes what its calls recorded (``Recorder.flush``) before its clock stops: a block pays for its own
records, none are left for the next block to write. An uncounted first round warms every client up. At the end
each variant's store is checked to hold one record per call it made.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_client import DEFAULT_URL, _check, ensure_upstream, print_machine
from bench_recording import GOAL, make_hub, metrics_attacher, stored_records


def sync_block(client: Any, path: str, recorder: Any, seconds: float) -> tuple[float, int]:
    """req/s of one block of sync calls (its records written inside it), and the calls made."""
    calls, started = 0, time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        _check(client.get(path))
        calls += 1
    if recorder is not None:
        recorder.flush()
    return calls / (time.perf_counter() - started), calls


async def async_block(client: Any, path: str, recorder: Any, concurrency: int, seconds: float) -> tuple[float, int]:
    """req/s of one block of ``concurrency`` tasks calling (its records written inside it), and the calls made."""
    calls, running = 0, True

    async def worker() -> None:
        nonlocal calls
        while running:
            (await client.get(path)).raise_for_status()
            calls += 1

    started = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(seconds)
    running = False
    await asyncio.gather(*tasks)  # the calls in flight finish inside the block, and count
    if recorder is not None:
        await asyncio.to_thread(recorder.flush)
    return calls / (time.perf_counter() - started), calls


def scenario(
    hubs: dict[str, Any], base_url: str, path: str, concurrency: int | None, blocks: int, seconds: float
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Rates per block for each variant (the warm-up round dropped), and the calls each variant made."""
    variants = list(hubs)
    rates: dict[str, list[float]] = {variant: [] for variant in variants}
    made = dict.fromkeys(variants, 0)

    def rounds(run_block: Callable[[str], tuple[float, int]]) -> None:
        for block in range(-1, blocks):  # block -1 warms up
            for variant in variants if block % 2 == 0 else variants[::-1]:
                rate, calls = run_block(variant)
                made[variant] += calls
                if block >= 0:
                    rates[variant].append(rate)

    if concurrency is None:
        clients = {variant: hub.client("bench") for variant, hub in hubs.items()}
        try:
            rounds(lambda v: sync_block(clients[v], path, hubs[v].recorder, seconds))
        finally:
            for client in clients.values():
                client.close()
        return rates, made

    async def main(c: int) -> None:
        clients = {variant: hub.async_client("bench") for variant, hub in hubs.items()}
        try:
            for block in range(-1, blocks):
                for variant in variants if block % 2 == 0 else variants[::-1]:
                    rate, calls = await async_block(clients[variant], path, hubs[variant].recorder, c, seconds)
                    made[variant] += calls
                    if block >= 0:
                        rates[variant].append(rate)
        finally:
            for client in clients.values():
                await client.aclose()

    asyncio.run(main(concurrency))
    return rates, made


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=None, help=f"the URL to GET (default {DEFAULT_URL})")
    parser.add_argument("--blocks", type=int, default=25, help="counted blocks per variant and scenario")
    parser.add_argument("--block-seconds", type=float, default=1.0, help="seconds of calls per block")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated async concurrencies")
    parser.add_argument("--no-sync", action="store_true", help="skip the sync scenario")
    parser.add_argument("--variants", default="on,metrics", help="compared with off: on, metrics or both")
    args = parser.parse_args(argv)
    if args.blocks < 5:
        parser.error("--blocks must be at least 5")
    start_if_down = args.url is None
    args.url = args.url or DEFAULT_URL
    ensure_upstream(args.url, start_if_down)
    parts = urlsplit(args.url)
    base_url, path = f"{parts.scheme}://{parts.netloc}", parts.path or "/"
    attach = metrics_attacher()
    variants = ["off", *[v for v in args.variants.split(",") if v in ("on", "metrics")]]
    scenarios: list[tuple[str, int | None]] = [] if args.no_sync else [("sync", None)]
    scenarios += [(f"async c={c}", int(c)) for c in args.concurrency.split(",") if c]

    print_machine()
    print(f"load      GET {args.url}; {args.blocks} blocks of {args.block_seconds:g} s per variant and scenario")
    print()
    header = f"{'scenario':12} {'variant':8} {'req/s':>8} {'cost':>7} {'ratio IQR':>15} {'stored/calls':>17}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, concurrency in scenarios:
        with tempfile.TemporaryDirectory(prefix="tether-bench-paired-") as folder:
            directory = Path(folder)
            made_hubs = {v: make_hub(base_url, v, directory, attach if v == "metrics" else None) for v in variants}
            hubs = {v: hub for v, (hub, _) in made_hubs.items()}
            try:
                rates, made = scenario(hubs, base_url, path, concurrency, args.blocks, args.block_seconds)
            finally:
                for hub in hubs.values():
                    hub.close()
            print(f"{name:12} {'off':8} {statistics.median(rates['off']):>8,.0f}")
            for variant in variants[1:]:
                ratios = [v / o for v, o in zip(rates[variant], rates["off"], strict=True)]
                cost = 1 - statistics.median(ratios)
                low, high = quartiles(ratios)
                stored = stored_records(directory, variant)
                worst = max(worst, cost)
                print(
                    f"{name:12} {variant:8} {statistics.median(rates[variant]):>8,.0f} {cost:>7.1%} "
                    f"{low:>7.3f}-{high:.3f} {stored:>8,}/{made[variant]:,}"
                )
                if stored != made[variant]:
                    sys.exit(f"{variant}: {stored} records stored for {made[variant]} calls")
    print()
    print("cost = 1 - median over blocks of req/s(variant) / req/s(off) in the adjacent block; ratio IQR: quartiles")
    verdict = "met" if worst <= GOAL else "NOT met"
    print(f"goal: cost of every variant <= {GOAL:.0%} in every scenario -- {verdict} (worst {worst:.1%})")


if __name__ == "__main__":
    main()

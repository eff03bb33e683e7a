"""Requests per second through tether's clients against a local nginx, beside the plain alternatives.

Usage::

    .venv/bin/python bench/bench_client.py [--url URL] [--seconds 3] [--repeats 3] [--warmup 1]
                                           [--concurrency 1,16,64] [--only SUBSTRING]

Every case runs ``--repeats`` times, the repeats interleaved across cases so that a noisy neighbour
hurts them all alike, and the median is quoted. Each async run gets a fresh event loop
(``asyncio.run``) and a fresh client; its first ``--warmup`` seconds are not counted. Without ``--url``
the script starts the lab upstream (``shared/lab/upstream start``) when nothing answers on port 18080.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import datetime
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx2

from tether.client.aiohttp_transport import AiohttpTransport

DEFAULT_URL = "http://127.0.0.1:18080/json"
UPSTREAM_SCRIPT = Path(__file__).resolve().parents[1].parent / "shared/lab/upstream"

Fetch = Callable[[], Awaitable[None]]


@dataclass
class Case:
    """One measured configuration: a name, a concurrency and a function that returns req/s."""

    name: str
    concurrency: int
    run: Callable[[], float]
    rates: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None


# -- the measurement loops -----------------------------------------------------------------------


async def drive(fetch: Fetch, concurrency: int, warmup: float, seconds: float) -> float:
    """Run ``concurrency`` workers calling ``fetch`` in a loop; return completions per second."""
    count = 0
    running = True

    async def worker() -> None:
        nonlocal count
        while running:
            await fetch()
            count += 1

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.sleep(warmup)
        start_count, start = count, time.perf_counter()
        await asyncio.sleep(seconds)
        done, elapsed = count - start_count, time.perf_counter() - start
        for task in tasks:
            if task.done():
                task.result()  # a worker that died would make the number meaningless
    finally:
        running = False
        await asyncio.gather(*tasks, return_exceptions=True)
    return done / elapsed


def drive_sync(fetch: Callable[[], None], warmup: float, seconds: float) -> float:
    """Call ``fetch`` in a loop on this thread; return completions per second after the warm-up."""
    deadline = time.perf_counter() + warmup
    while time.perf_counter() < deadline:
        fetch()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fetch()
        count += 1
    return count / (time.perf_counter() - start)


# -- the clients ---------------------------------------------------------------------------------


def tether_hub(base_url: str) -> Any:
    """Return a tether Hub with one integration, ``bench``, or None while the Hub does not exist yet."""
    try:
        from tether import Hub  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    # The hub records its calls (the default) to tether.db beside its config: the folder lives as long as the
    # process, then goes, so no run leaves a store behind.
    directory = tempfile.mkdtemp(prefix="tether-bench-client-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    config = Path(directory) / "tether.toml"
    config.write_text(f'[integrations.bench]\nbase_url = "{base_url}"\n')
    return Hub.from_config(config)


def build_cases(url: str, concurrencies: list[int], warmup: float, seconds: float) -> list[Case]:
    parts = urlsplit(url)
    base_url, path = f"{parts.scheme}://{parts.netloc}", parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    hub_available = tether_hub(base_url) is not None
    cases: list[Case] = []

    def sync_httpx() -> float:
        with httpx2.Client(base_url=base_url) as client:
            return drive_sync(lambda: _check(client.get(path)), warmup, seconds)

    def sync_tether() -> float:
        hub = tether_hub(base_url)
        with hub.client("bench") as client:
            return drive_sync(lambda: _check(client.get(path)), warmup, seconds)

    cases.append(Case("sync httpx2.Client", 1, sync_httpx))
    cases.append(Case("sync tether hub.client", 1, sync_tether if hub_available else _unavailable))

    for concurrency in concurrencies:

        async def raw_aiohttp(c: int = concurrency) -> float:
            async with aiohttp.ClientSession() as session:

                async def fetch() -> None:
                    async with session.get(url) as response:
                        await response.read()
                        response.raise_for_status()

                return await drive(fetch, c, warmup, seconds)

        async def transport_direct(c: int = concurrency) -> float:
            async with AiohttpTransport() as transport:
                # One request, sent again and again: building an httpx2.Request (URL parsing) costs about
                # as much as the transport itself, and this row is about the transport.
                request = httpx2.Request("GET", url, extensions={"timeout": httpx2.Timeout(5.0).as_dict()})

                async def fetch() -> None:
                    response = await transport.handle_async_request(request)
                    await response.aread()
                    await response.aclose()
                    response.raise_for_status()

                return await drive(fetch, c, warmup, seconds)

        async def httpx_with(c: int = concurrency, transport: bool = False) -> float:
            kwargs: dict[str, Any] = {"transport": AiohttpTransport()} if transport else {}
            async with httpx2.AsyncClient(base_url=base_url, **kwargs) as client:

                async def fetch() -> None:
                    (await client.get(path)).raise_for_status()

                return await drive(fetch, c, warmup, seconds)

        async def tether_async(c: int = concurrency) -> float:
            hub = tether_hub(base_url)
            async with hub.async_client("bench") as client:

                async def fetch() -> None:
                    (await client.get(path)).raise_for_status()

                return await drive(fetch, c, warmup, seconds)

        def in_loop(factory: Callable[[], Awaitable[float]]) -> Callable[[], float]:
            return lambda: asyncio.run(factory())  # type: ignore[arg-type]

        cases += [
            Case("async raw aiohttp", concurrency, in_loop(raw_aiohttp)),
            Case("async AiohttpTransport direct", concurrency, in_loop(transport_direct)),
            Case("async httpx2.AsyncClient+AiohttpTransport", concurrency, in_loop(lambda: httpx_with(transport=True))),
            Case("async httpx2.AsyncClient", concurrency, in_loop(httpx_with)),
            Case(
                "async tether hub.async_client",
                concurrency,
                in_loop(tether_async) if hub_available else _unavailable,
            ),
        ]
    return cases


def _check(response: httpx2.Response) -> None:
    response.raise_for_status()


def _unavailable() -> float:
    raise LookupError("tether: not available yet")


# -- running and reporting -----------------------------------------------------------------------


def ensure_upstream(url: str, start_if_down: bool) -> None:
    if _answers(url):
        return
    if not start_if_down:
        sys.exit(f"nothing answers at {url}")
    print(f"starting the lab upstream: {UPSTREAM_SCRIPT} start", flush=True)
    subprocess.run([str(UPSTREAM_SCRIPT), "start"], check=True)
    for _ in range(50):
        if _answers(url):
            return
        time.sleep(0.1)
    sys.exit(f"the lab upstream did not come up at {url}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (a URL we were given)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def report(cases: list[Case], args: argparse.Namespace) -> None:
    baseline: dict[int, float | None] = {}
    for case in cases:
        if case.name in ("sync httpx2.Client", "async httpx2.AsyncClient"):
            baseline[case.concurrency if case.name.startswith("async") else 0] = case.median
    limits = {case.concurrency: case.median for case in cases if case.name == "async raw aiohttp"}

    print()
    print_machine()
    print(f"versions  httpx2 {httpx2.__version__}, aiohttp {aiohttp.__version__}")
    print(f"url       {args.url}   {args.seconds:g} s per run, {args.repeats} runs, median quoted")
    print()
    header = f"{'case':44} {'c':>3} {'req/s':>8} {'min-max':>15} {'vs httpx2':>10} {'vs aiohttp':>11}"
    print(header)
    print("-" * len(header))
    for case in cases:
        if case.error is not None:
            print(f"{case.name:44} {case.concurrency:>3} {case.error}")
            continue
        median = case.median
        assert median is not None
        spread = f"{min(case.rates):,.0f}-{max(case.rates):,.0f}"
        base = baseline.get(0 if case.name.startswith("sync") else case.concurrency)
        limit = None if case.name.startswith("sync") else limits.get(case.concurrency)
        print(
            f"{case.name:44} {case.concurrency:>3} {median:>8,.0f} {spread:>15} "
            f"{_ratio(median, base):>10} {_ratio(median, limit):>11}"
        )


def _ratio(value: float, against: float | None) -> str:
    return f"{value / against:.2f}x" if against else "-"


def print_machine() -> None:
    """The date, the platform with its CPU count, and the Python: the first lines of every report."""
    import os

    print(f"date      {datetime.date.today().isoformat()}")
    print(f"platform  {platform.platform()}  ({os.cpu_count()} CPUs)")
    print(f"python    {platform.python_implementation()} {platform.python_version()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=None, help=f"the URL to GET (default {DEFAULT_URL})")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the median is quoted")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated async concurrencies")
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    args = parser.parse_args(argv)
    start_if_down = args.url is None
    args.url = args.url or DEFAULT_URL
    ensure_upstream(args.url, start_if_down)

    concurrencies = [int(c) for c in args.concurrency.split(",") if c]
    cases = build_cases(args.url, concurrencies, args.warmup, args.seconds)
    if args.only:
        cases = [case for case in cases if args.only in case.name]
    for repeat in range(args.repeats):
        for case in cases:
            if case.error is not None:
                continue
            print(f"[{repeat + 1}/{args.repeats}] {case.name} c={case.concurrency} ...", end=" ", flush=True)
            try:
                rate = case.run()
            except LookupError as exc:
                case.error = str(exc)
                print(case.error)
                continue
            except Exception as exc:
                case.error = f"failed: {type(exc).__name__}: {exc}"
                print(case.error)
                continue
            case.rates.append(rate)
            print(f"{rate:,.0f} req/s", flush=True)
    report(cases, args)


if __name__ == "__main__":
    main()

"""Rate limits, the circuit breaker and shared state under stress: tether beside the plain alternatives.

Usage::

    .venv/bin/python bench/bench_limits.py [--seconds 20] [--warmup 1] [--processes 4] [--tasks 8]
                                           [--tether-rate 50] [--repeats 1] [--only goodput,outage,redis]

Three measurements, printed side by side at the end:

1. **goodput**: ``--processes`` processes x ``--tasks`` asyncio tasks hammer ``GET /limited`` (nginx
   ``limit_req`` at ``--rate`` r/s, burst 5 nodelay, 429 + ``Retry-After: 1`` beyond) for ``--seconds``
   after ``--warmup``. Per contender: 200s per second / rate (goodput) and the share of attempts answered 429.
   Contenders: tether with Redis state shared by the processes; httpx + tenacity retrying 429 with exponential
   jitter; httpx + aiolimiter ``AsyncLimiter(rate, 1)`` per process, retrying 429 after ``Retry-After`` (and,
   "no wait", retrying 429 at once through the limiter); tether with ``state = "memory"`` (each process on its
   own). Attempts are counted below tether's policies, so its retries count too.
2. **outage**: the integration points at a closed port; once its breaker has opened, the latency of calls
   failing with ``tether.CircuitOpenError`` (sync and async, memory and Redis state); then a server comes up
   on that port and the time until calls succeed again is measured.
3. **redis**: tether (state on a redis-server this script starts on a free port) calls ``GET /json`` from 8
   async tasks and one sync thread; the redis-server is killed at 2 s and started again at 4 s. Calls per
   second bucket and every exception that reached the caller.

Without ``--base-url`` the script starts the lab upstream (``shared/lab/upstream start``) when nothing answers
on port 18080. Needs, beside tether's own dependencies: httpx, tenacity, aiolimiter, redis (redis-py), and a
``redis-server`` binary; a Redis at ``--redis`` for the shared-state cases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import http.server
import logging
import multiprocessing
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx2

import tether
from tether.client.build import network_transport

DEFAULT_BASE_URL = "http://127.0.0.1:18080"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
UPSTREAM_SCRIPT = Path(__file__).resolve().parents[1].parent / "shared/lab/upstream"
ISSUE_NUMBERS = {"httpx + tenacity": (83.0, 32.0), "httpx + aiolimiter": (None, 77.0)}
SECTIONS = ("goodput", "outage", "redis")


# -- shared helpers ------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: str, text: str) -> Path:
    path = Path(directory) / "tether.toml"
    path.write_text(text)
    return path


class StateWarnings(logging.Handler):
    """Counts the warnings ``tether.state`` logs (one when Redis fails, one when it answers again)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.created, record.getMessage()))

    def __enter__(self) -> StateWarnings:
        logger = logging.getLogger("tether.state")
        logger.addHandler(self)
        logger.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("tether.state").removeHandler(self)


def delete_keys(redis_url: str, prefix: str) -> None:
    """Remove what one run left in Redis (every key has a TTL anyway)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# -- 1. goodput at a real limit ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoodputJob:
    """What one worker process needs (picklable: it crosses to a spawned process)."""

    contender: str
    base_url: str
    rate: float
    tether_rate: float
    tasks: int
    run_for: float
    redis_url: str
    prefix: str
    config_dir: str


@dataclass
class GoodputRun:
    """One run of one contender: every attempt and call of every process, in wall-clock seconds."""

    attempts: list[tuple[float, int | None]] = field(default_factory=list)  # (finished at, status or None)
    calls: list[tuple[float, float, str]] = field(default_factory=list)  # (started, finished, outcome)
    begins: list[float] = field(default_factory=list)
    state_warnings: int = 0
    ignored_cancels: int = 0


Attempts = list[tuple[float, int | None]]


class CountingTransport(httpx2.AsyncBaseTransport):
    """Wraps tether's network transport to record every attempt (retries included) and its status."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, log: Attempts) -> None:
        self.inner, self.log = inner, log

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await self.inner.handle_async_request(request)
        except Exception:
            self.log.append((time.time(), None))
            raise
        self.log.append((time.time(), response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def goodput_worker(job: GoodputJob, barrier: Any, results: Any) -> None:
    """Entry point of one load process: set up, wait for the others, run, send back what happened."""
    try:
        result = asyncio.run(_goodput_process(job, barrier))
    except BaseException as exc:
        barrier.abort()
        results.put(f"{type(exc).__name__}: {exc}")
        raise
    results.put(result)


async def _goodput_process(job: GoodputJob, barrier: Any) -> GoodputRun:
    run = GoodputRun()
    call: Callable[[], Awaitable[Any]]
    async with contextlib.AsyncExitStack() as stack:
        if job.contender.startswith("tether"):
            call = await _tether_caller(job, run.attempts, stack)
        elif job.contender == "httpx + tenacity":
            call = await _tenacity_caller(job, run.attempts, stack)
        elif job.contender.startswith("httpx + aiolimiter"):
            call = await _aiolimiter_caller(job, run.attempts, stack, honour_retry_after="no wait" not in job.contender)
        else:
            raise ValueError(job.contender)
        warnings = stack.enter_context(StateWarnings())

        stopping = False

        async def worker() -> None:
            while not stopping:
                started = time.time()
                try:
                    outcome = str(await call())
                except Exception as exc:
                    outcome = type(exc).__name__
                run.calls.append((started, time.time(), outcome))
                if ignored_cancel():
                    run.ignored_cancels += 1
                    return

        await asyncio.to_thread(barrier.wait, 120)
        run.begins.append(time.time())
        tasks = [asyncio.create_task(worker()) for _ in range(job.tasks)]
        await asyncio.sleep(job.run_for)
        stopping = True  # as well as cancelling: a call may swallow its cancellation (see ignored_cancel)
        for task in tasks:
            if task.done():
                task.result()  # a worker that died would make the numbers meaningless
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        run.state_warnings = len(warnings.records)
    return run


def ignored_cancel() -> bool:
    """Whether this task was cancelled and the call it awaited returned anyway (the cancellation was lost)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _tether_caller(
    job: GoodputJob, log: Attempts, stack: contextlib.AsyncExitStack
) -> Callable[[], Awaitable[int]]:
    from tether.state.memory import MemoryState

    shared = job.contender == "tether, Redis state"
    config = write_config(
        tempfile.mkdtemp(dir=job.config_dir),
        f'state = "{job.redis_url if shared else "memory"}"\n'
        "[integrations.lab]\n"
        f'base_url = "{job.base_url}"\n'
        f'rate_limit = {{ requests = {job.tether_rate:g}, per = "1s", burst = 1 }}\n'
        'timeout = "30s"\n'
        'retry = { attempts = 10, backoff = "100ms", budget = 1.0 }\n',
    )
    state: Any = None
    if shared:
        from tether.state.redis import RedisState

        # What Hub._state_for builds from the config's URL, plus a prefix of this run's own.
        state = RedisState(job.redis_url, prefix=job.prefix, fallback=MemoryState())
        stack.push_async_callback(state.aclose)
    hub = tether.Hub.from_config(config, state=state)
    network = CountingTransport(network_transport(hub.integration("lab"), hub.base_dir, asynchronous=True), log)
    client = await stack.enter_async_context(hub.async_client("lab", network=network))

    async def call() -> int:
        return (await client.get("/limited")).status_code

    return call


async def _tenacity_caller(
    job: GoodputJob, log: Attempts, stack: contextlib.AsyncExitStack
) -> Callable[[], Awaitable[int]]:
    import httpx
    from tenacity import retry, retry_if_result, stop_after_attempt, wait_random_exponential

    client = await stack.enter_async_context(httpx.AsyncClient(base_url=job.base_url, timeout=30))

    @retry(
        retry=retry_if_result(lambda status: status == 429),
        wait=wait_random_exponential(multiplier=0.1, max=5),
        stop=stop_after_attempt(10),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    async def call() -> int:
        try:
            response = await client.get("/limited")
        except Exception:
            log.append((time.time(), None))
            raise
        log.append((time.time(), response.status_code))
        return response.status_code

    return call


async def _aiolimiter_caller(
    job: GoodputJob, log: Attempts, stack: contextlib.AsyncExitStack, *, honour_retry_after: bool
) -> Callable[[], Awaitable[int]]:
    import httpx
    from aiolimiter import AsyncLimiter

    client = await stack.enter_async_context(httpx.AsyncClient(base_url=job.base_url, timeout=30))
    limiter = AsyncLimiter(job.rate, 1)

    async def call() -> int:
        for _ in range(10):
            async with limiter:
                try:
                    response = await client.get("/limited")
                except Exception:
                    log.append((time.time(), None))
                    raise
            log.append((time.time(), response.status_code))
            if response.status_code != 429:
                break
            if honour_retry_after:
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        return response.status_code

    return call


def run_goodput(contender: str, args: argparse.Namespace, tether_rate: float, directory: str) -> GoodputRun:
    """One run: ``--processes`` spawned processes, started together; their records merged."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(args.processes), context.Queue()
    prefix = f"tether:bench-{uuid.uuid4().hex[:8]}:"
    job = GoodputJob(
        contender,
        args.base_url,
        args.rate,
        tether_rate,
        args.tasks,
        args.warmup + args.seconds + 0.3,  # a little extra so skew between processes' starts costs nothing
        args.redis,
        prefix,
        directory,
    )
    processes = [context.Process(target=goodput_worker, args=(job, barrier, results)) for _ in range(args.processes)]
    for process in processes:
        process.start()
    merged = GoodputRun()
    try:
        for _ in processes:
            part = results.get(timeout=args.warmup + args.seconds + 120)
            if isinstance(part, str):
                raise RuntimeError(f"a load process failed: {part}")
            merged.attempts += part.attempts
            merged.calls += part.calls
            merged.begins += part.begins
            merged.state_warnings += part.state_warnings
            merged.ignored_cancels += part.ignored_cancels
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        if contender == "tether, Redis state":
            delete_keys(args.redis, prefix)
    return merged


@dataclass
class GoodputStats:
    ok_per_s: float
    goodput: float
    attempts_per_s: float
    share_429: float
    errors: int
    gave_up: int
    latency_p50: float
    latency_p99: float
    series: list[int]
    state_warnings: int
    ignored_cancels: int


def goodput_stats(run: GoodputRun, args: argparse.Namespace) -> GoodputStats:
    """Counted over ``--seconds`` from ``--warmup`` after the first process started."""
    start = min(run.begins) + args.warmup
    end = start + args.seconds
    window = [(at, status) for at, status in run.attempts if start <= at < end]
    ok = sum(1 for _, status in window if status == 200)
    limited = sum(1 for _, status in window if status == 429)
    errors = sum(1 for _, status in window if status is None)
    calls = [(begun, done, outcome) for begun, done, outcome in run.calls if start <= done < end]
    latencies = [done - begun for begun, done, outcome in calls if outcome == "200"]
    series = [0] * max(1, round(args.seconds))
    for at, status in window:
        if status == 200:
            series[min(len(series) - 1, int(at - start))] += 1
    return GoodputStats(
        ok_per_s=ok / args.seconds,
        goodput=100 * ok / args.seconds / args.rate,
        attempts_per_s=len(window) / args.seconds,
        share_429=100 * limited / len(window) if window else float("nan"),
        errors=errors,
        gave_up=sum(1 for _, _, outcome in calls if outcome != "200"),
        latency_p50=percentile(latencies, 50),
        latency_p99=percentile(latencies, 99),
        series=series,
        state_warnings=run.state_warnings,
        ignored_cancels=run.ignored_cancels,
    )


def goodput_section(args: argparse.Namespace) -> list[tuple[str, list[GoodputStats]]]:
    contenders: list[tuple[str, str, float]] = [
        (f"tether, Redis state, {rate:g}/s", "tether, Redis state", rate) for rate in args.tether_rate
    ]
    contenders += [
        ("httpx + tenacity", "httpx + tenacity", args.rate),
        ("httpx + aiolimiter", "httpx + aiolimiter", args.rate),
        ("httpx + aiolimiter, no wait", "httpx + aiolimiter, no wait", args.rate),
    ]
    if not args.no_memory:
        rate = args.tether_rate[0]
        contenders.append((f"tether, memory state, {rate:g}/s", "tether, memory state", rate))
    if args.contender:
        contenders = [entry for entry in contenders if args.contender in entry[0]]
    rows: dict[str, list[GoodputStats]] = {label: [] for label, _, _ in contenders}
    with tempfile.TemporaryDirectory() as directory:
        for repeat in range(args.repeats):
            for label, contender, rate in contenders:
                print(f"[goodput {repeat + 1}/{args.repeats}] {label} ...", end=" ", flush=True)
                time.sleep(1.0)  # let nginx's bucket drain whatever the previous contender left in it
                stats = goodput_stats(run_goodput(contender, args, rate, directory), args)
                rows[label].append(stats)
                print(f"goodput {stats.goodput:.1f}%, 429 {stats.share_429:.1f}% of attempts", flush=True)
    return list(rows.items())


# -- 2. outage: the breaker ----------------------------------------------------------------------------------------


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class OutageResult:
    label: str
    calls_to_open: int
    latencies: list[float]  # seconds, calls that failed with CircuitOpenError
    other_errors: dict[str, int]
    since_up: float  # from the server listening to the first success
    since_open: float  # from the first CircuitOpenError to the first success
    open_for: float


def outage_config(port: int, state: str, open_for: str) -> str:
    return (
        f'state = "{state}"\n'
        "[integrations.down]\n"
        f'base_url = "http://127.0.0.1:{port}"\n'
        f'breaker = {{ min_calls = 10, open_for = "{open_for}" }}\n'
        'retry = { attempts = 3, backoff = "10ms" }\n'
    )


def outage_hub(args: argparse.Namespace, directory: str, port: int, shared: bool) -> tuple[Any, Any]:
    from tether.state.memory import MemoryState

    config = write_config(
        tempfile.mkdtemp(dir=directory), outage_config(port, args.redis if shared else "memory", "2s")
    )
    state = None
    if shared:
        from tether.state.redis import RedisState

        state = RedisState(args.redis, prefix=f"tether:bench-{uuid.uuid4().hex[:8]}:", fallback=MemoryState())
    return tether.Hub.from_config(config, state=state), state


def run_outage_sync(args: argparse.Namespace, directory: str, shared: bool) -> OutageResult:
    port = free_port()
    hub, state = outage_hub(args, directory, port, shared)
    other: dict[str, int] = {}
    latencies: list[float] = []
    server: http.server.ThreadingHTTPServer | None = None
    try:
        with hub.client("down") as client:
            calls = 0
            while True:  # until the breaker opens
                calls += 1
                try:
                    client.get("/")
                except tether.CircuitOpenError:
                    opened = time.monotonic()
                    break
                except httpx2.HTTPError as exc:
                    other[type(exc).__name__] = other.get(type(exc).__name__, 0) + 1
                if calls > 1000:
                    raise RuntimeError("the breaker did not open after 1,000 calls")
            for _ in range(args.breaker_calls):
                begun = time.perf_counter()
                try:
                    client.get("/")
                except tether.CircuitOpenError:
                    latencies.append(time.perf_counter() - begun)
                except httpx2.HTTPError as exc:
                    other[type(exc).__name__] = other.get(type(exc).__name__, 0) + 1
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Ok)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            up = time.monotonic()
            while True:
                try:
                    if client.get("/").status_code == 200:
                        break
                except (tether.CircuitOpenError, httpx2.HTTPError):
                    pass
                if time.monotonic() - up > 30:
                    raise RuntimeError("no success 30 s after the upstream came back")
                time.sleep(0.005)
            done = time.monotonic()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if state is not None:
            delete_keys(args.redis, state.prefix)
            state.close()
    label = f"sync, {'Redis' if shared else 'memory'} state"
    return OutageResult(label, calls, latencies, other, done - up, done - opened, 2.0)


def run_outage_async(args: argparse.Namespace, directory: str, shared: bool) -> OutageResult:
    async def main() -> OutageResult:
        port = free_port()
        hub, state = outage_hub(args, directory, port, shared)
        other: dict[str, int] = {}
        latencies: list[float] = []
        server: http.server.ThreadingHTTPServer | None = None
        try:
            async with hub.async_client("down") as client:
                calls = 0
                while True:
                    calls += 1
                    try:
                        await client.get("/")
                    except tether.CircuitOpenError:
                        opened = time.monotonic()
                        break
                    except httpx2.HTTPError as exc:
                        other[type(exc).__name__] = other.get(type(exc).__name__, 0) + 1
                    if calls > 1000:
                        raise RuntimeError("the breaker did not open after 1,000 calls")
                for _ in range(args.breaker_calls):
                    begun = time.perf_counter()
                    try:
                        await client.get("/")
                    except tether.CircuitOpenError:
                        latencies.append(time.perf_counter() - begun)
                    except httpx2.HTTPError as exc:
                        other[type(exc).__name__] = other.get(type(exc).__name__, 0) + 1
                server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Ok)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                up = time.monotonic()
                while True:
                    try:
                        if (await client.get("/")).status_code == 200:
                            break
                    except (tether.CircuitOpenError, httpx2.HTTPError):
                        pass
                    if time.monotonic() - up > 30:
                        raise RuntimeError("no success 30 s after the upstream came back")
                    await asyncio.sleep(0.005)
                done = time.monotonic()
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            if state is not None:
                delete_keys(args.redis, state.prefix)
                await state.aclose()
        label = f"async, {'Redis' if shared else 'memory'} state"
        return OutageResult(label, calls, latencies, other, done - up, done - opened, 2.0)

    return asyncio.run(main())


def outage_section(args: argparse.Namespace) -> list[OutageResult]:
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for shared in (False, True):
            for runner in (run_outage_sync, run_outage_async):
                result = runner(args, directory, shared)
                print(
                    f"[outage] {result.label}: open after {result.calls_to_open} calls, CircuitOpenError "
                    f"p50 {percentile(result.latencies, 50) * 1e6:.0f} µs, p99 "
                    f"{percentile(result.latencies, 99) * 1e6:.0f} µs; recovered {result.since_open:.2f} s "
                    "after opening",
                    flush=True,
                )
                results.append(result)
    return results


# -- 3. Redis stopped mid-run --------------------------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not come up on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class RedisOutageResult:
    seconds: float
    kill_at: float
    restart_at: float
    rate: float
    buckets: list[dict[str, Any]]
    errors: dict[str, int]
    warnings: list[tuple[float, str]]
    ignored_cancels: int


def redis_section(args: argparse.Namespace) -> RedisOutageResult:
    seconds, kill_at, restart_at = 6.0, 2.0, 4.0
    server = RedisServer()
    server.start()
    records: list[tuple[str, float, float, str | None]] = []  # (sync|async, started, finished, error)
    stop = threading.Event()
    ignored: list[float] = []
    with tempfile.TemporaryDirectory() as directory, StateWarnings() as warnings:
        config = write_config(
            directory,
            f'state = "redis://127.0.0.1:{server.port}/0"\n'
            "[integrations.lab]\n"
            f'base_url = "{args.base_url}"\n'
            f'rate_limit = "{args.redis_rate:g}/s"\n',
        )
        hub = tether.Hub.from_config(config)  # state from the config, as an application would have it

        def sync_caller() -> None:
            with hub.client("lab") as client:
                while not stop.is_set():
                    begun = time.time()
                    try:
                        client.get("/json").raise_for_status()
                        error = None
                    except Exception as exc:
                        error = type(exc).__name__
                    records.append(("sync", begun, time.time(), error))

        def chaos(start: float) -> None:
            if stop.wait(max(0.0, start + kill_at - time.time())):
                return
            server.kill()
            if stop.wait(max(0.0, start + restart_at - time.time())):
                return
            server.start()

        async def main() -> float:
            async with hub.async_client("lab") as client:

                async def worker() -> None:
                    while not stop.is_set():
                        begun = time.time()
                        try:
                            (await client.get("/json")).raise_for_status()
                            error = None
                        except Exception as exc:
                            error = type(exc).__name__
                        records.append(("async", begun, time.time(), error))
                        if ignored_cancel():
                            ignored.append(begun)
                            return

                start = time.time()
                threads = [threading.Thread(target=sync_caller), threading.Thread(target=chaos, args=(start,))]
                for thread in threads:
                    thread.start()
                tasks = [asyncio.create_task(worker()) for _ in range(8)]
                await asyncio.sleep(seconds)
                stop.set()  # as well as cancelling: a call may swallow its cancellation (see ignored_cancel)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await asyncio.to_thread(lambda: [thread.join() for thread in threads])
                await hub.state.aclose()
            return start

        try:
            start = asyncio.run(main())
        finally:
            stop.set()  # an interrupted run must not leave a restarted redis-server behind
            server.kill()
        warned = [(at - start, message) for at, message in warnings.records]
    buckets = []
    for second in range(int(seconds)):
        inside = [r for r in records if second <= r[2] - start < second + 1]
        latencies = [r[2] - r[1] for r in inside]
        buckets.append(
            {
                "second": second,
                "async": sum(1 for r in inside if r[0] == "async" and r[3] is None),
                "sync": sum(1 for r in inside if r[0] == "sync" and r[3] is None),
                "errors": sum(1 for r in inside if r[3] is not None),
                "max_latency": max(latencies, default=float("nan")),
            }
        )
    errors: dict[str, int] = {}
    for record in records:
        if record[3] is not None:
            errors[record[3]] = errors.get(record[3], 0) + 1
    print(f"[redis] {len(records)} calls, errors: {errors or 'none'}", flush=True)
    return RedisOutageResult(seconds, kill_at, restart_at, args.redis_rate, buckets, errors, warned, len(ignored))


# -- running and reporting -----------------------------------------------------------------------------------------


def ensure_upstream(base_url: str, rate: float, start_if_down: bool) -> None:
    if not _answers(base_url + "/json"):
        if not start_if_down:
            sys.exit(f"nothing answers at {base_url}/json")
        port = str(httpx2.URL(base_url).port or 18080)
        print(f"starting the lab upstream: {UPSTREAM_SCRIPT} start {port} {rate:g}", flush=True)
        subprocess.run([str(UPSTREAM_SCRIPT), "start", port, f"{rate:g}"], check=True)
        for _ in range(50):
            if _answers(base_url + "/json"):
                break
            time.sleep(0.1)
        else:
            sys.exit(f"the lab upstream did not come up at {base_url}")
    if start_if_down:  # the lab's nginx: check it limits /limited at the rate we compute goodput against
        port = httpx2.URL(base_url).port or 18080
        conf = Path(f"/tmp/tether-lab-nginx-{port}/nginx.conf")  # noqa: S108 (where the lab script puts it)
        match = re.search(r"rate=(\d+)r/s", conf.read_text()) if conf.exists() else None
        if match and float(match.group(1)) != rate:
            sys.exit(f"the lab upstream limits /limited at {match.group(1)} r/s, not {rate:g}: restart it")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (a URL we were given)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _versions(args: argparse.Namespace) -> str:
    names = ("httpx2", "aiohttp", "httpx", "tenacity", "aiolimiter", "redis")
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except Exception:
            found.append(f"{name} -")
    servers = []
    for command in (["nginx", "-v"], ["redis-server", "--version"]):
        try:
            out = subprocess.run(command, capture_output=True, text=True, check=False)
            text = (out.stdout + out.stderr).strip()
            servers.append(text.replace("nginx version: ", "").split(" sha=")[0].replace("Redis server v=", "Redis "))
        except OSError:
            pass
    return f"tether {tether.__version__}, " + ", ".join(found) + "; " + ", ".join(servers)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def report(
    args: argparse.Namespace,
    goodput: list[tuple[str, list[GoodputStats]]] | None,
    outage: list[OutageResult] | None,
    redis_result: RedisOutageResult | None,
) -> None:
    print()
    print(f"date      {datetime.date.today().isoformat()}")
    print(f"platform  {platform.platform()}  ({os.cpu_count()} CPUs)")
    print(f"python    {platform.python_implementation()} {platform.python_version()}")
    print(f"versions  {_versions(args)}")
    print(f"upstream  {args.base_url}/limited at {args.rate:g} r/s (nginx limit_req, burst 5 nodelay)")
    if goodput:
        print()
        print(
            f"1. goodput: {args.processes} processes x {args.tasks} tasks, {args.seconds:g} s counted after "
            f"{args.warmup:g} s, {args.repeats} run(s), median quoted"
        )
        header = (
            f"{'contender':34} {'200/s':>6} {'goodput':>8} {'min-max':>13} {'attempts/s':>10} {'429 %':>6} "
            f"{'gave up':>7} {'p50 call':>9} {'p99 call':>9} {'issue':>12}"
        )
        print(header)
        print("-" * len(header))
        for label, runs in goodput:
            if not runs:
                continue
            goodputs = [r.goodput for r in runs]
            median = {
                name: statistics.median(getattr(r, name) for r in runs)
                for name in ("ok_per_s", "goodput", "attempts_per_s", "share_429", "gave_up", "latency_p50")
            }
            p99 = statistics.median(r.latency_p99 for r in runs)
            issue = ISSUE_NUMBERS.get(label)
            quoted = "-"
            if issue:
                quoted = "/".join("-" if x is None else f"{x:.0f}%" for x in issue)
            print(
                f"{label:34} {median['ok_per_s']:>6.1f} {median['goodput']:>7.1f}% "
                f"{min(goodputs):>5.1f}-{max(goodputs):>5.1f}% {median['attempts_per_s']:>10.1f} "
                f"{median['share_429']:>5.1f}% {median['gave_up']:>7.0f} {_ms(median['latency_p50']):>9} "
                f"{_ms(p99):>9} {quoted:>12}"
            )
        print("   (issue = goodput/429 share quoted by the issue)   200s per second, last run:")
        for label, runs in goodput:
            if runs:
                last = runs[-1]
                notes = f"   [tether.state warnings: {last.state_warnings}]" if last.state_warnings else ""
                if last.ignored_cancels:
                    notes += f"   [cancellations ignored at the end: {last.ignored_cancels}]"
                print(f"   {label:34} {' '.join(str(n) for n in last.series)}{notes}")
    if outage:
        print()
        print(
            "2. outage: upstream down (closed port), breaker { min_calls = 10, open_for = 2s }, "
            f"{args.breaker_calls} calls timed once it opened"
        )
        header = (
            f"{'client':24} {'calls to open':>13} {'timed':>6} {'p50':>8} {'p99':>8} {'max':>8} "
            f"{'other errors':>14} {'success after up':>16} {'after opening':>13}"
        )
        print(header)
        print("-" * len(header))
        for result in outage:
            lat = result.latencies
            others = ", ".join(f"{k} {v}" for k, v in result.other_errors.items()) or "-"
            print(
                f"{result.label:24} {result.calls_to_open:>13} {len(lat):>6} {percentile(lat, 50) * 1e6:>6.0f}µs "
                f"{percentile(lat, 99) * 1e6:>6.0f}µs {max(lat, default=float('nan')) * 1e6:>6.0f}µs "
                f"{others:>14} {result.since_up:>14.2f} s {result.since_open:>11.2f} s"
            )
    if redis_result:
        r = redis_result
        print()
        print(
            f"3. Redis killed at {r.kill_at:g} s and restarted at {r.restart_at:g} s: tether, rate_limit "
            f"{r.rate:g}/s, 8 async tasks + 1 sync thread on GET /json"
        )
        header = f"{'second':>6} {'async ok/s':>10} {'sync ok/s':>9} {'errors':>6} {'max latency':>11}"
        print(header)
        print("-" * len(header))
        for b in r.buckets:
            print(f"{b['second']:>6} {b['async']:>10} {b['sync']:>9} {b['errors']:>6} {_ms(b['max_latency']):>11}")
        print(f"exceptions reaching the caller: {r.errors or 'none'}")
        if r.ignored_cancels:
            print(f"cancellations ignored when the run ended: {r.ignored_cancels} of 8 async tasks")
        for at, message in r.warnings:
            print(f"   tether.state warning at {at:.2f} s: {message}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", default=None, help=f"the upstream (default {DEFAULT_BASE_URL}, the lab nginx)")
    parser.add_argument("--rate", type=float, default=50.0, help="the upstream's limit on /limited, r/s")
    parser.add_argument(
        "--tether-rate", default="50", help="tether's rate_limit in r/s; several, comma-separated, run each"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="counted seconds per goodput run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds each goodput run spends before counting")
    parser.add_argument("--repeats", type=int, default=1, help="goodput runs per contender; the median is quoted")
    parser.add_argument("--processes", type=int, default=4, help="load processes per goodput run")
    parser.add_argument("--tasks", type=int, default=8, help="asyncio tasks per load process")
    parser.add_argument("--contender", default=None, help="run only goodput contenders whose name contains this")
    parser.add_argument("--no-memory", action="store_true", help="skip tether with memory state in the goodput runs")
    parser.add_argument("--breaker-calls", type=int, default=2000, help="calls timed while the breaker is open")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="the Redis shared by the goodput and outage cases")
    parser.add_argument("--redis-rate", type=float, default=200.0, help="tether's rate_limit in the Redis-kill run")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    args.tether_rate = [float(rate) for rate in args.tether_rate.split(",") if rate]
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - set(SECTIONS):
        parser.error(f"--only takes {', '.join(SECTIONS)}")
    start_if_down = args.base_url is None
    args.base_url = (args.base_url or DEFAULT_BASE_URL).rstrip("/")
    ensure_upstream(args.base_url, args.rate, start_if_down)

    began = time.monotonic()
    goodput = goodput_section(args) if "goodput" in only else None
    outage = outage_section(args) if "outage" in only else None
    redis_result = redis_section(args) if "redis" in only else None
    report(args, goodput, outage, redis_result)
    print(f"\n(whole run {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()

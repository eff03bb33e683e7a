"""Webhook ingest: requests per second into tether's receiver, next to a no-op and a naive endpoint, driven by wrk.

Usage::

    .venv/bin/python bench/bench_webhooks.py [--duration 10] [--connections 32] [--threads 2] [--runs 3]
                                             [--warmup 3] [--quick] [--only noop,naive,tether] [--pg URL]

Needs wrk (``apt-get install -y wrk``; ``sudo apt-get install -y wrk`` when not root) and, for the ``-pg`` cases,
a PostgreSQL at ``--pg`` (default ``postgresql://postgres@127.0.0.1:5432/test``) where the user may create a
schema. Every server is one ``uvicorn --workers 1`` process on a free port of 127.0.0.1; wrk sends
``POST /webhooks/gh`` with a 1 KB GitHub ``issues`` event, signed (``X-Hub-Signature-256``) and with a delivery
id (``X-GitHub-Delivery``) unique to each request: a wrk Lua script, generated per run, builds it from the run's
prefix, wrk's thread and a counter. The endpoints (``--only`` takes names or parts of names, comma-separated):

- ``noop``: a raw ASGI app that reads the body and answers 200 ``{"ok":true}``: the limit.
- ``naive-sqlite`` / ``naive-pg``: a raw ASGI app that INSERTs (delivery id, headers, body) and COMMITs per
  request, then answers 200: sqlite3 on the event loop, WAL, SQLite's default ``synchronous=FULL``; or a
  psycopg 3 ``AsyncConnectionPool`` of 4. See ``bench/_webhook_apps.py``.
- ``tether-sqlite`` / ``tether-pg``: ``tether --config tether.toml serve``, the config holding one integration
  ``gh`` with ``[integrations.gh.webhooks] scheme = "github"`` and the store on SQLite or PostgreSQL.

noop and naive run under ``python -m uvicorn --workers 1 --log-level warning --no-access-log --loop auto
--http auto`` (uvloop and httptools when installed; the table's header says which ran); ``tether serve``
runs uvicorn its own way (the header prints its command line).

Each server is started once; ``tether serve`` is first checked by hand (a signed event is accepted and stored
once, the same delivery again is acknowledged as a duplicate, a bad signature gets 401). Each endpoint gets one
uncounted warm-up run of ``--warmup`` seconds, then ``--runs`` runs of ``--duration`` seconds, interleaved:
endpoint 1…n, then again 1…n, so a noisy neighbour slows every endpoint a little rather than one a lot. The
table quotes medians of the runs: req/s, wrk's p50 and p99 latency (from the Lua ``done()``), the server's CPU
time per request (``/proc/PID/stat``), and the CPU seconds per second used by the server, by wrk and by every
other process (``/proc/stat``: PostgreSQL for ``-pg``, and whatever else runs on the machine: a high "other"
in a ``noop`` or ``-sqlite`` row means a neighbour disturbed that run). After every run (the warm-up too) the
events stored under that run's delivery-id prefix are counted in the endpoint's table (tether:
``tether_webhook_events``) and compared with the 2xx answers wrk saw: fewer stored than acknowledged fails the
benchmark (exit 1). Up to ``--connections`` more stored than acknowledged is normal: the requests in flight
when wrk stops are stored, but wrk never counts their answers.

wrk and the server share the machine's cores (2 here): the absolute numbers are the pair's, not the server's.
PostgreSQL tables go into fresh schemas (``bench_webhooks_<hex>``), dropped at the end; SQLite files into a
temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import hmac
import importlib.util
import json
import os
import platform
import resource
import secrets
import shlex
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
ENDPOINTS = ("noop", "naive-sqlite", "naive-pg", "tether-sqlite", "tether-pg")
INTEGRATION = "gh"
PATH = f"/webhooks/{INTEGRATION}"
UVICORN_OPTIONS = ("--workers", "1", "--log-level", "warning", "--no-access-log", "--loop", "auto", "--http", "auto")
GOAL_RATIO, GOAL_P99_MS = 0.75, 50.0


# -- the request -----------------------------------------------------------------------------------------------------


def issues_payload() -> bytes:
    """A GitHub ``issues`` / ``opened`` delivery, trimmed to about 1 KB (GitHub's own are 5-10 KB)."""
    user = {"login": "octocat", "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==", "type": "User", "site_admin": False}
    event = {
        "action": "opened",
        "issue": {
            "url": "https://api.github.com/repos/octo-org/hello-world/issues/1347",
            "html_url": "https://github.com/octo-org/hello-world/issues/1347",
            "id": 1874512340,
            "node_id": "I_kwDOABCD5c5vuhXU",
            "number": 1347,
            "title": "Webhook deliveries time out when the receiver is busy",
            "user": user,
            "labels": [{"id": 208045946, "name": "bug", "color": "d73a4a", "default": True}],
            "state": "open",
            "locked": False,
            "comments": 0,
            "created_at": "2026-11-23T09:12:45Z",
            "updated_at": "2026-11-23T09:12:45Z",
            "author_association": "MEMBER",
            "body": "Deliveries retried three times, then marked failed. Seen since the last deploy.",
        },
        "repository": {
            "id": 1296269,
            "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
            "name": "hello-world",
            "full_name": "octo-org/hello-world",
            "private": False,
            "owner": user,
            "default_branch": "main",
        },
        "sender": user,
        "installation": {"id": 2311213, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMjMxMTIxMw=="},
    }
    return json.dumps(event, separators=(",", ":")).encode()


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# Delivery ids look like GitHub's (a UUID): the run's 8-4-4 prefix, wrk's thread (4 hex), a counter (12 hex).
LUA_TEMPLATE = """\
-- Generated by bench/bench_webhooks.py for one wrk run.
local prefix = "%(prefix)s"
local path = "%(path)s"
local signature = "%(signature)s"
local body = [==[%(body)s]==]
local placeholder = "@DELIVERY@"
local threads = {}
local head, tail, thread_hex

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function init(args)
   sent = 0
   local headers = {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "GitHub-Hookshot/7c9c3e1",
      ["X-GitHub-Event"] = "issues",
      ["X-GitHub-Hook-ID"] = "412349876",
      ["X-GitHub-Hook-Installation-Target-Type"] = "repository",
      ["X-Hub-Signature-256"] = signature,
      ["X-GitHub-Delivery"] = placeholder,
   }
   local raw = wrk.format("POST", path, headers, body)
   local at = string.find(raw, placeholder, 1, true)
   head = string.sub(raw, 1, at - 1) .. prefix .. "-" .. string.format("%%04x", tid) .. "-"
   tail = string.sub(raw, at + #placeholder)
end

function request()
   sent = sent + 1
   return head .. string.format("%%012x", sent) .. tail
end

function done(summary, latency, requests)
   local issued = 0
   for _, thread in ipairs(threads) do
      issued = issued + thread:get("sent")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %%d, "duration_us": %%d, "issued": %%d, "connect": %%d, "read": %%d, ' ..
      '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
      '"max_us": %%d, "mean_us": %%.1f}\\n',
      summary.requests, summary.duration, issued, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def lua_script(directory: Path, prefix: str, body: bytes, signature: str) -> Path:
    text = body.decode()
    assert "]==]" not in text
    path = directory / f"wrk-{prefix}.lua"
    path.write_text(LUA_TEMPLATE % {"prefix": prefix, "path": PATH, "signature": signature, "body": text})
    return path


# -- servers ---------------------------------------------------------------------------------------------------------


@dataclass
class Server:
    """One endpoint, up and listening."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    command: list[str]
    count: Callable[[str], int] | None  # events stored whose id starts with the prefix; None for noop

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (its threads included)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(
    name: str, command: list[str], env: dict[str, str], log: Path, port: int, count: Callable[[str], int] | None
) -> Iterator[Server]:
    """Start ``command`` in its own process group, wait for ``GET /healthz``, stop the group afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(name, url, process, log)
        yield Server(name, url, process, log, command, count)
    finally:
        stop(process)


def wait_ready(name: str, url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before answering:\n{tail_of(log)}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:  # noqa: S310 (our own server)
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer GET /healthz within {timeout:g} s:\n{tail_of(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (uvicorn shuts down gracefully), SIGKILL after 10 s."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"  pid {process.pid} ignored SIGTERM for 10 s: SIGKILL", file=sys.stderr)
    # Whatever is left in the group (the server's own children, if any) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def tail_of(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# The stored events of one run, by delivery-id prefix. ``?`` for sqlite3 becomes ``%s`` for psycopg.
NAIVE_COUNT = "SELECT count(*) FROM webhook_events WHERE id LIKE ?"
TETHER_COUNT = "SELECT count(*) FROM tether_webhook_events WHERE event_id LIKE ? AND integration = 'gh'"


def sqlite_counter(path: Path, query: str) -> Callable[[str], int]:
    def count(prefix: str) -> int:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as connection:
            row = connection.execute(query, (f"{prefix}%",)).fetchone()
        return int(row[0])

    return count


def pg_counter(url: str, query: str) -> Callable[[str], int]:
    def count(prefix: str) -> int:
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            row = connection.execute(query.replace("?", "%s"), (f"{prefix}%",)).fetchone()
        assert row is not None
        return int(row[0])

    return count


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections put ``schema`` first on the search path (libpq's ``options``)."""
    option = urllib.parse.quote(f"-csearch_path={schema}", safe="")
    return f"{url}{'&' if '?' in url else '?'}options={option}"


@contextlib.contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A fresh schema, dropped with everything in it at the end."""
    import psycopg

    schema = f"bench_webhooks_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def tether_command() -> Path:
    return Path(sys.executable).with_name("tether")


def tether_serve_available() -> str | None:
    """None when ``tether serve`` exists, else what went wrong."""
    try:
        result = subprocess.run(
            [str(tether_command()), "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if result.returncode != 0:
        return f"`tether serve --help` exited with {result.returncode}: {(result.stderr or result.stdout).strip()}"
    return None


def start(name: str, stack: contextlib.ExitStack, workdir: Path, secret: str, pg_url: str) -> Server:
    port = free_port()
    log = workdir / f"{name}.log"
    listen = ["--host", "127.0.0.1", "--port", str(port)]
    uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR)]
    if name == "noop":
        return stack.enter_context(
            running(name, [*uvicorn, "_webhook_apps:noop", *listen, *UVICORN_OPTIONS], {}, log, port, None)
        )
    if name.startswith("naive-"):
        command = [*uvicorn, "_webhook_apps:naive", *listen, *UVICORN_OPTIONS]
        if name == "naive-sqlite":
            path = workdir / "naive.db"
            count = sqlite_counter(path, NAIVE_COUNT)
            return stack.enter_context(
                running(name, command, {"BENCH_NAIVE_STORE": f"sqlite:///{path}"}, log, port, count)
            )
        url = with_search_path(pg_url, stack.enter_context(pg_schema(pg_url)))
        count = pg_counter(url, NAIVE_COUNT)
        return stack.enter_context(running(name, command, {"BENCH_NAIVE_STORE": url}, log, port, count))
    if name.startswith("tether-"):
        if name == "tether-sqlite":
            path = workdir / "tether-bench.db"
            store = f"sqlite:///{path}"
            count = sqlite_counter(path, TETHER_COUNT)
        else:
            store = with_search_path(pg_url, stack.enter_context(pg_schema(pg_url)))
            count = pg_counter(store, TETHER_COUNT)
        config = workdir / f"{name}.toml"
        config.write_text(
            f'store = "{store}"\n\n'
            f"[integrations.{INTEGRATION}]\n"
            'base_url = "https://api.github.com"\n\n'
            f"[integrations.{INTEGRATION}.webhooks]\n"
            'scheme = "github"\n'
            'secret = "${BENCH_WEBHOOK_SECRET}"\n'
        )
        command = [str(tether_command()), "--config", str(config), "serve", *listen]
        return stack.enter_context(running(name, command, {"BENCH_WEBHOOK_SECRET": secret}, log, port, count))
    raise ValueError(name)


def post(url: str, body: bytes, delivery: str, signature: str) -> tuple[int, str]:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
    }
    request = urllib.request.Request(f"{url}{PATH}", data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own server)
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def preflight(server: Server, body: bytes, signature: str) -> str:
    """Check that tether takes a signed event, acknowledges its duplicate and refuses a bad signature."""
    delivery = f"preflight-{uuid.uuid4()}"
    seen = [
        post(server.url, body, delivery, signature),
        post(server.url, body, delivery, signature),
        post(server.url, body, f"preflight-{uuid.uuid4()}", "sha256=" + "0" * 64),
    ]
    statuses = [json.loads(text).get("status") if code == 200 else code for code, text in seen]
    stored = server.count(delivery) if server.count is not None else None
    if statuses != ["accepted", "duplicate", 401] or stored != 1:
        raise RuntimeError(f"preflight: expected accepted, duplicate, 401 and 1 row; got {seen}, {stored} row(s)")
    return "signed event accepted and stored once, its duplicate acknowledged, a bad signature refused (401)"


# -- runs ------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run against one server."""

    rate: float
    p50_ms: float
    p99_ms: float
    requests: int  # answers wrk read
    acked: int  # of which 2xx/3xx
    non_2xx: int
    socket_errors: int  # connect + read + write + timeout
    stored: int | None
    cpu_us_per_request: float
    server_cores: float  # CPU seconds per second: 1.0 is one core busy
    wrk_cores: float
    other_cores: float  # every other process: PostgreSQL for the -pg endpoints, and the neighbours


@dataclass
class Endpoint:
    name: str
    server: Server | None = None
    runs: list[Run] = field(default_factory=list)
    error: str | None = None
    failures: list[str] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(run, attribute) for run in self.runs))


def wrk_run(
    server: Server, args: argparse.Namespace, seconds: float, workdir: Path, body: bytes, signature: str
) -> Run:
    prefix = str(uuid.uuid4())[:18]  # 8-4-4
    script = lua_script(workdir, prefix, body, signature)
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"{server.url}{PATH}",
    ]
    cpu_before, wrk_before, busy_before = server.cpu_seconds(), children_cpu_seconds(), machine_busy_seconds()
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cpu, wrk_cpu = server.cpu_seconds() - cpu_before, children_cpu_seconds() - wrk_before
    others = machine_busy_seconds() - busy_before - cpu - wrk_cpu
    script.unlink()
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    stats = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    requests, non_2xx = int(stats["requests"]), int(stats["status"])
    acked = requests - non_2xx
    stored = None
    if server.count is not None:
        stored = server.count(prefix)
        if stored < acked:
            time.sleep(2)  # does the rest turn up late? The check still fails: an answered event must be stored.
            late = server.count(prefix)
            raise AckedNotStored(
                f"{server.name}: {acked:,} events acknowledged (2xx) but only {stored:,} stored "
                f"({late:,} two seconds later) for delivery prefix {prefix}"
            )
    return Run(
        rate=requests / (stats["duration_us"] / 1e6),
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        requests=requests,
        acked=acked,
        non_2xx=non_2xx,
        socket_errors=sum(int(stats[key]) for key in ("connect", "read", "write", "timeout")),
        stored=stored,
        cpu_us_per_request=cpu / requests * 1e6 if requests else float("nan"),
        server_cores=cpu / (stats["duration_us"] / 1e6),
        wrk_cores=wrk_cpu / (stats["duration_us"] / 1e6),
        other_cores=max(0.0, others) / (stats["duration_us"] / 1e6),
    )


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (user, nice, system, irq, softirq) since boot, from ``/proc/stat``."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU of this process's finished and waited-for children (so wrk's, around its run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class AckedNotStored(Exception):
    """wrk saw more 2xx answers than the endpoint stored events."""


def describe(run: Run) -> str:
    text = (
        f"{run.rate:>9,.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:7.2f} ms"
        f"  cpu {run.cpu_us_per_request:4.0f} µs/req"
        f"  cores {run.server_cores:.2f}/{run.wrk_cores:.2f}/{run.other_cores:.2f}"
    )
    if run.stored is not None:
        text += f"  acked {run.acked:,} stored {run.stored:,} (+{run.stored - run.acked})"
    if run.non_2xx or run.socket_errors:
        text += f"  non-2xx {run.non_2xx:,} socket errors {run.socket_errors:,}"
    return text


def measure(
    endpoint: Endpoint, args: argparse.Namespace, seconds: float, workdir: Path, body: bytes, signature: str, label: str
) -> None:
    if endpoint.error is not None or endpoint.server is None:
        return
    print(f"{label} {endpoint.name:14}", end=" ", flush=True)
    try:
        run = wrk_run(endpoint.server, args, seconds, workdir, body, signature)
    except AckedNotStored as exc:
        endpoint.failures.append(str(exc))
        print(f"\n\n!!! FAILED: {exc}\n", flush=True)
        return
    except Exception as exc:
        endpoint.error = f"{type(exc).__name__}: {exc}"
        print(f"failed: {endpoint.error}\n{tail_of(endpoint.server.log)}", flush=True)
        return
    if endpoint.server.process.poll() is not None:
        endpoint.error = f"the server exited with {endpoint.server.process.returncode} during the run"
        print(f"{describe(run)}\n  {endpoint.error}:\n{tail_of(endpoint.server.log)}", flush=True)
        return
    print(describe(run), flush=True)
    if label != "warm-up":
        endpoint.runs.append(run)


# -- report ----------------------------------------------------------------------------------------------------------


def package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def environment(args: argparse.Namespace, endpoints: list[Endpoint]) -> list[str]:
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split(" [")[0]
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    lines = [
        f"date           {datetime.date.today().isoformat()}",
        f"platform       {platform.platform()}  ({os.cpu_count()} CPUs, shared by wrk and the server under test)",
        f"python         {platform.python_implementation()} {platform.python_version()}",
        f"versions       uvicorn {package('uvicorn')} (loop {loop}, http {http}), tether {package('tether')}, "
        f"psycopg {package('psycopg')}, SQLite {sqlite3.sqlite_version}, {wrk_version}",
        f"load           wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, POST {PATH} with "
        f"{len(issues_payload()):,} B bodies; warm-up {args.warmup:g} s, then {args.runs} runs, medians quoted",
    ]
    if any(endpoint.name.endswith("-pg") for endpoint in endpoints):
        lines.append(f"{'postgres':14} {pg_version(args.pg)} at {args.pg}")
    for endpoint in endpoints:
        if endpoint.server is not None:
            lines.append(f"{endpoint.name:14} {shlex.join(endpoint.server.command)}")
    return lines


def pg_version(url: str) -> str:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as connection:
            row = connection.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"
    except Exception as exc:
        return f"unreachable ({type(exc).__name__})"


def report(endpoints: list[Endpoint], args: argparse.Namespace) -> None:
    print()
    for line in environment(args, endpoints):
        print(line)
    noop = next((endpoint for endpoint in endpoints if endpoint.name == "noop" and endpoint.runs), None)
    limit = noop.median("rate") if noop else None
    print()
    header = (
        f"{'endpoint':14} {'req/s':>8} {'min-max':>15} {'vs no-op':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'cpu µs/req':>10} {'cores srv/wrk/other':>19} {'acked':>9} {'stored':>9} {'errors':>7}"
    )
    print(header)
    print("-" * len(header))
    for endpoint in endpoints:
        if not endpoint.runs:
            print(f"{endpoint.name:14} {endpoint.error or 'no completed run'}")
            continue
        rate = endpoint.median("rate")
        rates = [run.rate for run in endpoint.runs]
        acked = sum(run.acked for run in endpoint.runs)
        stored = [run.stored for run in endpoint.runs]
        stored_text = "-" if None in stored else f"{sum(s for s in stored if s is not None):,}"
        errors = sum(run.non_2xx + run.socket_errors for run in endpoint.runs)
        cores = "/".join(f"{endpoint.median(name):.2f}" for name in ("server_cores", "wrk_cores", "other_cores"))
        print(
            f"{endpoint.name:14} {rate:>8,.0f} {f'{min(rates):,.0f}-{max(rates):,.0f}':>15} "
            f"{f'{rate / limit:.2f}x' if limit else '-':>9} {endpoint.median('p50_ms'):>7.2f} "
            f"{endpoint.median('p99_ms'):>7.2f} {endpoint.median('cpu_us_per_request'):>10,.0f} "
            f"{cores:>19} "
            f"{acked:>9,} {stored_text:>9} {errors:>7,}"
        )
    print()
    print("acked/stored: totals over the counted runs; every run's stored count is checked against its 2xx answers.")
    print("cpu µs/req: the server process's user+system CPU per answered request. cores: CPU seconds per second of")
    print("the server, of wrk and of every other process (PostgreSQL for -pg, and any neighbour), on the same cores.")
    for endpoint in endpoints:
        if endpoint.name.startswith("tether") and endpoint.runs and limit:
            ratio, p99 = endpoint.median("rate") / limit, endpoint.median("p99_ms")
            met = ratio >= GOAL_RATIO and p99 < GOAL_P99_MS
            print(
                f"goal {endpoint.name}: >= {GOAL_RATIO}x no-op and p99 < {GOAL_P99_MS:g} ms: "
                f"{ratio:.2f}x, p99 {p99:.1f} ms: {'met' if met else 'NOT met'}"
            )
    for endpoint in endpoints:
        for failure in endpoint.failures:
            print(f"!!! FAILED: {failure}")
        if endpoint.error:
            print(f"!!! {endpoint.name}: {endpoint.error}")


# -- main ------------------------------------------------------------------------------------------------------------


def select(only: str | None) -> list[str]:
    if not only:
        return list(ENDPOINTS)
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    chosen = [name for name in ENDPOINTS if any(part in name for part in wanted)]
    unknown = [part for part in wanted if not any(part in name for name in ENDPOINTS)]
    if unknown or not chosen:
        sys.exit(
            f"--only: no endpoint matches {', '.join(unknown) or only!r}; the endpoints are {', '.join(ENDPOINTS)}"
        )
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per counted wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="counted runs per endpoint; medians quoted (default 3)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of the uncounted first run (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, one run of 3 s: checks the harness")
    parser.add_argument("--only", default=None, help=f"comma-separated (parts of) names among {', '.join(ENDPOINTS)}")
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL for the -pg endpoints (default {DEFAULT_PG})")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.runs, args.warmup = 3.0, 1, 1.0
    names = select(args.only)
    if subprocess.run(["wrk", "-v"], capture_output=True, check=False).returncode not in (0, 1):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    if any(name.startswith("tether") for name in names) and (problem := tether_serve_available()):
        sys.exit(f"tether serve is not available ({problem}); run with --only noop,naive")

    # SIGTERM unwinds like Ctrl-C, so the servers (in sessions of their own) and the schemas go too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    body = issues_payload()
    secret = secrets.token_hex(20)
    signature = github_signature(secret, body)
    endpoints = [Endpoint(name) for name in names]
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-webhooks-")))
        for endpoint in endpoints:
            try:
                endpoint.server = start(endpoint.name, stack, workdir, secret, args.pg)
                if endpoint.name.startswith("tether"):
                    print(f"{endpoint.name}: {preflight(endpoint.server, body, signature)}", flush=True)
            except Exception as exc:
                endpoint.error = f"not measured: {type(exc).__name__}: {exc}"
                print(f"{endpoint.name}: {endpoint.error}", flush=True)
        for endpoint in endpoints:
            measure(endpoint, args, args.warmup, workdir, body, signature, "warm-up")
        for number in range(args.runs):
            for endpoint in endpoints:
                measure(endpoint, args, args.duration, workdir, body, signature, f"[{number + 1}/{args.runs}]")
        report(endpoints, args)
    return 1 if any(endpoint.failures or endpoint.error for endpoint in endpoints) else 0


if __name__ == "__main__":
    sys.exit(main())

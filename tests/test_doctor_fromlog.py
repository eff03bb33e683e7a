"""``tether doctor --from-log``: the analysis of call records, from real calls and from made-up records.

The integration test records real calls through tether to two loopback backends of one service: the same port
on 127.0.0.1 and on 127.0.0.2 (Linux routes all of 127/8 to the loopback interface), the second failing 2 calls
in 5. Two hubs with the same integration name and the same store stand for two app processes, each pinned to
one address, as a load balancer would spread them; each records the peer its calls reached. (Making one name
resolve to both addresses would need a resolver the test controls inside httpx2; two hubs keep everything real.)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tether.cli.doctor import doctor
from tether.doctor.fromlog import analyse, outliers, peer_address
from tether.hub import Hub
from tether.observe.records import CallRecord, Try

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


class _Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _BackendServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status = 503 if self.server.fails_now() else 200
        body = json.dumps({"ok": status == 200}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _BackendServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, failing: bool) -> None:
        super().__init__(address, _Backend)
        self.failing, self.count, self.lock = failing, 0, threading.Lock()

    def fails_now(self) -> bool:
        with self.lock:
            self.count += 1
            return self.failing and self.count % 5 in (1, 2)


@pytest.fixture
def backends() -> Iterator[tuple[str, str]]:
    good = _BackendServer(("127.0.0.1", 0), failing=False)
    bad = _BackendServer(("127.0.0.2", good.server_address[1]), failing=True)
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True) for s in (good, bad)
    ]
    for thread in threads:
        thread.start()
    port = good.server_address[1]
    yield f"http://127.0.0.1:{port}", f"http://127.0.0.2:{port}"
    for server in (good, bad):
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join()


def _config(folder: Path, url: str, store: Path) -> Path:
    folder.mkdir()
    path = folder / "tether.toml"
    path.write_text(
        f"""
store = "sqlite:///{store}"

[integrations.payments]
base_url = "{url}"
retry = false
breaker = false
"""
    )
    return path


def test_from_log_names_the_failing_backend_behind_one_service(tmp_path: Path, backends: tuple[str, str]) -> None:
    store = tmp_path / "calls.db"
    configs = [_config(tmp_path / f"app{n}", url, store) for n, url in enumerate(backends)]
    for config in configs:
        with Hub.from_config(config) as hub, hub.client("payments") as client:
            for _ in range(30):
                client.get("/v1/charges")
    app = typer.Typer()
    app.command()(doctor)
    result = CliRunner().invoke(app, ["payments", "--from-log", "--since", "1h"], obj={"config": str(configs[0])})
    assert result.exit_code == 1, result.output
    assert "1 of 2 upstream addresses are healthy; 127.0.0.2 failed 40% of calls since" in result.output
    assert "(12 of 30); the other addresses failed 0%" in result.output
    assert "12 × HTTP 503" in result.output
    result = CliRunner().invoke(app, ["payments", "--from-log", "--json"], obj={"config": str(configs[0])})
    report = json.loads(result.output)["integrations"][0]
    peers = next(f for f in report["findings"] if f["kind"] == "peers")
    assert peers["data"]["bad"] == ["127.0.0.2"]
    assert report["calls"] == 60
    assert report["failures"] == 12


# -- the analysis, over made-up records -----------------------------------------------------------------------


def _record(at: float, *, status: int | None = 200, peer: str | None = "10.0.0.1", **fields: Any) -> CallRecord:
    fields.setdefault("endpoint", "/v1/charges")
    fields.setdefault("method", "GET")
    return CallRecord(at=at, integration="pay", status=status, outcome="success", peer=peer, **fields)


def _analyse(records: list[CallRecord], **kwargs: Any) -> Any:
    kwargs.setdefault("since", T0)
    kwargs.setdefault("until", T0 + 3600)
    return analyse("pay", records, tz=UTC, **kwargs)


def test_no_records_is_said_and_is_not_a_problem() -> None:
    report = _analyse([])
    assert report.ok
    assert report.findings[0].message == "no calls recorded since 22:13"


def test_evenly_spread_failures_are_not_pinned_on_one_address() -> None:
    records = [_record(T0 + i, status=503 if i % 10 == 0 else 200, peer=f"10.0.0.{i % 3 + 1}") for i in range(300)]
    peers = next(f for f in _analyse(records).findings if f.kind == "peers")
    assert peers.level == "info"
    assert "not one bad backend" in peers.message


def test_the_address_of_each_attempt_counts_when_calls_were_retried() -> None:
    tries = (Try(503, None, "10.0.0.9:443", 0.1), Try(200, None, "10.0.0.1:443", 0.1))
    records = [_record(T0 + i, peer="10.0.0.1:443", attempts=2, tries=tries) for i in range(20)]
    records += [_record(T0 + 100 + i, peer="10.0.0.1:443") for i in range(20)]
    peers = next(f for f in _analyse(records).findings if f.kind == "peers")
    assert peers.message.startswith("1 of 2 upstream addresses are healthy; 10.0.0.9 failed 100% of calls since")


def test_an_endpoint_that_always_fails_is_called_consistent() -> None:
    records = [_record(T0 + i) for i in range(50)]
    records += [_record(T0 + i, status=404, endpoint="/v1/refunds", hint="no such resource") for i in range(10)]
    endpoint = next(f for f in _analyse(records).findings if f.kind == "endpoints")
    assert endpoint.message.startswith("GET /v1/refunds failed 100% of its calls (10 of 10) (every call")
    assert endpoint.fix == "no such resource"


def test_failures_clustered_in_time_are_located() -> None:
    records = [_record(T0 + i * 60, status=503 if 60 <= i < 70 else 200) for i in range(180)]
    report = _analyse(records, until=T0 + 3 * 3600)
    time_finding = next(f for f in report.findings if f.kind == "time")
    assert "failures cluster in 23:00–00:00" in time_finding.message
    assert not report.ok


def test_near_limit_episodes_are_grouped_and_429s_make_them_a_problem() -> None:
    records = [_record(T0 + i, limit=100, limit_remaining=50) for i in range(30)]
    records += [_record(T0 + 600 + i, limit=100, limit_remaining=5 - i) for i in range(5)]
    records += [_record(T0 + 606, status=429, limit=100, limit_remaining=0)]
    finding = next(f for f in _analyse(records).findings if f.kind == "rate_limit")
    assert finding.level == "problem"
    assert finding.message == "the rate limit ran close once: 22:23–22:23 (down to 0 of 100 left, 1 × 429)"


def test_a_slow_tail_is_pinned_on_the_address_that_causes_it() -> None:
    records = [_record(T0 + i, latency=0.05, peer=f"10.0.0.{i % 4 + 1}") for i in range(90)]
    records += [_record(T0 + 100 + i, latency=4.0, peer="10.0.0.4") for i in range(10)]
    finding = next(f for f in _analyse(records).findings if f.kind == "latency")
    assert finding.level == "problem", "p95 above the 3 s alert"
    assert "10 of the 10 slowest went to 10.0.0.4" in finding.message


@pytest.mark.parametrize(
    ("peer", "address"),
    [("1.2.3.4", "1.2.3.4"), ("1.2.3.4:443", "1.2.3.4"), ("[::1]:443", "::1"), ("::1", "::1"), (None, None)],
)
def test_peer_address_drops_the_port(peer: str | None, address: str | None) -> None:
    assert peer_address(peer) == address


@given(st.lists(st.integers(min_value=1, max_value=200), min_size=2, max_size=6), st.floats(0, 1))
def test_groups_failing_at_the_same_rate_are_never_outliers(totals: list[int], rate: float) -> None:
    groups = {f"g{i}": (round(total * rate), total) for i, total in enumerate(totals)}
    scaled = {name: (round(1000 * rate), 1000) for name in groups}
    assert outliers(scaled) == []
    assert all(name in groups for name in outliers(groups))


@given(
    st.lists(
        st.tuples(st.integers(0, 7200), st.sampled_from([200, 200, 200, 429, 500, None]), st.integers(0, 3)),
        max_size=80,
    )
)
def test_the_report_counts_every_call_and_is_ok_exactly_without_problems(
    rows: list[tuple[int, int | None, int]],
) -> None:
    records = [_record(T0 + at, status=status, peer=f"10.0.0.{peer}") for at, status, peer in rows]
    report = _analyse(records, until=T0 + 7200)
    assert report.calls == len(rows)
    assert report.failures == sum(1 for _, status, _ in rows if status is None or status >= 400)
    assert report.ok == all(finding.level != "problem" for finding in report.findings)
    assert report.findings[0].kind == "overview"

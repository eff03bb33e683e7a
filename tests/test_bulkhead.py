"""The concurrency cap (bulkhead): at most N attempts in flight; a caller that cannot get a place in time fails."""

from __future__ import annotations

import asyncio
import threading

import httpx2
import pytest

import tether
from tether.client.transport import AsyncRetryTransport, CallSpec, RetryTransport
from tether.config.models import RetryConfig
from tether.policies.bulkhead import Bulkhead
from tether.policies.retry import RetryPolicy


def _spec(bulkhead: Bulkhead, deadline: float = 5.0) -> CallSpec:
    return CallSpec(
        integration="slow",
        policy=RetryPolicy.from_config(RetryConfig(attempts=1)),
        deadline=deadline,
        limits={"connect": 1.0, "read": None, "write": None, "pool": 1.0},
        bulkhead=bulkhead,
    )


def test_threads_beyond_the_cap_wait_for_a_place() -> None:
    bulkhead = Bulkhead(2)
    in_flight = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        release.wait(1.0)
        with lock:
            in_flight -= 1
        return httpx2.Response(200)

    transport = RetryTransport(httpx2.MockTransport(handler), _spec(bulkhead))
    with httpx2.Client(transport=transport, base_url="http://slow.test") as client:
        threads = [threading.Thread(target=client.get, args=("/",)) for _ in range(6)]
        for thread in threads:
            thread.start()
        threading.Timer(0.05, release.set).start()
        for thread in threads:
            thread.join(5)
    assert peak == 2


def test_a_thread_that_gets_no_place_before_its_deadline_fails_with_throttled_error() -> None:
    bulkhead = Bulkhead(1)
    assert bulkhead.acquire(0)
    transport = RetryTransport(httpx2.MockTransport(lambda r: httpx2.Response(200)), _spec(bulkhead, deadline=0.05))
    with (
        httpx2.Client(transport=transport, base_url="http://slow.test") as client,
        pytest.raises(tether.ThrottledError) as caught,
    ):
        client.get("/")
    assert "concurrency" in caught.value.hint
    bulkhead.release()


async def test_async_tasks_beyond_the_cap_wait_and_the_place_is_freed_on_errors() -> None:
    bulkhead = Bulkhead(3)
    in_flight = 0
    peak = 0

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        if request.url.path == "/boom":
            raise httpx2.ConnectError("refused")
        return httpx2.Response(200)

    transport = AsyncRetryTransport(httpx2.MockTransport(handler), _spec(bulkhead))
    async with httpx2.AsyncClient(transport=transport, base_url="http://slow.test") as client:
        results = await asyncio.gather(
            *(client.get("/boom" if n % 2 else "/") for n in range(12)), return_exceptions=True
        )
    assert peak == 3
    assert sum(isinstance(result, tether.ConnectionFailedError) for result in results) == 6
    assert await bulkhead.aacquire(0), "every place was given back, failures included"


def test_a_bulkhead_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Bulkhead(0)


def test_concurrency_in_tether_toml_caps_every_client_of_the_integration() -> None:
    from tether.config import parse_config

    hub = tether.Hub(
        parse_config('[integrations.slow]\nbase_url = "http://slow.test"\nconcurrency = 1\ntimeout = "200ms"')
    )
    release = threading.Event()
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.path)
        release.wait(1.0)
        return httpx2.Response(200)

    first = hub.client("slow", network=httpx2.MockTransport(handler))
    second = hub.client("slow", network=httpx2.MockTransport(handler))
    worker = threading.Thread(target=first.get, args=("/first",))
    worker.start()
    while not seen:
        threading.Event().wait(0.001)
    with pytest.raises(tether.ThrottledError):
        second.get("/second")  # waits its 200 ms deadline for the one place, then gives up
    release.set()
    worker.join(5)
    first.close()
    second.close()
    assert seen == ["/first"]

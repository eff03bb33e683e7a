"""Environment proxies reach the network transport, under tether's policy stack, through a real loopback proxy."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

import tether
from tether.client.build import environment_proxy
from tether.config import parse_config


class _ForwardProxy:
    """A minimal HTTP forward proxy: reads an absolute-form request, records it, answers 200 itself."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.seen.append(data.split(b"\r\n", 1)[0].decode())
                body = b'{"via":"proxy"}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy() -> Iterator[_ForwardProxy]:
    server = _ForwardProxy()
    yield server
    server.close()


def _hub() -> tether.Hub:
    return tether.Hub(parse_config('[integrations.far]\nbase_url = "http://api.far.test"'))


def test_http_proxy_from_the_environment_is_used_by_the_sync_client(
    proxy: _ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    with _hub().client("far") as client:
        response = client.get("/v1/things")
    assert response.json() == {"via": "proxy"}
    assert proxy.seen == ["GET http://api.far.test/v1/things HTTP/1.1"]
    assert len(response.extensions["tether.attempts"]) == 1, "the call went through tether's retry transport"


def test_http_proxy_from_the_environment_is_used_by_the_async_client(
    proxy: _ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)

    async def call() -> dict[str, str]:
        async with _hub().async_client("far") as client:
            response = await client.get("/v1/things")
            return dict(response.json())

    assert asyncio.run(call()) == {"via": "proxy"}
    assert proxy.seen == ["GET http://api.far.test/v1/things HTTP/1.1"]


def test_no_proxy_excludes_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "internal.test")
    assert environment_proxy("https://api.internal.test") is None
    assert environment_proxy("https://api.stripe.com") == "http://proxy.corp:3128"
    assert environment_proxy("https://127.0.0.1:8787") is None, "loopback is never proxied"
    monkeypatch.delenv("HTTPS_PROXY")
    assert environment_proxy("https://api.stripe.com") is None

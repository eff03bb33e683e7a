"""Serving tether's webhook app on a real loopback socket, and a recording server to forward events to."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

import tether
from tether.config.loader import parse_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a Standard Webhooks-style key; its own test value
STRIPE_SECRET = "whsec_test_stripe_signing_secret"
GITHUB_SECRET = "It's a Secret to Everybody"


@contextlib.contextmanager
def serving(app: ASGIApp, *, lifespan: str = "on") -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread (lifespan included); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan=lifespan, log_config=None, access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started or failure or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    if not server.started:
        server.should_exit = True
        thread.join(5)
        sock.close()
        raise RuntimeError("the server did not start") from (failure[0] if failure else None)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


@dataclass
class Recorder:
    """A loopback endpoint that records each POST; answers ``fail_first`` 500s before it accepts."""

    fail_first: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                if self.failures < self.fail_first:
                    self.failures += 1
                    return JSONResponse({"error": "not yet"}, status_code=500)
                self.received.append((dict(request.headers), body))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hook", receive, methods=["POST"])])


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    record = Recorder()
    with serving(record.app(), lifespan="off") as url:
        yield record, f"{url}/hook"


def make_hub(
    tmp_path: Path,
    webhooks: str,
    *,
    store: str | None = None,
    env: dict[str, str] | None = None,
    name: str = "stripe",
) -> tether.Hub:
    """A hub with one integration ``name`` whose ``webhooks`` table is ``webhooks`` (TOML lines)."""
    text = f"""
store = "{store or f"sqlite:///{tmp_path / 'tether.db'}"}"
[integrations.{name}]
base_url = "https://api.example.com"
[integrations.{name}.webhooks]
{webhooks}
"""
    secrets = {"STRIPE_WEBHOOK_SECRET": STRIPE_SECRET, "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET, "FORWARD_SECRET": SECRET}
    return tether.Hub(parse_config(text, env={**secrets, **(env or {})}, base_dir=tmp_path), base_dir=tmp_path)

"""Small fakes shared by the test modules."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2

from tether.policies.clock import ManualClock

# The console script of the venv running the tests.
TETHER = Path(sys.executable).with_name("tether")


class Timeline:
    """Manual time: the fake sleeps record each wait and move the clock instead of sleeping."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@contextlib.contextmanager
def in_thread(server: socketserver.BaseServer) -> Iterator[socketserver.BaseServer]:
    """``server`` (a loopback ``http.server``) serving from a thread until the block ends, then closed."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def tether_serve(config: Path, host: str, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """``tether --config CONFIG serve --host HOST`` as a process, with ``env`` and none of this process's
    ``TETHER_*`` variables; yields its loopback URL and its output's file."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clean = {key: value for key, value in os.environ.items() if not key.startswith("TETHER_")}
    clean.update({"NO_COLOR": "1", **env})
    log = config.parent / f"serve-{len(list(config.parent.glob('serve-*')))}.log"
    with log.open("wb") as output:
        command = [str(TETHER), "--config", str(config), "serve", "--host", host, "--port", str(port)]
        process = subprocess.Popen(command, env=clean, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"{url}/healthz"):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield url, log
    finally:
        process.terminate()
        process.wait(15)


def _answers(url: str) -> bool:
    try:
        return httpx2.get(url).status_code == 200
    except httpx2.TransportError:
        return False

"""Run an ASGI app with uvicorn in a background thread: ``tether demo``'s tour, and tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serving"]


@contextlib.contextmanager
def serving(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, grace: float = 5.0) -> Iterator[str]:
    """Serve ``app`` (lifespan included) until the block ends; yields its base URL.

    Args:
        app: The application.
        host: Address to bind.
        port: Port to bind (0: any free one).
        grace: Seconds requests in flight get when the block ends.

    Raises:
        RuntimeError: the server did not start (the cause is chained).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=max(1, round(grace))
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    thread = threading.Thread(target=run, name="tether-serve", daemon=True)
    thread.start()
    started = threading.Event()
    while not (server.started or failure or not thread.is_alive()):
        started.wait(0.01)
    if not server.started:
        server.should_exit = True
        thread.join(5)
        sock.close()
        raise RuntimeError("the server did not start") from (failure[0] if failure else None)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    try:
        yield f"http://{shown}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(grace + 10)
        sock.close()

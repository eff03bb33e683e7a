"""Serve the sandbox with uvicorn: in a background thread for tests, or blocking for ``tether sandbox``.

Both run uvicorn's HTTP/1.1 protocol with one addition: a scope extension through which the faults in
:mod:`tether.sandbox.faults` drop or reset the connection, which plain ASGI cannot express. Uvicorn is
told not to configure logging; the library only logs to ``tether.sandbox``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from tether.sandbox.app import create_app
from tether.sandbox.faults import DROP_CONNECTION
from tether.sandbox.tls import CertificatePair, CertificateSet, make_certificates

__all__ = ["SandboxServer", "TLSMode", "running_sandbox", "serve"]

TLSMode = Literal["none", "valid", "expired", "self_signed", "wrong_host"]

logger = logging.getLogger("tether.sandbox")

_STARTUP_TIMEOUT = 10.0
_SHUTDOWN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class SandboxServer:
    """Where a running sandbox listens.

    Attributes:
        url: Base URL without a trailing slash, e.g. ``http://127.0.0.1:49152``.
        host: The address listened on.
        port: The port actually bound (never 0).
        ca_cert: The CA that signed the server certificate when serving TLS, else None.
        app: The ASGI application being served.
    """

    url: str
    host: str
    port: int
    ca_cert: Path | None
    app: ASGIApp

    def ssl_context(self) -> ssl.SSLContext:
        """Return a client context that trusts only the sandbox CA.

        Raises:
            ValueError: The server does not speak TLS.
        """
        if self.ca_cert is None:
            raise ValueError("the sandbox is serving plain HTTP; there is no CA to trust")
        return ssl.create_default_context(cafile=str(self.ca_cert))


@contextmanager
def running_sandbox(
    *,
    port: int = 0,
    tls: TLSMode = "none",
    certs: CertificateSet | None = None,
    app: ASGIApp | None = None,
) -> Iterator[SandboxServer]:
    """Run the sandbox on 127.0.0.1 in a background thread for the duration of the block.

    Args:
        port: Port to bind; 0 picks a free one, reported in the result.
        tls: Serve plain HTTP, or HTTPS with one of the certificate kinds from :mod:`.tls`.
        certs: Certificates to use; generated into a temporary directory when TLS needs them.
        app: The ASGI app to serve; a fresh :func:`~tether.sandbox.app.create_app` by default.

    Yields:
        The running server. It has stopped, and its port is free again, once the block exits.

    Raises:
        RuntimeError: The server did not start.
    """
    with ExitStack() as stack:
        config, sandbox, sock = _prepare(stack, "127.0.0.1", port, tls, certs, app)
        ready = threading.Event()
        server = _Server(config, on_started=ready.set)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # re-raised in the caller's thread, where it is useful
                failure.append(exc)
                ready.set()

        thread = threading.Thread(target=run, name=f"tether-sandbox-{sandbox.port}", daemon=True)
        thread.start()
        if not ready.wait(_STARTUP_TIMEOUT):
            server.should_exit = True
            thread.join(_SHUTDOWN_TIMEOUT)
            raise RuntimeError("the sandbox server did not start in time")
        if failure:
            raise RuntimeError("the sandbox server failed to start") from failure[0]
        try:
            yield sandbox
        finally:
            server.should_exit = True
            thread.join(_SHUTDOWN_TIMEOUT)
            if thread.is_alive():
                logger.warning("tether sandbox on %s did not stop within %ss", sandbox.url, _SHUTDOWN_TIMEOUT)
            elif failure:
                logger.error("tether sandbox on %s crashed", sandbox.url, exc_info=failure[0])


def serve(
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    tls: TLSMode = "none",
    certs: CertificateSet | None = None,
    app: ASGIApp | None = None,
    on_ready: Callable[[SandboxServer], None] | None = None,
) -> None:
    """Run the sandbox in the foreground until interrupted.

    Ctrl-C (SIGINT) shuts down gracefully and returns. SIGTERM also shuts down gracefully, then
    uvicorn re-raises it, which ends the process as SIGTERM normally does.

    Args:
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        tls: Serve plain HTTP, or HTTPS with one of the certificate kinds from :mod:`.tls`.
        certs: Certificates to use; without them TLS certificates go to a temporary directory that
            lives as long as the server.
        app: The ASGI app to serve; a fresh :func:`~tether.sandbox.app.create_app` by default.
        on_ready: Called once listening, with the URL and the CA certificate to trust.
    """
    with ExitStack() as stack:
        config, sandbox, sock = _prepare(stack, host, port, tls, certs, app)

        def started() -> None:
            logger.info("tether sandbox listening on %s", sandbox.url)
            if sandbox.ca_cert is not None:
                logger.info("tether sandbox CA certificate: %s", sandbox.ca_cert)
            if on_ready is not None:
                on_ready(sandbox)

        # Uvicorn re-raises the SIGINT it turned into a graceful shutdown; here that is a normal stop.
        with contextlib.suppress(KeyboardInterrupt):
            _Server(config, on_started=started).run(sockets=[sock])
        logger.info("tether sandbox on %s stopped", sandbox.url)


class _Server(uvicorn.Server):
    """A uvicorn server that says when it is listening."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


class _DroppableH11Protocol(H11Protocol):
    """Uvicorn's HTTP/1.1 protocol, offering apps a way to drop the connection (the fault extension)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        app: ASGIApp = self.app
        drop = {"drop": self._drop}

        async def with_drop(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[DROP_CONNECTION] = drop
            await app(scope, receive, send)

        self.app = with_drop

    def _drop(self, reset: bool) -> None:
        if reset:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                # Linger on, timeout zero: close() then sends RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # abort(), not close(): close() would wait for a TLS close_notify exchange.
        self.transport.abort()


def _prepare(
    stack: ExitStack,
    host: str,
    port: int,
    tls: TLSMode,
    certs: CertificateSet | None,
    app: ASGIApp | None,
) -> tuple[uvicorn.Config, SandboxServer, socket.socket]:
    """Bind the listening socket and configure uvicorn; cleanups go on ``stack``."""
    pair: CertificatePair | None = None
    if tls != "none":
        if certs is None:
            certs = make_certificates(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        pair = certs.pair(tls)
    app = create_app() if app is None else app
    # Binding here, not in uvicorn, lets port 0 work and tells us the real port before start-up.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP is what makes asyncio set TCP_NODELAY on accepted connections; without
    # it every keep-alive response waits out a 40 ms delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    stack.callback(sock.close)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http=_DroppableH11Protocol,
        loop="asyncio",
        ws="none",
        lifespan="off",
        log_config=None,
        timeout_graceful_shutdown=2,
        ssl_certfile=None if pair is None else pair.cert,
        ssl_keyfile=None if pair is None else pair.key,
    )
    url_host = f"[{host}]" if ":" in host else host
    scheme = "http" if pair is None else "https"
    description = SandboxServer(
        url=f"{scheme}://{url_host}:{bound_port}",
        host=host,
        port=bound_port,
        ca_cert=None if certs is None or pair is None else certs.ca_cert,
        app=app,
    )
    return config, description, sock

"""AiohttpTransport against real loopback servers: an aiohttp web app for well-behaved HTTP, raw asyncio
servers for the misbehaving kind, and a TLS listener with a certificate made here."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

from tether.client.aiohttp_transport import EAGER_READ_LIMIT, AiohttpTransport, _format_peer, _raise_mapped

BIG = EAGER_READ_LIMIT * 3  # large enough to be streamed rather than read eagerly
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# -- servers -------------------------------------------------------------------------------------


@asynccontextmanager
async def serve_app(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Run ``app`` on 127.0.0.1 and yield its port."""
    # A short shutdown timeout: some tests leave a handler sleeping on purpose.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        server = site._server
        assert isinstance(server, asyncio.Server)
        yield server.sockets[0].getsockname()[1]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_raw(handler: RawHandler) -> AsyncIterator[int]:
    """Run a bare asyncio server whose connections ``handler`` answers byte by byte; yield its port."""

    handlers: set[asyncio.Task[None]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def echo_app() -> web.Application:
    """``/echo`` answers with what it received; ``/stream`` streams BIG bytes in chunks; ``/gzip`` and
    ``/redirect`` are for httpx2's own features; ``/sleep`` sleeps before answering."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        headers = CIMultiDict((f"x-echo-{name.lower()}", value) for name, value in request.headers.items())
        peer = request.transport.get_extra_info("peername") if request.transport else None
        headers["x-echo-peer"] = str(peer[0]) if peer else ""
        client_cert = request.transport.get_extra_info("peercert") if request.transport else None
        headers["x-echo-client-cert"] = str(dict(part[0] for part in client_cert["subject"])) if client_cert else ""
        headers["x-echo-method"] = request.method
        headers["x-echo-chunked"] = str(request.headers.get("Transfer-Encoding") == "chunked")
        return web.Response(body=body, headers=headers)

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(BIG // 1024):
            await response.write(bytes([i % 256]) * 1024)
        await response.write_eof()
        return response

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"squeezed" * 100), headers={"Content-Encoding": "gzip"})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    async def sleep(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["s"]))
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/sleep", sleep)
    return app


@pytest.fixture
async def app_port() -> AsyncIterator[int]:
    async with serve_app(echo_app()) as port:
        yield port


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with AiohttpTransport() as transport:
        yield transport


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def request(
    method: str, url: str, *, timeout: float | None = 5.0, sni_hostname: str | None = None, **kwargs: Any
) -> httpx2.Request:
    """A request carrying the extensions httpx2.AsyncClient would give it."""
    extensions: dict[str, Any] = {"timeout": httpx2.Timeout(timeout).as_dict()}
    if sni_hostname is not None:
        extensions["sni_hostname"] = sni_hostname
    return httpx2.Request(method, url, extensions=extensions, **kwargs)


# -- the happy paths -----------------------------------------------------------------------------


async def test_get_returns_status_headers_body_and_extensions(app_port: int, transport: AiohttpTransport) -> None:
    response = await transport.handle_async_request(
        request("GET", f"http://127.0.0.1:{app_port}/echo?q=1", headers={"X-Trace": "abc"})
    )
    body = await response.aread()
    await response.aclose()
    assert response.status_code == 200
    assert body == b""
    assert response.headers["x-echo-x-trace"] == "abc"
    assert response.headers["x-echo-method"] == "GET"
    assert response.extensions["http_version"] == b"HTTP/1.1"
    assert response.extensions["reason_phrase"] == b"OK"
    assert response.extensions["tether.peer"] == f"127.0.0.1:{app_port}"


async def test_post_sends_body_and_exactly_the_given_headers(app_port: int, transport: AiohttpTransport) -> None:
    """aiohttp would add User-Agent, Accept, Accept-Encoding and Content-Type; an httpx2 transport must not."""
    sent = request("POST", f"http://127.0.0.1:{app_port}/echo", content=b"payload", headers={"X-A": "1"})
    response = await transport.handle_async_request(sent)
    await response.aread()
    assert response.content == b"payload"
    echoed = {name[len("x-echo-") :] for name in response.headers if name.startswith("x-echo-")}
    assert {"host", "content-length", "x-a"} <= echoed
    assert not echoed & {"user-agent", "accept", "accept-encoding", "content-type"}


async def test_repeated_header_values_are_all_sent(app_port: int, transport: AiohttpTransport) -> None:
    sent = request("GET", f"http://127.0.0.1:{app_port}/echo", headers=[("X-Many", "a"), ("X-Many", "b")])
    response = await transport.handle_async_request(sent)
    await response.aread()
    assert response.headers.get_list("x-echo-x-many") == ["a", "b"]


async def test_streaming_request_body_is_sent_chunked(app_port: int, transport: AiohttpTransport) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            await asyncio.sleep(0)
            yield part

    sent = request("PUT", f"http://127.0.0.1:{app_port}/echo", content=parts())
    assert sent.headers["Transfer-Encoding"] == "chunked"
    response = await transport.handle_async_request(sent)
    assert await response.aread() == b"one,two,three"
    assert response.headers["x-echo-chunked"] == "True"


async def test_large_response_is_streamed_and_complete(app_port: int, transport: AiohttpTransport) -> None:
    response = await transport.handle_async_request(request("GET", f"http://127.0.0.1:{app_port}/stream"))
    assert not isinstance(response.stream, httpx2.ByteStream), "an unsized body must not be read eagerly"
    received = bytearray()
    async for chunk in response.aiter_raw():
        received += chunk
    assert len(received) == BIG
    assert received[:1024] == b"\x00" * 1024
    assert received[-1024:] == bytes([(BIG // 1024 - 1) % 256]) * 1024


async def test_closing_a_half_read_stream_leaves_the_transport_usable(
    app_port: int, transport: AiohttpTransport
) -> None:
    response = await transport.handle_async_request(request("GET", f"http://127.0.0.1:{app_port}/stream"))
    async for _ in response.aiter_raw():
        break
    await response.aclose()
    again = await transport.handle_async_request(request("GET", f"http://127.0.0.1:{app_port}/echo"))
    await again.aread()
    assert again.status_code == 200
    assert transport._in_flight == 0


async def test_transport_reopens_after_aclose(app_port: int) -> None:
    transport = AiohttpTransport()
    for _ in range(2):
        response = await transport.handle_async_request(request("GET", f"http://127.0.0.1:{app_port}/echo"))
        await response.aread()
        assert response.status_code == 200
        await transport.aclose()


async def test_outgoing_connections_bind_the_local_address(app_port: int) -> None:
    async with AiohttpTransport(local_address="127.0.0.1") as transport:
        response = await transport.handle_async_request(request("GET", f"http://127.0.0.1:{app_port}/echo"))
        await response.aread()
    assert response.headers["x-echo-peer"] == "127.0.0.1"


async def test_works_under_httpx2_async_client(app_port: int) -> None:
    """httpx2 keeps its own jobs: base URL, redirects, content decoding, JSON."""
    async with httpx2.AsyncClient(
        transport=AiohttpTransport(), base_url=f"http://127.0.0.1:{app_port}", follow_redirects=True
    ) as client:
        posted = await client.post("/echo", json={"id": 1})
        redirected = await client.get("/redirect")
        gzipped = await client.get("/gzip")
        async with client.stream("GET", "/stream") as streamed:
            total = sum([len(chunk) async for chunk in streamed.aiter_bytes()])

    assert posted.json() == {"id": 1}
    assert posted.headers["x-echo-content-type"] == "application/json"
    assert posted.elapsed.total_seconds() > 0
    assert redirected.status_code == 200
    assert [r.status_code for r in redirected.history] == [302]
    assert gzipped.text == "squeezed" * 100
    assert total == BIG


# -- failures ------------------------------------------------------------------------------------


async def test_refused_connection_is_connect_error(transport: AiohttpTransport) -> None:
    with pytest.raises(httpx2.ConnectError) as caught:
        await transport.handle_async_request(request("GET", f"http://127.0.0.1:{free_port()}/"))
    assert isinstance(caught.value.__cause__, ConnectionRefusedError | OSError)
    assert transport._in_flight == 0


async def test_slow_response_is_read_timeout(app_port: int, transport: AiohttpTransport) -> None:
    with pytest.raises(httpx2.ReadTimeout):
        await transport.handle_async_request(request("GET", f"http://127.0.0.1:{app_port}/sleep?s=1", timeout=0.2))


async def test_body_that_stalls_while_streaming_is_read_timeout(transport: AiohttpTransport) -> None:
    async def stall_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n".encode() + b"x" * 100)
        await writer.drain()
        await asyncio.sleep(2)

    async with serve_raw(stall_mid_body) as port:
        response = await transport.handle_async_request(request("GET", f"http://127.0.0.1:{port}/", timeout=0.2))
        with pytest.raises(httpx2.ReadTimeout):
            await response.aread()
        await response.aclose()


async def test_server_closing_before_responding_is_remote_protocol_error(transport: AiohttpTransport) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)

    async with serve_raw(hang_up) as port:
        with pytest.raises(httpx2.RemoteProtocolError):
            await transport.handle_async_request(request("GET", f"http://127.0.0.1:{port}/"))


async def test_garbage_instead_of_http_is_remote_protocol_error(transport: AiohttpTransport) -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async with serve_raw(babble) as port:
        with pytest.raises(httpx2.RemoteProtocolError):
            await transport.handle_async_request(request("GET", f"http://127.0.0.1:{port}/"))


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize("announced", [100, BIG], ids=["read-eagerly", "streamed"])
@pytest.mark.parametrize("ending", ["close", "reset"])
async def test_body_shorter_than_content_length_is_read_error(
    transport: AiohttpTransport, announced: int, ending: str
) -> None:
    async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n".encode() + b"only ten..")
        await writer.drain()
        if ending == "reset":
            await asyncio.sleep(0.05)  # let the head arrive on its own, as a real mid-body reset would
            reset(writer)

    async with serve_raw(truncate) as port:
        with pytest.raises(httpx2.ReadError):  # noqa: PT012 (either step may raise, depending on the size)
            response = await transport.handle_async_request(request("GET", f"http://127.0.0.1:{port}/"))
            try:
                await response.aread()
            finally:
                await response.aclose()
    assert transport._in_flight == 0


async def test_connection_reset_while_awaiting_the_response_is_read_error(transport: AiohttpTransport) -> None:
    async def reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        reset(writer)

    async with serve_raw(reset_after_request) as port:
        with pytest.raises(httpx2.ReadError):
            await transport.handle_async_request(request("POST", f"http://127.0.0.1:{port}/", content=b"x"))


async def test_request_without_timeout_extension_waits_without_limit(
    app_port: int, transport: AiohttpTransport
) -> None:
    response = await transport.handle_async_request(httpx2.Request("GET", f"http://127.0.0.1:{app_port}/echo"))
    await response.aread()
    assert response.status_code == 200


def test_timeout_cache_stays_bounded() -> None:
    transport = AiohttpTransport()
    for read in range(200):
        timeout = transport._client_timeout({"connect": 1.0, "read": float(read), "write": 1.0, "pool": 2.0})
        assert (timeout.sock_connect, timeout.sock_read, timeout.connect) == (1.0, float(read), 2.0)
    assert len(transport._timeouts) <= 64
    same = {"connect": 1.0, "read": 0.5, "write": None, "pool": None}
    assert transport._client_timeout(same) is transport._client_timeout(dict(same))


async def test_sync_request_body_is_refused(app_port: int, transport: AiohttpTransport) -> None:
    sent = request("POST", f"http://127.0.0.1:{app_port}/echo", content=iter([b"sync"]))
    with pytest.raises(TypeError, match="async request body"):
        await transport.handle_async_request(sent)


async def test_cancelled_request_gives_its_pool_slot_back(app_port: int, transport: AiohttpTransport) -> None:
    task = asyncio.create_task(transport.handle_async_request(request("GET", f"http://127.0.0.1:{app_port}/sleep?s=5")))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transport._in_flight == 0


async def test_non_http_url_is_unsupported_protocol(transport: AiohttpTransport) -> None:
    with pytest.raises(httpx2.UnsupportedProtocol):
        await transport.handle_async_request(request("GET", "ftp://127.0.0.1/file"))


async def test_waiting_too_long_for_a_pooled_connection_is_pool_timeout(app_port: int) -> None:
    async with AiohttpTransport(limits=httpx2.Limits(max_connections=1)) as transport:
        slow = asyncio.create_task(
            transport.handle_async_request(request("GET", f"http://127.0.0.1:{app_port}/sleep?s=0.5"))
        )
        await asyncio.sleep(0.1)  # let the slow request take the only connection
        with pytest.raises(httpx2.PoolTimeout):
            await transport.handle_async_request(request("GET", f"http://127.0.0.1:{app_port}/echo", timeout=0.1))
        assert (await slow).status_code == 200


async def test_connection_that_is_never_accepted_is_connect_timeout() -> None:
    """A listener whose backlog is full drops further SYNs, so the handshake never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        async with AiohttpTransport() as transport:
            with pytest.raises(httpx2.ConnectTimeout):
                await transport.handle_async_request(request("GET", f"http://127.0.0.1:{port}/", timeout=0.2))
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def test_unreachable_proxy_is_proxy_error() -> None:
    async with AiohttpTransport(proxy=f"http://127.0.0.1:{free_port()}") as transport:
        with pytest.raises(httpx2.ProxyError):
            await transport.handle_async_request(request("GET", "http://api.example.test/"))


async def test_proxy_receives_the_request_with_its_credentials() -> None:
    seen: dict[str, str] = {}

    async def proxy(request: web.Request) -> web.Response:
        seen["target"] = str(request.url)
        seen["authorization"] = request.headers.get("Proxy-Authorization", "")
        return web.Response(text="via proxy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    async with serve_app(app) as port, AiohttpTransport(proxy=f"http://user:secret@127.0.0.1:{port}") as transport:
        response = await transport.handle_async_request(request("GET", "http://api.example.test/v1/x"))
        await response.aread()
    assert response.text == "via proxy"
    assert seen["target"].endswith("/v1/x")
    assert seen["authorization"] == "Basic dXNlcjpzZWNyZXQ="


@pytest.mark.parametrize(
    ("error", "reading_body", "expected"),
    [
        (aiohttp.ConnectionTimeoutError(), False, httpx2.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), True, httpx2.ReadTimeout),
        (TimeoutError(), False, httpx2.TimeoutException),
        (aiohttp.ServerDisconnectedError(), False, httpx2.RemoteProtocolError),
        (aiohttp.ServerDisconnectedError(), True, httpx2.ReadError),
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), False, httpx2.WriteError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), False, httpx2.ReadError),
        (aiohttp.ClientConnectionError("Connector is closed."), False, httpx2.NetworkError),
        (ConnectionResetError(104, "Connection reset by peer"), True, httpx2.ReadError),
        (aiohttp.ClientError("something new"), False, httpx2.TransportError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_each_aiohttp_error_maps_to_the_most_specific_httpx2_error(
    error: Exception, reading_body: bool, expected: type[httpx2.TransportError]
) -> None:
    with pytest.raises(httpx2.TransportError) as caught:
        _raise_mapped(error, reading_body=reading_body)
    assert type(caught.value) is expected
    assert caught.value.__cause__ is error


def test_errors_that_are_not_about_the_network_pass_through_unchanged() -> None:
    error = ValueError("a bug, not an outage")
    with pytest.raises(ValueError, match="a bug") as caught:
        _raise_mapped(error)
    assert caught.value is error


def test_socks_proxy_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="socks5"):
        AiohttpTransport(proxy="socks5://127.0.0.1:1080")


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``tether.test`` (and no IP address), with its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tether.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("tether.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
async def tls_port(self_signed: tuple[Path, Path]) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed)
    async with serve_app(echo_app(), ssl_context=context) as port:
        yield port


@pytest.mark.parametrize("form", ["pem-with-key", "cert-and-key", "cert-key-and-password"])
async def test_client_certificate_is_presented(self_signed: tuple[Path, Path], tmp_path: Path, form: str) -> None:
    cert_path, key_path = self_signed
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_verify_locations(cafile=str(cert_path))
    cert: str | tuple[str, str] | tuple[str, str, str]
    if form == "pem-with-key":
        combined = tmp_path / "combined.pem"
        combined.write_bytes(key_path.read_bytes() + cert_path.read_bytes())
        cert = str(combined)
    elif form == "cert-and-key":
        cert = (str(cert_path), str(key_path))
    else:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        encrypted = tmp_path / "encrypted-key.pem"
        encrypted.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"hunter2"),
            )
        )
        cert = (str(cert_path), str(encrypted), "hunter2")

    async with (
        serve_app(echo_app(), ssl_context=server_context) as port,
        AiohttpTransport(verify=str(cert_path), cert=cert) as transport,
    ):
        response = await transport.handle_async_request(
            request("GET", f"https://127.0.0.1:{port}/echo", sni_hostname="tether.test")
        )
        await response.aread()
    assert "tether.test" in response.headers["x-echo-client-cert"]


def verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The first ``ssl.SSLCertVerificationError`` with a ``verify_message``, walking ``__cause__``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) and getattr(seen, "verify_message", None):
            return seen
        seen = seen.__cause__
    return None


async def test_self_signed_certificate_is_connect_error_caused_by_the_ssl_error(tls_port: int) -> None:
    async with AiohttpTransport() as transport:
        with pytest.raises(httpx2.ConnectError) as caught:
            await transport.handle_async_request(
                request("GET", f"https://127.0.0.1:{tls_port}/echo", sni_hostname="tether.test")
            )
    cause = caught.value.__cause__
    assert isinstance(cause, ssl.SSLCertVerificationError), "the ssl error itself is the direct cause"
    assert verification_error(caught.value) is cause
    assert cause.verify_message == "self-signed certificate"


async def test_trusted_certificate_with_sni_hostname_succeeds(tls_port: int, self_signed: tuple[Path, Path]) -> None:
    """Trusting the certificate (as a CA file path) and naming its host through SNI passes verification."""
    async with AiohttpTransport(verify=str(self_signed[0])) as transport:
        sent = request("GET", f"https://127.0.0.1:{tls_port}/echo", sni_hostname="tether.test")
        response = await transport.handle_async_request(sent)
        await response.aread()
    assert response.status_code == 200
    assert response.headers["x-echo-host"] == f"127.0.0.1:{tls_port}"


async def test_certificate_for_another_host_is_connect_error_saying_so(
    tls_port: int, self_signed: tuple[Path, Path]
) -> None:
    async with AiohttpTransport(verify=ssl.create_default_context(cafile=str(self_signed[0]))) as transport:
        with pytest.raises(httpx2.ConnectError) as caught:
            await transport.handle_async_request(request("GET", f"https://127.0.0.1:{tls_port}/echo"))
    cause = verification_error(caught.value)
    assert cause is not None
    assert "mismatch" in cause.verify_message


async def test_verify_false_accepts_any_certificate(tls_port: int) -> None:
    async with httpx2.AsyncClient(transport=AiohttpTransport(verify=False)) as client:
        response = await client.get(f"https://127.0.0.1:{tls_port}/echo")
    assert response.status_code == 200


def test_peer_addresses_are_formatted_for_humans() -> None:
    assert _format_peer(("127.0.0.1", 443)) == "127.0.0.1:443"
    assert _format_peer(("::1", 443, 0, 0)) == "[::1]:443"

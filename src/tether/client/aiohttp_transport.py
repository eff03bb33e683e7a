"""An ``httpx2.AsyncBaseTransport`` that sends requests over aiohttp's connection pool.

httpx2's default async socket layer costs roughly ten times more CPU per request than aiohttp's, so
tether's async clients keep httpx2's API (auth flows, event hooks, redirects, cookies, content
decoding) and hand only the bytes on the wire to aiohttp::

    client = httpx2.AsyncClient(transport=AiohttpTransport())

The transport does exactly what ``httpx2.AsyncHTTPTransport`` does and no more: it sends the request
it is given (no redirects, cookies, decompression or extra headers of aiohttp's own) and returns the
raw response. Every aiohttp or asyncio error becomes the most specific ``httpx2`` exception, chained
with ``raise … from``; a failed TLS verification is chained from the original
``ssl.SSLCertVerificationError`` so ``verify_message`` is one ``__cause__`` away.

Timeouts come from ``request.extensions["timeout"]`` as httpx2 sets them: ``connect`` bounds the TCP
and TLS handshake, ``read`` every wait for bytes from the server, ``pool`` the wait for a free
connection. aiohttp has no write timeout, so ``write`` is ignored.

Small bodies (a ``Content-Length`` of at most 64 KiB) are read before the response is returned, which
hands the connection back to the pool at once; larger or unsized bodies stream.
"""

from __future__ import annotations

import base64
import functools
import os
import ssl
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Final, NoReturn

import aiohttp
import httpx2
from aiohttp import http_exceptions
from multidict import CIMultiDict
from yarl import URL

from tether.observe.redact import redact_text

__all__ = ["AiohttpTransport"]

CertTypes = str | tuple[str, str] | tuple[str, str, str]

#: Bodies up to this size are read eagerly when their length is announced.
EAGER_READ_LIMIT: Final = 64 * 1024

_DEFAULT_LIMITS: Final = httpx2.Limits(max_connections=100, max_keepalive_connections=20)
_NO_TIMEOUT: Final = aiohttp.ClientTimeout(total=None)
_HTTP_VERSIONS: Final = {(1, 1): b"HTTP/1.1", (1, 0): b"HTTP/1.0"}
# aiohttp adds these when a request lacks them (Content-Type to any body); an httpx2 transport
# sends the headers it is given and nothing else.
_NO_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
# The ClientTimeout cache only grows with distinct timeout configurations; this bounds a caller
# that invents a new timeout per request.
_TIMEOUT_CACHE_SIZE: Final = 64


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """Send httpx2 requests through an ``aiohttp.ClientSession``.

    The session is created on the first request, because an aiohttp session belongs to the event
    loop it was created on; use one transport per event loop. ``aclose()`` (or leaving
    ``async with``) closes it.

    Args:
        verify: ``True`` to verify TLS against the default CA bundle, ``False`` to skip
            verification, a path to a CA bundle file or directory, or a ready ``ssl.SSLContext``.
        cert: A client certificate: a path to a PEM file with key and certificate, a
            ``(certfile, keyfile)`` tuple, or ``(certfile, keyfile, password)``.
        limits: ``max_connections`` caps open connections (``None`` for no cap) and
            ``keepalive_expiry`` closes idle ones. aiohttp has no separate cap on idle connections,
            so ``max_keepalive_connections`` is not enforced.
        trust_env: Honour ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` when building the TLS context.
            Proxies from the environment are httpx2's business: ``httpx2.AsyncClient`` mounts its
            own proxy transports for them.
        local_address: Bind outgoing connections to this local IP address.
        proxy: Send every request through this HTTP or HTTPS proxy. Credentials in the URL or in
            ``httpx2.Proxy(auth=...)`` become a ``Proxy-Authorization`` header.

    Raises:
        ValueError: ``proxy`` is a SOCKS proxy, which aiohttp cannot speak.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool | str = True,
        cert: CertTypes | None = None,
        limits: httpx2.Limits = _DEFAULT_LIMITS,
        trust_env: bool = True,
        local_address: str | None = None,
        proxy: httpx2.Proxy | str | None = None,
    ) -> None:
        self._ssl_context = _ssl_context(verify, cert, trust_env)
        self._max_connections = limits.max_connections or 0
        self._keepalive_expiry = limits.keepalive_expiry
        self._local_address = local_address
        self._proxy_url: URL | None = None
        self._proxy_headers: tuple[tuple[str, str], ...] = ()
        if proxy is not None:
            self._proxy_url, self._proxy_headers = _proxy_settings(proxy)
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}
        # Requests holding (or waiting for) a connection; a connect timeout that fires while this is at
        # the cap was spent waiting for the pool.
        self._in_flight = 0

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=self._keepalive_expiry,
            ssl=self._ssl_context,
            local_addr=(self._local_address, 0) if self._local_address else None,
            use_dns_cache=True,
        )
        # trust_env stays off: aiohttp would then look up proxies and .netrc in a worker thread on
        # every request, and httpx2 already handles both above the transport.
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            timeout=_NO_TIMEOUT,
            requote_redirect_url=False,
            response_class=_PeerResponse,
        )
        return self._session

    def _client_timeout(self, timeout: dict[str, float | None] | None) -> aiohttp.ClientTimeout:
        if timeout is None:
            return _NO_TIMEOUT
        key = (timeout.get("connect"), timeout.get("read"), timeout.get("pool"))
        cached = self._timeouts.get(key)
        if cached is None:
            if len(self._timeouts) >= _TIMEOUT_CACHE_SIZE:
                self._timeouts.clear()
            connect, read, pool = key
            # aiohttp's `connect` bounds the pool wait plus the handshake, `sock_connect` the handshake.
            cached = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, sock_connect=connect, sock_read=read, connect=pool
            )
        return cached

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` and return its response; see the module docstring for the contract.

        Args:
            request: The request to send; its ``extensions`` may carry ``timeout`` and
                ``sni_hostname``.

        Returns:
            The response. Its ``extensions`` hold ``http_version``, ``reason_phrase`` and, when the
            socket reports it, ``tether.peer`` (the server's ``"ip:port"``).

        Raises:
            httpx2.TransportError: The subclass that best describes what failed.
        """
        session = self._session or self._open_session()
        extensions = request.extensions
        headers = CIMultiDict([(key.decode("latin-1"), value.decode("latin-1")) for key, value in request.headers.raw])
        stream = request.stream
        data: bytes | httpx2.AsyncByteStream | None
        if isinstance(stream, httpx2.ByteStream):
            data = await request.aread() or None
        elif isinstance(stream, httpx2.AsyncByteStream):
            data = stream
            # aiohttp frames an unsized body itself and refuses a Transfer-Encoding header it did not set.
            headers.popall("Transfer-Encoding", None)
        else:
            raise TypeError("AiohttpTransport needs an async request body (an httpx2.AsyncByteStream)")
        if self._proxy_headers and request.url.scheme == "http":
            # aiohttp sends proxy headers only on the CONNECT that tunnels HTTPS; a plain-HTTP
            # request goes to the proxy itself, so they travel with it.
            headers.extend(self._proxy_headers)

        # Skipping auto headers costs aiohttp a header copy per request, and requests built by
        # httpx2.AsyncClient already carry all of them, so ask only when aiohttp would add one.
        skip_auto_headers = (
            _NO_AUTO_HEADERS
            if "User-Agent" not in headers
            or "Accept" not in headers
            or "Accept-Encoding" not in headers
            or (data is not None and "Content-Type" not in headers)
            else None
        )
        pool_full = 0 < self._max_connections <= self._in_flight
        self._in_flight += 1
        try:
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                skip_auto_headers=skip_auto_headers,
                data=data,
                allow_redirects=False,
                timeout=self._client_timeout(extensions.get("timeout")),
                server_hostname=extensions.get("sni_hostname"),
                proxy=self._proxy_url,
                # A tuple, so aiohttp builds a fresh dict per request: it writes Host into the one it gets.
                proxy_headers=self._proxy_headers or None,
            )
        except BaseException as exc:
            self._in_flight -= 1
            if isinstance(exc, Exception):
                _raise_mapped(exc, pool_full=pool_full)
            raise

        response_extensions: dict[str, Any] = {
            "http_version": _HTTP_VERSIONS.get(response.version or (1, 1), b"HTTP/1.1"),
            "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
        }
        peer = response.peer if isinstance(response, _PeerResponse) else None
        if peer:
            response_extensions["tether.peer"] = _format_peer(peer)

        body_stream: httpx2.AsyncByteStream
        length = response.content_length
        if length is not None and length <= EAGER_READ_LIMIT:
            try:
                body = await response.read()
            except Exception as exc:
                _raise_mapped(exc, reading_body=True)
            finally:
                self._in_flight -= 1
            body_stream = httpx2.ByteStream(body)
        else:
            body_stream = _ResponseStream(response, self)

        return httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=body_stream,
            request=request,
            extensions=response_extensions,
        )

    async def aclose(self) -> None:
        """Close the session and every pooled connection; a later request opens a new session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class _PeerResponse(aiohttp.ClientResponse):
    """An aiohttp response that remembers the server's socket address.

    It has to be read in ``start()``: a small body arrives with the headers, and aiohttp hands the
    connection back to the pool before the response reaches the transport.
    """

    peer: Any = None

    def start(self, connection: aiohttp.connector.Connection) -> Coroutine[Any, Any, aiohttp.ClientResponse]:
        # A plain function handing back aiohttp's coroutine: an `async def` wrapper would add a
        # coroutine frame to every request.
        transport = connection.transport
        if transport is not None:
            self.peer = transport.get_extra_info("peername")
        return super().start(connection)


class _ResponseStream(httpx2.AsyncByteStream):
    """A response body streamed from aiohttp; closing it hands the connection back."""

    __slots__ = ("_response", "_transport")

    def __init__(self, response: aiohttp.ClientResponse, transport: AiohttpTransport) -> None:
        self._response = response
        self._transport: AiohttpTransport | None = transport

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except Exception as exc:
            _raise_mapped(exc, reading_body=True)

    async def aclose(self) -> None:
        # release() reuses the connection when the body was read to the end and closes it otherwise.
        self._response.release()
        self._forget()

    def _forget(self) -> None:
        if self._transport is not None:
            self._transport._in_flight -= 1
            self._transport = None

    def __del__(self) -> None:
        # A streamed response dropped unclosed: aiohttp releases its connection, so stop counting it.
        self._forget()


def _raise_mapped(exc: Exception, *, pool_full: bool = False, reading_body: bool = False) -> NoReturn:
    """Raise the httpx2 exception that best describes ``exc``, chained from it."""
    message = str(exc) or type(exc).__name__
    cause: BaseException = exc
    mapped: type[httpx2.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        mapped = httpx2.PoolTimeout if pool_full else httpx2.ConnectTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        mapped = httpx2.ReadTimeout
    elif isinstance(exc, TimeoutError):
        mapped = httpx2.TimeoutException
    elif isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        mapped = httpx2.ProxyError
    elif isinstance(exc, aiohttp.ClientSSLError):
        # Chain from the ssl module's own exception: aiohttp's wrapper subclasses
        # ssl.CertificateError but has no verify_message, which is what callers inspect.
        mapped = httpx2.ConnectError
        original = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc.os_error
        cause = original if isinstance(original, ssl.SSLError) else exc
    elif isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerFingerprintMismatch):
        mapped = httpx2.ConnectError
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        mapped = httpx2.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ClientPayloadError | http_exceptions.PayloadEncodingError):
        mapped = httpx2.ReadError
    elif isinstance(exc, aiohttp.ClientResponseError | http_exceptions.HttpProcessingError):
        mapped = httpx2.RemoteProtocolError
    elif reading_body and isinstance(exc, aiohttp.ClientConnectionError | OSError):
        mapped = httpx2.ReadError
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        mapped = httpx2.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientConnectionResetError):
        mapped = httpx2.WriteError
    elif isinstance(exc, aiohttp.ClientOSError):
        mapped = httpx2.ReadError
    elif isinstance(exc, aiohttp.ClientConnectionError | OSError):
        mapped = httpx2.NetworkError
    elif isinstance(exc, aiohttp.ClientError):
        mapped = httpx2.TransportError
    else:
        raise exc
    redacted = redact_text(message)
    if redacted != message:
        # aiohttp's text held a credential (it quotes the URL): keep it out of the traceback too.
        raise mapped(f"{type(exc).__name__}: {redacted}") from None
    raise mapped(message) from cause


@functools.lru_cache(maxsize=256)  # formatted once per address: a pooled connection answers many requests
def _format_peer(peer: Any) -> str:
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ssl_context(verify: ssl.SSLContext | bool | str, cert: CertTypes | None, trust_env: bool) -> ssl.SSLContext:
    """Build the TLS context the way httpx2 does, without its deprecation warnings for paths and certs."""
    if isinstance(verify, str):
        context = (
            ssl.create_default_context(capath=verify)
            if os.path.isdir(verify)
            else ssl.create_default_context(cafile=verify)
        )
    else:
        context = httpx2.create_ssl_context(verify=verify, trust_env=trust_env)
    if isinstance(cert, str):
        context.load_cert_chain(cert)
    elif isinstance(cert, tuple) and len(cert) == 2:
        context.load_cert_chain(cert[0], cert[1])
    elif isinstance(cert, tuple):
        context.load_cert_chain(cert[0], cert[1], cert[2])
    return context


def _proxy_settings(proxy: httpx2.Proxy | str) -> tuple[URL, tuple[tuple[str, str], ...]]:
    proxy = proxy if isinstance(proxy, httpx2.Proxy) else httpx2.Proxy(proxy)
    if proxy.url.scheme not in ("http", "https"):
        raise ValueError(f"AiohttpTransport supports HTTP and HTTPS proxies, not {proxy.url.scheme!r}")
    headers = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in proxy.headers.raw]
    if proxy.auth is not None:
        credentials = base64.b64encode(":".join(proxy.auth).encode("latin-1")).decode("ascii")
        headers.append(("Proxy-Authorization", f"Basic {credentials}"))
    return URL(str(proxy.url), encoded=True), tuple(headers)

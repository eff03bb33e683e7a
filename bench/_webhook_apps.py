"""The endpoints ``bench/bench_webhooks.py`` measures tether's webhook receiver against: raw ASGI apps for uvicorn.

Not a benchmark itself: the harness runs each app in its own ``uvicorn --workers 1`` process::

    python -m uvicorn --app-dir bench _webhook_apps:noop ...
    BENCH_NAIVE_STORE=sqlite:///PATH python -m uvicorn --app-dir bench _webhook_apps:naive ...

- ``noop`` reads the body and answers 200 ``{"ok":true}``: the most one uvicorn process can ingest.
- ``naive`` is what a typical hand-written endpoint does: read the body, INSERT the event (delivery id, headers as
  JSON, body) and COMMIT, then answer 200. No signature check, no duplicate handling. ``BENCH_NAIVE_STORE`` says where:

  - ``sqlite:///PATH``: one ``sqlite3`` connection opened at start-up, ``journal_mode=WAL``, everything else at
    SQLite's defaults (so ``synchronous=FULL``: one fsync of the WAL per commit, unless ``BENCH_NAIVE_SYNCHRONOUS``
    says otherwise), called straight from the ``async def`` on the event loop, as most hand-written async
    endpoints do: each INSERT + COMMIT blocks the loop.
  - a libpq URL (``postgresql://…``): a ``psycopg_pool.AsyncConnectionPool`` of 4 connections (tether's store
    uses 4 too), one connection per request, ``INSERT`` then ``COMMIT`` when the ``async with`` block ends.
    The table goes in the URL's ``search_path`` (the harness passes a fresh schema).

Both answer ``GET`` (any path, e.g. ``/healthz``) with 200, for the harness's readiness check.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OK_BODY = b'{"ok":true}'
OK_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(OK_BODY)).encode())]
SQLITE_PREFIX = "sqlite:///"


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def answer(send: Send, status: int = 200, body: bytes = OK_BODY) -> None:
    headers = OK_HEADERS if body is OK_BODY else [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send, startup: Callable[[], Awaitable[None]] | None = None) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                if startup is not None:
                    await startup()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def noop(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the body, answer 200 ``{"ok":true}``."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["method"] == "POST" and await read_body(receive) is None:
        return
    await answer(send)


# -- naive: INSERT + COMMIT per request ----------------------------------------------------------------------------

_sqlite: sqlite3.Connection | None = None
_pool: Any = None  # psycopg_pool.AsyncConnectionPool, imported only for a PostgreSQL store


async def _open_store() -> None:
    global _sqlite, _pool
    store = os.environ["BENCH_NAIVE_STORE"]
    if store.startswith(SQLITE_PREFIX):
        _sqlite = sqlite3.connect(store.removeprefix(SQLITE_PREFIX))
        _sqlite.execute("PRAGMA journal_mode=WAL")
        if synchronous := os.environ.get("BENCH_NAIVE_SYNCHRONOUS"):
            _sqlite.execute(f"PRAGMA synchronous={synchronous}")
        _sqlite.execute(
            "CREATE TABLE IF NOT EXISTS webhook_events (id TEXT PRIMARY KEY, headers TEXT NOT NULL, body BLOB)"
        )
        _sqlite.commit()
        return
    from psycopg_pool import AsyncConnectionPool

    _pool = AsyncConnectionPool(store, min_size=4, max_size=4, open=False)
    await _pool.open(wait=True)
    async with _pool.connection() as connection:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS webhook_events (id TEXT PRIMARY KEY, headers JSONB NOT NULL, body BYTEA)"
        )


async def naive(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the body, INSERT the event and COMMIT, answer 200 ``{"ok":true}``."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send, _open_store)
        return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await answer(send)
        return
    body = await read_body(receive)
    if body is None:
        return
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    delivery = headers.get("x-github-delivery") or str(uuid.uuid4())
    row = (delivery, json.dumps(headers), body)
    if _sqlite is not None:
        _sqlite.execute("INSERT INTO webhook_events (id, headers, body) VALUES (?, ?, ?)", row)
        _sqlite.commit()
    else:
        async with _pool.connection() as connection:  # commits when the block ends
            await connection.execute("INSERT INTO webhook_events (id, headers, body) VALUES (%s, %s, %s)", row)
    await answer(send)

"""Real PostgreSQL and Redis for the store tests, each test in a space of its own that it leaves clean.

PostgreSQL is ``$TETHER_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``): every
test gets a schema of its own, selected by ``search_path`` in the URL it is handed, and a distinct
``application_name`` so that it can find (and terminate) its own connections. Redis is
``$TETHER_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``): every test gets a key prefix of its own.
Either service down skips its tests, except under CI, where that is a failure. A test that must take a server
away runs one of its own: a PostgreSQL database that stops accepting connections, or a redis-server it stops
(``RedisServer`` of ``test_state_redis``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
import redis

from test_state_redis import RedisServer

POSTGRES_URL = os.environ.get("TETHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, url: str, exc: BaseException) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI needs {what} at {url}: {exc}")
    pytest.skip(f"no {what} at {url}: {exc}")


def admin(url: str = POSTGRES_URL) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection for setting up and tearing down."""
    return psycopg.connect(url, autocommit=True, connect_timeout=2)


def with_query(url: str, **params: str) -> str:
    """``url`` with libpq parameters added to its query string."""
    parts = urlsplit(url)
    added = "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())
    return urlunsplit(parts._replace(query=f"{parts.query}&{added}" if parts.query else added))


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def terminate(application_name: str) -> int:
    """Terminate every server process of ``application_name``; returns how many there were."""
    with admin() as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return len(rows)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The shared PostgreSQL; skipped when it is down, except under CI, where that is a failure."""
    try:
        with admin() as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        _unavailable("PostgreSQL", POSTGRES_URL, exc)
    return POSTGRES_URL


class PostgresSpace:
    """A schema of one test's own: its URL selects it and names the test's connections."""

    def __init__(self, base_url: str) -> None:
        self.schema = f"tether_test_{uuid.uuid4().hex[:12]}"
        self.application_name = self.schema
        self.url = with_query(base_url, options=f"-csearch_path={self.schema}", application_name=self.schema)

    def rows(self, query: str) -> list[tuple[object, ...]]:
        """What ``query`` returns in this schema."""
        with admin() as connection:
            connection.execute(f"SET search_path = {self.schema}")
            return connection.execute(query).fetchall()  # type: ignore[arg-type]


@pytest.fixture
def postgres(postgres_admin_url: str) -> Iterator[PostgresSpace]:
    space = PostgresSpace(postgres_admin_url)
    with admin() as connection:
        connection.execute(f"CREATE SCHEMA {space.schema}")
    yield space
    terminate(space.application_name)
    with admin() as connection:
        connection.execute(f"DROP SCHEMA {space.schema} CASCADE")


class PostgresDatabase:
    """A database of one test's own, which it can stop accepting connections, as a server going away does."""

    def __init__(self) -> None:
        self.name = f"tether_test_{uuid.uuid4().hex[:12]}"
        self.url = with_query(with_database(POSTGRES_URL, self.name), application_name=self.name)

    def refuse_connections(self) -> None:
        """New connections are refused, and the ones open are terminated."""
        with admin() as connection:
            connection.execute(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS false")
        terminate(self.name)

    def accept_connections(self) -> None:
        with admin() as connection:
            connection.execute(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS true")


@pytest.fixture
def postgres_database(postgres_admin_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase()
    with admin() as connection:
        connection.execute(f"CREATE DATABASE {database.name}")
    yield database
    with admin() as connection:
        connection.execute(f"DROP DATABASE {database.name} WITH (FORCE)")


@pytest.fixture(scope="session")
def shared_redis_url() -> str:
    """The shared Redis; skipped when it is down, except under CI, where that is a failure."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", REDIS_URL, exc)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(shared_redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; whatever it wrote is deleted afterwards."""
    prefix = f"tether-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(shared_redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server", "PATH", FileNotFoundError("redis-server is not on PATH"))
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()

"""OAuth 2.0 tokens at rest: what a token set holds, when to renew it, and where it is kept.

Tokens live in the tether store (``store`` in tether.toml: SQLite by default, PostgreSQL when configured), in the
``tether_tokens`` table, one row per integration, so every process of the application and ``tether serve`` share
them, and a refresh token rotated by one process is the one the next process uses. With ``TETHER_SECRET_KEY``
set they are encrypted at rest (Fernet, from ``cryptography``); without it they are stored as they are, in a
file only its owner can read, and ``tether auth status`` says so.

The same store holds the lease locks (``tether_locks``) that make renewal single-flight across processes: the
process holding an integration's lease renews; the others wait, then read what it stored.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from tether.store import Store

__all__ = ["SECRET_KEY_ENV", "Sealer", "TokenSet", "TokenStore", "renew_margin"]

SECRET_KEY_ENV = "TETHER_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tether_tokens (integration TEXT PRIMARY KEY, data BLOB NOT NULL, updated_at REAL)",
    "CREATE TABLE IF NOT EXISTS tether_locks (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)",
)
_POSTGRES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tether_tokens "
    "(integration TEXT PRIMARY KEY, data BYTEA NOT NULL, updated_at DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS tether_locks "
    "(name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
)
_PLAIN, _SEALED = b"plain:", b"fernet:"


@dataclass(frozen=True)
class TokenSet:
    """What a token endpoint granted, as tether keeps it.

    Attributes:
        access_token: Sent with each call.
        token_type: Usually ``"Bearer"``.
        expires_at: When the access token expires (wall-clock epoch seconds), if the endpoint said.
        obtained_at: When it was granted (wall-clock epoch seconds).
        refresh_token: For renewing without the user (rotated by some servers on every use).
        scope: The scopes granted, space-separated, when the endpoint said.
        revoked: The endpoint answered ``invalid_grant`` to this set's refresh token: someone must log in again.
    """

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a token
    expires_at: float | None = None
    obtained_at: float = 0.0
    refresh_token: str | None = None
    scope: str | None = None
    revoked: bool = False

    def __repr__(self) -> str:
        expires = "never" if self.expires_at is None else f"{self.expires_at:.0f}"
        return f"TokenSet(token_type={self.token_type!r}, expires_at={expires}, scope={self.scope!r})"

    @property
    def lifetime(self) -> float | None:
        """Seconds the access token was granted for."""
        return None if self.expires_at is None else self.expires_at - self.obtained_at

    def usable(self, now: float, *, margin: float | None) -> bool:
        """Whether to send this access token at ``now`` rather than renew it first."""
        if self.revoked or not self.access_token:
            return False
        if self.expires_at is None:
            return True  # the endpoint gave no lifetime: renew only when the API answers 401
        return self.expires_at - now > (margin if margin is not None else renew_margin(self.lifetime or 0.0))

    def valid(self, now: float) -> bool:
        """Whether the access token has not expired yet (it may still be sent while renewal fails)."""
        return bool(self.access_token) and not self.revoked and (self.expires_at is None or self.expires_at > now)

    def without_access(self) -> TokenSet:
        """This set with its access token dropped (the API refused it), keeping the refresh token."""
        return replace(self, access_token="", expires_at=None)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TokenSet:
        fields = json.loads(data)
        return cls(**{name: fields[name] for name in cls.__dataclass_fields__ if name in fields})


def renew_margin(lifetime: float) -> float:
    """How long before expiry to renew: 10% of the lifetime or 60 s, whichever is longer, at most half of it."""
    return min(max(0.1 * lifetime, 60.0), 0.5 * lifetime)


class Sealer:
    """Encrypts token sets at rest with Fernet when a key is set; passes them through otherwise.

    Args:
        key: ``TETHER_SECRET_KEY``'s value: a Fernet key (``Fernet.generate_key()``) or any passphrase of at
            least 16 characters (stretched to a key with SHA-256). ``None``: no encryption.
    """

    def __init__(self, key: str | None) -> None:
        self._fernet: Fernet | None = None
        if key:
            self._fernet = Fernet(_fernet_key(key))

    @classmethod
    def from_environment(cls) -> Sealer:
        return cls(os.environ.get(SECRET_KEY_ENV) or None)

    @property
    def encrypts(self) -> bool:
        return self._fernet is not None

    def seal(self, data: bytes) -> bytes:
        return _SEALED + self._fernet.encrypt(data) if self._fernet is not None else _PLAIN + data

    def open(self, data: bytes) -> bytes:
        """The stored bytes, decrypted.

        Raises:
            ValueError: encrypted without a key here, or with another key.
        """
        if data.startswith(_PLAIN):
            return data[len(_PLAIN) :]
        if not data.startswith(_SEALED):
            raise ValueError("not a token record tether wrote")
        if self._fernet is None:
            raise ValueError(f"the stored tokens are encrypted and {SECRET_KEY_ENV} is not set")
        try:
            return self._fernet.decrypt(data[len(_SEALED) :])
        except InvalidToken:
            raise ValueError(f"the stored tokens were encrypted with another {SECRET_KEY_ENV}") from None


def _fernet_key(key: str) -> bytes:
    try:
        if len(base64.urlsafe_b64decode(key.encode())) == 32:
            return key.encode()
    except ValueError:
        pass
    if len(key) < 16:
        raise ValueError(f"{SECRET_KEY_ENV} is too short: use Fernet.generate_key() or at least 16 characters")
    return base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest())


class TokenStore:
    """Token sets and renewal leases in a tether store (SQLite or PostgreSQL). Thread-safe; blocking.

    Args:
        store: The tether store.
        sealer: Encryption at rest (default: from ``TETHER_SECRET_KEY``).
        wall: Wall-clock time, for leases (shared between processes, so not a monotonic clock).
        sleep: How a blocked :meth:`lease` waits between tries.
    """

    def __init__(
        self,
        store: Store,
        *,
        sealer: Sealer | None = None,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.sealer = sealer if sealer is not None else Sealer.from_environment()
        self._wall, self._sleep = wall, sleep

    def load(self, integration: str) -> TokenSet | None:
        """The integration's token set, or ``None``.

        Raises:
            ValueError: the record cannot be decrypted (see :meth:`Sealer.open`).
        """
        row = self._one("SELECT data FROM tether_tokens WHERE integration = ?", (integration,))
        return None if row is None else TokenSet.from_json(self.sealer.open(bytes(row[0])))

    def save(self, integration: str, tokens: TokenSet) -> None:
        """Replace the integration's token set, in one statement (a rotated refresh token is never half-written)."""
        self._run(
            "INSERT INTO tether_tokens (integration, data, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (integration) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            (integration, self.sealer.seal(tokens.to_json()), self._wall()),
        )

    def delete(self, integration: str) -> None:
        self._run("DELETE FROM tether_tokens WHERE integration = ?", (integration,))

    def try_lease(self, name: str, holder: str, *, ttl: float) -> bool:
        """Take the lease ``name`` for ``ttl`` seconds if nobody holds it (or the holder's lease ran out)."""
        now = self._wall()
        self._run(
            "INSERT INTO tether_locks (name, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE tether_locks.expires_at < ?",
            (name, holder, now + ttl, now),
        )
        row = self._one("SELECT holder FROM tether_locks WHERE name = ?", (name,))
        return row is not None and row[0] == holder

    def release(self, name: str, holder: str) -> None:
        self._run("DELETE FROM tether_locks WHERE name = ? AND holder = ?", (name, holder))

    @contextlib.contextmanager
    def lease(self, name: str, *, ttl: float = 30.0, timeout: float = 30.0) -> Iterator[bool]:
        """Hold the lease ``name`` for the ``with`` block; yields ``False`` if it could not be had in ``timeout``.

        A holder that dies loses its lease after ``ttl``, so a crash cannot block renewal for longer.
        """
        holder = uuid.uuid4().hex
        deadline = self._wall() + timeout
        delay = 0.01
        while not (held := self.try_lease(name, holder, ttl=ttl)) and self._wall() < deadline:
            self._sleep(delay)
            delay = min(delay * 2, 0.2)
        try:
            yield held
        finally:
            if held:
                self.release(name, holder)

    # -- SQL on either backend ---------------------------------------------------------------------------------

    def _schema(self) -> None:
        self.store.ensure_schema("tokens", _POSTGRES_SCHEMA if self.store.dialect == "postgresql" else _SQLITE_SCHEMA)

    def _run(self, statement: str, params: tuple[Any, ...]) -> None:
        self._schema()
        with self.store.connection() as connection:
            connection.execute(self.store.sql(statement), params)

    def _one(self, statement: str, params: tuple[Any, ...]) -> Any:
        self._schema()
        with self.store.connection() as connection:
            return connection.execute(self.store.sql(statement), params).fetchone()

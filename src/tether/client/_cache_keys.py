"""Cache keys that tell credentials apart without storing them.

Two callers with different credentials must never see each other's cached responses, so the key includes the
credential; the store must never hold a credential in clear, so the key includes only a fingerprint of it:
PBKDF2-HMAC-SHA256 under a random salt kept in the store (so every process computes the same key), slow
enough that a copied database does not give up a weak password by brute force. Fingerprints are remembered
per process, so the cost (about 30 ms) is paid once per credential, in a worker thread on the async path.

What counts as credential: the values of sensitive headers (``Authorization``, ``Cookie``, API-key headers,
see :func:`tether.observe.redact.is_sensitive_name`), of sensitive query parameters, the URL's user info, and
any header or path holding a secret resolved from ``tether.toml``. None of it is stored: the request kept
with a cached response has those headers removed and its URL redacted.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import hishel
import httpx2

from tether.observe.redact import is_sensitive_name, redact_text, redact_url

__all__ = ["CacheKey", "Keyring", "scrub"]

_ITERATIONS = 100_000
_REMEMBERED = 256


class Keyring:
    """Credential fingerprints under one store's salt, remembered per process.

    Args:
        salt: Reads (or creates) the store's salt; called once, on first use.
    """

    def __init__(self, salt: Callable[[], bytes]) -> None:
        self._salt_source = salt
        self._salt: bytes | None = None
        self._lock = threading.Lock()
        self._known: OrderedDict[str, str] = OrderedDict()

    def fingerprint(self, material: str) -> str:
        """A stable, salted, slow hash of ``material``; blocking (store I/O once, then CPU once per value)."""
        with self._lock:
            known = self._known.get(material)
            if known is not None:
                self._known.move_to_end(material)
                return known
            if self._salt is None:
                self._salt = self._salt_source()
            salt = self._salt
        digest = hashlib.pbkdf2_hmac("sha256", material.encode(), salt, _ITERATIONS).hex()
        with self._lock:
            self._known[material] = digest
            if len(self._known) > _REMEMBERED:
                self._known.popitem(last=False)
        return digest


class CacheKey:
    """The key of one request's cache entries, computed when a storage operation first needs it.

    Computing it may block (see :class:`Keyring`), so it happens inside storage operations, which the async
    transport runs in a worker thread.
    """

    __slots__ = ("_digest", "_identity", "_keyring", "_material")

    def __init__(self, keyring: Keyring, identity: str, material: str) -> None:
        self._keyring, self._identity, self._material = keyring, identity, material
        self._digest: str | None = None

    def digest(self) -> str:
        if self._digest is None:
            credential = self._keyring.fingerprint(self._material) if self._material else ""
            text = f"{self._identity}\n{credential}"
            self._digest = hashlib.sha256(text.encode()).hexdigest()
        return self._digest


def scrub(request: httpx2.Request, integration: str, keyring: Keyring) -> tuple[hishel.Request, CacheKey]:
    """The request as the cache may store it (no credentials) and its cache key.

    Every method shares a key, as RFC 9111 requires, so that a POST finds the entries it invalidates.
    """
    url = request.url
    material: list[str] = []
    kept: dict[str, list[str]] = {}
    for name, value in request.headers.multi_items():
        lowered = name.lower()
        if is_sensitive_name(lowered) or redact_text(value) != value:
            material.append(f"{lowered}:{value}")
        else:
            kept.setdefault(lowered, []).append(value)
    material.extend(f"?{name}={value}" for name, value in url.params.multi_items() if is_sensitive_name(name))
    if url.userinfo:
        material.append(f"@{url.userinfo.decode('ascii', 'replace')}")
    if redact_text(url.path) != url.path:
        material.append(f"/{url.path}")
    shown = redact_url(url)
    key = CacheKey(keyring, f"{integration}\n{shown}", "\n".join(sorted(material)))
    return hishel.Request(method=request.method, url=shown, headers=hishel.Headers(kept)), key

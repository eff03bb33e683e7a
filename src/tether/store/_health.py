"""How a cache storage fails: quietly, once per outage, and without paying a timeout on every call.

A cache that cannot be reached is only a slow cache: a lookup reads as a miss and a write is skipped, so the
request goes to the API as it would without one. The first failure of an outage is a WARNING on
``tether.store``, later ones are DEBUG, and a storage that answers again says so at INFO. A networked storage
(PostgreSQL, Redis) is then left alone for ``retry_interval`` seconds, one caller trying it again after that,
so an outage costs one connect timeout per interval rather than one per call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from tether.observe.redact import redact_text

__all__ = ["Health", "Unavailable"]

logger = logging.getLogger("tether.store")
T = TypeVar("T")


class Unavailable(RuntimeError):
    """The storage failed recently and is being left alone until its retry interval has passed."""


class Health:
    """Runs a storage's operations, turning the backend's errors into misses and log lines.

    Args:
        where: The storage's URL, without credentials, for log lines.
        errors: The exceptions that mean the backend failed (anything else is a bug and propagates).
        retry_interval: Seconds to leave the backend alone after a failure; 0 tries it on every call, which
            suits a local file.
        clock: Monotonic time, for the retry interval.
    """

    def __init__(
        self,
        where: str,
        errors: tuple[type[BaseException], ...],
        *,
        retry_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where, self.errors, self.retry_interval = where, errors, retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._failing = False
        self._warned = False
        self._retry_at = 0.0

    def attempt(self, what: str, work: Callable[[], T]) -> T | None:
        """``work()``, or ``None`` if the backend failed (logged) or is being left alone."""
        if not self._usable():
            return None
        try:
            result = work()
        except self.errors as exc:
            self._failed(what, exc, log=True)
            return None
        self._answered()
        return result

    def require(self, what: str, work: Callable[[], T]) -> T:
        """``work()``, raising what the backend raised: for a value there is no sensible default for.

        The failure is not logged here: the caller that gives up on the value does that.

        Raises:
            Unavailable: the backend failed recently and is being left alone.
        """
        if not self._usable():
            raise Unavailable(f"the HTTP cache in {self.where} failed recently; not trying it again yet")
        try:
            result = work()
        except self.errors as exc:
            self._failed(what, exc, log=False)
            raise
        self._answered()
        return result

    def _usable(self) -> bool:
        with self._lock:
            if not self._failing:
                return True
            now = self._clock()
            if now < self._retry_at:
                return False
            # This caller tries the backend; the others keep skipping it until it has answered or failed.
            self._retry_at = now + self.retry_interval
            return True

    def _failed(self, what: str, exc: BaseException, *, log: bool) -> None:
        with self._lock:
            self._failing = True
            self._retry_at = self._clock() + self.retry_interval
            if not log:
                return
            warn, self._warned = not self._warned, True
        logger.log(
            logging.WARNING if warn else logging.DEBUG,
            f"HTTP cache {what} failed in {self.where}: {type(exc).__name__}: {redact_text(str(exc))}; "
            "serving without the cache",
            extra={"tether": {"event": "store_error", "store": self.where, "operation": what}},
        )

    def _answered(self) -> None:
        with self._lock:
            if not self._failing:
                return
            self._failing = False
            warned, self._warned = self._warned, False
        if warned:
            logger.info(
                f"HTTP cache in {self.where} answers again",
                extra={"tether": {"event": "store_recovered", "store": self.where}},
            )

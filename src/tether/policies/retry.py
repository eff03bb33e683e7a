"""The retry decision for one logical call, as a small state machine with no I/O.

A transport drives it: it asks for each attempt's time limits, reports what happened (a response or an
exception), and gets back either "done" or "wait this long, then try again". The same object serves the sync and
the async transport, so the rules exist once:

* retry connect errors, read timeouts, errors while reading the body, and the configured statuses;
* only for idempotent methods, or requests that carry an idempotency key; a failed connect is retried for any
  method, since the request never left;
* never when the body is a stream that cannot be replayed;
* wait what ``Retry-After`` or a rate-limit reset asks, else full-jitter backoff;
* if that wait does not fit in the call's remaining deadline, stop now rather than sleep into a timeout;
* spend from the integration's retry budget, so retries cannot amplify an outage.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import httpx2

from tether.config.models import RetryConfig
from tether.errors import Attempt
from tether.policies.backoff import Backoff
from tether.policies.budget import RetryBudget
from tether.policies.clock import Clock
from tether.policies.headers import retry_wait_from_headers

__all__ = ["ErrorKind", "GiveUp", "RetryPolicy", "RetryState", "certificate_error", "classify_exception"]

# A retry with less time than this left is not worth starting.
_MIN_ATTEMPT_TIME = 0.01


class ErrorKind(enum.Enum):
    """How an exception from the transport bears on retrying."""

    CONNECT = "connect"  # nothing was sent: safe to retry any method
    TIMEOUT = "timeout"  # sent, no answer in time
    BODY = "body"  # the response broke off
    FATAL = "fatal"  # retrying cannot help (TLS refused, bad URL, local protocol error)


def classify_exception(exc: BaseException) -> ErrorKind:
    """Sort a transport exception into an :class:`ErrorKind`."""
    if isinstance(exc, httpx2.ConnectError):
        return ErrorKind.FATAL if certificate_error(exc) is not None else ErrorKind.CONNECT
    if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout):
        return ErrorKind.CONNECT
    if isinstance(exc, httpx2.ReadTimeout | httpx2.WriteTimeout):
        return ErrorKind.TIMEOUT
    if isinstance(exc, httpx2.ReadError | httpx2.RemoteProtocolError | httpx2.WriteError):
        return ErrorKind.BODY
    return ErrorKind.FATAL


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc``, found along its cause/context chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class GiveUp(enum.Enum):
    """Why a call stopped retrying."""

    SUCCESS = "success"
    NOT_RETRYABLE = "not retryable"
    NOT_IDEMPOTENT = "not idempotent"
    NOT_REPLAYABLE = "body not replayable"
    ATTEMPTS = "attempts exhausted"
    DEADLINE = "deadline exceeded"
    WAIT_PAST_DEADLINE = "requested wait past deadline"
    BUDGET = "retry budget exhausted"
    CIRCUIT_OPEN = "circuit open"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class RetryPolicy:
    """The per-integration retry rules; see the module docstring."""

    attempts: int
    backoff: Backoff
    statuses: frozenset[int]
    methods: frozenset[str]
    respect_retry_after: bool = True

    @classmethod
    def from_config(cls, config: RetryConfig, *, backoff: Backoff | None = None) -> RetryPolicy:
        return cls(
            attempts=config.attempts,
            backoff=backoff or Backoff(base=config.backoff, cap=config.max_backoff),
            statuses=config.statuses,
            methods=config.methods,
            respect_retry_after=config.respect_retry_after,
        )


class RetryState:
    """One logical call's progress through its attempts.

    Args:
        policy: The rules.
        budget: The integration's retry budget (``None``: unlimited).
        clock: Time source.
        deadline: Seconds the whole call may take.
        idempotent: The method is idempotent or the request carries an idempotency key.
        replayable: The request body can be sent again.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        budget: RetryBudget | None,
        clock: Clock,
        deadline: float,
        idempotent: bool,
        replayable: bool,
    ) -> None:
        self.policy, self.budget, self.clock = policy, budget, clock
        self.started = clock.monotonic()
        self.deadline_at = self.started + deadline
        self.deadline = deadline
        self.idempotent, self.replayable = idempotent, replayable
        self.attempts: list[Attempt] = []
        self.give_up: GiveUp | None = None
        self.requested_wait: float | None = None
        self._attempt_started = self.started
        if budget is not None:
            budget.record_call()

    def remaining(self) -> float:
        """Seconds left before the call's deadline."""
        return self.deadline_at - self.clock.monotonic()

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.started

    def attempt_elapsed(self) -> float:
        """Seconds since the current attempt began."""
        return self.clock.monotonic() - self._attempt_started

    def begin_attempt(self, limits: Mapping[str, float | None]) -> dict[str, float | None]:
        """Start an attempt; returns its timeouts, each cut to the time left before the deadline."""
        self._attempt_started = self.clock.monotonic()
        remaining = max(self.remaining(), _MIN_ATTEMPT_TIME)
        return {name: remaining if value is None else min(value, remaining) for name, value in limits.items()}

    def on_response(self, status: int, headers: Mapping[str, str], request_id: str | None = None) -> float | None:
        """Record a response. Returns the wait before the next attempt, or ``None`` when the call is done."""
        retryable = status in self.policy.statuses
        if not retryable:
            self._record(status, None, request_id)
            self.give_up = GiveUp.SUCCESS if status < 400 else GiveUp.NOT_RETRYABLE
            return None
        asked = None
        if self.policy.respect_retry_after and status in (429, 503):
            asked = retry_wait_from_headers(headers, now=self.clock.wall())
        self.requested_wait = asked
        return self._decide(status, None, request_id, asked, safe_to_resend=False)

    def on_error(self, exc: BaseException, description: str | None = None) -> float | None:
        """Record a transport exception. Returns the wait before the next attempt, or ``None`` when done.

        ``description`` is how the attempt is shown (the caller passes it redacted); by default the
        exception's class and message.
        """
        kind = classify_exception(exc)
        if description is None:
            description = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if kind is ErrorKind.FATAL:
            self._record(None, description, None)
            self.give_up = GiveUp.NOT_RETRYABLE
            return None
        return self._decide(None, description, None, None, safe_to_resend=kind is ErrorKind.CONNECT)

    def _decide(
        self,
        status: int | None,
        error: str | None,
        request_id: str | None,
        asked: float | None,
        *,
        safe_to_resend: bool,
    ) -> float | None:
        attempt = self._record(status, error, request_id)
        reason = self._blocker(safe_to_resend)
        if reason is not None:
            self.give_up = reason
            return None
        wait = asked if asked is not None else self.policy.backoff.delay(len(self.attempts) - 1)
        remaining = self.remaining()
        if wait + _MIN_ATTEMPT_TIME >= remaining:
            self.give_up = GiveUp.WAIT_PAST_DEADLINE if asked is not None else GiveUp.DEADLINE
            return None
        if self.budget is not None and not self.budget.try_spend():
            self.give_up = GiveUp.BUDGET
            return None
        self.attempts[-1] = Attempt(
            attempt.number, attempt.status, attempt.error, attempt.elapsed, wait, attempt.request_id
        )
        return wait

    def _blocker(self, safe_to_resend: bool) -> GiveUp | None:
        if len(self.attempts) >= self.policy.attempts:
            return GiveUp.ATTEMPTS
        if not self.replayable:
            return GiveUp.NOT_REPLAYABLE
        if not (self.idempotent or safe_to_resend):
            return GiveUp.NOT_IDEMPOTENT
        if self.remaining() <= _MIN_ATTEMPT_TIME:
            return GiveUp.DEADLINE
        return None

    def _record(self, status: int | None, error: str | None, request_id: str | None) -> Attempt:
        elapsed = self.clock.monotonic() - self._attempt_started
        attempt = Attempt(len(self.attempts) + 1, status, error, elapsed, 0.0, request_id)
        self.attempts.append(attempt)
        return attempt

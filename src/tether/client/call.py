"""One logical call through the policy stack: every decision the transports act on, and no I/O.

The transports (:mod:`tether.client.transport`) ask a :class:`Call` for each attempt's time limits, tell it
what happened, and get back "send now", "wait this long" or "done" (a response, or the typed error to raise).
The state backend's answers (rate limit, pause, breaker) pass through it the same way.
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
import weakref
from dataclasses import replace
from typing import Any

import httpx2

from tether import errors
from tether.client._errormap import (
    REQUEST_ID_HEADERS,
    error_for_exception,
    error_for_rejection,
    error_for_response,
)
from tether.client._recording import Seen, call_record
from tether.client.response import TetherResponse
from tether.client.spec import CallSpec, Route
from tether.observe.log import log_attempt, log_call, log_transition, logger
from tether.observe.redact import redact_text
from tether.policies.breaker import State
from tether.policies.ratelimit import RateLimitSignal, read_rate_limit_headers, tokens_used
from tether.policies.retry import ErrorKind, GiveUp, RetryState, classify_exception
from tether.state.base import Admission, Limits, breaker_of

__all__ = ["BUFFER_LIMIT", "Call", "CallSpec", "Route"]

# Bodies at most this large are read inside the retry loop, so a connection that drops mid-body is retried.
BUFFER_LIMIT = 8 * 1024 * 1024
# Set by an auth flow that renews and replays on a 401 (tether.auth.oauth2): that 401 goes back to the flow
# instead of raising, and the replay, which no longer carries the mark, raises if it fails again.
AUTH_REPLAYS_401 = "tether.auth_replays_401"
_IDEMPOTENCY_HEADERS = ("idempotency-key", "x-idempotency-key")
_REQUEST_ID_NAMES = frozenset(name.encode() for name in REQUEST_ID_HEADERS)
_NO_SIGNAL = RateLimitSignal()
_NOTHING_WATCHED: dict[bytes, str] = {}  # the headers an unrecorded call keeps


class Call:
    """One logical call: the retry state plus what to log and raise. No I/O."""

    __slots__ = (
        "_json",
        "_limit_headers",
        "_outer",
        "_probe",
        "_request_id",
        "body_size",
        "breaker",
        "request",
        "route",
        "seen",
        "spec",
        "state",
    )

    def __init__(self, spec: CallSpec, request: httpx2.Request) -> None:
        self.spec, self.request = spec, request
        self.route = spec.route_for(request)
        self.breaker = breaker_of(self.route.limits)
        self._request_id: str | None = None
        self._limit_headers = False
        self._json = False
        self._probe = False
        self._outer = False
        # What monitoring wants from the responses; collected only when calls are recorded.
        self.seen = Seen() if spec.recorder is not None else None
        self.body_size = _body_size(request)
        self.state = RetryState(
            spec.policy,
            budget=spec.budget,
            clock=spec.clock,
            deadline=spec.deadline,
            idempotent=request.method in spec.policy.methods or _keyed(request, spec.idempotency_header),
            replayable=self.body_size is not None,
        )

    def max_wait(self) -> float:
        """How long this attempt may queue for a rate-limit slot or a pause."""
        remaining = self.state.remaining()
        configured = self.route.max_wait
        return remaining if configured is None else min(configured, remaining)

    def admission_limits(self) -> Limits:
        """What to ask the state backend to admit this attempt against."""
        return self.route.limits.outer() if self._outer else self.route.limits

    def admitted(self, admission: Admission) -> float:
        """Seconds to wait before sending, or raise the typed error when the attempt may not go at all.

        When ``admission.again``, only the endpoint group's slot was taken: after the wait, the transport
        asks again (:meth:`admission_limits` then gives the integration's budgets alone).
        """
        if admission.rejected is None:
            if admission.probe:
                self._probe = True
                log_transition(self.spec.integration, State.HALF_OPEN.value, backend=self.spec.state.name)
            self._outer = admission.again
            return admission.wait
        self._outer = False
        raise self._refused(admission)

    def crowded(self) -> errors.CallError:
        """The error for an attempt that found no place in the bulkhead within its wait."""
        return self._refused(Admission(rejected="concurrency"))

    def _refused(self, admission: Admission) -> errors.CallError:
        self.state.give_up = GiveUp.CIRCUIT_OPEN if admission.rejected == "circuit_open" else GiveUp.THROTTLED
        error = error_for_rejection(self.spec.info, self.request, self.state, admission)
        self._log_call(None, type(error).__name__, failed=True)
        self._record(None, error)
        return error

    def response_outcome(self, response: httpx2.Response) -> tuple[bool | None, RateLimitSignal]:
        """What to report to the state backend: a breaker failure (or ``None``) and the rate-limit signal."""
        status = response.status_code
        failure: bool | None = None
        if self.breaker is not None:
            # 429 and other 4xx prove the API is up: they count as successes, not failures.
            failure = True if status >= 500 or status == 408 else self._slow()
        if not self.spec.policy.respect_retry_after:
            signal = _NO_SIGNAL  # told to ignore what the API says about waiting
        elif self._limit_headers or status in (429, 503):
            signal = read_rate_limit_headers(status, response.headers, now=self.spec.clock.wall())
        else:
            signal = _NO_SIGNAL
        seen = self.seen
        if self._json and status < 400 and (seen is not None or self.route.counts_tokens):
            try:
                body = response.content
            except httpx2.ResponseNotRead:
                body = b""  # streamed: the usage comes at the end of the stream, which tether does not read
            # Most responses say nothing of usage: look before parsing, here rather than in a function call.
            used = _tokens_in(body) if b'"usage' in body else 0.0
            if used and self.route.counts_tokens:
                signal = replace(signal, tokens_used=used)
            if seen is not None:
                seen.tokens = int(used) if used else None
        if seen is not None and signal.limit is not None:
            seen.limit, seen.remaining = signal.limit, signal.remaining
        return failure, signal

    def error_outcome(self, exc: BaseException) -> tuple[bool | None, RateLimitSignal]:
        """What to report for an attempt that raised: outages count against the breaker, misconfiguration not."""
        if self.breaker is None:
            return None, _NO_SIGNAL
        # A half-open probe must always report back, or its permit would never be returned.
        if classify_exception(exc) is ErrorKind.FATAL and not self._probe:
            return None, _NO_SIGNAL
        return True, _NO_SIGNAL

    def probe_outstanding(self) -> bool:
        """Whether this call holds a half-open probe permit it has not reported on (it was interrupted)."""
        return self._probe

    def probe(self) -> bool:
        """Whether the attempt being reported was a half-open probe."""
        return self._probe

    def _slow(self) -> bool:
        threshold = self.breaker.slow_call if self.breaker is not None else None
        return threshold is not None and self.state.attempt_elapsed() > threshold

    def reported(self, new_state: State | None) -> None:
        """The state backend took this attempt's outcome; log the breaker transition it caused, if any."""
        self._probe = False
        if new_state is not None:
            log_transition(self.spec.integration, new_state.value, backend=self.spec.state.name)

    def begin_attempt(self) -> None:
        """Set this attempt's time limits on the request."""
        self.request.extensions["timeout"] = self.state.begin_attempt(self.spec.limits)

    def should_read(self, response: httpx2.Response) -> bool:
        """Whether to read the body inside the retry loop (so a broken body can be retried).

        Must be called once per response, before :meth:`after_response`.
        """
        # One pass over the raw headers: httpx2's Headers.get() decodes every header on each lookup, and this
        # runs on every response.
        content_type = length = request_id = None
        watched = self.spec.watched_headers if self.seen is not None else _NOTHING_WATCHED
        for name, value in response.headers.raw:
            name = name.lower()
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif request_id is None and name in _REQUEST_ID_NAMES:
                request_id = value.decode("latin-1")
            elif name.startswith((b"x-ratelimit", b"ratelimit", b"retry-after")):
                self._limit_headers = True
            elif name in watched:
                setattr(self.seen, watched[name], value.decode("latin-1")[:100])
        self._request_id = request_id
        self._json = content_type is not None and b"json" in content_type
        if self.request.extensions.get("tether.stream"):
            return False
        if content_type is not None and b"text/event-stream" in content_type:
            return False
        return length is None or (length.isdigit() and int(length) <= BUFFER_LIMIT)

    def after_response(self, response: httpx2.Response) -> float | None:
        """Record a response; the wait before retrying, or ``None`` when the call is done."""
        seen = self.seen
        if seen is not None:
            seen.peers += (_peer(response),)
        wait = self.state.on_response(response.status_code, response.headers, self._request_id)
        self._log_attempt(response)
        return wait

    def after_error(self, exc: BaseException) -> float | None:
        """Record a transport exception; the wait before retrying, or ``None`` when the call is done."""
        description = redact_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        wait = self.state.on_error(exc, description)
        seen = self.seen
        if seen is not None:
            seen.peers += (None,)
        self._log_attempt(None)
        return wait

    def finish(self, response: httpx2.Response) -> TetherResponse:
        """The final response, or raise its typed error when it is an error status and errors are raised."""
        # A class swap, not a copy: the response keeps its stream and costs nothing extra on the hot path.
        response.__class__ = TetherResponse
        assert isinstance(response, TetherResponse)
        extensions = response.extensions
        extensions["tether.integration"] = self.spec.integration
        extensions["tether.attempts"] = tuple(self.state.attempts)
        extensions["tether.elapsed"] = elapsed = self.state.elapsed()
        extensions["tether.waited"] = sum(attempt.wait for attempt in self.state.attempts)
        if self.spec.validator is not None:  # validate = true: response.json() checks the body with it
            extensions["tether.validator"] = self.spec.validator
        failed = response.status_code >= 400
        self._log_call(response.status_code, None, failed=failed)
        if not failed:
            self._record(response, None, elapsed)
            return response
        error = error_for_response(self.spec.info, self.request, response, self.state)
        # A 401 the auth flow renews and replays goes back to it: the replay makes the call's record, and raises.
        if not (response.status_code == 401 and self.request.extensions.get(AUTH_REPLAYS_401, False)):
            self._record(response, error, elapsed)
            if self.request.extensions.get("tether.raise_for_status", self.spec.raise_for_status):
                raise error
        extensions["tether.error"] = error
        return response

    def failure(self, exc: BaseException) -> errors.CallError:
        """The typed error for a call that ended on ``exc``."""
        error = error_for_exception(self.spec.info, self.request, exc, self.state)
        self._log_call(None, type(error).__name__, failed=True)
        self._record(None, error)
        return error

    def _record(
        self, response: httpx2.Response | None, error: errors.CallError | None, elapsed: float | None = None
    ) -> None:
        """Hand the call's record to the recorder, if calls are recorded; ``elapsed`` when already measured."""
        recorder = self.spec.recorder
        if recorder is not None:
            recorder.record(call_record(self, response, error, self.state.elapsed() if elapsed is None else elapsed))

    def _fields(self) -> dict[str, Any]:
        request = self.request
        return {
            "integration": self.spec.integration,
            "method": request.method,
            "path": redact_text(request.url.raw_path.decode("ascii", "replace")),
        }

    def _log_attempt(self, response: httpx2.Response | None) -> None:
        attempt = self.state.attempts[-1]
        failed = attempt.status is None or attempt.status >= 400
        if not logger.isEnabledFor(10 if not failed else 20):
            return
        log_attempt(
            {
                **self._fields(),
                "attempt": attempt.number,
                "status": attempt.status,
                "error": redact_text(attempt.error) if attempt.error else None,
                "wait": attempt.wait,
                "elapsed": attempt.elapsed,
                "peer": _peer(response),
                "request_id": attempt.request_id,
            },
            failed=failed,
        )

    def _log_call(self, status: int | None, error: str | None, *, failed: bool) -> None:
        if not logger.isEnabledFor(30 if failed else 20):
            return
        state = self.state
        log_call(
            {
                **self._fields(),
                "status": status,
                "error": error,
                "outcome": state.give_up.value if state.give_up else "success",
                "attempts": len(state.attempts),
                "waited": sum(attempt.wait for attempt in state.attempts),
                "elapsed": state.elapsed(),
                "request_id": state.attempts[-1].request_id if state.attempts else None,
            },
            failed=failed,
        )


def _keyed(request: httpx2.Request, header: str | None) -> bool:
    """Whether a request of a non-idempotent method carries an idempotency key (adding one if configured)."""
    headers = request.headers
    if header and request.method in ("POST", "PATCH") and header not in headers:
        # One key per logical call, reused by every attempt, so the API can drop duplicates.
        headers[header] = str(uuid.uuid4())
    return any(name in headers for name in _IDEMPOTENCY_HEADERS) or bool(header and header in headers)


def _body_size(request: httpx2.Request) -> int | None:
    """The request body's size, or ``None`` while it is an unread stream (which cannot be sent twice)."""
    try:
        return len(request.content)
    except httpx2.RequestNotRead:
        return None


def _tokens_in(body: bytes) -> float:
    """The tokens a JSON response body says the call used (0 when unparsable or not said)."""
    try:
        return tokens_used(json.loads(body))
    except ValueError:
        return 0.0


# Each pooled connection's peer address, forgotten with the connection.
_STREAM_PEERS: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def _peer(response: httpx2.Response | None) -> str | None:
    if response is None:
        return None
    extensions = response.extensions
    peer = extensions.get("tether.peer")
    if peer is not None:
        return _peer_host(peer)
    stream = extensions.get("network_stream")
    if stream is None:
        return None
    # Asked once per connection: get_extra_info("server_addr") is a getpeername() system call, and a
    # pooled connection serves many responses from the same address.
    try:
        return _STREAM_PEERS[stream]
    except (KeyError, TypeError):
        pass
    try:
        address = stream.get_extra_info("server_addr")
    except OSError:  # the server closed the connection once the body was read
        return None
    peer = str(address[0]) if address else None
    with contextlib.suppress(TypeError):  # a stream that cannot be weakly referenced is asked every time
        _STREAM_PEERS[stream] = peer
    return peer


@functools.lru_cache(maxsize=256)  # a few servers answer many responses: each address is parsed once
def _peer_host(peer: str) -> str:
    """The address of the aiohttp transport's ``"ip:port"`` (``"[v6]:port"``): records and logs keep it alone."""
    return str(peer).rpartition(":")[0].strip("[]") or str(peer)

"""The call record of a finished :class:`~tether.client.call.Call` (see :mod:`tether.observe.records`).

Kept apart from ``call.py`` so that the decision logic stays readable; everything here runs once per call,
only when the hub records calls, and reads what the call already knows (no extra header pass, no I/O).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx2

from tether.observe.records import CallRecord, Try

if TYPE_CHECKING:
    from tether.client.call import Call
    from tether.errors import CallError

__all__ = ["Seen", "call_record"]


class Seen:
    """What a call's responses said that monitoring wants: headers, peers, the rate-limit budget, tokens."""

    __slots__ = ("deprecation", "limit", "peers", "remaining", "sunset", "tokens", "version")

    def __init__(self) -> None:
        self.peers: list[str | None] = []
        self.deprecation: str | None = None
        self.sunset: str | None = None
        self.version: str | None = None
        self.limit: float | None = None
        self.remaining: float | None = None
        self.tokens: int | None = None


def call_record(call: Call, response: httpx2.Response | None, error: CallError | None, outcome: str) -> CallRecord:
    """The record of ``call``, which ended with ``response`` (or without one) and ``error`` (when it failed)."""
    spec, state, request, seen = call.spec, call.state, call.request, call.seen
    assert seen is not None  # a call collects what it sees whenever its spec has a recorder
    attempts = state.attempts
    elapsed = state.elapsed()
    tries: tuple[Try, ...] = ()
    if len(attempts) > 1:
        peers = seen.peers if len(seen.peers) == len(attempts) else [None] * len(attempts)
        tries = tuple(
            Try(attempt.status, _class_name(attempt.error), peer, attempt.elapsed)
            for attempt, peer in zip(attempts, peers, strict=True)
        )
    # Positional, in CallRecord's field order (_make checks the count): once per call, and a call with 21
    # keyword arguments costs about twice as much.
    return CallRecord._make(
        (
            spec.clock.wall() - elapsed,  # at
            spec.integration,
            request.method,
            spec.endpoint_of(request),
            response.status_code if response is not None else None,
            outcome,
            type(error).__name__ if error is not None else None,
            error.hint if error is not None else None,
            elapsed,  # latency
            len(attempts),
            seen.peers[-1] if seen.peers else None,
            _sent(request),
            _received(response),
            seen.limit,
            seen.remaining,
            seen.tokens,
            seen.version or spec.version,
            seen.deprecation,
            seen.sunset,
            attempts[-1].request_id if attempts else None,
            tries,
        )
    )


def _class_name(description: str | None) -> str | None:
    return description.split(":", 1)[0] if description else None


def _sent(request: httpx2.Request) -> int:
    try:
        return len(request.content)
    except httpx2.RequestNotRead:
        return 0  # a streamed body: its size is not known without reading it


def _received(response: httpx2.Response | None) -> int:
    if response is None:
        return 0
    try:
        return len(response.content)
    except httpx2.ResponseNotRead:
        length = response.headers.get("content-length", "")
        return int(length) if length.isdigit() else 0

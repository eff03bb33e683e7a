"""The call record of a finished :class:`~tether.client.call.Call` (see :mod:`tether.observe.records`).

Kept apart from ``call.py`` so that the decision logic stays readable; everything here runs once per call,
only when the hub records calls, and reads what the call already knows (no extra header pass, no I/O).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx2

from tether.observe.records import Row, Try
from tether.policies.retry import GiveUp

if TYPE_CHECKING:
    from tether.client.call import Call
    from tether.errors import CallError

__all__ = ["Seen", "call_record"]


class Seen:
    """What a call's responses said that monitoring wants: headers, peers, the rate-limit budget, tokens."""

    # Defaults on the class, no ``__init__`` and no ``__slots__``: one Seen is made per recorded call, most calls
    # set only ``peers``, and an object with nothing to initialise is made without running any Python code.
    peers: tuple[str | None, ...] = ()  # one per attempt: a tuple, as one attempt is the common case
    deprecation: str | None = None
    sunset: str | None = None
    version: str | None = None
    limit: float | None = None
    remaining: float | None = None
    tokens: int | None = None


def call_record(call: Call, response: httpx2.Response | None, error: CallError | None, elapsed: float) -> Row:
    """The record of ``call``, which took ``elapsed`` seconds and ended with ``response`` (or none) and ``error``."""
    spec, request, seen, state = call.spec, call.request, call.seen, call.state
    assert seen is not None  # a call collects what it sees whenever its spec has a recorder
    attempts = state.attempts
    give_up = state.give_up
    # Not give_up.value alone: an enum's value is a Python-level descriptor, two more calls for every record.
    if give_up is _SUCCESS:
        outcome = "success"
    elif give_up is not None:
        outcome = give_up.value
    else:
        outcome = "success" if error is None else "not retryable"
    peers = seen.peers
    tries: tuple[Try, ...] = ()
    if len(attempts) > 1:
        tried = peers if len(peers) == len(attempts) else (None,) * len(attempts)
        tries = tuple(
            Try(attempt.status, _class_name(attempt.error), peer, attempt.elapsed)
            for attempt, peer in zip(attempts, tried, strict=True)
        )
    sent = call.body_size
    if sent is None:  # a stream when the call began: a transport may have read it since
        sent = _sent(request)
    # Inline, not a helper: this runs once per call, and a Python call here costs more than the work it wraps.
    received = 0
    if response is not None:
        try:
            received = len(response.content)
        except httpx2.ResponseNotRead:
            received = _announced_length(response)
    # A plain tuple, in CallRecord's field order (see Row: the garbage collector stops tracking it). The count
    # is fixed by this literal; test_call_records holds every field of the result to what the call did.
    return (
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
        peers[-1] if peers else None,
        sent,
        received,
        seen.limit,
        seen.remaining,
        seen.tokens,
        seen.version or spec.version,
        seen.deprecation,
        seen.sunset,
        attempts[-1].request_id if attempts else None,
        tries,
    )


_SUCCESS = GiveUp.SUCCESS


def _class_name(description: str | None) -> str | None:
    return description.split(":", 1)[0] if description else None


def _sent(request: httpx2.Request) -> int:
    try:
        return len(request.content)
    except httpx2.RequestNotRead:
        return 0  # a streamed body: its size is not known without reading it


def _announced_length(response: httpx2.Response) -> int:
    """The body size a response not read (streamed) announces, or 0."""
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else 0

"""Call records: one frozen record per logical call, the input of monitoring.

A record is made when a call ends (response, error or refusal) and handed to the hub's
:class:`~tether.observe.recorder.Recorder`, which stores it off the hot path. Everything in a record is already
redacted: paths are templates (``/v1/customers/{id}``), errors are tether's own class names and hints, and no
header value other than the API's version and deprecation dates is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

__all__ = ["FIELD", "LATENCY_BUCKETS", "CallRecord", "Row", "Try", "endpoint_template", "failed", "usage"]

# Upper bounds, in seconds, of the latency histogram that /metrics, the dashboard and the alerts share. 3 s is
# a bound because it is the default latency alert: "p95 above 3 s" is then exact, not interpolated.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0, 10.0, 30.0)

# A path segment kept as written: words and API versions ("v1", "v2beta", "2024-06-20" is an id-like date and
# is not kept). Anything else with a digit, or very long, is an identifier and becomes "{id}".
_WORD = re.compile(r"^(?:[A-Za-z_.~-]*|v\d+(?:\.\d+)?(?:alpha|beta)?\d*)$")
_MAX_SEGMENT = 40


@dataclass(frozen=True, slots=True)
class Try:
    """One attempt of a call that took more than one.

    Attributes:
        status: The attempt's HTTP status, or ``None`` when it got no response.
        error: The exception's class name when it got no response.
        peer: The IP address the attempt reached, when known.
        elapsed: Seconds the attempt took.
    """

    status: int | None
    error: str | None
    peer: str | None
    elapsed: float


class CallRecord(NamedTuple):
    """What one call did, as the dashboard, ``/metrics``, the alerts and ``tether doctor --from-log`` see it.

    Immutable. A named tuple rather than a frozen dataclass: records are read back by the thousand (the call
    log, ``/metrics``), and a frozen dataclass costs four times as much to build (its ``__init__`` goes through
    ``object.__setattr__`` per field). A call itself makes a plain :data:`Row`.

    Attributes:
        at: When the call started (Unix time, seconds).
        integration: The integration's name.
        method: The HTTP method.
        endpoint: The path template relative to ``base_url``: the matching ``endpoints`` pattern when one is
            configured, else the path with identifiers replaced by ``{id}``.
        status: The final HTTP status, or ``None`` when the call got no response.
        outcome: ``"success"`` or why the call ended without one (``"attempts exhausted"``,
            ``"circuit open"``, ``"not retryable"``…).
        error: The typed error's class name for a failed call.
        hint: The typed error's hint for a failed call.
        latency: Seconds from start to end, retries and waits included.
        attempts: Attempts made (0 when the call was refused before sending).
        peer: The IP address of the last attempt's server.
        bytes_sent: Request body bytes (0 when streamed).
        bytes_received: Response body bytes read or announced.
        limit: The rate-limit budget the API reported, if it did.
        limit_remaining: What was left of it.
        tokens: AI tokens the response's ``usage`` reported.
        version: The API version the response carried (or the configured one).
        deprecation: The ``Deprecation`` header, if the API sent one.
        sunset: The ``Sunset`` header, if the API sent one.
        request_id: The provider's request id of the last attempt.
        tries: Each attempt, when there was more than one.
    """

    at: float
    integration: str
    method: str
    endpoint: str
    status: int | None
    outcome: str
    error: str | None = None
    hint: str | None = None
    latency: float = 0.0
    attempts: int = 1
    peer: str | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    limit: float | None = None
    limit_remaining: float | None = None
    tokens: int | None = None
    version: str | None = None
    deprecation: str | None = None
    sunset: str | None = None
    request_id: str | None = None
    tries: tuple[Try, ...] = ()

    @property
    def failed(self) -> bool:
        """Whether the call counts as an error: no response, or a 4xx/5xx status."""
        return failed(self.status)

    @property
    def usage(self) -> float | None:
        """The fraction of the API's reported rate limit in use after this call, when it reported one."""
        return usage(self.limit, self.limit_remaining)


# A call record as a call makes it: a plain tuple of CallRecord's fields, in its order (a CallRecord is also
# one; CallRecord(*row) reads one by name). Not a CallRecord, because the recorder keeps no object per call:
# it extends one list with the tuple's fields and drops the tuple (see observe/columns.py for why).
Row = tuple[
    float,  # at
    str,  # integration
    str,  # method
    str,  # endpoint
    int | None,  # status
    str,  # outcome
    str | None,  # error
    str | None,  # hint
    float,  # latency
    int,  # attempts
    str | None,  # peer
    int,  # bytes_sent
    int,  # bytes_received
    float | None,  # limit
    float | None,  # limit_remaining
    int | None,  # tokens
    str | None,  # version
    str | None,  # deprecation
    str | None,  # sunset
    str | None,  # request_id
    tuple[Try, ...],  # tries
]

# A field's position in a Row (and in a CallRecord).
FIELD = {name: index for index, name in enumerate(CallRecord._fields)}


def failed(status: int | None) -> bool:
    """The error rule every view shares: as OpenTelemetry's for HTTP clients, no response or status ≥ 400."""
    return status is None or status >= 400


def usage(limit: float | None, remaining: float | None) -> float | None:
    """The fraction of a reported rate limit in use, ``remaining`` of ``limit`` left; ``None`` without one."""
    if not limit or remaining is None:
        return None
    return min(1.0, max(0.0, 1.0 - remaining / limit))


@lru_cache(maxsize=4096)
def endpoint_template(path: str) -> str:
    """``path`` with identifiers replaced by ``{id}``, so endpoints group (and metric labels stay few).

    >>> endpoint_template("/v1/customers/cus_9s6XKzkNRiz8i3/invoices")
    '/v1/customers/{id}/invoices'
    """
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment and (len(segment) > _MAX_SEGMENT or not _WORD.match(segment)):
            segments[index] = "{id}"
    return "/".join(segments) or "/"

"""Plain successes, stored packed: one row per integration, minute and flush in ``tether_call_batches``.

Most calls are plain successes: one attempt, a 2xx/3xx answer, no error, no deprecation header. Storing each
as its own ``tether_calls`` row (23 columns, two index entries) was most of what recording cost a client:
the INSERT's work grows with the columns, not with what is in them. A plain success keeps every field that
can differ from one to the next (time, method, endpoint, status, latency, peer, bytes, rate-limit headroom,
tokens, version, request id); those that cannot (outcome ``success``, one attempt, no error, no hint, no
tries) are implied by the table. The calls of one flush go into one JSON array, so the store writes one row
instead of thousands. Nothing is summarised away: :meth:`~tether.observe.calllog.CallLog.calls` unpacks them
into the same :class:`~tether.observe.records.CallRecord` values that were written.
"""

from __future__ import annotations

import array
import base64
import itertools
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from tether.observe.columns import Calls
from tether.observe.records import CallRecord, Row

__all__ = ["Batch", "batch_schema", "pack", "split", "unpack"]

# The fields a packed call keeps, by their names in CallRecord and in a batch's body.
_COLUMNS = (
    "at",
    "method",
    "endpoint",
    "status",
    "latency",
    "peer",
    "bytes_sent",
    "bytes_received",
    "limit",
    "limit_remaining",
    "tokens",
    "version",
    "request_id",
)
_DOUBLES = frozenset({"at", "latency"})
# The fields a packed call does not keep, and the values they must have: the table implies them.
_IMPLIED = ("outcome", "error", "hint", "attempts", "deprecation", "sunset", "tries")
_PLAIN = ("success", None, None, 1, None, None, ())

# (at_first, at_last, integration, calls, body)
Batch = tuple[float, float, str, int, str]


def batch_schema(serial: str, real: str) -> list[str]:
    """The table, in the call log's schema (``serial``/``real``: the dialect's column types)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS tether_call_batches (
            id {serial} PRIMARY KEY,
            at_first {real} NOT NULL,
            at_last {real} NOT NULL,
            integration TEXT NOT NULL,
            calls INTEGER NOT NULL,
            body TEXT NOT NULL,
            process TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS tether_call_batches_last ON tether_call_batches (at_last)",
    ]


def split(calls: Calls) -> tuple[Calls, list[Row]]:
    """``calls`` as the plain successes (everything they say fits a packed call) and the others, in order."""
    statuses = calls.column("status")
    implied = [calls.column(name) for name in _IMPLIED]
    # Asked a column at a time, in C: most batches are all plain successes, and this runs for every call.
    if (
        None not in statuses
        and max(statuses, default=0) < 400
        and all(column.count(value) == len(column) for column, value in zip(implied, _PLAIN, strict=True))
    ):
        return calls, []
    fits = [
        status is not None and status < 400 and said == _PLAIN
        for status, said in zip(statuses, zip(*implied, strict=True), strict=True)
    ]
    plain = calls.select(index for index, fit in enumerate(fits) if fit)
    return plain, calls.select(index for index, fit in enumerate(fits) if not fit).rows()


def pack(calls: Calls) -> list[Batch]:
    """``calls`` (plain successes) as one batch per integration and minute.

    A batch never spans minutes, so retention (which drops a batch once its last call is old enough) keeps no
    call more than a minute past it.
    """
    batches: list[Batch] = []
    for (integration, _), group in calls.by_minute().items():
        ats = group.column("at")
        batches.append((min(ats), max(ats), integration, len(group), _encode(group)))
    return batches


def unpack(integration: str, body: str) -> list[CallRecord]:
    """The records of a batch, in the order they were written."""
    packed = json.loads(body)
    count, same, each = packed["n"], packed["same"], packed["each"]
    columns: list[Iterable[Any]] = []
    for name in _COLUMNS:
        if name in _DOUBLES:
            columns.append(_doubles(each[name]))
        elif name in same:
            columns.append(itertools.repeat(same[name], count))
        else:
            columns.append(each[name])
    return [_record(integration, item) for item in zip(*columns, strict=False)]


def _encode(group: Calls) -> str:
    """A batch's body: by column, each stored once when every call has the same value (the method, the status,
    the version are), the times and latencies as binary doubles (exact, and far quicker to write than decimal
    text: json.dumps spent a third of a microsecond on each float)."""
    same: dict[str, Any] = {}
    each: dict[str, Any] = {}
    for name in _COLUMNS:
        values = group.column(name)
        if name in _DOUBLES:
            each[name] = _base64_doubles(values)
        elif values.count(values[0]) == len(values):
            same[name] = values[0]
        else:
            each[name] = values
    return json.dumps({"n": len(group), "same": same, "each": each}, separators=(",", ":"))


def _base64_doubles(values: Sequence[float]) -> str:
    doubles = array.array("d", values)
    if sys.byteorder == "big":
        doubles.byteswap()  # stored little-endian, whichever machine wrote them
    return base64.b64encode(doubles.tobytes()).decode("ascii")


def _doubles(text: str) -> list[float]:
    doubles = array.array("d", base64.b64decode(text))
    if sys.byteorder == "big":
        doubles.byteswap()
    return doubles.tolist()


def _record(integration: str, item: Sequence[Any]) -> CallRecord:
    (at, method, endpoint, status, latency, peer, sent, received, limit, remaining, tokens, version, request_id) = item
    # Positional, in CallRecord's field order: outcome "success", one attempt, no error, hint or headers.
    return CallRecord._make(
        (
            at,
            integration,
            method,
            endpoint,
            status,
            "success",
            None,
            None,
            latency,
            1,
            peer,
            sent,
            received,
            limit,
            remaining,
            tokens,
            version,
            None,
            None,
            request_id,
            (),
        )
    )

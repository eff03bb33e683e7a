"""Getters of one call-record field, for code that reads a batch of records a column at a time.

``map(STATUS, records)`` and the like run in C; the recorder's thread folds, packs and counts every call the
application makes, and a Python-level loop over each record was most of what that cost. The getters read by
position, so they take the recorder's plain :data:`~tether.observe.records.Row` tuples and
:class:`~tether.observe.records.CallRecord` values alike.
"""

from __future__ import annotations

import bisect
import functools
import operator
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from tether.observe.records import FIELD, LATENCY_BUCKETS, Row, usage

_Record = TypeVar("_Record", bound=Row)
_Key = TypeVar("_Key", bound=Hashable)


def _get(*names: str) -> Callable[[Row], Any]:
    return operator.itemgetter(*(FIELD[name] for name in names))


AT = _get("at")
INTEGRATION = _get("integration")
METHOD = _get("method")
ENDPOINT = _get("endpoint")
STATUS = _get("status")
OUTCOME = _get("outcome")
LATENCY = _get("latency")
ATTEMPTS = _get("attempts")
RECEIVED = _get("bytes_received")
TOKENS = _get("tokens")
LIMIT = _get("limit")  # 0 or None: no usage to read
DEPRECATION = _get("deprecation")
SUNSET = _get("sunset")
VERSION = _get("version")
# The latency histogram's bucket of a latency: the first bound at or above it ("le"); the last one is +Inf.
BUCKET_OF = functools.partial(bisect.bisect_left, LATENCY_BUCKETS)
_HEADROOM = _get("limit", "limit_remaining")


def USAGE(record: Row) -> float | None:  # a getter, named as the others
    """The fraction of the API's reported rate limit in use after the call (:attr:`CallRecord.usage`)."""
    return usage(*_HEADROOM(record))


def by_minute(records: Sequence[_Record]) -> dict[tuple[str, int], list[_Record]]:
    """``records`` by integration and minute (``int(at // 60)``), in order within each."""
    if not records:
        return {}
    ats = list(map(AT, records))
    names = list(map(INTEGRATION, records))
    first = int(min(ats) // 60)
    if _same(names) and first == int(max(ats) // 60):  # one integration within a minute: the usual flush
        return {(names[0], first): list(records)}
    return grouped(records, ((name, int(at // 60)) for name, at in zip(names, ats, strict=True)))


def by_labels(records: Sequence[_Record]) -> dict[tuple[str, str, str], list[_Record]]:
    """``records`` by (integration, method, endpoint), in order within each."""
    if not records:
        return {}
    names, methods, endpoints = (
        list(map(INTEGRATION, records)),
        list(map(METHOD, records)),
        list(map(ENDPOINT, records)),
    )
    if _same(names) and _same(methods) and _same(endpoints):  # one label set: the usual batch
        return {(names[0], methods[0], endpoints[0]): list(records)}
    return grouped(records, zip(names, methods, endpoints, strict=True))


def grouped(records: Sequence[_Record], keys: Iterable[_Key]) -> dict[_Key, list[_Record]]:
    """``records`` by their ``keys`` (one per record), in order within each group.

    ``keys`` is best an iterator: a list of a key per record keeps thousands of tuples alive at once, and a
    garbage collection meanwhile promotes them all to the oldest generation (see
    :data:`~tether.observe.records.Row`); from an iterator, the dictionary keeps one per group.
    """
    groups: dict[_Key, list[_Record]] = {}
    for key, record in zip(keys, records, strict=True):
        group = groups.get(key)
        if group is None:
            groups[key] = group = []
        group.append(record)
    return groups


def _same(values: list[Any]) -> bool:
    return values.count(values[0]) == len(values)

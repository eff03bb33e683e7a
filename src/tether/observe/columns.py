"""Getters of one call-record field, for code that reads a batch of records a column at a time.

``map(STATUS, records)`` and the like run in C; the recorder's thread folds, packs and counts every call the
application makes, and a Python-level loop over each record was most of what that cost.
"""

from __future__ import annotations

import bisect
import functools
import operator
from collections.abc import Hashable, Sequence
from typing import TypeVar

from tether.observe.records import LATENCY_BUCKETS, CallRecord

AT = operator.attrgetter("at")
INTEGRATION = operator.attrgetter("integration")
LABELS = operator.attrgetter("integration", "method", "endpoint")
STATUS = operator.attrgetter("status")
OUTCOME = operator.attrgetter("outcome")
LATENCY = operator.attrgetter("latency")
ATTEMPTS = operator.attrgetter("attempts")
RECEIVED = operator.attrgetter("bytes_received")
TOKENS = operator.attrgetter("tokens")
LIMIT = operator.attrgetter("limit")  # 0 or None: no usage to read
USAGE = operator.attrgetter("usage")
DEPRECATION = operator.attrgetter("deprecation")
SUNSET = operator.attrgetter("sunset")
VERSION = operator.attrgetter("version")
# The latency histogram's bucket of a latency: the first bound at or above it ("le"); the last one is +Inf.
BUCKET_OF = functools.partial(bisect.bisect_left, LATENCY_BUCKETS)

_Key = TypeVar("_Key", bound=Hashable)


def by_minute(records: Sequence[CallRecord]) -> dict[tuple[str, int], list[CallRecord]]:
    """``records`` by integration and minute (``int(at // 60)``), in order within each."""
    if not records:
        return {}
    ats = list(map(AT, records))
    names = set(map(INTEGRATION, records))
    first = int(min(ats) // 60)
    if len(names) == 1 and first == int(max(ats) // 60):  # one integration within a minute: the usual flush
        return {(names.pop(), first): list(records)}
    return grouped(records, [(record.integration, int(record.at // 60)) for record in records])


def by_labels(records: Sequence[CallRecord]) -> dict[tuple[str, str, str], list[CallRecord]]:
    """``records`` by (integration, method, endpoint), in order within each."""
    return grouped(records, list(map(LABELS, records)))


def grouped(records: Sequence[CallRecord], keys: list[_Key]) -> dict[_Key, list[CallRecord]]:
    """``records`` by their ``keys`` (one per record), in order within each group."""
    if not keys:
        return {}
    if keys.count(keys[0]) == len(keys):  # one group: the usual batch
        return {keys[0]: list(records)}
    groups: dict[_Key, list[CallRecord]] = {}
    for key, record in zip(keys, records, strict=True):
        group = groups.get(key)
        if group is None:
            groups[key] = group = []
        group.append(record)
    return groups

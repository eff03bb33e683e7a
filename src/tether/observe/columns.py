"""A batch of call records held a column at a time: what the recorder hands its listeners and writes.

The recorder's buffer is one flat list: each call extends it with its record's fields, in
:class:`~tether.observe.records.CallRecord`'s order, so a record waiting for the flush is no object of its own.
The garbage collector runs a young-generation collection every few hundred objects that outlive their
allocation; one record object per call was that, and each collection promoted the application's calls in flight
(at 64 concurrent calls, ~1.6 µs a call in collections). A flush slices the list into :class:`Calls`, whose
:meth:`~Calls.column` is one C-level slice; the packer, the summaries and the metrics read columns, and make
no object per record either.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from tether.observe.records import FIELD, LATENCY_BUCKETS, CallRecord, Row, usage

__all__ = ["BUCKET_OF", "WIDTH", "Calls", "as_calls"]

WIDTH = len(CallRecord._fields)  # values per record in the flat list

# The latency histogram's bucket of a latency: the first bound at or above it ("le"); the last one is +Inf.
BUCKET_OF = functools.partial(bisect.bisect_left, LATENCY_BUCKETS)

_Key = TypeVar("_Key", bound=Hashable)


class Calls:
    """Call records as one flat list of their fields, read a column at a time.

    ``len()`` is the number of records; iterating gives :class:`CallRecord` values (made on demand: code that
    runs for every call reads :meth:`column` instead).

    Args:
        values: The records' fields one record after another, :data:`WIDTH` per record. Taken, not copied.
    """

    __slots__ = ("values",)

    def __init__(self, values: list[Any] | None = None) -> None:
        self.values: list[Any] = [] if values is None else values

    @classmethod
    def of(cls, records: Iterable[Row]) -> Calls:
        """A batch of ``records`` (rows or :class:`CallRecord` values)."""
        return cls(list(itertools.chain.from_iterable(records)))

    def column(self, name: str) -> list[Any]:
        """Each record's ``name`` field, in order."""
        return self.values[FIELD[name] :: WIDTH]

    def usages(self) -> Iterator[float | None]:
        """Each record's :attr:`CallRecord.usage`."""
        return map(usage, self.column("limit"), self.column("limit_remaining"))

    def rows(self) -> list[Row]:
        """The records as tuples (one object each: for the few records that need one)."""
        return list(zip(*[iter(self.values)] * WIDTH, strict=True))

    def select(self, indices: Iterable[int]) -> Calls:
        """The records at ``indices``, in that order."""
        values, picked = self.values, []
        for index in indices:
            picked += values[index * WIDTH : (index + 1) * WIDTH]
        return Calls(picked)

    def by_minute(self) -> dict[tuple[str, int], Calls]:
        """The records by integration and minute (``int(at // 60)``), in order within each."""
        if not self:
            return {}
        ats, names = self.column("at"), self.column("integration")
        first = int(min(ats) // 60)
        if _same(names) and first == int(max(ats) // 60):  # one integration within a minute: the usual flush
            return {(names[0], first): self}
        return self._grouped((name, int(at // 60)) for name, at in zip(names, ats, strict=True))

    def by_labels(self) -> dict[tuple[str, str, str], Calls]:
        """The records by (integration, method, endpoint), in order within each."""
        if not self:
            return {}
        names, methods, endpoints = self.column("integration"), self.column("method"), self.column("endpoint")
        if _same(names) and _same(methods) and _same(endpoints):  # one label set: the usual batch
            return {(names[0], methods[0], endpoints[0]): self}
        return self._grouped(zip(names, methods, endpoints, strict=True))

    def _grouped(self, keys: Iterable[_Key]) -> dict[_Key, Calls]:
        # From an iterator of keys, the dictionary keeps one key per group: a list of a key per record would
        # keep thousands of tuples alive at once, and a collection meanwhile would promote them all.
        groups: dict[_Key, list[int]] = {}
        for index, key in enumerate(keys):
            group = groups.get(key)
            if group is None:
                groups[key] = group = []
            group.append(index)
        if len(groups) == 1:
            return dict.fromkeys(groups, self)
        return {key: self.select(indices) for key, indices in groups.items()}

    def __len__(self) -> int:
        return len(self.values) // WIDTH

    def __iter__(self) -> Iterator[CallRecord]:
        return map(CallRecord._make, self.rows())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Calls) and self.values == other.values

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Calls({len(self)} records)"


def as_calls(records: Calls | Sequence[Row]) -> Calls:
    """``records`` as a :class:`Calls` batch (itself, when it is one)."""
    return records if isinstance(records, Calls) else Calls.of(records)


def _same(values: list[Any]) -> bool:
    return values.count(values[0]) == len(values)

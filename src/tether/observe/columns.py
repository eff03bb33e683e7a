"""Getters of one call-record field, for code that reads a batch of records a column at a time.

``map(STATUS, records)`` and the like run in C; the recorder's thread folds, packs and counts every call the
application makes, and a Python-level loop over each record was most of what that cost.
"""

from __future__ import annotations

import bisect
import functools
import operator

from tether.observe.records import LATENCY_BUCKETS

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

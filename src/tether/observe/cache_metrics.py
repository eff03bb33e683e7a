"""The cache and fallback counters of a hub (``hub.stats``) as Prometheus metrics, for ``enable_metrics``.

A response served from the cache makes no call record (no call reached the API, and its latency would blur the
API's), so these counters are the only account of the cache. They are this process's, like the rest of the
library exporter; ``tether serve`` reads call records from the store and has none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CacheCounters"]

# Each family: its name, help, label name, and the hub.stats counter behind each label value.
_FAMILIES = (
    (
        "tether_cache_lookups",
        "Requests looked up in the cache: answered from it (hit), after a 304 (revalidated), or sent (miss).",
        "result",
        (("hit", "cache_hits"), ("revalidated", "cache_revalidated"), ("miss", "cache_misses")),
    ),
    ("tether_cache_stored", "Responses stored in the cache.", None, ((None, "cache_stored"),)),
    (
        "tether_fallbacks",
        "Responses served instead of an API failure: the last good one (stale) or the configured one (static).",
        "kind",
        (("stale", "fallbacks_stale"), ("static", "fallbacks_static")),
    ),
)


class CacheCounters(Collector):
    """Collects ``stats(name)`` for each name in ``names`` at scrape time.

    Args:
        names: The integrations.
        stats: ``hub.stats``.
    """

    def __init__(self, names: Iterable[str], stats: Callable[[str], dict[str, int]]) -> None:
        self._names, self._stats = sorted(names), stats

    def collect(self) -> Iterator[Metric]:
        counts = {name: self._stats(name) for name in self._names}
        for family_name, help_text, label, values in _FAMILIES:
            family = CounterMetricFamily(
                family_name, help_text, labels=["integration"] if label is None else ["integration", label]
            )
            for name, counted in counts.items():
                for value, field in values:
                    family.add_metric([name] if value is None else [name, value], counted[field])
            yield family

    def describe(self) -> Iterable[Metric]:
        return []

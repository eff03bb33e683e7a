"""Exponential backoff with full jitter.

The wait before retry ``n`` (0-based) is drawn uniformly from ``[0, min(cap, base * 2**n)]``: spreading retries
over the whole window is what keeps many clients that failed together from retrying together.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff.

    Args:
        base: The ceiling of the first wait, in seconds.
        cap: No wait is longer than this.
        random: A function returning a float in ``[0, 1)``; injected so tests are deterministic.
    """

    base: float = 1.0
    cap: float = 30.0
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def ceiling(self, retry: int) -> float:
        """The largest wait before retry number ``retry`` (0 for the first retry)."""
        # min() before the power would overflow for absurd retry counts.
        return min(self.cap, self.base * 2.0 ** min(retry, 62))

    def delay(self, retry: int) -> float:
        """A jittered wait before retry number ``retry``."""
        return float(self.random()) * self.ceiling(retry)

"""A retry budget: retries may add at most a fraction of the calls made recently.

When a provider is down, per-call retry limits still multiply its load by the number of attempts; a budget
caps the extra load for the whole integration (Finagle and gRPC use the same idea). A small floor keeps
retries available at low traffic, where a ratio of a handful of calls would round to zero.
"""

from __future__ import annotations

import threading
from collections import deque

from tether.policies.clock import Clock, SystemClock

__all__ = ["RetryBudget"]


class RetryBudget:
    """Allow retries while they are at most ``ratio`` of the calls in the last ``window`` seconds.

    Args:
        ratio: Retries allowed per call over the window (0.2 = 20%).
        window: Seconds of history counted.
        min_retries: Retries always allowed per window, whatever the traffic.
        clock: Time source.
    """

    def __init__(
        self, *, ratio: float = 0.2, window: float = 10.0, min_retries: int = 10, clock: Clock | None = None
    ) -> None:
        self.ratio, self.window, self.min_retries = ratio, window, min_retries
        self._clock = clock or SystemClock()
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()
        self._lock = threading.Lock()

    def record_call(self) -> None:
        """Count one logical call (its first attempt)."""
        now = self._clock.monotonic()
        with self._lock:
            self._calls.append(now)
            self._trim(now)

    def try_spend(self) -> bool:
        """Take one retry from the budget; ``False`` means the retry must not happen."""
        now = self._clock.monotonic()
        with self._lock:
            self._trim(now)
            allowed = max(self.min_retries, int(self.ratio * len(self._calls)))
            if len(self._retries) >= allowed:
                return False
            self._retries.append(now)
            return True

    def _trim(self, now: float) -> None:
        horizon = now - self.window
        for times in (self._calls, self._retries):
            while times and times[0] <= horizon:
                times.popleft()

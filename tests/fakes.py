"""Small fakes shared by the test modules."""

from __future__ import annotations

from tether.policies.clock import ManualClock


class Timeline:
    """Manual time: the fake sleeps record each wait and move the clock instead of sleeping."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)

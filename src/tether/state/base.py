"""The state backend contract: what the policy transports ask of shared state, in one round trip each.

Before each attempt the transport asks :meth:`StateBackend.admit` (pause, rate limit and breaker in one
step); after it, :meth:`StateBackend.report` (the breaker outcome and what the response said about the limit).
``memory`` keeps the state in the process; ``redis`` shares it between processes and machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tether.policies.breaker import BreakerSettings, State
from tether.policies.ratelimit import Rate, RateLimitSignal

__all__ = ["Admission", "Limits", "StateBackend"]


@dataclass(frozen=True)
class Limits:
    """An integration's limits, as the backend needs them.

    Attributes:
        rate: The configured rate (``None``: no client-side limit, only what the API says).
        breaker: The breaker settings (``None``: no breaker).
    """

    rate: Rate | None = None
    breaker: BreakerSettings | None = None


@dataclass(frozen=True)
class Admission:
    """The answer to "may this attempt go?".

    Attributes:
        wait: Seconds to wait before sending (rate limit or a pause the API asked for).
        rejected: Why the attempt must not go at all: ``"circuit_open"``, ``"paused"`` (the API asked every
            caller to hold off longer than this call may wait), ``"rate_limit"`` (the next slot is too far) or
            ``"concurrency"`` (no place under the integration's cap freed up in time).
        retry_in: With ``rejected``: seconds until it could go.
        probe: The attempt is a half-open probe of the breaker.
    """

    wait: float = 0.0
    rejected: str | None = None
    retry_in: float = 0.0
    probe: bool = False


GO = Admission()


class StateBackend(Protocol):
    """Shared policy state. Implementations never raise because their storage is down."""

    name: str

    def admit(self, key: str, limits: Limits, *, max_wait: float) -> Admission: ...

    def report(self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal) -> State | None: ...

    async def aadmit(self, key: str, limits: Limits, *, max_wait: float) -> Admission: ...

    async def areport(
        self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal
    ) -> State | None: ...

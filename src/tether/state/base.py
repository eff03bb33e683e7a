"""The state backend contract: what the policy transports ask of shared state, in one round trip each.

Before each attempt the transport asks :meth:`StateBackend.admit` (pauses, rate limits, token budgets and the
breaker, in one step); after it, :meth:`StateBackend.report` (the breaker outcome, what the response said about
the limits and the tokens it used). ``memory`` keeps the state in the process; ``redis`` shares it between
processes and machines.

An integration's limits may have an endpoint group inside them (``[integrations.NAME.endpoints."POST /v1/x*"]``).
A call to such an endpoint is admitted by both levels, the integration's and the group's, in the same step;
:func:`levels` says which level keeps what, so both backends apply the same rules:

- Rate limits and token budgets: every level that has one must have room; the call goes when all do.
- The breaker: one per call. A group with its own breaker is isolated: its calls neither consult nor feed the
  integration's breaker, so one broken endpoint does not cut the others off (and an outage of the others does
  not cut it off).
- What the API says (a 429's pause, a reported budget, a slow-down): kept by the group when the group has a rate
  limit of its own (APIs such as GitHub's search budget limit endpoint groups separately), by the integration
  otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tether.policies.breaker import BreakerSettings, State
from tether.policies.ratelimit import Rate, RateLimitSignal

__all__ = ["Admission", "Group", "Level", "Limits", "StateBackend", "breaker_of", "levels"]


@dataclass(frozen=True)
class Limits:
    """The limits that apply to one call, as the backend needs them.

    Attributes:
        rate: The integration's configured rate (``None``: no client-side limit, only what the API says).
        breaker: The integration's breaker settings (``None``: no breaker).
        tokens: A token budget (AI APIs): ``Rate(tokens, per, burst=tokens)``, debited by the tokens each
            response reports it used.
        group: The endpoint group the call belongs to, when it has limits of its own.
    """

    rate: Rate | None = None
    breaker: BreakerSettings | None = None
    tokens: Rate | None = None
    group: Group | None = None

    def outer(self) -> Limits:
        """The integration's budgets alone: what a call asks for after its group's slot (see ``Admission.again``)."""
        return Limits(rate=self.rate, tokens=self.tokens)


@dataclass(frozen=True)
class Group:
    """An endpoint group's own limits, inside its integration's.

    Attributes:
        name: The endpoint pattern as configured, e.g. ``"POST /v1/chat/*"``; it names the group's state.
        rate: The group's rate limit, if any.
        breaker: The group's breaker, if any (then the integration's does not apply to the group's calls).
        tokens: The group's token budget, if any.
    """

    name: str
    rate: Rate | None = None
    breaker: BreakerSettings | None = None
    tokens: Rate | None = None


@dataclass(frozen=True)
class Level:
    """One level of state a call touches: its key, and what that level keeps for the call.

    Attributes:
        key: The state's key: the integration's name, or ``"NAME|PATTERN"`` for an endpoint group.
        rate: The rate to admit against.
        breaker: The breaker to consult and feed.
        tokens: The token budget to admit against and debit.
        learns: Whether the API's signals (pauses, reported budgets) are kept here.
    """

    key: str
    rate: Rate | None
    breaker: BreakerSettings | None
    tokens: Rate | None
    learns: bool


def levels(key: str, limits: Limits) -> tuple[Level, ...]:
    """The levels of state a call with ``limits`` on integration ``key`` touches, outermost first."""
    group = limits.group
    if group is None:
        return (Level(key, limits.rate, limits.breaker, limits.tokens, learns=True),)
    own_breaker = group.breaker is not None
    return (
        Level(key, limits.rate, None if own_breaker else limits.breaker, limits.tokens, learns=group.rate is None),
        Level(f"{key}|{group.name}", group.rate, group.breaker, group.tokens, learns=group.rate is not None),
    )


def breaker_of(limits: Limits) -> BreakerSettings | None:
    """The breaker a call with ``limits`` answers to: its group's, else its integration's."""
    if limits.group is not None and limits.group.breaker is not None:
        return limits.group.breaker
    return limits.breaker


@dataclass(frozen=True)
class Admission:
    """The answer to "may this attempt go?".

    Attributes:
        wait: Seconds to wait before sending (rate limit or a pause the API asked for).
        rejected: Why the attempt must not go at all: ``"circuit_open"``, ``"paused"`` (the API asked every
            caller to hold off longer than this call may wait), ``"rate_limit"`` (the next slot, or enough of
            the token budget, is too far) or ``"concurrency"`` (no place under the integration's cap freed up
            in time).
        retry_in: With ``rejected``: seconds until it could go.
        probe: The attempt is a half-open probe of the breaker; report its outcome with ``probe=True``.
        again: Only the endpoint group's slot was taken (it was the later one): after ``wait``, ask again with
            :meth:`Limits.outer` for the integration's.
    """

    wait: float = 0.0
    rejected: str | None = None
    retry_in: float = 0.0
    probe: bool = False
    again: bool = False


GO = Admission()


class StateBackend(Protocol):
    """Shared policy state. Implementations never raise because their storage is down."""

    name: str

    def admit(self, key: str, limits: Limits, *, max_wait: float) -> Admission: ...

    def report(
        self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal, probe: bool = False
    ) -> State | None: ...

    async def aadmit(self, key: str, limits: Limits, *, max_wait: float) -> Admission: ...

    async def areport(
        self, key: str, limits: Limits, *, failure: bool | None, signal: RateLimitSignal, probe: bool = False
    ) -> State | None: ...

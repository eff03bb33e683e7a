"""Sans-IO policies: pure decisions from inputs and an injected clock, driven by the transports."""

from tether.policies.backoff import Backoff
from tether.policies.budget import RetryBudget
from tether.policies.clock import Clock, ManualClock, SystemClock
from tether.policies.retry import GiveUp, RetryPolicy, RetryState

__all__ = [
    "Backoff",
    "Clock",
    "GiveUp",
    "ManualClock",
    "RetryBudget",
    "RetryPolicy",
    "RetryState",
    "SystemClock",
]

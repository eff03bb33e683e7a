"""Policy state: rate-limit budgets, pauses and breakers, in memory or shared through Redis."""

from tether.state.base import Admission, Limits, StateBackend
from tether.state.memory import MemoryState

__all__ = ["Admission", "Limits", "MemoryState", "StateBackend"]

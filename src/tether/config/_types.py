"""Pieces every ``tether.toml`` model shares: the strict base model and durations."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from tether._durations import parse_duration

__all__ = ["Duration", "_Model"]


def _duration(value: Any) -> float:
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds, from a number or a string such as ``"500ms"`` or ``"1m30s"``."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

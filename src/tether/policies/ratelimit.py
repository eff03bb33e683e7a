"""Client-side rate limiting: GCRA, and what the API's own headers say about its limits.

GCRA (the generic cell rate algorithm) keeps one number per bucket, the theoretical arrival time (TAT) of the
next request. A request may go once ``now >= TAT - burst_tolerance``; going moves the TAT one emission interval
on. It needs no background timer, allows exactly the configured burst and no more (also at start-up), and its
state fits in one Redis key, which is why the shared backend can decide in one atomic step.

Everything here is pure: time comes in as an argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tether._durations import parse_duration
from tether.policies.headers import parse_rate_limit_reset, retry_wait_from_headers

__all__ = ["GCRA", "Rate", "RateLimitSignal", "read_rate_limit_headers", "tokens_used"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*(?:\.\d+)?\s*(?:ms|s|m|h|d)?)\s*$")
_EPSILON = 1e-9
_WORDS = {"sec": "s", "second": "s", "min": "m", "minute": "m", "hour": "h", "day": "d"}


@dataclass(frozen=True)
class Rate:
    """``requests`` per ``per`` seconds, with ``burst`` requests allowed back to back.

    Attributes:
        requests: How many requests per window.
        per: The window in seconds.
        burst: Requests allowed at once from idle (default 1: evenly spaced, no burst).
    """

    requests: float
    per: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.requests <= 0 or self.per <= 0:
            raise ValueError("a rate needs a positive number of requests and a positive window")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")

    @property
    def interval(self) -> float:
        """Seconds between requests at the steady rate (the emission interval)."""
        return self.per / self.requests

    @classmethod
    def parse(cls, text: str, *, burst: int = 1) -> Rate:
        """Parse ``"100/s"``, ``"6000/1m"``, ``"10/sec"``, ``"1000/hour"``."""
        for word, unit in _WORDS.items():
            text = re.sub(rf"(?<=/)\s*{word}s?\s*$", unit, text.strip())
        match = _RATE.match(text)
        if not match or not match.group(2).strip():
            raise ValueError(f"expected a rate such as '100/s' or '6000/1m', got {text!r}")
        window = match.group(2).strip()
        per = parse_duration(window if window[:1].isdigit() else f"1{window}")
        return cls(float(match.group(1)), per, burst)

    def __str__(self) -> str:
        return f"{self.requests:g}/{self.per:g}s"


class GCRA:
    """The decision for one bucket: given its TAT and now, may a request go, and when."""

    __slots__ = ("interval", "tolerance")

    def __init__(self, rate: Rate) -> None:
        self.interval = rate.interval
        self.tolerance = rate.interval * (rate.burst - 1)

    def reserve(self, tat: float | None, now: float, *, max_wait: float) -> tuple[float | None, float]:
        """Reserve the next slot.

        Returns:
            ``(wait, new_tat)``: seconds to wait before sending (0: now) and the bucket's new TAT; or
            ``(None, tat)`` when the wait would exceed ``max_wait``, in which case nothing is reserved.
        """
        start = now if tat is None or tat < now else tat
        wait = self.wait(tat, now)
        if wait > max_wait:
            return None, tat if tat is not None else now
        return wait, start + self.interval

    def wait(self, tat: float | None, now: float) -> float:
        """Seconds until a request may go, without reserving anything."""
        if tat is None or tat < now:
            return 0.0
        wait = tat - self.tolerance - now
        # The TAT is a sum of intervals and the tolerance a product: a burst's last slot can differ by 1e-16.
        return wait if wait > _EPSILON else 0.0


@dataclass(frozen=True)
class RateLimitSignal:
    """What one response said about the limit.

    Attributes:
        pause: Seconds every caller should hold off (a 429/503 with a wait, or a budget at zero).
        limit: The window's request budget the API reported, when it did.
        window: The window in seconds, when the API said (IETF ``RateLimit-Policy``).
        remaining: Requests left in the window.
        tokens_remaining: AI APIs: tokens left (``x-ratelimit-remaining-tokens``).
        tokens_used: AI APIs: the tokens this response's ``usage`` says the call consumed.
        slow_down: A 429 that said nothing about the limit (no wait, no budget): the configured rate is above
            the API's real one, so the client should slow down.
    """

    pause: float = 0.0
    limit: float | None = None
    window: float | None = None
    remaining: float | None = None
    tokens_remaining: float | None = None
    tokens_used: float = 0.0
    slow_down: bool = False

    @property
    def learned(self) -> Rate | None:
        """The rate the API reported (a budget over a window), if it reported one."""
        return Rate(self.limit, self.window) if self.limit and self.window else None

    def __bool__(self) -> bool:
        """Whether there is anything in it for the state backend."""
        return bool(
            self.pause or self.window or self.slow_down or self.tokens_used or self.tokens_remaining is not None
        )


_POLICY_WINDOW = re.compile(r"w=(\d+(?:\.\d+)?)")
_POLICY_QUOTA = re.compile(r"q=(\d+(?:\.\d+)?)")


def _number(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def read_rate_limit_headers(status: int, headers: Mapping[str, str], *, now: float) -> RateLimitSignal:
    """Read ``X-RateLimit-*``, IETF ``RateLimit``/``RateLimit-Policy``, OpenAI's and ``Retry-After`` headers.

    ``now`` is wall-clock seconds (for epoch resets and HTTP-dates). Malformed values are ignored.
    """
    limit = _number(headers.get("x-ratelimit-limit") or headers.get("ratelimit-limit"))
    limit = limit if limit is not None else _number(headers.get("x-ratelimit-limit-requests"))
    remaining = _number(headers.get("x-ratelimit-remaining") or headers.get("ratelimit-remaining"))
    remaining = remaining if remaining is not None else _number(headers.get("x-ratelimit-remaining-requests"))
    window = None
    combined = headers.get("ratelimit")  # draft-ietf-httpapi-ratelimit-headers: limit=100, remaining=5, reset=30
    reset_from_combined = None
    if combined:
        fields = dict(part.strip().partition("=")[::2] for part in combined.replace(";", ",").split(","))
        limit = limit if limit is not None else _number(fields.get("limit"))
        remaining = remaining if remaining is not None else _number(fields.get("remaining") or fields.get("r"))
        reset_from_combined = fields.get("reset") or fields.get("t")
    policy = headers.get("ratelimit-policy")
    if policy:
        match = _POLICY_WINDOW.search(policy)
        window = float(match.group(1)) if match else None
        quota = _POLICY_QUOTA.search(policy)  # the newer draft: "default";q=100;w=60
        if quota:
            limit = float(quota.group(1))
        elif limit is None:
            limit = _number(policy)
        if (window is not None and not 0 < window < 1e9) or (limit is not None and not 0 < limit < 1e12):
            window = None  # absurd values would turn into an infinite interval
    pause, slow_down = 0.0, False
    if status in (429, 503):
        asked = retry_wait_from_headers(headers, now=now)
        pause = asked if asked is not None else (1.0 if status == 429 else 0.0)
        slow_down = status == 429 and asked is None and limit is None
    elif remaining == 0:
        reset = None
        for name in ("x-ratelimit-reset", "ratelimit-reset", "x-ratelimit-reset-requests"):
            reset = parse_rate_limit_reset(headers.get(name), now=now)
            if reset is not None:
                break
        if reset is None and reset_from_combined:
            reset = parse_rate_limit_reset(reset_from_combined, now=now)
        pause = reset or 0.0
    tokens = _number(headers.get("x-ratelimit-remaining-tokens"))
    if tokens == 0 and status < 400:
        # An AI API's token budget is spent: the next call would be a 429, so hold off until it refills.
        pause = max(pause, parse_rate_limit_reset(headers.get("x-ratelimit-reset-tokens"), now=now) or 0.0)
    return RateLimitSignal(pause, limit, window, remaining, tokens, slow_down=slow_down)


_USAGE_FIELDS = (("total_tokens",), ("input_tokens", "output_tokens"), ("totalTokenCount",))


def tokens_used(document: object) -> float:
    """The tokens an AI API's JSON response says the call used, or 0.

    Reads ``usage.total_tokens`` (OpenAI and compatible APIs), ``usage.input_tokens + usage.output_tokens``
    (Anthropic) and ``usageMetadata.totalTokenCount`` (Gemini). Anything else, or a malformed value, is 0.
    """
    if not isinstance(document, dict):
        return 0.0
    usage = document.get("usage")
    if not isinstance(usage, dict):
        usage = document.get("usageMetadata")
    if not isinstance(usage, dict):
        return 0.0
    for fields in _USAGE_FIELDS:
        values = [usage.get(name) for name in fields]
        if all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
            total = float(sum(values))  # type: ignore[arg-type]
            return total if 0 <= total < 1e12 else 0.0
    return 0.0

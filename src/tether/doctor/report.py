"""What ``tether doctor`` found: one :class:`Check` per thing it looked at, gathered in a :class:`Diagnosis`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Check", "Diagnosis", "Status"]

Status = Literal["ok", "warn", "fail", "skip"]
"""``ok`` passed; ``warn`` works but needs attention; ``fail`` is broken; ``skip`` could not be checked."""


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    Attributes:
        name: What was checked: ``dns``, ``tcp``, ``tls``, ``proxy``, ``health``, ``clock``, ``content``,
            ``latency``, ``version`` or ``cors``.
        status: See :data:`Status`.
        summary: What was found, in one line.
        cause: Why it is a problem (``None`` when it is not).
        fix: What to do about it (``None`` when nothing needs doing).
        details: The facts behind the summary, for ``--json`` (addresses, dates, headers…); never a secret.
    """

    name: str
    status: Status
    summary: str
    cause: str | None = None
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready data."""
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "cause": self.cause,
            "fix": self.fix,
            "details": self.details,
        }


def ok(name: str, summary: str, **details: Any) -> Check:
    """A passed check."""
    return Check(name, "ok", summary, details=details)


def warn(name: str, summary: str, *, cause: str, fix: str, **details: Any) -> Check:
    """A check that passed with something to attend to."""
    return Check(name, "warn", summary, cause, fix, details)


def fail(name: str, summary: str, *, cause: str, fix: str, **details: Any) -> Check:
    """A failed check, with its cause and fix."""
    return Check(name, "fail", summary, cause, fix, details)


def skip(name: str, summary: str, **details: Any) -> Check:
    """A check that could not run (an earlier one failed, or nothing is configured for it)."""
    return Check(name, "skip", summary, details=details)


@dataclass(frozen=True)
class Diagnosis:
    """Every check of one integration, in the order they ran.

    Attributes:
        integration: The integration's name in tether.toml.
        url: Its ``base_url``.
        checks: The checks, in order.
    """

    integration: str
    url: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Whether no check failed (warnings and skips do not count)."""
        return all(check.status != "fail" for check in self.checks)

    def check(self, name: str) -> Check:
        """The check called ``name``.

        Raises:
            KeyError: no such check ran.
        """
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis as JSON-ready data."""
        return {
            "integration": self.integration,
            "url": self.url,
            "ok": self.ok,
            "checks": [check.to_dict() for check in self.checks],
        }

"""``tether doctor``: diagnose a broken integration, live (:func:`diagnose`) or from its call records
(:func:`analyse`).

Every finding says what was found, the cause and the fix, in words an on-call engineer can act on.
"""

from tether.doctor.checks import diagnose
from tether.doctor.fromlog import Finding, LogReport, analyse
from tether.doctor.report import Check, Diagnosis

__all__ = ["Check", "Diagnosis", "Finding", "LogReport", "analyse", "diagnose"]

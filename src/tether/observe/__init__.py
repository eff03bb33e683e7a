"""Observation: redaction and structured logs (metrics and call records come in later)."""

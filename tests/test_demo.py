"""The quick start's main job: ``tether demo`` runs end to end and shows what tether did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TETHER = Path(sys.executable).with_name("tether")


def test_demo_runs_every_scenario_and_reports_attempts_waits_and_outcomes() -> None:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    result = subprocess.run([str(TETHER), "demo"], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert "503 twice, then OK" in out
    assert "503 ⏱" in out, "waits between attempts are shown"
    assert "429 ⏱1.00s → 200" in out, "Retry-After: 1 is honoured exactly"
    assert "every attempt sent the same Idempotency-Key" in out
    assert "ReadTimeoutError" in out or "DeadlineExceededError" in out
    assert "failed now instead of sleeping" in out
    assert "TruncatedJSONError" in out
    assert "env var SANDBOX_WRONG_KEY" in out
    assert "ThrottledError" in out, "the API's 120 s pause holds for the next call"
    assert "OAuth token living 3 s, two calls 2 s apart" in out
    oauth = out.split("OAuth token living 3 s")[1]
    assert "token requests during this scenario: 2" in oauth, "one token, then one renewal ahead of expiry"
    rejected = out.split("rejects a still-valid token once")[1]
    assert "200 OK" in rejected.split("●")[0], "the 401 was answered by a renewal and one replay"
    assert "CircuitOpenError" in out, "the breaker opened after four 503s"
    assert "sk_test_revoked" not in out + result.stderr, "the wrong key itself is never printed"
    assert "Traceback" not in result.stderr

    tour = out.split("● tether serve on")[1]
    assert "dashboard at http://127.0.0.1:" in tour
    assert "FIRING shop: error rate" in tour, "the 503 burst fires the error-rate alert"
    assert tour.index("FIRING shop") < tour.index("RESOLVED shop"), "and recovery resolves it"
    assert tour.count("FIRING shop") == 1, "one notification when it fires, not one per evaluation"
    assert "200 accepted, 200 duplicate, 200 accepted; a forged one → 401" in tour
    assert "handled once each: customer.created" in tour
    assert "invoice.paid" in tour.split("handled once each")[1]
    assert "dashboard: shop" in tour
    proxied = tour.split("proxy: ")[1].split("dashboard:")[0]
    assert "GET /proxy/shop/v1/customers → 200 (CORS http://localhost:3000; the API key stayed on the server)" in (
        " ".join(proxied.split())
    )
    assert "DELETE → 403 (not in the allow list)" in " ".join(proxied.split())
    assert "requests, error rate" in tour
    assert 'tether_requests_total{code="200"' in tour

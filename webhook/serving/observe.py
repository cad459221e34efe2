"""What one admission leaves behind: its metrics and its log line."""

from __future__ import annotations

import logging

from webhook.serving import metrics
from webhook.admission.admit import Outcome
from webhook.serving.logs import LOGGER, admission_fields, info_line

log = logging.getLogger(LOGGER)

# admission.Outcome.result -> the metrics' outcome label ("ignored" pods are unchanged).
_OUTCOME = {"mutated": "mutated", "unchanged": "unchanged", "ignored": "unchanged", "denied": "denied"}


def record_admission(review: dict, outcome: Outcome | None, seconds: float) -> None:
    """``outcome`` None means the admission raised (the pod was admitted unchanged)."""
    if outcome is None:
        result, action, message, pool, profile = "error", "none", "internal error; admitted unchanged", None, None
    else:
        decision = outcome.decision
        result = _OUTCOME.get(outcome.result, outcome.result)
        action = decision.action if decision else "none"
        message = decision.message if decision else (outcome.response.get("status") or {}).get("message", "")
        rightsized = decision is not None and decision.action in ("rewrite", "whole-gpu") and result == "mutated"
        pool = decision.pool.name if rightsized and decision.pool else None
        profile = decision.assigned_profile if rightsized else None
    memo = outcome.memo if outcome else ""
    metrics.observe_admission(result, action, seconds, pool, profile, memo)
    if log.isEnabledFor(logging.INFO):
        info_line("admission", admission_fields(review, result, action, message, seconds, pool, profile, memo))

"""What one admission leaves behind: its metrics and its log line."""

from __future__ import annotations

import logging

from webhook.admission.admit import Outcome
from webhook.core.outcomes import AnswerResult, MemoResult, RecordedAction, RecordedResult
from webhook.serving import metrics
from webhook.serving.logs import LOGGER, admission_fields, info_line

log = logging.getLogger(LOGGER)

# Outcome.result -> the metrics' and log line's result: an "ignored" pod is counted as
# "unchanged" (it was admitted as it came); "error" is an admission that raised.
_RECORDED: dict[AnswerResult, RecordedResult] = {
    "mutated": "mutated",
    "unchanged": "unchanged",
    "ignored": "unchanged",
    "denied": "denied",
}


def record_admission(review: dict, outcome: Outcome | None, seconds: float) -> None:
    """``outcome`` None means the admission raised (the pod was admitted unchanged)."""
    result: RecordedResult
    action: RecordedAction
    pool: str | None
    profile: str | None
    if outcome is None:
        result, action, message, pool, profile = "error", "none", "internal error; admitted unchanged", None, None
    else:
        decision = outcome.decision
        result = _RECORDED[outcome.result]
        action = decision.action if decision else "none"
        message = decision.message if decision else (outcome.response.get("status") or {}).get("message", "")
        rightsized = decision is not None and decision.action in ("rewrite", "whole-gpu") and result == "mutated"
        pool = decision.pool.name if rightsized and decision.pool else None
        profile = decision.assigned_profile if rightsized else None
    memo: MemoResult = outcome.memo if outcome else ""
    if outcome is not None and outcome.decision is not None and outcome.decision.capacity:
        metrics.CAPACITY_DECISIONS.labels(outcome.decision.capacity).inc()
    metrics.observe_admission(result, action, seconds, pool, profile, memo)
    if log.isEnabledFor(logging.INFO):
        info_line("admission", admission_fields(review, result, action, message, seconds, pool, profile, memo))

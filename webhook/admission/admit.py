"""One admission, end to end and pure: AdmissionReview dict + answer source -> response.

decode (review.py) -> answer (answer.py: decide, mutate, JSON Patch, from memory or not)
-> AdmissionResponse. No Flask and no I/O here, so the web app, the tests and the
benchmarks all run exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook.admission import review as rv
from webhook.admission.answer import AnswerSource
from webhook.admission.quota_check import apply_quota
from webhook.admission.types import AdmissionResponse, AdmissionReview
from webhook.core.decision import Decision
from webhook.core.outcomes import AnswerResult, MemoResult
from webhook.core.quota import QuotaView


@dataclass(frozen=True)
class Outcome:
    response: AdmissionResponse
    result: AnswerResult
    decision: Decision | None
    patch: tuple[dict[str, Any], ...] = ()
    memo: MemoResult = ""  # the DecisionMemo's answer: hit | miss | skipped; "" when none was asked


def admit(
    review: AdmissionReview, answers: AnswerSource, body_bytes: int = 0, quota: QuotaView | None = None
) -> Outcome:
    """The response to ``review`` (already decoded: review.decode_review). A pod create is
    answered by ``answers`` (PlainAnswers, or a DecisionMemo that remembers pods seen
    before); ``body_bytes`` is the request's size, which bounds what keying the pod would
    cost a memo; ``quota`` is the latest view of the namespaces' GPU quotas, when the
    policy reads them (webhook/admission/quota_check.py). Anything else is allowed as it
    came."""
    request = review["request"]
    uid = request["uid"]
    if not rv.is_pod_create(request):
        return Outcome(rv.allowed(uid), "ignored", None)
    answer, remembered = answers.answer(request.get("object"), body_bytes, request.get("dryRun") is True)
    answer = apply_quota(answer, request.get("namespace") or "", answers.policy, quota)
    return Outcome(rv.with_uid(uid, answer.response_fields), answer.result, answer.decision, answer.patch, remembered)

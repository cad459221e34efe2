"""The GPU-quota step of an admission: after the answer, before the response.

The answer to a pod is a pure function of (pod, policy) that the memo may keep; whether it
escapes or exceeds its namespace's GPU quota depends on the namespace and on what the
namespace already runs. So that part is applied here, per request, from the latest
:class:`~webhook.core.quota.QuotaView` (webhook/core/quota.py has the accounting).
"""

from __future__ import annotations

from dataclasses import replace

from webhook.admission import review as rv
from webhook.admission.answer import Answer
from webhook.core.decision import Decision
from webhook.core.policy import Policy
from webhook.core.quota import QuotaView, check_rewrite


def slices_requested(decision: Decision) -> int:
    """MIG slices the rewritten pod requests, as the quota plugin charges them: one per
    rewritten app container, or one if only init containers were rewritten (they run one
    at a time)."""
    app = sum(1 for ref in decision.containers if ref.field == "containers")
    return max(app, 1 if any(ref.field == "initContainers" for ref in decision.containers) else 0)


def apply_quota(answer: Answer, namespace: str, policy: Policy, view: QuotaView | None) -> Answer:
    """``answer``, with the quota's warning added or turned into a refusal (403, as the
    ResourceQuota plugin's own refusals)."""
    decision = answer.decision
    if (
        policy.quota_mode == "off"
        or decision is None
        or decision.action != "rewrite"
        or decision.profile is None
        or decision.pool is None
        # On the single strategy the pod keeps nvidia.com/gpu: the quota plugin counts it.
        or decision.pool.strategy != "mixed"
    ):
        return answer
    verdict = check_rewrite(
        namespace, decision.profile.name, slices_requested(decision), view, policy.quota_mode, policy.quota_shares
    )
    if verdict.refusal:
        return Answer("denied", decision, (), rv.denied_fields(verdict.refusal, code=403))
    if verdict.warning:
        fields = rv.allowed_fields(answer.patch, (*decision.all_warnings, verdict.warning))
        return replace(answer, response_fields=fields)
    return answer

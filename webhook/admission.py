"""One admission, end to end and pure: AdmissionReview dict + policy -> response.

decode (review.py) -> decide (decision.py) -> mutate (mutation.py) -> JSON Patch
(patch.py) -> AdmissionResponse. No Flask and no I/O here, so the web app, the tests
and the benchmarks all run exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook import review as rv
from webhook.decision import BadObject, Decision, decide
from webhook.kube_types import AdmissionResponse, AdmissionReview
from webhook.mutation import mutate_pod
from webhook.patch import diff
from webhook.policy import Policy


@dataclass(frozen=True)
class Outcome:
    response: AdmissionResponse
    result: str  # mutated | unchanged | denied | ignored
    decision: Decision | None
    patch: tuple[dict, ...] = ()


def pod_patch(pod: dict, policy: Policy) -> tuple[Decision, list[dict]]:
    """The decision for ``pod`` and the JSON Patch that applies it (empty when nothing
    changes, so a second pass over a mutated pod yields no patch)."""
    decision = decide(pod, policy)
    return decision, diff(pod, mutate_pod(pod, decision, policy))


def admit(review: AdmissionReview, policy: Policy) -> Outcome:
    request = review["request"]
    uid = request["uid"]
    if not rv.is_pod_create(request):
        return Outcome(rv.allowed(uid), "ignored", None)
    pod = request.get("object")
    if not isinstance(pod, dict):
        return Outcome(rv.denied(uid, "request.object must be a Pod object"), "denied", None)
    try:
        decision, patch = pod_patch(pod, policy)
    except BadObject as err:
        return Outcome(rv.denied(uid, f"the pod is malformed: {err}"), "denied", None)
    if decision.action == "deny":
        return Outcome(rv.denied(uid, decision.message), "denied", decision)
    result = "mutated" if patch else ("ignored" if decision.action == "ignore" else "unchanged")
    return Outcome(rv.allowed(uid, patch, decision.all_warnings), result, decision, tuple(patch))

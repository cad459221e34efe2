"""One admission, end to end and pure: AdmissionReview dict + policy -> response.

decode (review.py) -> decide (decision.py) -> mutate (mutation.py) -> JSON Patch
(patch.py) -> AdmissionResponse. No Flask and no I/O here, so the web app, the tests
and the benchmarks all run exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from webhook.admission import review as rv
from webhook.core.errors import BadObject
from webhook.core.decision import Decision, decide
from webhook.admission.types import AdmissionResponse, AdmissionReview
from webhook.core.mutation import mutate_pod
from webhook.core.patch import diff
from webhook.core.policy import Policy

if TYPE_CHECKING:
    from webhook.admission.memo import DecisionMemo


@dataclass(frozen=True)
class Answer:
    """What a pod create gets, whoever asks: the outcome without the request's uid.
    A pure function of (pod, policy), so webhook/admission/memo.py can keep it for a pod seen again."""

    result: str  # mutated | unchanged | denied | ignored
    decision: Decision | None
    patch: tuple[dict, ...]
    response_fields: dict  # the AdmissionResponse without "uid" (review.with_uid adds it)


@dataclass(frozen=True)
class Outcome:
    response: AdmissionResponse
    result: str  # mutated | unchanged | denied | ignored
    decision: Decision | None
    patch: tuple[dict, ...] = ()
    memo: str = ""  # the DecisionMemo's answer: hit | miss | skipped; "" when none was asked


def pod_patch(pod: dict, policy: Policy) -> tuple[Decision, list[dict]]:
    """The decision for ``pod`` and the JSON Patch that applies it (empty when nothing
    changes, so a second pass over a mutated pod yields no patch)."""
    decision = decide(pod, policy)
    return decision, diff(pod, mutate_pod(pod, decision, policy))


def answer_pod(pod: object, policy: Policy) -> Answer:
    """The answer to creating ``pod`` (request.object, whatever JSON it is)."""
    if not isinstance(pod, dict):
        return Answer("denied", None, (), rv.denied_fields("request.object must be a Pod object"))
    try:
        decision, patch = pod_patch(pod, policy)
    except BadObject as err:
        return Answer("denied", None, (), rv.denied_fields(f"the pod is malformed: {err}"))
    if decision.action == "deny":
        return Answer("denied", decision, (), rv.denied_fields(decision.message))
    result = "mutated" if patch else ("ignored" if decision.action == "ignore" else "unchanged")
    return Answer(result, decision, tuple(patch), rv.allowed_fields(patch, decision.all_warnings))


def admit(review: AdmissionReview, policy: Policy, memo: DecisionMemo | None = None, body_bytes: int = 0) -> Outcome:
    """``memo`` (for ``policy``) answers pods seen before; ``body_bytes`` is the request's
    size, which bounds what keying the pod would cost (webhook/admission/memo.py)."""
    request = review["request"]
    uid = request["uid"]
    if not rv.is_pod_create(request):
        return Outcome(rv.allowed(uid), "ignored", None)
    if memo is None:
        answer, remembered = answer_pod(request.get("object"), policy), ""
    else:
        answer, remembered = memo.answer(request.get("object"), body_bytes)
    return Outcome(rv.with_uid(uid, answer.response_fields), answer.result, answer.decision, answer.patch,
                   remembered)

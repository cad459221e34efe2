"""The answer to a pod create: a pure function of (pod, policy), and where admit gets it.

``answer_pod`` decides (webhook/core/decision.py), mutates (mutation.py) and diffs
(patch.py). ``admit`` asks an :class:`AnswerSource` instead of calling it directly, so
the memo (webhook/admission/memo.py) can wrap any source without knowing about admit,
and admit needs no branch for "is there a memo".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from webhook.admission import review as rv
from webhook.core.capacity import CapacityRead
from webhook.core.decision import Decision, decide
from webhook.core.errors import BadObject
from webhook.core.mutation import mutate_pod
from webhook.core.outcomes import AnswerResult, MemoResult
from webhook.core.patch import diff
from webhook.core.policy import Policy


@dataclass(frozen=True)
class Answer:
    """What a pod create gets, whoever asks: the outcome without the request's uid.
    A pure function of (pod, policy), so webhook/admission/memo.py can keep it for a pod
    seen again."""

    result: AnswerResult
    decision: Decision | None
    patch: tuple[dict[str, Any], ...]
    response_fields: dict[str, Any]  # the AdmissionResponse without "uid" (review.with_uid adds it)


def pod_patch(
    pod: dict[str, Any], policy: Policy, capacity: CapacityRead | None = None
) -> tuple[Decision, list[dict[str, Any]]]:
    """The decision for ``pod`` and the JSON Patch that applies it (empty when nothing
    changes, so a second pass over a mutated pod yields no patch)."""
    decision = decide(pod, policy, capacity)
    return decision, diff(pod, mutate_pod(pod, decision, policy))


def answer_pod(pod: object, policy: Policy, capacity: CapacityRead | None = None) -> Answer:
    """The answer to creating ``pod`` (request.object, whatever JSON it is)."""
    if not isinstance(pod, dict):
        return Answer("denied", None, (), rv.denied_fields("request.object must be a Pod object"))
    try:
        decision, patch = pod_patch(pod, policy, capacity)
    except BadObject as err:
        return Answer("denied", None, (), rv.denied_fields(f"the pod is malformed: {err}"))
    if decision.action == "deny":
        return Answer("denied", decision, (), rv.denied_fields(decision.message))
    result: AnswerResult = "mutated" if patch else ("ignored" if decision.action == "ignore" else "unchanged")
    return Answer(result, decision, tuple(patch), rv.allowed_fields(patch, decision.all_warnings))


class AnswerSource(Protocol):
    """Answers pod creates under one policy."""

    @property
    def policy(self) -> Policy: ...

    def answer(self, pod: object, pod_bytes: int, dry_run: bool = False) -> tuple[Answer, MemoResult]:
        """(the answer to creating ``pod``, how a memo answered: "" when none was asked).
        ``pod_bytes``: the request body's size, a cheap bound on what keying the pod
        would cost a memo. ``dry_run``: the create will not be stored (`kubectl apply
        --dry-run=server`), so the answer must leave nothing behind."""
        ...


class PlainAnswers:
    """An :class:`AnswerSource` that decides every pod afresh."""

    def __init__(self, policy: Policy):
        self._policy = policy

    @property
    def policy(self) -> Policy:
        return self._policy

    def answer(self, pod: object, pod_bytes: int, dry_run: bool = False) -> tuple[Answer, MemoResult]:
        return answer_pod(pod, self._policy), ""
